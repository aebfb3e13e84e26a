"""The transactional outbox: Redis writes stored with the change they belong to, then relayed.

A change (models/unit_of_work.py) appends its events, notifications and cleared sync keys in
its own transaction, so a committed change always has them and a rolled-back one never does. Nothing global is
locked while the change runs: events are numbered by the relay, which runs one at a time
(a MySQL named lock) and takes committed rows in id order. Rows of one group are appended
while its row is locked, so their ids, and so their action_ids, follow the group's commit
order; the chain has no gaps because only the relay hands out numbers.

relay() takes the lock and, in the same round trip, reads the `sequence` counters and what is
left to push (rows numbered above the outbox_pushed mark, then rows not numbered yet). It
numbers the new ones (seq, the relay order; action_id for events) and commits, in one round
trip, then pushes them all in one pipeline. Each queue keeps the highest seq pushed to it
(keys.relayed), and the push script skips rows at or below it, atomically with the pushes. A
push that Redis ran although its reply was lost, or rows pushed just before a crash, are never
pushed twice. Once a batch is done the relay raises the outbox_pushed mark and deletes its
rows: with the next batch's read, or, after the last batch, in the round trip that lets the
lock go (the delete runs after the release, so it is not one more commit the next relay waits
for). No relay looks at rows at or below the mark again, and the background relay deletes any
a crash left behind. A packet that should have let the lock go and failed is followed by a
RELEASE of its own: a pooled session must not keep the lock.

A change relays right after its commit, so its items are queued before its response. While
one relay runs, the changes that committed meanwhile wait: within a process, for one pass
that a single thread runs for all of them (unit_of_work.Turns); across processes, for the lock. The
running relay takes their rows too (it relays until a pass finds fewer than a batch), so a
relay that then gets the lock finds little or nothing left: under load one relay pass moves
many changes' rows, instead of every change paying for a pass of its own.
"""
import json
import logging
from collections import defaultdict

import pymysql
import redis
from redis.exceptions import NoScriptError

from . import keys
from .db import defer, results, transaction, values
from .queue_items import dumps
from .redis_io import run_script, sha

# A named lock is server-wide: the name carries the database's, so that two deployments (or a
# test run and a bench) sharing one MariaDB do not wait for each other's relays (64 characters at most).
RELAY_LOCK = "CONCAT('outbox_relay:', LEFT(DATABASE(), 51))"
TAKE_RELAY_LOCK = f"SELECT GET_LOCK({RELAY_LOCK}, %(seconds)s) AS got"
# The lock's lease: a named lock lasts as long as its session, and MySQL keeps the session of a
# client that froze (SIGSTOP, a stuck VM, a debugger) open for wait_timeout, 8 hours by default.
# While it holds the lock, the relay's session is closed by MySQL after `lease` seconds without a
# statement (or with a reply it does not read), and the lock goes with it. A healthy relay is
# never that long between statements but for a Redis push; should one outlast the lease, the
# relay finds the lock lost (`locked` below) and stops, and the next one carries on.
START_LEASE = f"""
SET SESSION wait_timeout = IF(IS_USED_LOCK({RELAY_LOCK}) <=> CONNECTION_ID(), %(lease)s, @@GLOBAL.wait_timeout),
    net_write_timeout = IF(IS_USED_LOCK({RELAY_LOCK}) <=> CONNECTION_ID(), %(lease)s, @@GLOBAL.net_write_timeout)
"""
END_LEASE = "SET SESSION wait_timeout = DEFAULT, net_write_timeout = DEFAULT"
RELEASE_RELAY_LOCK = f"SELECT RELEASE_LOCK({RELAY_LOCK});\n{END_LEASE}"
PUSHED, SEQ = "outbox_pushed", "outbox_seq"  # `sequence` rows: the highest seq done in Redis, the last seq given
GROUP_CHAIN, RELATIONSHIP_CHAIN = "group_action", "relationship_action"  # their `sequence` rows
COUNTER_NAMES = (PUSHED, SEQ, GROUP_CHAIN, RELATIONSHIP_CHAIN)
COUNTERS = "SELECT name, value FROM sequence WHERE name IN %(counters)s"
# What a relay has to do: rows numbered but not done in Redis (above the PUSHED mark, or the
# relay's own `pushed` if higher: a relay that failed or died after numbering them), then rows
# not numbered yet. `locked`: whether this session still holds the relay lock. The pool
# reconnects a session that dropped and re-runs a statement outside a transaction on the new
# one, which holds no lock; checking here keeps two relays from numbering or pushing the same
# # rows. After this read the pool replaces no session silently: the numbering is a transaction,
# whose packet fails on a dead session and is not run again on a new one. (The check is not repeated in the numbering:
# IS_USED_LOCK in an UPDATE is unsafe for statement-based replication, where a replica would
# run it with the check false and its counters would stop.)
OUTSTANDING = f"""
(SELECT id, seq, chain, command, redis_key, item, IS_USED_LOCK({RELAY_LOCK}) <=> CONNECTION_ID() AS locked
 FROM outbox WHERE seq > GREATEST(%(pushed)s, (SELECT value FROM sequence WHERE name = 'outbox_pushed'))
 ORDER BY seq LIMIT %(limit)s)
UNION ALL
(SELECT id, seq, chain, command, redis_key, item, IS_USED_LOCK({RELAY_LOCK}) <=> CONNECTION_ID() AS locked
 FROM outbox WHERE seq IS NULL ORDER BY id LIMIT %(limit)s)
"""
# A relay's first round trip: the lock, then (holding it) the counters and the first batch.
START_RELAY = ";\n".join([TAKE_RELAY_LOCK, START_LEASE, COUNTERS, OUTSTANDING])
# Counters are written, not incremented: only the holder of the relay lock changes them, and it
# read them under the lock.
SET_COUNTER = "UPDATE sequence SET value = %(value)s WHERE name = %(name)s"
RAISE_PUSHED = "UPDATE sequence SET value = GREATEST(value, %(pushed)s) WHERE name = 'outbox_pushed'"
# One statement for a whole batch. Only numbered rows are ever deleted, and these rows were read
# unnumbered under the lock: each id exists and the INSERT branch never runs.
NUMBER = """
INSERT INTO outbox (id, seq, item) VALUES {values}
ON DUPLICATE KEY UPDATE seq = VALUES(seq), item = VALUES(item)
"""
NUMBER_ROW = "(%(id)s, %(seq)s, %(item)s)"
DELETE_RELAYED = "DELETE FROM outbox WHERE id IN %(ids)s"
# A relay's last round trip, after it moved rows: the mark before the release (the next holder of
# the lock reads it), the delete after it (not one more commit the next relay waits for).
END_RELAY = ";\n".join([RAISE_PUSHED, RELEASE_RELAY_LOCK, DELETE_RELAYED])
# Between batches of one relay: the last batch's mark and delete, and the next batch.
NEXT_BATCH = ";\n".join([RAISE_PUSHED, DELETE_RELAYED, OUTSTANDING])
DELETE_LEFT_BEHIND = "DELETE FROM outbox WHERE seq <= (SELECT value FROM sequence WHERE name = 'outbox_pushed')"
COUNT_PENDING = "SELECT COUNT(*) AS n FROM outbox"
RELAY_BATCH = 500
RELAY_BATCH_BYTES = 4 * 1024 * 1024  # items per batch, at most (a batch is one packet; one item may be larger)
RELAY_LOCK_WAIT = 4  # seconds, for a caller without settings; the app's is connection.lock_wait(): MYSQL_TIMEOUT - 1
RELAY_LEASE = 3  # seconds, for a caller without settings; the app's is OUTBOX_RELAY_LEASE

