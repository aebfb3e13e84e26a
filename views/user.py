"""/users and /device: user settings and push device tokens."""
import marshmallow as ma
from flask.views import MethodView

from models import group as groups
from models import relationship as relationships
from models import router
from models import user as users
from models.db import get_db, get_redis, get_replica_db, transaction
from models.errors import BatchTooLarge, InvalidField, RouterNotConfigured, RouterUnavailable, UserExists, UserNotFound

from . import schemas
from .common import Blueprint, group_change, ok, page, queues
from .credentials import caller, requires
from .docs import listed, responds
from .fields import List, MemberSchema, OneOrMoreSchema, PageSchema, Schema, Text, Uid, setting

blp = Blueprint("user", __name__, description="User settings and device tokens")


class DoNotDisturbSchema(Schema):
    peer_uid = Uid(required=True)
    on = ma.fields.Boolean(required=True)


class SettingsSchema(OneOrMoreSchema):
    name = Text()
    do_not_disturb = ma.fields.Nested(DoNotDisturbSchema)
    mute = ma.fields.Boolean()
    notification_on = ma.fields.Boolean(metadata={"description": "push on (the router reads it at login)"})
    forbidden = ma.fields.Boolean()


class DeviceSchema(OneOrMoreSchema):
    apns_device_token = Text(512)
    pushkit_device_token = Text(512)
    xg_device_token = Text(512)
    xm_device_token = Text(512)
    hw_device_token = Text(512)
    gcm_device_token = Text(512)
    jp_device_token = Text(512)


class ProfileSchema(Schema):
    name = Text()
    avatar = Text()


class RegisterSchema(Schema):
    users = List(ma.fields.Nested(MemberSchema), required=True)

    @ma.pre_load
    def wrap(self, data, **kwargs):
        return {"users": data} if isinstance(data, list) else data


@blp.route("/users")
class UserList(MethodView):
    @responds("users_register", listed(schemas.RegisteredSchema), errors=(BatchTooLarge,))
    @requires("server")
    @blp.arguments(RegisterSchema)
    def post(self, args):
        """Register users [{uid, name?, avatar?}, ...]: a result per item, in order; a taken uid is an item error."""
        appid, batch = caller().appid, args["users"]
        if len(batch) > setting("MAX_BATCH"):
            raise BatchTooLarge(f"users: at most {setting('MAX_BATCH')} per request.")
        with transaction() as cur:
            results = users.register_users(cur, appid, batch)
        users.save_profiles(get_redis(), appid, [u for u, done in zip(batch, results) if done["created"]])
        exists = {"code": UserExists.code, "message": UserExists.message}
        return ok([{"uid": r["uid"]} if r["created"] else {"uid": r["uid"], "error": exists} for r in results])

    @responds("users_list", schemas.UserPageSchema)
    @requires("server")
    @blp.arguments(PageSchema, location="query")
    def get(self, args):
        """The app's users, paged by uid: {total, start, count, users: [{uid, name, avatar}]}."""
        with get_replica_db().cursor() as cur:  # a replica may answer (docs/SCALING.md)
            total, found = users.users_page(cur, caller().appid, args["start"], args["count"], args["after"])
        return ok(page(total, args["start"], "users", found, "uid", args["count"]))


@blp.route("/users/<uid:uid>")
class User(MethodView):
    @responds("user_get", schemas.UserSchema, errors=(UserNotFound,))
    @requires("server")
    def get(self, uid):
        """The user's profile and its forbidden, mute and notification_on settings."""
        appid = caller().appid
        with get_db().cursor() as cur:
            profile = users.find_user(cur, appid, uid)
        if profile is None:
            raise UserNotFound()
        return ok(profile | users.settings(get_redis(), appid, uid))

    @responds("user_replace", errors=(UserNotFound,))
    @requires("server")
    @blp.arguments(ProfileSchema)
    def put(self, args, uid):
        """Replace the user's name and/or avatar."""
        appid = caller().appid
        with transaction() as cur:
            if not users.update_user(cur, appid, uid, args):
                raise UserNotFound()
        users.save_profiles(get_redis(), appid, [{"uid": uid, **args}])
        return ok()

    @responds("user_delete", errors=(UserNotFound,))
    @requires("server")
    def delete(self, uid):
        """Delete the user: profile, token, place in every group, friends and blacklists (with events)."""
        appid = caller().appid
        with group_change(appid) as (cur, _, changes):
            existed = users.delete_user(cur, appid, uid)
            groups.leave_all_groups(cur, changes, appid, uid)
            relationships.forget_user(cur, changes.relationship_events, appid, uid)
        revoked = users.revoke_token(get_redis(), queues().user_events, appid, uid)
        users.forget_profile(get_redis(), appid, uid)
        if not (existed or revoked or changes):
            raise UserNotFound()
        return ok()

    @responds("user_settings")
    @requires("server")
    @blp.arguments(SettingsSchema)
    def post(self, args, uid):
        """Change the user's settings: name, peer do-not-disturb, mute, forbidden, notification_on (a user
        not seen before is registered, with an empty name unless one is given)."""
        appid = caller().appid
        with transaction() as cur:  # a user given settings is known: GET answers 200 afterwards, as after a grant
            users.record_user(cur, appid, uid, args.get("name"))
        users.save_settings(get_redis(), queues().user_events, appid, uid, args)
        return ok()

    patch = post


