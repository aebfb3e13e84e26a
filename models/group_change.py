"""The unit of work of every group change: lock, change, store, commit, relay.

    with group_change(conn, queues, appid, gid) as (cur, group, changes):
        groups.add_members(cur, changes, group, ...)

locks the group row first (so changes to one group commit one after another and queue in
that order), hands the locked group to the block, and when the block ends gives the notifications their
message ids, appends the events and notifications to the outbox in the same
transaction, commits, and relays the outbox to Redis before the response. If Redis or
MySQL fails just then, the change still stands and the background relay delivers its
items, in order, once the service is back. An exception in the block rolls it all back.
"""
import logging
from contextlib import contextmanager

import pymysql
import redis

from . import group as groups
from . import keys, outbox
from .db import transaction
from .queue import Queues, group_event, group_notification

log = logging.getLogger(__name__)


class Changes:
    """The events and notifications one group transaction will queue, in order."""

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
        self.event("group_member_add", group, member_id=uid)
        self.cleared.append((keys.user(group["appid"], uid), keys.group_sync_field(group["id"])))

    def notify(self, group: dict, op: str, to: list[int] = (), **body) -> None:
        """A group notification; `to` lists who must see it besides the members the router knows (SPEC 5.2)."""
        self.notes.append((group["appid"], group["id"], op, body, list(to)))


@contextmanager
def group_change(conn, queues: Queues, appid: int, gid: int | None = None, *, code: str | None = None):
    """Yield (cursor, the app's group gid or with that join code, row-locked, Changes); see above.

    With neither gid nor code the group is None: the block creates groups or locks its own
    (through groups.lock_group, in id order)."""
    changes = Changes()
    with transaction(conn) as cur:
        if code is not None:
            group = groups.lock_group_by_code(cur, appid, code)
        else:
            group = None if gid is None else groups.lock_group(cur, appid, gid)
        yield cur, group, changes
        notes = [group_notification(queues.ids.next(), *note) for note in changes.notes]
        outbox.append(cur, queues, group_events=changes.events, messages=notes, cleared=changes.cleared,
                      relationship_events=changes.relationship_events)
    if changes:
        relay_after_commit(conn, queues)


def relay_after_commit(conn, queues: Queues) -> None:
    """Relay the outbox before the response; if Redis or MySQL fails just then, the background relay will."""
    try:
        outbox.relay(conn, queues.redis)
    except (redis.RedisError, pymysql.Error) as exc:
        log.warning("relay after commit failed, left to the background relay: %s", exc)
