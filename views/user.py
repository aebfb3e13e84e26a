"""/users and /device: user settings and push device tokens."""
import time

import marshmallow as ma
from flask.views import MethodView

from models import group as groups
from models import record as records
from models import relationship as relationships
from models import router
from models import setting as settings
from models import token as tokens
from models import user as users
from models.db import get_db, transaction
from models.errors import BatchTooLarge, InvalidField, RouterNotConfigured, RouterUnavailable, UserExists, UserNotFound
from models.redis_client import get_redis
from models.replicas import get_replica_db

from . import schemas
from .authentication import caller, requires
from .common import Blueprint, ok, page, queues, units
from .docs import listed, one_of, responds
from .fields import ID_TEXT, Integer, List, MemberSchema, OneOrMoreSchema, PageSchema, Schema, Text, Uid, setting

blp = Blueprint("user", __name__, description="User settings and device tokens")


class DoNotDisturbSchema(Schema):
    peer_uid = Uid(required=True)
    on = ma.fields.Boolean(required=True)


class SettingsSchema(OneOrMoreSchema):
    example = {"do_not_disturb": {"peer_uid": 1002, "on": True}}

    name = Text()
    do_not_disturb = ma.fields.Nested(DoNotDisturbSchema)
    mute = ma.fields.Boolean()
    notification_on = ma.fields.Boolean(metadata={"description": "push on (the router reads it at login)"})
    forbidden = ma.fields.Boolean()


class DeviceSchema(OneOrMoreSchema):
    example = {"apns_device_token": "740f4707bebcf74f9b7c25d48e3358945f6aa01da5ddb387462c7eaf61bb78ad"}

    apns_device_token = Text(512)
    pushkit_device_token = Text(512)
    xg_device_token = Text(512)
    xm_device_token = Text(512)
    hw_device_token = Text(512)
    gcm_device_token = Text(512)
    jp_device_token = Text(512)
    # The Android SDK's PostDeviceToken sends its generic token as ng_device_token; the original kept it.
    ng_device_token = Text(512)


class ProfileSchema(Schema):
    name = Text()
    avatar = Text()


class RegisterSchema(Schema):
    users = List(ma.fields.Nested(MemberSchema), required=True)

    @ma.pre_load
    def wrap(self, data, **kwargs):
        return {"users": data} if isinstance(data, list) else data


REGISTERED = {**listed(schemas.RegisteredSchema),
              "example": [{"uid": 1001}, {"uid": 1002, "error": {"code": 3002, "message": "User already exists."}}]}


@blp.route("/users")
class UserList(MethodView):
    @responds("users_register", REGISTERED, errors=(BatchTooLarge,),
              body=one_of({**listed(MemberSchema), "example": [{"uid": 1001, "name": "Alice"}, {"uid": 1002}]},
                          RegisterSchema))
    @requires("server")
    @blp.arguments(RegisterSchema)
    def post(self, args):
        """Register users [{uid, name?, avatar?}, ...]: a result per item, in order; a taken uid is an item error.

        The body is the bare array (the original's form) or `{"users": [...]}`, at most MAX_BATCH
        (500) items. Each item is registered or not on its own: the answer lists `{uid}` or
        `{uid, error}` per item, in request order (`error.code` 3002: the uid exists already), and
        the call itself succeeds. Names and avatars reach the router's `users_<appid>_<uid>` hash."""
        appid, batch = caller().appid, args["users"]
        if len(batch) > setting("MAX_BATCH"):
            raise BatchTooLarge(f"users: at most {setting('MAX_BATCH')} per request.")
        with transaction() as cur:  # Redis inside: if it refuses, no row stays and a retry starts afresh
            results = users.register_users(cur, appid, batch)
            users.save_profiles(get_redis(), appid, [u for u, done in zip(batch, results) if done["created"]])
        exists = {"code": UserExists.code, "message": UserExists.message}
        return ok([{"uid": r["uid"]} if r["created"] else {"uid": r["uid"], "error": exists} for r in results])

    @responds("users_list", schemas.UserPageSchema)
    @requires("server")
    @blp.arguments(PageSchema, location="query")
    def get(self, args):
        """The app's users, paged by uid: {total, start, count, users: [{uid, name, avatar}]}.

        Users are those registered, granted a token or named in a setting. Page with `?after=` (the
        previous page's `next`) or `?start=`; a read replica may answer when one is configured."""
        with get_replica_db().cursor() as cur:  # a replica may answer (docs/SCALING.md)
            total, found = users.users_page(cur, caller().appid, args["start"], args["count"], args["after"])
        return ok(page(total, args["start"], "users", found, "uid", args["count"]))