class StoredMessagesSchema(Schema):
    limit = ma.fields.Integer(load_default=100, validate=ma.validate.Range(1, 1000))
    last_id = ma.fields.Integer(validate=ma.validate.Range(0, 2**63 - 1),
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
        """The user's messages in the router's store: the latest (?limit=) or those after ?last_id=
        (needs IM_RPC_URL: 501 without it, 503 when the router is down)."""
        appid = caller().appid
        if "last_id" in args:
            return ok(router_read(router.messages_after, appid, uid, args["last_id"]))
        return ok(router_read(router.latest_messages, appid, uid, args["limit"]))


@blp.route("/users/<uid:uid>/online")
class UserOnline(MethodView):
    @responds("user_online", schemas.OnlineSchema, errors=(RouterUnavailable, RouterNotConfigured))
    @requires("server")
    def get(self, uid):
        """Whether the user is connected, from the route server (needs IMR_RPC_URL: 501 without it)."""
        return ok({"uid": uid, "online": router_read(router.online, caller().appid, uid)})


@blp.route("/users/online")
class UsersOnline(MethodView):
    @responds("users_online", listed(schemas.OnlineSchema), errors=(RouterUnavailable, RouterNotConfigured))
    @requires("server")
    @blp.arguments(OnlineQuerySchema, location="query")
    def get(self, args):
        """Online status of several users (?uids=1,2,3), from the route server (needs IMR_RPC_URL)."""
        uids = parse_uids(args["uids"])
        appid = caller().appid
        return ok([{"uid": uid, "online": router_read(router.online, appid, uid)} for uid in uids])


def parse_uids(text: str) -> list[int]:
    """The uids of a comma-separated list (InvalidField naming uids when one is not a uid)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not 0 < len(items) <= setting("MAX_BATCH"):
        raise InvalidField(f"uids: give 1 to {setting('MAX_BATCH')} uids.")
    if not all(item.isdigit() and int(item) < setting("CUSTOMER_ID_BASE") for item in items):
        raise InvalidField("uids: each must be a uid (an integer below CUSTOMER_ID_BASE).")
    return list(dict.fromkeys(int(item) for item in items))


@blp.route("/users/<uid:uid>/groups")
class UserGroups(MethodView):
    @responds("user_groups", listed(schemas.GroupSchema))
    @requires("server")
    def get(self, uid):
        """The app's groups the user is a member of."""
        with get_db().cursor() as cur:
            return ok([groups.public(g) for g in groups.user_groups(cur, caller().appid, uid)])


def save_devices(uid: int, tokens: dict, bind: bool):
    """Bind (or unbind) the user's device tokens."""
    (users.bind_devices if bind else users.unbind_devices)(get_redis(), caller().appid, uid, tokens)
    return ok()


@blp.route("/users/<uid:uid>/bind")
class Bind(MethodView):
    @responds("user_bind")
    @requires("server")
    @blp.arguments(DeviceSchema)
    def post(self, args, uid):
        """Bind push device tokens to the user."""
        return save_devices(uid, args, bind=True)


@blp.route("/users/<uid:uid>/unbind")
class Unbind(MethodView):
    @responds("user_unbind")
    @requires("server")
    @blp.arguments(DeviceSchema)
    def post(self, args, uid):
        """Unbind device tokens (each only while it is still the one bound)."""
        return save_devices(uid, args, bind=False)


@blp.route("/device/bind")
class DeviceBind(MethodView):
    @responds("device_bind")
    @requires("client")
    @blp.arguments(DeviceSchema)
    def post(self, args):
        """Bind push device tokens to the calling user."""
        return save_devices(caller().uid, args, bind=True)


@blp.route("/device/unbind")
class DeviceUnbind(MethodView):
    @responds("device_unbind")
    @requires("client")
    @blp.arguments(DeviceSchema)
    def post(self, args):
        """Unbind the calling user's device tokens."""
        return save_devices(caller().uid, args, bind=False)
