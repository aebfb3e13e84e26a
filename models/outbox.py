"""The transactional outbox: Redis writes stored with the change they belong to, then relayed.

A change appends its events, notifications and cleared sync keys in its own transaction,
so a committed change always has them and a rolled-back one never does. Nothing global is
locked while the change runs: events are numbered by the relay, which runs one at a time
(a MySQL named lock) and takes committed rows in id order. Rows of one group are appended
while its row is locked, so their ids, and so their action_ids, follow the group's commit
order; the chain has no gaps because only the relay hands out numbers.

relay() first numbers rows in MySQL (seq, the relay order; action_id for events) and
commits, then pushes them; each queue keeps the highest seq pushed to it (keys.relayed), and
the push script skips rows at or below it, atomically with the pushes. A push that Redis
ran although its reply was lost, or rows pushed just before a crash, are never pushed twice.
Once a batch is done, keys.outbox_pushed says so; the relay deletes its rows after it has
let the lock go (their commit is not one more the next relay waits for), and no relay looks
at rows at or below that mark again. The background relay deletes any a crash left behind.

A change relays right after its commit, so its items are queued before its response. While
one relay runs, the changes that committed meanwhile wait for the lock; the running relay
takes their rows too (it relays until a pass finds fewer than a batch), so each of them,
once it has the lock, sees its first row gone and returns at once: under load one relay
pass moves many changes' rows, instead of every change paying for a pass of its own.
"""
import json
import logging
from collections import defaultdict

import pymysql

from . import keys
from .db import transaction
from .queue import group_event
from .redis_io import dumps, run_script

INSERT_ITEM = """
INSERT INTO outbox (command, redis_key, item, chain) VALUES (%(command)s, %(key)s, %(item)s, %(chain)s)
"""
TAKE_RELAY_LOCK = "SELECT GET_LOCK('outbox_relay', %(seconds)s) AS got"
RELEASE_RELAY_LOCK = "SELECT RELEASE_LOCK('outbox_relay')"
# `locked`: whether this session still holds the relay lock. The pool reconnects a session that
# dropped and re-runs a statement outside a transaction on the new one, which holds no lock;
# inside the numbering transaction it cannot, so checking there keeps two relays from
# numbering the same rows.
UNNUMBERED = """
SELECT id, chain, item, IS_USED_LOCK('outbox_relay') <=> CONNECTION_ID() AS locked FROM outbox
WHERE seq IS NULL ORDER BY id LIMIT %(limit)s
"""
RESERVE = "UPDATE sequence SET value = LAST_INSERT_ID(value + %(n)s) WHERE name = %(name)s"
# One statement for a whole batch. Only numbered rows are ever deleted, and these rows were read
# unnumbered under the lock, in this transaction: each id exists and the INSERT branch never runs.
NUMBER = """
INSERT INTO outbox (id, seq, item) VALUES (%(id)s, %(seq)s, %(item)s)
ON DUPLICATE KEY UPDATE seq = VALUES(seq), item = VALUES(item)
"""
STILL_WAITING = "SELECT 1 FROM outbox WHERE id = %(id)s"
NUMBERED = """
SELECT id, seq, command, redis_key, item FROM outbox WHERE seq > %(pushed)s ORDER BY seq LIMIT %(limit)s
"""
DELETE_RELAYED = "DELETE FROM outbox WHERE id IN %(ids)s"
DELETE_LEFT_BEHIND = "DELETE FROM outbox WHERE seq <= %(pushed)s"
COUNT_PENDING = "SELECT COUNT(*) AS n FROM outbox"
RELAY_BATCH = 500
RELAY_LOCK_WAIT = 4  # seconds; below MYSQL_TIMEOUT's default, so the wait fails before the socket does
GROUP_CHAIN, RELATIONSHIP_CHAIN = "group_action", "relationship_action"  # their `sequence` rows

# LPUSH each (seq, item) whose seq is above the queue's relayed mark, in order; then raise the
# mark. KEYS: queue, its mark. ARGV: seq, item, seq, item, ... A push Redis refuses (the key
# holds another type) is skipped and its seq returned, so one bad row cannot hold back the rest.
PUSH_RELAYED = """
local mark = tonumber(redis.call('GET', KEYS[2]) or '0')
local top, refused = mark, {}
for i = 1, #ARGV, 2 do
  local seq = tonumber(ARGV[i])
  if seq > mark then
    local done = redis.pcall('LPUSH', KEYS[1], ARGV[i + 1])
    if type(done) == 'table' and done.err then refused[#refused + 1] = seq end
    if seq > top then top = seq end
  end
end
if top > mark then redis.call('SET', KEYS[2], top) end
return refused
"""
RAISE_MARK = """
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
"""
log = logging.getLogger(__name__)


class RelayLockLost(pymysql.err.OperationalError):
    """The relay's session lost the lock (MySQL dropped it and the pool reconnected): stop relaying."""


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
        self.event("group_member_add", group, member_id=uid)
        self.cleared.append((keys.user(group["appid"], uid), keys.group_sync_field(group["id"])))

    def notify(self, group: dict, op: str, to: list[int] = (), **body) -> None:
        """A group notification; `to` lists who must see it besides the members the router knows (SPEC 5.2)."""
        self.notes.append((group["appid"], group["id"], op, body, list(to)))


