"""/users and /device: user settings and push device tokens."""
import marshmallow as ma
from flask.views import MethodView

from models import group as groups
from models import user as users
from models.db import get_db, get_redis, transaction
from models.errors import BatchTooLarge, UserExists, UserNotFound

from .common import Blueprint, group_change, ok, page, queues
from .credentials import caller, requires
from .fields import List, MemberSchema, OneOrMoreSchema, PageSchema, Schema, Text, Uid, setting

blp = Blueprint("user", __name__, description="User settings and device tokens")


class DoNotDisturbSchema(Schema):
    peer_uid = Uid(required=True)
    on = ma.fields.Boolean(required=True)


class SettingsSchema(OneOrMoreSchema):
    name = Text()
    do_not_disturb = ma.fields.Nested(DoNotDisturbSchema)
    mute = ma.fields.Boolean()
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

    @requires("server")
    @blp.arguments(PageSchema, location="query")
    def get(self, args):
        """The app's users, paged by uid: {total, start, count, users: [{uid, name, avatar}]}."""
        with get_db().cursor() as cur:
            total, found = users.users_page(cur, caller().appid, args["start"], args["count"])
        return ok(page(total, args["start"], "users", found))


@blp.route("/users/<uid:uid>")
class User(MethodView):
    @requires("server")
    def get(self, uid):
        """The user's profile and its forbidden and mute settings."""
        appid = caller().appid
        with get_db().cursor() as cur:
            profile = users.find_user(cur, appid, uid)
        if profile is None:
            raise UserNotFound()
        return ok(profile | users.settings(get_redis(), appid, uid))

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

    @requires("server")
    def delete(self, uid):
        """Delete the user: its profile, its token, and its place in every group (with events)."""
        appid = caller().appid
        with group_change(appid) as (cur, _, changes):
            existed = users.delete_user(cur, appid, uid)
            groups.leave_all_groups(cur, changes, appid, uid)
        revoked = users.revoke_token(get_redis(), queues().user_events, appid, uid)
        users.forget_profile(get_redis(), appid, uid)
        if not (existed or revoked or changes.events):
            raise UserNotFound()
        return ok()

    @requires("server")
    @blp.arguments(SettingsSchema)
    def post(self, args, uid):
        """Change the user's settings: name, peer do-not-disturb, mute, forbidden."""
        appid = caller().appid
        users.save_settings(get_redis(), queues().user_events, appid, uid, args)
        if "name" in args:
            with transaction() as cur:
                users.record_user(cur, appid, uid, args["name"])
        return ok()

    patch = post


@blp.route("/users/<uid:uid>/groups")
class UserGroups(MethodView):
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
    @requires("server")
    @blp.arguments(DeviceSchema)
    def post(self, args, uid):
        """Bind push device tokens to the user."""
        return save_devices(uid, args, bind=True)


@blp.route("/users/<uid:uid>/unbind")
class Unbind(MethodView):
    @requires("server")
    @blp.arguments(DeviceSchema)
    def post(self, args, uid):
        """Unbind device tokens (each only while it is still the one bound)."""
        return save_devices(uid, args, bind=False)


@blp.route("/device/bind")
class DeviceBind(MethodView):
    @requires("client")
    @blp.arguments(DeviceSchema)
    def post(self, args):
        """Bind push device tokens to the calling user."""
        return save_devices(caller().uid, args, bind=True)


@blp.route("/device/unbind")
class DeviceUnbind(MethodView):
    @requires("client")
    @blp.arguments(DeviceSchema)
    def post(self, args):
        """Unbind the calling user's device tokens."""
        return save_devices(caller().uid, args, bind=False)
