"""/messages: messages an app server posts; each becomes one im_message_queue item."""
import marshmallow as ma
from flask.views import MethodView

from models import customer as customers
from models import group as groups
from models import queue, queue_items, router
from models.db import get_db
from models.errors import (
    BatchTooLarge,
    GroupNotFound,
    InvalidField,
    QueueFull,
    SellerNotFound,
    StoreNotFound,
    UserNotFound,
)
from models.redis_client import get_redis
from models.setting import unread

from . import schemas
from .authentication import Caller, caller, requires
from .common import Blueprint, idempotency_scope, ok, queues
from .docs import listed, one_of, responds
from .fields import SLOW, Id, List, Schema, Text, Uid, setting

blp = Blueprint("message", __name__, url_prefix="/messages", description="Posting messages")


class Content(ma.fields.Field):
    """An opaque string (a JSON object or array is accepted and serialized), at most MAX_CONTENT_BYTES."""

    forms = (ma.fields.String(metadata={"example": '{"text": "See you at nine?"}'}),
             ma.fields.Dict(metadata={"example": {"text": "See you at nine?"}}))

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, (dict, list)):
            try:
                value = queue_items.dumps(value)
            except RecursionError:  # the parser took it, with fewer frames on the stack than here
                raise ma.ValidationError("Nested too deeply.") from None
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
    receiver = Id(required=True, metadata={"description": "the group (or room) id", "example": 120045})
    content = Content(required=True)


class SystemMessageSchema(MessageSchema):
    receiver = Uid(required=True)
    content = Content(required=True)


class PeerBatchSchema(MessageSchema):
    example = {"messages": [{"sender": 1001, "receiver": 1002, "content": '{"text": "See you at nine?"}'},
                            {"sender": 1001, "receiver": 1003, "content": '{"text": "See you at nine?"}'}]}

    messages = List(ma.fields.Nested(PeerMessageSchema), required=True)

    @ma.pre_load
    def wrap(self, data, **kwargs):
        return {"messages": data} if isinstance(data, list) else data


class HistorySchema(Schema):
    store = Id(metadata={"description": "keep only customer-service messages of this store"})


class CustomerMessageSchema(MessageSchema):
    example = {"store_id": 3, "seller_id": 12, "customer_id": "visitor-8c1f", "content": '{"text": "How can I help?"}'}

    store_id = Id(required=True)
    seller_id = Id(required=True)
    customer_id = ma.fields.String(validate=ma.validate.Length(min=1, max=128))
    client_id = Id(metadata={"description": "the visitor's client id (from POST /auth/customer), or customer_id"})
    content = Content(required=True)


class OfflineSchema(Schema):
    uid = Uid()
    customer_id = ma.fields.String(validate=ma.validate.Length(min=1, max=128))


class GroupNotificationSchema(MessageSchema):
    group_id = Id(required=True)
    content = Content(required=True)
    members = List(Uid(metadata={"example": 1002}), limit="MAX_SUPER_GROUP_MEMBERS", allow_none=True,
                   metadata={"description": "only these members (default: all)", "example": [1002, 1003]})


def queue_messages(who: Caller, items: list[dict], msgid: str | None, answer: dict) -> dict:
    """Queue the items in one round trip; a retry with the same Idempotency-Key (or msgid) gets the first answer."""
    return ok(queues().push_messages(items, answer, idempotency_scope(who, msgid)))


def queue_message(kind: str, sender: int | None, receiver: int, args: dict, members: list[int] | None = None):
    """Queue one message of the caller's app; answer its id."""
    who = caller()
    item = queue_items.message(queues().ids.next(), kind, who.appid, sender, receiver, args["content"], members)
    return queue_messages(who, [item], args.get("msgid"), {"id": item["id"]})


def require_group(gid: int) -> None:
    """GroupNotFound unless the caller's app has this live group."""
    with get_db().cursor() as cur:
        groups.find_group(cur, caller().appid, gid)