# LPUSH each (seq, item) whose seq is above the queue's relayed mark, in order; then raise the
# mark. KEYS: queue, its mark. ARGV: seq, item, seq, item, ... A push Redis refuses (the key
# holds another type) is skipped and its seq returned, so one bad row cannot hold back the rest.
# (Out of memory, Redis refuses the whole script before it runs: nothing is pushed or skipped.)
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
log = logging.getLogger(__name__)


class RelayLockLost(pymysql.err.OperationalError):
    """The relay's session lost the lock (MySQL dropped it and the pool reconnected): stop relaying."""


def relay(conn, r, *, sweep: bool = True, wait: int = RELAY_LOCK_WAIT, lease: int = RELAY_LEASE) -> int:
    """Move every committed outbox item to Redis in order, exactly once; return how many moved.

    sweep: also delete rows that a relay pushed and then died before deleting (the background
    relay; a change's own relay leaves that to it). If another process is relaying for longer
    than `wait` seconds (below the connection's read timeout), leave the items to it (or to the
    next relay) and return 0. A relay that stops making progress (its process frozen) loses the
    lock after `lease` seconds (START_LEASE)."""
    try:
        with conn.cursor() as cur:
            got, _, counters, found = results(cur, START_RELAY, {
                "seconds": wait, "lease": lease, "counters": COUNTER_NAMES, "pushed": 0, "limit": RELAY_BATCH})
    except pymysql.Error:  # the lock may be this session's already: a pooled session must not keep it
        _let_go(conn)
        raise
    if not got[0]["got"]:
        log.warning("outbox relay lock busy for %ss; items left to the next relay", wait)
        return 0
    moved, pushed, last = 0, 0, []  # last: the ids of the batch pushed last, its mark and delete still to come
    try:
        counters = {row["name"]: row["value"] for row in counters}
        if len(counters) < len(COUNTER_NAMES):
            raise pymysql.err.InternalError(f"`sequence` has only {sorted(counters)}: apply sql/ (flask init-db)")
        pushed = counters[PUSHED]
        while True:
            batch, more = _outstanding(found)
            _number(conn, [row for row in batch if row["seq"] is None], counters)
            if batch:
                _push(r, batch)
                pushed, last, moved = batch[-1]["seq"], [row["id"] for row in batch], moved + len(batch)
            if not more:
                break
            with conn.cursor() as cur:  # each batch's mark and delete go with the next batch's read
                found = results(cur, NEXT_BATCH, {"pushed": pushed, "ids": last, "limit": RELAY_BATCH})[-1]
                last = []
    finally:
        try:
            with conn.cursor() as cur:
                results(cur, END_RELAY if last else RELEASE_RELAY_LOCK, {"pushed": pushed, "ids": last})
        except pymysql.Error:
            _let_go(conn)
            raise
    if sweep:
        with conn.cursor() as cur:
            cur.execute(DELETE_LEFT_BEHIND)
    return moved


