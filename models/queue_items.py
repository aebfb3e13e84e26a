"""What the API and the bridge share about the queues to the router: the lists' names, the kinds of
message, and each queue item's JSON shape.

The API builds items here (views/, models/), the bridge reads them by the same names (bridge/),
and the OpenAPI document lists the same kinds (views/schemas.py).
"""
import json
import time
from typing import NamedTuple

from . import keys

# An item's JSON text. Made once: json.dumps() with options builds a new encoder on every call.
dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class Queue(NamedTuple):
    role: str  # what the API's Queues and the bridge call it
    setting: str  # the variable that names its Redis list (config.py)
    default: str  # the list's name when that is not set


IM_MESSAGE_QUEUE = Queue("messages", "IM_MESSAGE_QUEUE", "im_message_queue")
GROUP_EVENT_QUEUE = Queue("group_events", "GROUP_EVENT_QUEUE", "group_event_queue")
USER_EVENT_QUEUE = Queue("user_events", "USER_EVENT_QUEUE", "user_event_queue")
RELATIONSHIP_EVENT_QUEUE = Queue("relationship_events", "RELATIONSHIP_EVENT_QUEUE", "relationship_event_queue")
QUEUES = (IM_MESSAGE_QUEUE, GROUP_EVENT_QUEUE, USER_EVENT_QUEUE, RELATIONSHIP_EVENT_QUEUE)


def queue_names(config) -> dict[str, str]:
    """Each queue's Redis list in these settings, by role, in QUEUES' order."""
    return {queue.role: config[queue.setting] for queue in QUEUES}


# The kinds of im_message_queue item: each is one router RPC (models/router.py).
PEER, GROUP, SYSTEM, NOTIFICATION = "peer", "group", "system", "notification"
GROUP_NOTIFICATION, ROOM, CUSTOMER = "group_notification", "room", "customer"
KINDS = (PEER, GROUP, SYSTEM, NOTIFICATION, GROUP_NOTIFICATION, ROOM, CUSTOMER)
TO_GROUP = (GROUP, GROUP_NOTIFICATION)  # their receiver is a group
TO_USER = (PEER, SYSTEM, NOTIFICATION, CUSTOMER)  # their receiver is a user (a room message's: a room)

# The events' names on the event queues (the bridge refuses others).
GROUP_CREATE, GROUP_DISBAND, GROUP_UPGRADE = "group_create", "group_disband", "group_upgrade"
MEMBER_ADD, MEMBER_REMOVE, MEMBER_MUTE = "group_member_add", "group_member_remove", "group_member_mute"
GROUP_EVENTS = (GROUP_CREATE, GROUP_DISBAND, GROUP_UPGRADE, MEMBER_ADD, MEMBER_REMOVE, MEMBER_MUTE)
FRIEND, BLACKLIST = "friend", "blacklist"  # each also its event's 0/1 flag and its table
RELATIONSHIP_EVENTS = (FRIEND, BLACKLIST)
USER_FORBIDDEN, USER_TOKEN_REVOKED = "user_forbidden", "user_token_revoked"


def now_ms() -> int:
    return int(time.time() * 1000)


def message(msg_id: int, kind: str, appid: int, sender: int | None, receiver: int, content: str,
            members: list[int] | None = None, **fields) -> dict:
    """An im_message_queue item; fields: a customer message's store_id and seller_id."""
    item = {"id": msg_id, "kind": kind, "appid": appid, "sender": sender, "receiver": receiver,
            "content": content, "timestamp": now_ms(), **fields}
    if members is not None:
        item["members"] = members
    return item


def group_notification(msg_id: int, appid: int, group_id: int, op: str, body: dict, members: list[int]) -> dict:
    """A group_notification message whose content is one GoBelieve operation object; members: who
    must see it besides the group's members as the router knows them (a leaver, a joiner...)."""
    content = {op: {"group_id": group_id, "timestamp": int(time.time()), **body}}
    return message(msg_id, GROUP_NOTIFICATION, appid, None, group_id, dumps(content), members)


def group_event(name: str, appid: int, group_id: int, **fields) -> dict:
    """A group_event_queue item; the outbox relay fills in action_id and previous_action_id."""
    return {"name": name, "appid": appid, "group_id": group_id, **fields, "timestamp": now_ms()}


def user_event(name: str, appid: int, uid: int, **fields) -> dict:
    """A user_event_queue item."""
    return {"name": name, "appid": appid, "uid": uid, **fields, "timestamp": now_ms()}


def relationship_event(kind: str, appid: int, uid: int, friend_uid: int, on: bool) -> dict:
    """A relationship_event_queue item: kind is "friend" or "blacklist", also the name of its 0/1 flag;
    the outbox relay fills in action_id and previous_action_id."""
    return {"name": kind, "appid": appid, "uid": uid, "friend_uid": friend_uid, kind: int(on), "timestamp": now_ms()}


def history_owners(item: dict) -> list[int]:
    """Whose history lists a queued message goes to: its sender and its receiving user.

    A group or room message reaches its members through the router, which may record it."""
    owners = [item["sender"]] if item["sender"] else []  # 0 and None: the system
    if item["kind"] in TO_USER and item["receiver"] not in owners:
        owners.append(item["receiver"])
    return owners


class Changes:
    """What one transaction will append to the outbox, in order: group events and notifications, the
    sync fields to clear, relationship events."""

    def __init__(self):
        self.events: list[dict] = []
        self.notes: list[tuple[int, int, str, dict, list[int]]] = []
        self.cleared: list[tuple[str, str]] = []  # (hash, field) to delete: stale group_sync_keys
        self.relationship_events: list[dict] = []  # a user's deletion ends its friendships too

    def __bool__(self) -> bool:
        return bool(self.events or self.notes or self.cleared or self.relationship_events)

    def event(self, name: str, group: dict, **fields) -> None:
        self.events.append(group_event(name, group["appid"], group["id"], **fields))

    def join(self, group: dict, uid: int) -> None:
        """A member (re)joins: its event, and the router's old sync position in the group goes."""
        self.event(MEMBER_ADD, group, member_id=uid)
        self.cleared.append((keys.user(group["appid"], uid), keys.group_sync_field(group["id"])))

    def notify(self, group: dict, op: str, to: list[int] = (), **body) -> None:
        """A group notification; `to` lists who must see it besides the members the router knows (SPEC 5.2)."""
        self.notes.append((group["appid"], group["id"], op, body, list(to)))
