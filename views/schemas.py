"""Response schemas: what the API answers, for the OpenAPI document only.

Views return plain dicts (serialising through marshmallow would cost every request);
views/docs.py wraps these in the {"data": ...} envelope, and tests/test_openapi.py checks
with schemathesis that every answer matches them.
"""
import marshmallow as ma

from models import queue_items

from .fields import MAX_ID

_id = ma.validate.Range(0, MAX_ID)


def Id(**kwargs) -> ma.fields.Integer:  # noqa: N802 - reads like the field classes beside it
    return ma.fields.Integer(required=True, validate=_id, **kwargs)


def Flag(**kwargs) -> ma.fields.Integer:  # noqa: N802
    """0 or 1, as the original API answered (MySQL TINYINT, not a JSON boolean)."""
    return ma.fields.Integer(required=True, validate=ma.validate.OneOf([0, 1]), **kwargs)


def Str(**kwargs) -> ma.fields.String:  # noqa: N802
    return ma.fields.String(required=True, **kwargs)


class ErrorMetaSchema(ma.Schema):
    code = ma.fields.Integer(required=True, metadata={"description": "business code (docs/ERRORS.md)", "example": 1001})
    message = Str(metadata={"description": "an English sentence; a 400 names the field",
                            "example": "uid: Must be a uid from 0 to 9007199254740991 (higher ids are customers')."})


class ErrorSchema(ma.Schema):
    """Every failure: {"meta": {"code", "message"}}."""

    meta = ma.fields.Nested(ErrorMetaSchema, required=True)


class SuccessSchema(ma.Schema):
    success = ma.fields.Boolean(required=True, validate=ma.validate.Equal(True))


class TokenSchema(ma.Schema):
    token = Str()


class CustomerTokenSchema(ma.Schema):
    token = Str()
    store_id = Id()
    client_id = Id(metadata={"description": "at or above CUSTOMER_ID_BASE (2^53): not exact as a JavaScript number"})


class GroupIdSchema(ma.Schema):
    group_id = Id()


class MessageIdSchema(ma.Schema):
    id = Id(metadata={"description": "the queue item's id", "example": 58217})


class MessageIdsSchema(ma.Schema):
    ids = ma.fields.List(ma.fields.Integer(validate=_id, metadata={"example": 58217}), required=True,
                         metadata={"example": [58217, 58218]})


class GroupSchema(ma.Schema):
    id = Id()
    master = Id()
    name = Str(metadata={"example": "Weekend hiking"})
    notice = Str()
    cover = Str()
    super = Flag()
    code = ma.fields.String(required=True, allow_none=True, metadata={"description": "face-to-face join code"})


class GroupMemberSchema(ma.Schema):
    uid = Id()
    name = Str()
    nickname = Str()
    mute = Flag()
    timestamp = ma.fields.Integer(required=True, metadata={"description": "join time, seconds"})


class GroupDetailSchema(GroupSchema):
    member_count = ma.fields.Integer(required=True)
    members = ma.fields.List(ma.fields.Nested(GroupMemberSchema), required=True,
                             metadata={"description": "the first ?members= (at most MEMBERS_INLINE) members by uid"})
    members_next = ma.fields.Integer(required=True, allow_none=True, metadata={
        "description": "more members: GET /groups/{gid}/members?after=<this>; null: all are listed, or ?members=0 "
                       "asked for none", "example": None})


class GroupSummarySchema(ma.Schema):
    """What a client that is not a member sees of a group."""

    id = Id()
    name = Str(metadata={"example": "Weekend hiking"})
    cover = Str()
    super = Flag()
    member_count = ma.fields.Integer(required=True)


class ClientGroupSchema(GroupSchema):
    members = ma.fields.List(ma.fields.Nested(GroupMemberSchema), metadata={"description": "with ?fields=members"})
    quiet = ma.fields.Integer(validate=ma.validate.OneOf([0, 1]), metadata={"description": "with ?fields=quiet"})


class PagedSchema(ma.Schema):
    total = ma.fields.Integer(required=True)
    start = ma.fields.Integer(required=True)
    count = ma.fields.Integer(required=True, metadata={"description": "items in this page"})
    next = ma.fields.Integer(required=True, allow_none=True, metadata={
        "description": "?after= of the next page; null on the last page", "example": None})


