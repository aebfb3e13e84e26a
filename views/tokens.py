"""/auth: access tokens for app users."""
import logging

from flask.views import MethodView

from models import record as records
from models import token as tokens
from models import user as users
from models.db import transaction
from models.redis_client import get_redis

from . import schemas
from .authentication import caller, requires
from .common import Blueprint, ok, queues
from .docs import responds
from .fields import Id, Schema, Text, Uid

log = logging.getLogger(__name__)

blp = Blueprint("auth", __name__, url_prefix="/auth", description="Access tokens for app users")


class GrantSchema(Schema):
    uid = Uid(required=True)
    user_name = Text(allow_none=True, metadata={"description": "the user's display name, kept in `user`"})
    platform_id = Id(allow_none=True, metadata={"description": "1 iOS, 2 Android, 3 web (the original's values)"})
    device_id = Text(allow_none=True)


@blp.route("/grant")
class Grant(MethodView):
    @responds("auth_grant", schemas.TokenSchema)
    @requires("server")
    @blp.arguments(GrantSchema)
    def post(self, args):
        """Get the user's permanent access token (the same one until it is revoked).

        Call it from your app server and hand the token to the user's client, which sends it as
        `Authorization: Bearer <token>` here and to the IM router. Asking again for the same uid
        answers the same token, so a client may ask at every login. The user is recorded in the
        `user` table, named `user_name` when given (a new name replaces the old one); the router
        reads the token from the Redis hash `access_token_<token>`."""
        return ok({"token": issue_token(caller().appid, args["uid"], args.get("user_name"))})


def issue_token(appid: int, uid: int, name: str | None, record: bool = True) -> str:
    """The user's permanent token, recorded in MySQL (SPEC 5.3), with the user named in Redis and
    (record) in the `user` table."""
    r = get_redis()
    token, created, known = tokens.grant_token(r, appid, uid)
    # The common case, a known user under the same name, costs that one Redis round trip.
    if created or known is None or name not in (None, known):
        try:
            # Redis before the commit: a revoke, which deletes the row first, waits and comes after.
            with transaction() as cur:  # the user row and its token: one transaction
                if record:
                    users.record_user(cur, appid, uid, name)
                recorded, user_name = records.record_token(cur, appid, uid, token, known if name is None else name)
                if recorded != token:  # Redis had lost the user's token: the recorded one is still the user's
                    tokens.adopt_token(r, appid, uid, token, recorded)
                    created, token = False, recorded
                tokens.save_name(r, appid, uid, token, user_name)
        except BaseException:
            if created:  # whatever went wrong: a retry makes the token, and the row, again
                _forget(r, appid, uid, token)
            raise
    return token


def _forget(r, appid: int, uid: int, token: str) -> None:
    """Undo a token made moments ago; if Redis refuses that too, the first failure is the one to report."""
    try:
        tokens.forget_token(r, appid, uid, token)
    except Exception:
        log.exception("could not undo the token just made for app %s uid %s", appid, uid)


class RevokeSchema(Schema):
    uid = Uid(required=True)


@blp.route("/revoke")
class Revoke(MethodView):
    @responds("auth_revoke")
    @requires("server")
    @blp.arguments(RevokeSchema)
    def post(self, args):
        """Revoke the user's token at once (the router hears of it); the next grant makes a new one.

        The token stops authenticating here at once, and the router reads that it is gone from
        Redis (a `user_token_revoked` item on `user_event_queue` says so). Revoking a user who has
        no token succeeds too."""
        appid = caller().appid
        with transaction() as cur:
            records.revoke_token(cur, appid, args["uid"])
        tokens.revoke_token(get_redis(), queues().user_events, appid, args["uid"])
        return ok()