@blp.route("/users/<uid:uid>")
class User(MethodView):
    @responds("user_get", schemas.UserSchema, errors=(UserNotFound,))
    @requires("server")
    def get(self, uid):
        """The user's profile and its forbidden, mute and notification_on settings.

        The profile comes from MySQL, the settings from the router's Redis hash. 404 (code 3001)
        for a uid the app has never registered, granted a token or given settings."""
        appid = caller().appid
        with get_db().cursor() as cur:
            profile = users.find_user(cur, appid, uid)
        if profile is None:
            raise UserNotFound()
        return ok(profile | settings.flags(get_redis(), appid, uid))

    @responds("user_replace", errors=(UserNotFound,))
    @requires("server")
    @blp.arguments(ProfileSchema)
    def put(self, args, uid):
        """Replace the user's name and/or avatar.

        Only the fields given change; the router's user hash gets them too. 404 for a user that
        is not registered."""
        appid = caller().appid
        with transaction() as cur:
            if not users.update_user(cur, appid, uid, args):
                raise UserNotFound()
        users.save_profiles(get_redis(), appid, [{"uid": uid, **args}])
        return ok()

    @responds("user_delete", errors=(UserNotFound,))
    @requires("server")
    def delete(self, uid):
        """Delete the user: profile, token, place in every group, friends and blacklists (with events).

        One transaction removes the user from MySQL and every group (a member-removed event per
        group) and ends its friendships and blacklist entries (relationship events); the token is
        revoked. 404 when there was nothing of the user to delete."""
        appid = caller().appid
        with units().group_change(appid) as (cur, _, changes):
            existed = users.delete_user(cur, appid, uid)
            existed = records.forget_user(cur, appid, uid) or existed
            groups.leave_all_groups(cur, changes, appid, uid)
            relationships.forget_user(cur, changes.relationship_events, appid, uid)
        revoked = tokens.revoke_token(get_redis(), queues().user_events, appid, uid)
        if not (existed or revoked or changes):
            raise UserNotFound()
        users.forget_user(get_redis(), appid, uid)
        return ok()

    @responds("user_settings")
    @requires("server")
    @blp.arguments(SettingsSchema)
    def post(self, args, uid):
        """Change the user's settings: name, peer do-not-disturb, mute, forbidden, notification_on.

        Give one setting or several. They are written to the router's `users_<appid>_<uid>` hash
        (`do_not_disturb` silences pushes from one peer; `mute`: the user's phone is silent); `forbidden`
        also queues a `user_forbidden` event on `user_event_queue`. A user not seen before is
        registered, with an empty name unless one is given. PATCH is the same operation."""
        appid = caller().appid
        with transaction() as cur:  # a user given settings is known: GET answers 200 afterwards, as after a grant
            users.record_user(cur, appid, uid, args.get("name"))
            if "name" in args:
                records.rename_token(cur, appid, uid, args["name"])
            records.record_settings(cur, appid, uid, args)
        settings.save_settings(get_redis(), queues().user_events, appid, uid, args)
        return ok()

    patch = post


class StoredMessagesSchema(Schema):
    limit = Integer(load_default=100, validate=ma.validate.Range(1, 1000))
    last_id = Integer(validate=ma.validate.Range(0, 2**63 - 1),
                                metadata={"description": "messages after this router message id"})


class OnlineQuerySchema(Schema):
    uids = ma.fields.String(required=True, metadata={"description": "comma-separated uids, at most MAX_BATCH"})


def router_read(read, *args):
    """A read from the router's RPC (models/router.py) with this app's settings."""
    url = setting("IMR_RPC_URL" if read is router.online else "IM_RPC_URL")
    return read(url, setting("ROUTER_RPC_TIMEOUT"), *args)


@blp.route("/users/<uid:uid>/messages")
class StoredMessages(MethodView):
    @responds("user_stored_messages", listed(schemas.StoredMessageSchema),
              errors=(RouterUnavailable, RouterNotConfigured))
    @requires("server")
    @blp.arguments(StoredMessagesSchema, location="query")
    def get(self, args, uid):
        """The user's messages in the router's store: the latest (?limit=) or those after ?last_id=.

        Read from the router's HTTP RPC (`load_latest_message` / `load_history_message`): it needs
        IM_RPC_URL (501, code 7004, without it; 503 when the router does not answer)."""
        appid = caller().appid
        if "last_id" in args:
            return ok(router_read(router.messages_after, appid, uid, args["last_id"]))
        return ok(router_read(router.latest_messages, appid, uid, args["limit"]))