def _let_go(conn) -> None:
    """Release the relay lock on its own, after a packet that should have released it failed."""
    try:
        with conn.cursor() as cur:
            results(cur, RELEASE_RELAY_LOCK)
    except pymysql.Error:
        pass  # the session is gone, and the lock with it


def _outstanding(found: list[dict]) -> tuple[list[dict], bool]:
    """Of the rows OUTSTANDING found: up to RELAY_BATCH (and RELAY_BATCH_BYTES of items) to push, in
    relay order (those numbered above the pushed mark, then those not numbered yet), and whether
    more may wait."""
    if found and not found[0]["locked"]:
        raise RelayLockLost("the MySQL session that took the relay lock is gone; relaying left to the next relay")
    numbered = sorted((row for row in found if row["seq"] is not None), key=lambda row: row["seq"])
    fresh = sorted((row for row in found if row["seq"] is None), key=lambda row: row["id"])
    batch, size = [], 0
    for row in (numbered + fresh)[:RELAY_BATCH]:
        size += len(row["item"])
        if batch and size > RELAY_BATCH_BYTES:  # the numbering and the pushes stay well inside max_allowed_packet
            return batch, True
        batch.append(row)
    return batch, len(found) >= RELAY_BATCH


def _number(conn, rows: list[dict], counters: dict) -> None:
    """Give rows not numbered yet their seq and, for events, their action_ids (in `rows` too), from
    `counters` (read under the relay lock, and moved on here); commit, in one round trip."""
    if not rows:
        return
    taken = dict(counters)
    for row in rows:
        if row["chain"]:
            event = json.loads(row["item"])
            event.update(action_id=taken[row["chain"]] + 1, previous_action_id=taken[row["chain"]])
            row["item"], taken[row["chain"]] = dumps(event), taken[row["chain"]] + 1
        row["seq"] = taken[SEQ] = taken[SEQ] + 1
    with transaction(conn) as cur:
        for name in (SEQ, GROUP_CHAIN, RELATIONSHIP_CHAIN):
            if taken[name] != counters[name]:
                defer(cur, SET_COUNTER, {"name": name, "value": taken[name]})
        defer(cur, NUMBER.format(values=values(cur, NUMBER_ROW, rows)))
    counters.update(taken)


def _push(r, rows: list[dict]) -> None:
    """Push numbered rows in one pipeline: a script per queue (skipping what it already has), and
    the HDELs; raise if any push failed, so that the pushed mark stays where it is."""
    pushes, fields = defaultdict(list), []
    for row in rows:
        if row["command"] == "LPUSH":
            pushes[row["redis_key"]] += [row["seq"], row["item"]]
        else:
            fields.append(row)
    in_pipeline = isinstance(r, redis.Redis)  # redis-py's cluster pipelines run no scripts
    pipe = r.pipeline(transaction=False)
    for queue, args in pushes.items() if in_pipeline else ():
        pipe.evalsha(sha(PUSH_RELAYED), 2, queue, keys.relayed(queue), *args)
    for row in fields:
        pipe.hdel(row["redis_key"], row["item"])
    replies = pipe.execute(raise_on_error=False) if len(pipe) else []
    if not in_pipeline:
        replies[:0] = [run_script(r, PUSH_RELAYED, [queue, keys.relayed(queue)], args)
                       for queue, args in pushes.items()]
    for (queue, args), refused in zip(pushes.items(), replies):
        if isinstance(refused, NoScriptError):  # Redis lost its scripts (a restart, SCRIPT FLUSH)
            refused = run_script(r, PUSH_RELAYED, [queue, keys.relayed(queue)], args)
        if isinstance(refused, Exception):
            raise refused
        for seq in refused:
            log.error("outbox row seq %s refused by Redis (%s is not a list), dropped", seq, queue)
    for row, result in zip(fields, replies[len(pushes):]):
        if isinstance(result, Exception):  # the key holds another type: nothing to retry
            log.error("outbox row %s refused by Redis, dropped: %s", row["id"], result)


def pending(conn) -> int:
    """How many items wait to be relayed."""
    with conn.cursor() as cur:
        cur.execute(COUNT_PENDING)
        return cur.fetchone()["n"]
