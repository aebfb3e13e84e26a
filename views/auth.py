"""/auth: access tokens for app users."""
from flask.views import MethodView

from models.db import get_redis, transaction
from models.user import grant_token, record_user, revoke_token
from .common import Blueprint, Id, Schema, Text, Uid, ok, setting
from .credentials import caller, requires

blp = Blueprint("auth", __name__, url_prefix="/auth", description="Access tokens for app users")


class GrantSchema(Schema):
    uid = Uid(required=True)
    user_name = Text(allow_none=True)
    platform_id = Id(allow_none=True)
    device_id = Text(allow_none=True)


@blp.route("/grant")
class Grant(MethodView):
    @requires("server")
    @blp.arguments(GrantSchema)
    def post(self, args):
        """Get the user's permanent access token (the same one until it is revoked)."""
        appid, uid, name = caller().appid, args["uid"], args.get("user_name")
        token = grant_token(get_redis(), appid, uid, name)  # Redis first: when it is down, nothing is written
        with transaction() as cur:
            record_user(cur, appid, uid, name)
        return ok({"token": token})


class RevokeSchema(Schema):
    uid = Uid(required=True)


@blp.route("/revoke")
class Revoke(MethodView):
    @requires("server")
    @blp.arguments(RevokeSchema)
    def post(self, args):
        """Revoke the user's token at once (the router hears of it); the next grant makes a new one."""
        revoke_token(get_redis(), caller().appid, args["uid"], setting("USER_EVENT_QUEUE"))
        return ok()