@blp.route("/peers")
class PeerMessages(MethodView):
    @responds("messages_peer", schemas.MessageIdSchema, errors=(QueueFull,), idempotent=True)
    @requires("server")
    @blp.arguments(PeerMessageSchema)
    def post(self, args):
        """Send a message from one user to another.

        Queues one `peer` item on `im_message_queue` for the router (or the bridge) to deliver, and
        answers its id. `content` is opaque to the service: a string, usually JSON text such as
        the SDKs' `{"text": ...}`; a JSON object is accepted and serialized. Neither user needs to
        be registered. An `Idempotency-Key` (or `msgid`) makes a retry answer the first id."""
        return queue_message(queue_items.PEER, args["sender"], args["receiver"], args)


@blp.route("/peers/batch")
class PeerMessageBatch(MethodView):
    @responds("messages_peer_batch", schemas.MessageIdsSchema, errors=(BatchTooLarge, QueueFull), idempotent=True,
              body=one_of({**listed(PeerMessageSchema), "example": PeerBatchSchema.example["messages"]},
                          PeerBatchSchema))
    @requires("server")
    @blp.arguments(PeerBatchSchema)
    def post(self, args):
        """Send up to MAX_BATCH peer messages ([{sender, receiver, content}, ...]) in one request -> {ids}.

        The body is the bare array or `{"messages": [...]}`. All are queued in one round trip, in
        order, and the ids answer in the same order; a bad item refuses the whole batch (400 naming
        it) and queues nothing."""
        batch = args["messages"]
        if not 0 < len(batch) <= setting("MAX_BATCH"):
            raise BatchTooLarge(f"messages: give 1 to {setting('MAX_BATCH')} messages.")
        who = caller()
        ids = queues().ids
        items = [queue_items.message(ids.next(), queue_items.PEER, who.appid, m["sender"], m["receiver"], m["content"])
                 for m in batch]
        return queue_messages(who, items, args.get("msgid"), {"ids": [item["id"] for item in items]})


@blp.route("/groups")
class GroupMessages(MethodView):
    @responds("messages_group", schemas.MessageIdSchema, errors=(GroupNotFound, QueueFull), idempotent=True)
    @requires("server")
    @blp.arguments(GroupMessageSchema)
    def post(self, args):
        """Send a message to a group (receiver is the group id) in the sender's name.

        The group must be a live group of the app (404 otherwise); the router delivers to its
        members. Queues one `group` item."""
        require_group(args["receiver"])
        return queue_message(queue_items.GROUP, args["sender"], args["receiver"], args)


@blp.route("/systems")
class SystemMessages(MethodView):
    @responds("messages_system", schemas.MessageIdSchema, errors=(QueueFull,), idempotent=True)
    @requires("server")
    @blp.arguments(SystemMessageSchema)
    def post(self, args):
        """Send a system message to a user.

        Queues one `system` item (no sender): the router stores it and delivers it to the user,
        now or at the next login."""
        return queue_message(queue_items.SYSTEM, None, args["receiver"], args)


@blp.route("/notifications")
class NotificationMessages(MethodView):
    @responds("messages_notification", schemas.MessageIdSchema, errors=(QueueFull,), idempotent=True)
    @requires("server")
    @blp.arguments(SystemMessageSchema)
    def post(self, args):
        """Send a notification to a user, delivered only while the user is online.

        Queues one `notification` item; the router does not store it, so an offline user never
        gets it. For signals that are stale later (typing, presence)."""
        return queue_message(queue_items.NOTIFICATION, None, args["receiver"], args)


@blp.route("/groups/notifications")
class GroupNotificationMessages(MethodView):
    @responds("messages_group_notification", schemas.MessageIdSchema,
              errors=(GroupNotFound, QueueFull), idempotent=True)
    @requires("server")
    @blp.arguments(GroupNotificationSchema)
    def post(self, args):
        """Send a notification to a group's members (or to the members listed).

        The group must be a live group of the app. Queues one `group_notification` item; with
        `members`, only those uids get it."""
        require_group(args["group_id"])
        return queue_message(queue_items.GROUP_NOTIFICATION, None, args["group_id"], args, args.get("members"))


@blp.route("/rooms")
class RoomMessages(MethodView):
    @responds("messages_room", schemas.MessageIdSchema, errors=(QueueFull,), idempotent=True)
    @requires("server")
    @blp.arguments(GroupMessageSchema)
    def post(self, args):
        """Send a message to a chat room (receiver is the room id).

        Rooms are the router's: no table here, any id names one. Queues one `room` item, delivered
        to whoever is in the room now."""
        return queue_message(queue_items.ROOM, args["sender"], args["receiver"], args)