class GroupPageSchema(PagedSchema):
    groups = ma.fields.List(ma.fields.Nested(GroupSchema), required=True)


class MemberPageSchema(PagedSchema):
    members = ma.fields.List(ma.fields.Nested(GroupMemberSchema), required=True)


class UserItemSchema(ma.Schema):
    uid = Id()
    name = Str()
    avatar = Str()


class UserPageSchema(PagedSchema):
    users = ma.fields.List(ma.fields.Nested(UserItemSchema), required=True)


class UserSchema(UserItemSchema):
    created_at = ma.fields.Integer(required=True, metadata={"description": "seconds"})
    updated_at = ma.fields.Integer(required=True, metadata={"description": "seconds"})
    forbidden = ma.fields.Boolean(required=True)
    mute = ma.fields.Boolean(required=True)
    notification_on = ma.fields.Boolean(required=True)


class RegisteredSchema(ma.Schema):
    """One item of POST /users: the uid, with an error when it was not registered."""

    uid = Id()
    error = ma.fields.Nested(ErrorMetaSchema, metadata={"example": {"code": 3002, "message": "User already exists."}})


class QueuedMessageSchema(ma.Schema):
    """A message as queued on im_message_queue (and kept in the history lists); kinds may add fields."""

    class Meta:
        unknown = ma.INCLUDE

    id = Id(metadata={"example": 58217})
    kind = Str(validate=ma.validate.OneOf(queue_items.KINDS))
    appid = Id()
    sender = ma.fields.Integer(required=True, allow_none=True, validate=_id, metadata={"description": "null: system"})
    receiver = Id()
    content = Str()
    timestamp = ma.fields.Integer(required=True, metadata={"description": "milliseconds", "example": 1765100000123})
    members = ma.fields.List(ma.fields.Integer(validate=_id, metadata={"example": 1001}))
    store_id = ma.fields.Integer(validate=_id)
    seller_id = ma.fields.Integer(validate=_id)


class OfflineCountSchema(ma.Schema):
    count = ma.fields.Integer(required=True)
    new = Flag(metadata={"description": "1 when count > 0", "example": 1})


class SellerItemSchema(ma.Schema):
    seller_id = Id()
    name = Str(metadata={"example": "Ann"})
    avatar = Str()


class ChosenSellerSchema(SellerItemSchema):
    status = Str(validate=ma.validate.OneOf(["online", "offline"]))


class StoreIdSchema(ma.Schema):
    store_id = Id()


class SellerIdSchema(ma.Schema):
    seller_id = Id()


class StoreDetailSchema(ma.Schema):
    id = Id(metadata={"example": 3})
    name = Str(metadata={"example": "Help desk"})
    sellers = ma.fields.List(ma.fields.Nested(SellerItemSchema), required=True)


class StatusSchema(ma.Schema):
    status = Str(metadata={"example": "ok"})


class RelationItemSchema(ma.Schema):
    uid = Id()
    timestamp = ma.fields.Integer(required=True, metadata={"description": "since, seconds"})


class FriendPageSchema(PagedSchema):
    friends = ma.fields.List(ma.fields.Nested(RelationItemSchema), required=True)


class BlacklistPageSchema(PagedSchema):
    blacklist = ma.fields.List(ma.fields.Nested(RelationItemSchema), required=True)


class StoredMessageSchema(ma.Schema):
    """A message in the router's store, as its load_latest_message / load_history_message give it."""

    class Meta:
        unknown = ma.INCLUDE

    id = ma.fields.Integer(metadata={"example": 58217})
    command = ma.fields.Integer(metadata={"description": "the router's message command (4: a peer message)"})
    content = ma.fields.String()
    timestamp = ma.fields.Integer()


class OnlineSchema(ma.Schema):
    uid = Id()
    online = ma.fields.Boolean(required=True)


class MediaSchema(ma.Schema):
    """An uploaded object: its path on this service and the absolute URL of it."""

    src = Str(metadata={"description": "/images/<name>.<ext>, /audios/<name> or /files/<name>[.<ext>]",
                        "example": "/images/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08.jpg"})
    src_url = Str(metadata={"description": "the absolute URL of src", "example": "https://im.example.com/images/"
                            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08.jpg"})