def append(cur, queues, *, group_events=(), relationship_events=(), messages=(), cleared=()) -> int | None:
    """Store events (numbered by the relay), messages and hash fields to clear, for after the commit;
    the id of one of the rows (for relay()), None if there were none."""
    rows = [{"command": "LPUSH", "key": queues.group_events, "item": dumps(e), "chain": GROUP_CHAIN}
            for e in group_events]
    rows += [{"command": "LPUSH", "key": queues.relationship_events, "item": dumps(e), "chain": RELATIONSHIP_CHAIN}
             for e in relationship_events]
    rows += [{"command": "LPUSH", "key": queues.messages, "item": dumps(m), "chain": ""} for m in messages]
    rows += [{"command": "HDEL", "key": key, "item": field, "chain": ""} for key, field in cleared]
    if not rows:
        return None
    cur.executemany(INSERT_ITEM, rows)  # one multi-row INSERT: its rows commit, and are relayed, together
    return cur.lastrowid


def relay(conn, r, mine: int | None = None) -> int:
    """Move every committed outbox item to Redis in order, exactly once; return how many moved.

    `mine`: the id append() returned for the caller's committed change; if a relay that ran
    meanwhile has moved it, there is nothing left for this one to wait for (see above). If
    another process is relaying for longer than RELAY_LOCK_WAIT, leave the items to it (or
    to the next relay) and return 0."""
    with conn.cursor() as cur:
        cur.execute(TAKE_RELAY_LOCK, {"seconds": RELAY_LOCK_WAIT})
        if not cur.fetchone()["got"]:
            log.warning("outbox relay lock busy for %ss; items left to the next relay", RELAY_LOCK_WAIT)
            return 0
    done = []
    try:
        if mine is not None:
            with conn.cursor() as cur:
                if not cur.execute(STILL_WAITING, {"id": mine}):
                    return 0
        pushed = int(r.get(keys.outbox_pushed()) or 0)
        while True:
            _number(conn)
            with conn.cursor() as cur:
                cur.execute(NUMBERED, {"pushed": pushed, "limit": RELAY_BATCH})
                rows = cur.fetchall()
            if rows:
                _push(r, rows)
                pushed = rows[-1]["seq"]
                run_script(r, RAISE_MARK, [keys.outbox_pushed()], [pushed])
                done += [row["id"] for row in rows]
            if len(rows) < RELAY_BATCH:
                break
    finally:
        with conn.cursor() as cur:
            cur.execute(RELEASE_RELAY_LOCK)
    with conn.cursor() as cur:
        if done:
            cur.execute(DELETE_RELAYED, {"ids": done})
        if mine is None:  # the background relay: rows a relay pushed and then died before deleting
            cur.execute(DELETE_LEFT_BEHIND, {"pushed": pushed})
    return len(done)


def _number(conn) -> None:
    """Give committed rows not numbered yet their seq and, for events, their action_ids; commit."""
    with transaction(conn) as cur:
        cur.execute(UNNUMBERED, {"limit": RELAY_BATCH})
        rows = cur.fetchall()
        if not rows:
            return
        if not rows[0]["locked"]:
            raise RelayLockLost("the MySQL session that took the relay lock is gone; numbering left to the next relay")
        next_seq = _reserve(cur, "outbox_seq", len(rows))
        chains = defaultdict(list)
        for row in rows:
            if row["chain"]:
                chains[row["chain"]].append(row)
        for chain, events in chains.items():
            action_id = _reserve(cur, chain, len(events)) - 1
            for row in events:
                event = json.loads(row["item"])
                event.update(action_id=action_id + 1, previous_action_id=action_id)
                row["item"], action_id = dumps(event), action_id + 1
        cur.executemany(NUMBER, [{"id": row["id"], "seq": next_seq + i, "item": row["item"]}
                                 for i, row in enumerate(rows)])


def _reserve(cur, name: str, n: int) -> int:
    """Take n numbers of a `sequence` counter; return the first."""
    cur.execute(RESERVE, {"name": name, "n": n})
    return cur.lastrowid - n + 1


def _push(r, rows: list[dict]) -> None:
    """Push numbered rows: one script per queue (skipping what it already has), HDELs in a pipeline."""
    pushes, fields = defaultdict(list), []
    for row in rows:
        if row["command"] == "LPUSH":
            pushes[row["redis_key"]] += [row["seq"], row["item"]]
        else:
            fields.append(row)
    for queue, args in pushes.items():
        for seq in run_script(r, PUSH_RELAYED, [queue, keys.relayed(queue)], args):
            log.error("outbox row seq %s refused by Redis (%s is not a list), dropped", seq, queue)
    if fields:
        pipe = r.pipeline(transaction=False)
        for row in fields:
            pipe.hdel(row["redis_key"], row["item"])
        for row, result in zip(fields, pipe.execute(raise_on_error=False)):
            if isinstance(result, Exception):  # the key holds another type: nothing to retry
                log.error("outbox row %s refused by Redis, dropped: %s", row["id"], result)


def pending(conn) -> int:
    """How many items wait to be relayed."""
    with conn.cursor() as cur:
        cur.execute(COUNT_PENDING)
        return cur.fetchone()["n"]