@blp.route("/customers")
class CustomerMessages(MethodView):
    @responds("messages_customer", schemas.MessageIdSchema, errors=(StoreNotFound, SellerNotFound, UserNotFound,
                                                                    QueueFull), idempotent=True)
    @requires("server")
    @blp.arguments(CustomerMessageSchema)
    def post(self, args):
        """Send a customer-service message from one of a store's sellers to a visitor (kind customer).

        Name the visitor by `customer_id` (as given to POST /auth/customer) or by `client_id`.
        The store and seller must be the app's. Queues one `customer` item with `store_id` and
        `seller_id`; the bridge posts it with the router's customer RPC."""
        who = caller()
        with get_db().cursor() as cur:
            client_id = visitor_client_id(cur, who.appid, args)
            if customers.find_store(cur, who.appid, args["store_id"]) is None:
                raise StoreNotFound()
            if customers.find_seller(cur, args["store_id"], args["seller_id"]) is None:
                raise SellerNotFound()
        item = queue_items.message(queues().ids.next(), queue_items.CUSTOMER, who.appid, args["seller_id"], client_id,
                                   args["content"], store_id=args["store_id"], seller_id=args["seller_id"])
        return queue_messages(who, [item], args.get("msgid"), {"id": item["id"]})


def visitor_client_id(cur, appid: int, args: dict) -> int:
    """The client id of the visitor named by customer_id or client_id; UserNotFound when there is none."""
    base = setting("CUSTOMER_ID_BASE")
    if "customer_id" in args:
        client_id = customers.find_client_id(cur, appid, args["customer_id"], base)
    elif "client_id" in args:
        client_id = args["client_id"] if args["client_id"] >= base and \
            customers.client_id_exists(cur, appid, args["client_id"], base) else None
    else:
        raise InvalidField("customer_id: give customer_id or client_id.")
    if client_id is None:
        raise UserNotFound("No such customer.")
    return client_id


@blp.route("")
class MessageHistory(MethodView):
    @responds("messages_history", listed(schemas.QueuedMessageSchema))
    @requires("client")
    @blp.arguments(HistorySchema, location="query")
    def get(self, args):
        """The caller's recent messages, newest first (?store= keeps one store's customer-service messages).

        The API keeps the last messages it queued to and from each user in a bounded Redis list;
        this reads the caller's, as queued (`kind`, `sender`, `receiver`, `content`, `timestamp` in
        milliseconds)."""
        who = caller()
        items = queue.history(get_redis(), who.appid, who.uid)
        if "store" in args:
            items = [i for i in items if i.get("kind") == queue_items.CUSTOMER and i.get("store_id") == args["store"]]
        return ok(items)


@blp.route("/offline")
class OfflineCount(MethodView):
    @responds("messages_offline", schemas.OfflineCountSchema, errors=(UserNotFound,))
    @requires("any")
    @blp.arguments(OfflineSchema, location="query")
    def get(self, args):
        """How many messages wait for the user (?uid= or ?customer_id=; a client asks for itself).

        With IM_RPC_URL set, the router's own count (`get_offline_count`; 503 if the router does
        not answer); without it, the `unread` badge count a client reported in the router's user
        hash. `new` is 1 when the count is above 0."""
        who = caller()
        uid = who.uid if not who.is_server else args.get("uid")
        if uid is None and "customer_id" in args:
            with get_db().cursor() as cur:
                uid = customers.find_client_id(cur, who.appid, args["customer_id"], setting("CUSTOMER_ID_BASE"))
            if uid is None:
                raise UserNotFound("No such customer.")
        if uid is None:
            raise InvalidField("uid: give uid or customer_id.")
        if setting("IM_RPC_URL"):
            count = router.offline_count(setting("IM_RPC_URL"), setting("ROUTER_RPC_TIMEOUT"), who.appid, uid)
        else:  # the router-owned badge count: what a client reported unread, not what is pending
            count = unread(get_redis(), who.appid, uid)
        return ok({"count": count, "new": int(count > 0)})
