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
from redis.exceptions import RedisClusterException

from . import group as groups
from . import outbox
from .db import transaction
from .queue import Queues
from .queue_items import Changes, group_notification

log = logging.getLogger(__name__)


@contextmanager
def group_change(conn, queues: Queues, appid: int, gid: int | None = None, *, code: str | None = None,
                 asking: list[int] = ()):
    """Yield (cursor, the app's group gid or with that join code, row-locked, Changes); see above.

    With neither gid nor code the group is None: the block creates groups or locks its own
    (through groups.lock_group, in id order). asking: uids whose membership the block checks,
    read with the lock (groups.lock_group)."""
    changes = Changes()
    with transaction(conn) as cur:
        if code is not None:
            group = groups.lock_group_by_code(cur, appid, code)
        else:
            group = None if gid is None else groups.lock_group(cur, appid, gid, asking)
        yield cur, group, changes
        notes = [group_notification(queues.ids.next(), *note) for note in changes.notes]
        stored = outbox.append(cur, queues, group_events=changes.events, messages=notes,
                               cleared=changes.cleared, relationship_events=changes.relationship_events)
    if stored:
        relay_after_commit(conn, queues)


def relay_after_commit(conn, queues: Queues) -> None:
    """Relay the outbox before the response, in this thread or in the one already relaying for
    this process; if Redis or MySQL fails just then, the background relay will."""
    def relay() -> None:
        try:
            outbox.relay(conn, queues.redis, sweep=False, **queues.relay_timing)
        except (redis.RedisError, RedisClusterException, pymysql.Error) as exc:
            log.warning("relay after commit failed, left to the background relay: %s", exc)

    queues.relay_turns.take(relay)
