"""The transactional outbox: queue items stored with the change they describe, then relayed.

A group change appends its events and notifications in its own transaction, so a
committed change always has its items and a rolled-back one never does. The action_id
chain comes from a MySQL counter whose row stays locked until the change commits: ids
are handed out in commit order with no gaps, and outbox rows get their auto-increment
ids in that same order. relay() moves rows to Redis oldest first, one relayer at a time.
"""
from .db import transaction
from .queue import dumps, group_event

RESERVE_ACTIONS = "UPDATE sequence SET value = LAST_INSERT_ID(value + %(n)s) WHERE name = 'group_action'"
INSERT_ITEM = "INSERT INTO outbox (queue, item) VALUES (%(queue)s, %(item)s)"
LOCK_RELAY = "SELECT value FROM sequence WHERE name = 'outbox_relay' FOR UPDATE"
PENDING = "SELECT id, queue, item FROM outbox ORDER BY id LIMIT %(limit)s"
DELETE_RELAYED = "DELETE FROM outbox WHERE id IN %(ids)s"
COUNT_PENDING = "SELECT COUNT(*) AS n FROM outbox"
RELAY_BATCH = 500


def append(cur, event_queue: str, events: list[dict], message_queue: str, messages: list[dict]) -> None:
    """Store group events (numbered here) and messages to be queued when the transaction commits."""
    rows = []
    if events:
        cur.execute(RESERVE_ACTIONS, {"n": len(events)})
        action_id = cur.lastrowid - len(events)
        for event in events:
            event.update(action_id=action_id + 1, previous_action_id=action_id)
            action_id += 1
            rows.append({"queue": event_queue, "item": dumps(event)})
    rows += [{"queue": message_queue, "item": dumps(m)} for m in messages]
    if rows:
        cur.executemany(INSERT_ITEM, rows)


def relay(conn, r) -> int:
    """Move every committed outbox item to its Redis list in order; return how many moved.

    At least once: if MySQL fails after the Redis push, the items are pushed again
    by the next relay (routers drop an action_id they have already seen).
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
                    pipe.lpush(row["queue"], row["item"])
                pipe.execute()
                cur.execute(DELETE_RELAYED, {"ids": [row["id"] for row in rows]})
        moved += len(rows)
        if len(rows) < RELAY_BATCH:
            return moved


def pending(conn) -> int:
    """How many items wait to be relayed."""
    with conn.cursor() as cur:
        cur.execute(COUNT_PENDING)
        return cur.fetchone()["n"]


class Changes:
    """The events and notifications one group transaction will queue, in order."""

    def __init__(self):
        self.events: list[dict] = []
        self.notes: list[tuple[int, int, str, dict]] = []
        self.joined: list[tuple[int, int, int]] = []  # (appid, gid, uid): clear its group_sync_key

    def event(self, name: str, group: dict, **fields) -> None:
        self.events.append(group_event(name, group["appid"], group["id"], **fields))

    def join(self, group: dict, uid: int) -> None:
        self.event("group_member_add", group, member_id=uid)
        self.joined.append((group["appid"], group["id"], uid))

    def notify(self, group: dict, op: str, **body) -> None:
        self.notes.append((group["appid"], group["id"], op, body))
