"""Friends and blacklists: the `friend` and `blacklist` rows the router reads, and their events.

A row (appid, uid, friend_uid) says uid befriends (or blocks) friend_uid. A friendship is
mutual: two rows, made and ended together; a blacklist entry is one row. Each row a change
inserts or deletes queues one relationship event, through the outbox, in the change's
transaction; a change that changes no row queues nothing:

    units.relationship_change(befriend, appid, uid, [fid, ...])  (models/unit_of_work.py)

Rows are written in primary-key order, whoever asks, so two changes touching the same rows
(A and B making friends from both sides at once) lock them in the same order: the second
waits for the first instead of deadlocking, then finds the rows made and changes nothing.
One deadlock remains that no order avoids: InnoDB's, when two inserts of one key wait for a
change that deletes it (two "make friends" while an "end the friendship" commits); the
victim is rolled back whole and run again (by the unit of work).
"""
import time

from .queue_items import BLACKLIST, FRIEND, relationship_event

INSERT_FRIEND = """
INSERT IGNORE INTO friend (appid, uid, friend_uid, timestamp)
VALUES (%(appid)s, %(uid)s, %(friend_uid)s, %(timestamp)s)
"""
INSERT_BLACKLIST = """
INSERT IGNORE INTO blacklist (appid, uid, friend_uid, timestamp)
VALUES (%(appid)s, %(uid)s, %(friend_uid)s, %(timestamp)s)
"""
DELETE_FRIEND = "DELETE FROM friend WHERE appid = %(appid)s AND uid = %(uid)s AND friend_uid = %(friend_uid)s"
DELETE_BLACKLIST = "DELETE FROM blacklist WHERE appid = %(appid)s AND uid = %(uid)s AND friend_uid = %(friend_uid)s"
COUNT_FRIENDS = "SELECT COUNT(*) AS n FROM friend WHERE appid = %(appid)s AND uid = %(uid)s"
COUNT_BLACKLIST = "SELECT COUNT(*) AS n FROM blacklist WHERE appid = %(appid)s AND uid = %(uid)s"
PAGE_FRIENDS = """
SELECT friend_uid AS uid, timestamp FROM friend WHERE appid = %(appid)s AND uid = %(uid)s AND friend_uid > %(after)s
ORDER BY friend_uid LIMIT %(count)s OFFSET %(start)s
"""
PAGE_BLACKLIST = """
SELECT friend_uid AS uid, timestamp FROM blacklist WHERE appid = %(appid)s AND uid = %(uid)s AND friend_uid > %(after)s
ORDER BY friend_uid LIMIT %(count)s OFFSET %(start)s
"""
# A user's rows in both directions: its own, and those naming it (through idx_<table>_friend_uid).
ROWS_OF_FRIEND = """
SELECT uid, friend_uid FROM friend WHERE appid = %(appid)s AND uid = %(uid)s
UNION SELECT uid, friend_uid FROM friend WHERE appid = %(appid)s AND friend_uid = %(uid)s
"""
ROWS_OF_BLACKLIST = """
SELECT uid, friend_uid FROM blacklist WHERE appid = %(appid)s AND uid = %(uid)s
UNION SELECT uid, friend_uid FROM blacklist WHERE appid = %(appid)s AND friend_uid = %(uid)s
"""


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
        cur.execute(ROWS_OF_FRIEND if table == FRIEND else ROWS_OF_BLACKLIST, {"appid": appid, "uid": uid})
        _write(cur, events, table, appid, [(row["uid"], row["friend_uid"]) for row in cur.fetchall()], False)


def page(cur, table: str, appid: int, uid: int, after: int | None, start: int, count: int) -> tuple[int, list[dict]]:
    """(how many entries uid has, one page of them by uid: [{uid, timestamp}]) after the uid `after`."""
    cur.execute(COUNT_FRIENDS if table == FRIEND else COUNT_BLACKLIST, {"appid": appid, "uid": uid})
    total = cur.fetchone()["n"]
    cur.execute(PAGE_FRIENDS if table == FRIEND else PAGE_BLACKLIST, {"appid": appid, "uid": uid, "start": start,
                                                                      "after": -1 if after is None else after,
                                                                      "count": count})
    return total, cur.fetchall()


def _write(cur, events: list, table: str, appid: int, pairs: list[tuple[int, int]], on: bool) -> None:
    """Insert (on) or delete the (uid, friend_uid) rows in key order; an event per row changed, in the order given.

    A row at a time: its rowcount says whether this change made (or ended) it."""
    now, changed = int(time.time()), set()
    for uid, fid in sorted(set(pairs)):
        row = {"appid": appid, "uid": uid, "friend_uid": fid, "timestamp": now}
        if on:
            done = cur.execute(INSERT_FRIEND if table == FRIEND else INSERT_BLACKLIST, row)
        else:
            done = cur.execute(DELETE_FRIEND if table == FRIEND else DELETE_BLACKLIST, row)
        if done:
            changed.add((uid, fid))
    events += [relationship_event(table, appid, uid, fid, on) for uid, fid in dict.fromkeys(pairs)
               if (uid, fid) in changed]
