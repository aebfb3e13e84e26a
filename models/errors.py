"""The business error catalog: every failure the API reports, with its HTTP status and code.

views/errors.py turns these into {"meta": {"code", "message"}} bodies. docs/ERRORS.md
lists the same table for integrators; keep the two in step.
"""


class ApiError(Exception):
    status = 500
    code = 9000
    message = "Internal server error."

    def __init__(self, message: str | None = None, headers: dict | None = None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.headers = headers or {}


class InvalidJson(ApiError):
    status, code, message = 400, 1000, "The request body is not valid JSON."


class InvalidField(ApiError):
    status, code, message = 400, 1001, "A field is invalid."


class BatchTooLarge(ApiError):
    status, code, message = 400, 1002, "Too many items in one request."


class RouteNotFound(ApiError):
    status, code, message = 404, 1003, "No such endpoint."


class MethodNotAllowed(ApiError):
    status, code, message = 405, 1004, "Method not allowed on this endpoint."


class BodyTooLarge(ApiError):
    status, code, message = 413, 1005, "The request body is too large."


class UnsupportedMediaType(ApiError):
    status, code, message = 415, 1006, "The request body must be application/json."


class MissingCredentials(ApiError):
    status, code, message = 401, 2001, "Missing or malformed Authorization header."


class UnknownApp(ApiError):
    status, code, message = 401, 2002, "Unknown app."


class BadSecret(ApiError):
    status, code, message = 401, 2003, "Wrong app secret."


class BadToken(ApiError):
    status, code, message = 401, 2004, "Invalid or revoked access token."


class IpNotAllowed(ApiError):
    status, code, message = 403, 2005, "This client address may not use the app's secret."


class AppDisabled(ApiError):
    status, code, message = 403, 2006, "The app is disabled."


class Forbidden(ApiError):
    status, code, message = 403, 2007, "Not allowed for this caller."


class UserNotFound(ApiError):
    status, code, message = 404, 3001, "User not found."


class UserExists(ApiError):
    status, code, message = 409, 3002, "User already exists."


class SelfRelationship(ApiError):
    status, code, message = 400, 3003, "A user cannot be its own friend or block itself."


class GroupNotFound(ApiError):
    status, code, message = 404, 4001, "Group not found."


class NotMember(ApiError):
    status, code, message = 404, 4002, "The user is not a member of the group."


class NotMaster(ApiError):
    status, code, message = 403, 4003, "Only the group's master may do this."


class MemberLimit(ApiError):
    status, code, message = 409, 4004, "The group's member limit is reached."


class GroupIdInUse(ApiError):
    status, code, message = 409, 4005, "The group id is already in use."


class CodeInUse(ApiError):
    status, code, message = 409, 4006, "The face-to-face code is in use by another group."


class MasterMustTransfer(ApiError):
    status, code, message = 409, 4007, "The master must transfer the group before leaving it."


class StoreNotConfigured(ApiError):
    status, code, message = 400, 5001, "The app has no customer-service store."


class StoreNotFound(ApiError):
    status, code, message = 404, 5002, "Store not found."


class SellerNotFound(ApiError):
    status, code, message = 404, 5003, "Seller not found."


class RateLimited(ApiError):
    status, code, message = 429, 6001, "Too many requests; retry later."


class Unavailable(ApiError):
    status, code, message = 503, 7001, "A backing service (MySQL or Redis) is unavailable; retry later."


class RouterUnavailable(ApiError):
    status, code, message = 503, 7003, "The IM router's RPC is unavailable; retry later."


class RouterNotConfigured(ApiError):
    status, code, message = 501, 7004, "This read needs the IM router's RPC (IM_RPC_URL / IMR_RPC_URL), not configured."


class QueueFull(ApiError):
    status, code, message = 503, 7002, "The message queue is full (the IM router is behind); retry later."


class MediaUnavailable(ApiError):
    status, code, message = 503, 7005, "The media store is unavailable; retry later."


class MediaNotFound(ApiError):
    status, code, message = 404, 8001, "No such media object."


class InvalidMedia(ApiError):
    status, code, message = 400, 8002, "The upload is not a valid object of its kind."


class TooManyPixels(ApiError):
    status, code, message = 400, 8003, "The image has more pixels than allowed (MEDIA_MAX_PIXELS)."


class RangeNotSatisfiable(ApiError):
    status, code, message = 416, 8004, "The requested byte range is outside the object."


class ConversionFailed(ApiError):
    status, code, message = 503, 8005, "The audio could not be converted to MP3 in time; retry later."
