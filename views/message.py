"""/messages: messages an app server posts; each becomes one im_message_queue item."""
import json

import marshmallow as ma
from flask import current_app
from flask.views import MethodView

from models import customer as customers
from models import group as groups
from models import idempotency
from models.db import get_db, get_redis
from models.errors import BatchTooLarge, InvalidField, UserNotFound
from models.user import user_key
from models.queue import dumps, message, push_messages
from .common import SLOW, Blueprint, Id, Schema, Text, Uid, idempotency_key, ok, setting
from .credentials import Caller, caller, requires

blp = Blueprint("message", __name__, url_prefix="/messages", description="Posting messages")


class Content(ma.fields.Field):
    """An opaque string (a JSON object or array is accepted and serialized), at most MAX_CONTENT_BYTES."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, (dict, list)):
            value = dumps(value)
        if not isinstance(value, str):
            raise ma.ValidationError("Must be a string or a JSON object.")
        if len(value.encode()) > setting("MAX_CONTENT_BYTES"):
            raise ma.ValidationError(f"Longer than {setting('MAX_CONTENT_BYTES')} bytes.")
        return value

    def quick(self, value):
        return value if type(value) is str and len(value.encode()) <= setting("MAX_CONTENT_BYTES") else SLOW


class MessageSchema(Schema):
    msgid = Text(128, shortest=1, metadata={"description": "idempotency key, like the Idempotency-Key header"})


class PeerMessageSchema(MessageSchema):
    sender = Uid(required=True)
    receiver = Uid(required=True)
    content = Content(required=True)


class GroupMessageSchema(MessageSchema):
    """Also for rooms: the receiver is a group or room id, the sender 0 for the system."""

    sender = Uid(required=True)
    receiver = Id(required=True)
    content = Content(required=True)


class SystemMessageSchema(MessageSchema):
    receiver = Uid(required=True)
    content = Content(required=True)


class PeerBatchSchema(MessageSchema):
    messages = ma.fields.List(ma.fields.Nested(PeerMessageSchema), required=True)

    @ma.pre_load
    def wrap(self, data, **kwargs):
        return {"messages": data} if isinstance(data, list) else data


class HistorySchema(Schema):
    store = Id(metadata={"description": "keep only customer-service messages of this store"})


class OfflineSchema(Schema):
    uid = Uid()
    customer_id = ma.fields.String(validate=ma.validate.Length(min=1, max=128))


class GroupNotificationSchema(MessageSchema):
    group_id = Id(required=True)
    content = Content(required=True)
    members = ma.fields.List(Uid(), allow_none=True)


def queue_messages(who: Caller, items: list[dict], msgid: str | None, answer: dict) -> dict:
    """Queue the items in one round trip; a retry with the same Idempotency-Key (or msgid) gets the first answer."""
    key, config = idempotency_key(who, msgid), current_app._get_current_object().config
    remember = key and (idempotency.redis_key(who.appid, key), config["IDEMPOTENCY_TTL"], dumps(answer))
    first = push_messages(get_redis(), config["IM_MESSAGE_QUEUE"], config["QUEUE_MAX_LENGTH"], config["HISTORY_LENGTH"],
                          items, remember)
    return ok(answer if first is None else json.loads(first))


def post(kind: str, sender: int | None, receiver: int, args: dict, members: list[int] | None = None):
    who = caller()
    item = message(next_id(), kind, who.appid, sender, receiver, args["content"], members)
    return queue_messages(who, [item], args.get("msgid"), {"id": item["id"]})


def next_id() -> int:
    return current_app._get_current_object().extensions["message_ids"].next()


def require_group(gid: int) -> None:
    with get_db().cursor() as cur:
        groups.find_group(cur, caller().appid, gid)


@blp.route("/peers")
class Peers(MethodView):
    @requires("server")
    @blp.arguments(PeerMessageSchema)
    def post(self, args):
        """Send a message from one user to another."""
        return post("peer", args["sender"], args["receiver"], args)


@blp.route("/peers/batch")
class PeersBatch(MethodView):
    @requires("server")
    @blp.arguments(PeerBatchSchema)
    def post(self, args):
        """Send up to MAX_BATCH peer messages ([{sender, receiver, content}, ...]) in one request -> {ids}."""
        batch = args["messages"]
        if not 0 < len(batch) <= setting("MAX_BATCH"):
            raise BatchTooLarge(f"messages: give 1 to {setting('MAX_BATCH')} messages.")
        who = caller()
        items = [message(next_id(), "peer", who.appid, m["sender"], m["receiver"], m["content"]) for m in batch]
        return queue_messages(who, items, args.get("msgid"), {"ids": [item["id"] for item in items]})


@blp.route("/groups")
class Groups(MethodView):
    @requires("server")
    @blp.arguments(GroupMessageSchema)
    def post(self, args):
        """Send a message to a group (receiver is the group id) in the sender's name."""
        require_group(args["receiver"])
        return post("group", args["sender"], args["receiver"], args)


@blp.route("/systems")
class Systems(MethodView):
    @requires("server")
    @blp.arguments(SystemMessageSchema)
    def post(self, args):
        """Send a system message to a user."""
        return post("system", None, args["receiver"], args)


@blp.route("/notifications")
class Notifications(MethodView):
    @requires("server")
    @blp.arguments(SystemMessageSchema)
    def post(self, args):
        """Send a notification to a user, delivered only while the user is online."""
        return post("notification", None, args["receiver"], args)


@blp.route("/groups/notifications")
class GroupNotifications(MethodView):
    @requires("server")
    @blp.arguments(GroupNotificationSchema)
    def post(self, args):
        """Send a notification to a group's members (or to the members listed)."""
        require_group(args["group_id"])
        return post("group_notification", None, args["group_id"], args, args.get("members"))


@blp.route("/rooms")
class Rooms(MethodView):
    @requires("server")
    @blp.arguments(GroupMessageSchema)
    def post(self, args):
        """Send a message to a chat room (receiver is the room id)."""
        return post("room", args["sender"], args["receiver"], args)


@blp.route("")
class History(MethodView):
    @requires("client")
    @blp.arguments(HistorySchema, location="query")
    def get(self, args):
        """The caller's recent messages, newest first (?store= keeps one store's customer-service messages)."""
        who = caller()
        items = [json.loads(raw) for raw in get_redis().lrange(f"history_{who.appid}_{who.uid}", 0, -1)]
        if "store" in args:
            items = [i for i in items if i.get("kind") == "customer" and i.get("store_id") == args["store"]]
        return ok(items)


@blp.route("/offline")
class Offline(MethodView):
    @requires("any")
    @blp.arguments(OfflineSchema, location="query")
    def get(self, args):
        """How many messages wait for the user (?uid= or ?customer_id=; a client asks for itself)."""
        who = caller()
        uid = who.uid if not who.is_server else args.get("uid")
        if uid is None and "customer_id" in args:
            with get_db().cursor() as cur:
                uid = customers.find_client_id(cur, who.appid, args["customer_id"], setting("CUSTOMER_ID_BASE"))
            if uid is None:
                raise UserNotFound("No such customer.")
        if uid is None:
            raise InvalidField("uid: give uid or customer_id.")
        count = int(get_redis().hget(user_key(who.appid, uid), "unread") or 0)
        return ok({"count": count, "new": int(count > 0)})