@blp.route("/users/<uid:uid>/online")
class UserOnline(MethodView):
    @responds("user_online", schemas.OnlineSchema, errors=(RouterUnavailable, RouterNotConfigured))
    @requires("server")
    def get(self, uid):
        """Whether the user is connected, from the route server.

        Read from the route server's RPC (`online`): it needs IMR_RPC_URL (501, code 7004, without
        it; 503 when it does not answer)."""
        return ok({"uid": uid, "online": router_read(router.online, caller().appid, uid)})


@blp.route("/users/online")
class UsersOnline(MethodView):
    @responds("users_online", listed(schemas.OnlineSchema), errors=(RouterUnavailable, RouterNotConfigured))
    @requires("server")
    @blp.arguments(OnlineQuerySchema, location="query")
    def get(self, args):
        """Online status of several users (?uids=1,2,3), from the route server.

        At most MAX_BATCH uids, comma-separated; one `{uid, online}` per uid, in the order given.
        Needs IMR_RPC_URL (501 without it, 503 when the route server does not answer)."""
        uids = parse_uids(args["uids"])
        appid = caller().appid
        return ok([{"uid": uid, "online": router_read(router.online, appid, uid)} for uid in uids])


def parse_uids(text: str) -> list[int]:
    """The uids of a comma-separated list (InvalidField naming uids when one is not a uid)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not 0 < len(items) <= setting("MAX_BATCH"):
        raise InvalidField(f"uids: give 1 to {setting('MAX_BATCH')} uids.")
    if not all(ID_TEXT.fullmatch(item) and int(item) < setting("CUSTOMER_ID_BASE") for item in items):
        raise InvalidField(f"uids: each must be a uid from 0 to {setting('CUSTOMER_ID_BASE') - 1}.")
    return list(dict.fromkeys(int(item) for item in items))


@blp.route("/users/<uid:uid>/groups")
class UserGroups(MethodView):
    @responds("user_groups", listed(schemas.GroupSchema))
    @requires("server")
    def get(self, uid):
        """The app's groups the user is a member of.

        Live groups only (not disbanded), each with its id, master, name, notice, cover and super
        flag; an empty list for a user in no group."""
        with get_db().cursor() as cur:
            return ok([groups.public(g) for g in groups.user_groups(cur, caller().appid, uid)])


def save_devices(uid: int, tokens: dict, bind: bool):
    """Bind (or unbind) the user's device tokens: in MySQL, then in Redis."""
    appid, now = caller().appid, int(time.time())
    with transaction() as cur:
        if bind:
            records.record_devices(cur, appid, uid, tokens, now)
        else:
            records.forget_devices(cur, appid, uid, tokens)
    if bind:
        settings.bind_devices(get_redis(), appid, uid, tokens, now)
    else:
        settings.unbind_devices(get_redis(), appid, uid, tokens)
    return ok()


@blp.route("/users/<uid:uid>/bind")
class Bind(MethodView):
    @responds("user_bind")
    @requires("server")
    @blp.arguments(DeviceSchema)
    def post(self, args, uid):
        """Bind push device tokens to the user.

        Give one token or several, by push service (APNs, PushKit, XG, Xiaomi, Huawei, GCM/FCM,
        JPush). Each is written to the router's user hash with its `<kind>_timestamp`, replacing the
        token of that kind bound before."""
        return save_devices(uid, args, bind=True)


@blp.route("/users/<uid:uid>/unbind")
class Unbind(MethodView):
    @responds("user_unbind")
    @requires("server")
    @blp.arguments(DeviceSchema)
    def post(self, args, uid):
        """Unbind device tokens (each only while it is still the one bound).

        A token that is no longer the bound one (the user logged in on another device since) is
        left alone, so a late unbind from an old device cannot silence the new one."""
        return save_devices(uid, args, bind=False)


@blp.route("/device/bind")
class DeviceBind(MethodView):
    @responds("device_bind")
    @requires("client")
    @blp.arguments(DeviceSchema)
    def post(self, args):
        """Bind push device tokens to the calling user.

        The client form of POST /users/{uid}/bind, for the user of the Bearer token: what
        GoBelieve's SDKs call after login (`/v2/device/bind` with their API URL)."""
        return save_devices(caller().uid, args, bind=True)


@blp.route("/device/unbind")
class DeviceUnbind(MethodView):
    @responds("device_unbind")
    @requires("client")
    @blp.arguments(DeviceSchema)
    def post(self, args):
        """Unbind the calling user's device tokens.

        The client form of POST /users/{uid}/unbind: each token is cleared only while it is still
        the one bound. GoBelieve's SDKs call it at logout."""
        return save_devices(caller().uid, args, bind=False)
