"""Friends and blacklists: the `friend` and `blacklist` rows the router reads, and their events.

A row (appid, uid, friend_uid) says uid befriends (or blocks) friend_uid. A friendship is
mutual: two rows, made and ended together; a blacklist entry is one row. Each row a change
inserts or deletes queues one relationship event, through the outbox, in the change's
transaction; a change that changes no row queues nothing:

    relationship_change(conn, queues, befriend, appid, uid, [fid, ...])

Rows are written in primary-key order, whoever asks, so two changes touching the same rows
(A and B making friends from both sides at once) lock them in the same order: the second
waits for the first instead of deadlocking, then finds the rows made and changes nothing.
One deadlock remains that no order avoids: InnoDB's, when two inserts of one key wait for a
change that deletes it (two "make friends" while an "end the friendship" commits); the
victim is rolled back whole and run again.
"""
import random
import time
from collections.abc import Callable

import pymysql

from . import outbox
from .db import transaction
from .group_change import relay_after_commit
from .queue import Queues, relationship_event

FRIEND, BLACKLIST = "friend", "blacklist"  # the tables, also their events' names and flags
ER_LOCK_DEADLOCK, DEADLOCK_ATTEMPTS = 1213, 4

# Table names are the only thing formatted in; values are always parameters.
INSERT = """
INSERT IGNORE INTO `{table}` (appid, uid, friend_uid, timestamp)
VALUES (%(appid)s, %(uid)s, %(friend_uid)s, %(timestamp)s)
"""
DELETE = "DELETE FROM `{table}` WHERE appid = %(appid)s AND uid = %(uid)s AND friend_uid = %(friend_uid)s"
COUNT = "SELECT COUNT(*) AS n FROM `{table}` WHERE appid = %(appid)s AND uid = %(uid)s"
PAGE = """
SELECT friend_uid AS uid, timestamp FROM `{table}` WHERE appid = %(appid)s AND uid = %(uid)s AND friend_uid > %(after)s
ORDER BY friend_uid LIMIT %(count)s OFFSET %(start)s
"""
OWN = "SELECT friend_uid FROM `{table}` WHERE appid = %(appid)s AND uid = %(uid)s"
NAMING = "SELECT uid FROM `{table}` WHERE appid = %(appid)s AND friend_uid = %(uid)s"  # idx_<table>_friend_uid
SQL = {table: {name: text.format(table=table) for name, text in
               {"insert": INSERT, "delete": DELETE, "count": COUNT, "page": PAGE, "own": OWN, "naming": NAMING}.items()}
       for table in (FRIEND, BLACKLIST)}


def relationship_change(conn, queues: Queues, write: Callable, *args) -> None:
    """Run write(cur, events, *args) in a transaction, append its events to the outbox, commit, relay.

    A deadlock rolls it back whole (nothing was queued) and runs it again, a few times."""
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        events: list[dict] = []
        try:
            with transaction(conn) as cur:
                write(cur, events, *args)
                outbox.append(cur, queues, relationship_events=events)
            break
        except pymysql.OperationalError as exc:
            if exc.args[0] != ER_LOCK_DEADLOCK or attempt == DEADLOCK_ATTEMPTS:
                raise
            time.sleep(random.uniform(0, 0.005 * attempt))  # so the two do not meet again at once
    if events:
        relay_after_commit(conn, queues)


def befriend(cur, events: list, appid: int, uid: int, friend_uids: list[int]) -> None:
    """Make uid and each of friend_uids friends, both directions."""
    _write(cur, events, FRIEND, appid, [pair for fid in friend_uids for pair in ((uid, fid), (fid, uid))], True)


def unfriend(cur, events: list, appid: int, uid: int, friend_uid: int) -> None:
    """End the friendship of uid and friend_uid, both directions."""
    _write(cur, events, FRIEND, appid, [(uid, friend_uid), (friend_uid, uid)], False)


def block(cur, events: list, appid: int, uid: int, blocked: list[int]) -> None:
    """uid blocks each of blocked (one direction)."""
    _write(cur, events, BLACKLIST, appid, [(uid, bid) for bid in blocked], True)


def unblock(cur, events: list, appid: int, uid: int, blocked: int) -> None:
    _write(cur, events, BLACKLIST, appid, [(uid, blocked)], False)


def forget_user(cur, events: list, appid: int, uid: int) -> None:
    """Delete every friend and blacklist row of uid, in both directions (the user is being deleted)."""
    for table in (FRIEND, BLACKLIST):
        params = {"appid": appid, "uid": uid}
        cur.execute(SQL[table]["own"], params)
        pairs = [(uid, row["friend_uid"]) for row in cur.fetchall()]
        cur.execute(SQL[table]["naming"], params)
        pairs += [(row["uid"], uid) for row in cur.fetchall()]
        _write(cur, events, table, appid, pairs, False)


def page(cur, table: str, appid: int, uid: int, after: int | None, start: int, count: int) -> tuple[int, list[dict]]:
    """(how many entries uid has, one page of them by uid: [{uid, timestamp}]) after the uid `after`."""
    cur.execute(SQL[table]["count"], {"appid": appid, "uid": uid})
    total = cur.fetchone()["n"]
    cur.execute(SQL[table]["page"], {"appid": appid, "uid": uid, "after": -1 if after is None else after,
                                     "start": start, "count": count})
    return total, cur.fetchall()


def _write(cur, events: list, table: str, appid: int, pairs: list[tuple[int, int]], on: bool) -> None:
    """Insert (on) or delete the (uid, friend_uid) rows in key order; an event per row changed, in the order given.

    A row at a time: its rowcount says whether this change made (or ended) it."""
    sql, now = SQL[table]["insert" if on else "delete"], int(time.time())
    changed = {pair for pair in sorted(set(pairs))
               if cur.execute(sql, {"appid": appid, "uid": pair[0], "friend_uid": pair[1], "timestamp": now})}
    events += [relationship_event(table, appid, uid, fid, on) for uid, fid in dict.fromkeys(pairs)
               if (uid, fid) in changed]
