"""The transactional outbox: Redis writes stored with the change they belong to, then relayed.

A group change appends its events, notifications and cleared sync keys in its own
transaction, so a committed change always has them and a rolled-back one never does. The action_id
chain comes from a MySQL counter whose row stays locked until the change commits: ids
are handed out in commit order with no gaps, and outbox rows get their auto-increment
ids in that same order. relay() moves rows to Redis oldest first, one relayer at a time.
"""
import logging

from .db import transaction
from .redis_io import dumps

RESERVE_ACTIONS = "UPDATE sequence SET value = LAST_INSERT_ID(value + %(n)s) WHERE name = 'group_action'"
INSERT_ITEM = "INSERT INTO outbox (command, redis_key, item) VALUES (%(command)s, %(key)s, %(item)s)"
LOCK_RELAY = "SELECT value FROM sequence WHERE name = 'outbox_relay' FOR UPDATE"
PENDING = "SELECT id, command, redis_key, item FROM outbox ORDER BY id LIMIT %(limit)s"
DELETE_RELAYED = "DELETE FROM outbox WHERE id IN %(ids)s"
COUNT_PENDING = "SELECT COUNT(*) AS n FROM outbox"
RELAY_BATCH = 500
log = logging.getLogger(__name__)


def append(cur, queues, events: list[dict], messages: list[dict], cleared: list[tuple[str, str]] = ()) -> None:
    """Store group events (numbered here), messages and hash fields to clear, for after the commit."""
    rows = []
    if events:
        cur.execute(RESERVE_ACTIONS, {"n": len(events)})
        action_id = cur.lastrowid - len(events)
        for event in events:
            event.update(action_id=action_id + 1, previous_action_id=action_id)
            action_id += 1
            rows.append({"command": "LPUSH", "key": queues.group_events, "item": dumps(event)})
    rows += [{"command": "LPUSH", "key": queues.messages, "item": dumps(m)} for m in messages]
    rows += [{"command": "HDEL", "key": key, "item": field} for key, field in cleared]
    if rows:
        cur.executemany(INSERT_ITEM, rows)


def relay(conn, r) -> int:
    """Move every committed outbox item to its Redis list in order; return how many moved.

    At least once: if MySQL fails after the Redis push, the items are pushed again
    by the next relay (routers drop an action_id they have already seen). A command
    that Redis refuses for good (say, a queue key holding a string) is logged and
    dropped, so one bad row cannot hold back everything after it.
    """
    moved = 0
    while True:
        with transaction(conn) as cur:
            cur.execute(LOCK_RELAY)
            cur.execute(PENDING, {"limit": RELAY_BATCH})
            rows = cur.fetchall()
            if rows:
                pipe = r.pipeline(transaction=True)
                for row in rows:
                    pipe.execute_command(row["command"], row["redis_key"], row["item"])
                for row, result in zip(rows, pipe.execute(raise_on_error=False)):
                    if isinstance(result, Exception):
                        log.error("outbox row %s refused by Redis, dropped: %s", row["id"], result)
                cur.execute(DELETE_RELAYED, {"ids": [row["id"] for row in rows]})
        moved += len(rows)
        if len(rows) < RELAY_BATCH:
            return moved


def pending(conn) -> int:
    """How many items wait to be relayed."""
    with conn.cursor() as cur:
        cur.execute(COUNT_PENDING)
        return cur.fetchone()["n"]
