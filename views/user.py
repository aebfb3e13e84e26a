"""/users and /device: user settings and push device tokens."""
import marshmallow as ma
from flask.views import MethodView

from models import user as users
from models.db import get_redis, transaction
from .common import Blueprint, Id, Schema, Text, ok, setting
from .credentials import caller, requires

blp = Blueprint("user", __name__, description="User settings and device tokens")


class DoNotDisturbSchema(Schema):
    peer_uid = Id(required=True)
    on = ma.fields.Boolean(required=True)


class SettingsSchema(Schema):
    name = Text()
    do_not_disturb = ma.fields.Nested(DoNotDisturbSchema)
    mute = ma.fields.Boolean()
    forbidden = ma.fields.Boolean()

    @ma.validates_schema
    def not_empty(self, data, **kwargs):
        if not data:
            raise ma.ValidationError("Give at least one of name, do_not_disturb, mute, forbidden.")


class DeviceSchema(Schema):
    apns_device_token = Text(512)
    pushkit_device_token = Text(512)
    xg_device_token = Text(512)
    xm_device_token = Text(512)
    hw_device_token = Text(512)
    gcm_device_token = Text(512)
    jp_device_token = Text(512)

    @ma.validates_schema
    def not_empty(self, data, **kwargs):
        if not data:
            raise ma.ValidationError("Give at least one *_device_token field.")


@blp.route("/users/<id:uid>")
class Settings(MethodView):
    @requires("server")
    @blp.arguments(SettingsSchema)
    def post(self, args, uid):
        """Change the user's settings: name, peer do-not-disturb, mute, forbidden."""
        appid = caller().appid
        if "name" in args:
            with transaction() as cur:
                users.record_user(cur, appid, uid, args["name"])
        users.save_settings(get_redis(), appid, uid, args, setting("USER_EVENT_QUEUE"))
        return ok()

    patch = post


def _devices(uid: int, tokens: dict, bind: bool):
    appid = caller().appid
    (users.bind_devices if bind else users.unbind_devices)(get_redis(), appid, uid, tokens)
    return ok()


@blp.route("/users/<id:uid>/bind")
class Bind(MethodView):
    @requires("server")
    @blp.arguments(DeviceSchema)
    def post(self, args, uid):
        """Bind push device tokens to the user."""
        return _devices(uid, args, bind=True)


@blp.route("/users/<id:uid>/unbind")
class Unbind(MethodView):
    @requires("server")
    @blp.arguments(DeviceSchema)
    def post(self, args, uid):
        """Unbind device tokens (each only while it is still the one bound)."""
        return _devices(uid, args, bind=False)


@blp.route("/device/bind")
class DeviceBind(MethodView):
    @requires("client")
    @blp.arguments(DeviceSchema)
    def post(self, args):
        """Bind push device tokens to the calling user."""
        return _devices(caller().uid, args, bind=True)


@blp.route("/device/unbind")
class DeviceUnbind(MethodView):
    @requires("client")
    @blp.arguments(DeviceSchema)
    def post(self, args):
        """Unbind the calling user's device tokens."""
        return _devices(caller().uid, args, bind=False)
