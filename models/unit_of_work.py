"""The unit of work of every change the router must hear of: group changes, relationship changes,
a user's deletion. It locks, lets the caller change rows and collect what to queue, numbers the
notifications, stores the items in the outbox in the same transaction, commits, and relays:

    with units.group_change(appid, gid) as (cur, group, changes):
        groups.add_members(cur, changes, group, ...)

locks the group row first (so changes to one group commit one after another and queue in that
order) and hands the locked group to the block; when the block ends the notifications get their
message ids, every item goes to the outbox with the change (one multi-row INSERT), the
transaction commits, and the outbox is relayed to Redis before the response. If Redis or MySQL
fails just then, the change still stands and the background relay delivers its items, in order,
once the service is back. An exception in the block rolls it all back and queues nothing.
"""
import logging
import random
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

import pymysql
import redis
from redis.exceptions import RedisClusterException

from . import group as groups
from . import outbox
from .connection import lock_wait
from .db import defer, transaction, values
from .outbox import GROUP_CHAIN, RELATIONSHIP_CHAIN
from .queue import Queues
from .queue_items import Changes, dumps, group_notification

log = logging.getLogger(__name__)

INSERT_ITEMS = "INSERT INTO outbox (command, redis_key, item, chain) VALUES {values}"
ITEM_ROW = "(%(command)s, %(key)s, %(item)s, %(chain)s)"
ER_LOCK_DEADLOCK, DEADLOCK_ATTEMPTS = 1213, 4


class Turns:
    """One pass at a time of work that serves everyone waiting for it (the outbox relay): each
    caller returns once a pass that began after it came has ended, the pass of whichever thread
    found none running. So the threads of a process that committed meanwhile queue for the
    relay's MySQL lock as one, not one after another."""

    def __init__(self):
        self._turn = threading.Condition()
        self._started, self._ended, self._running = 0, 0, False

    def take(self, work: Callable[[], None]) -> None:
        """Wait for a pass that begins after this call; run it, as work(), if none is running. An
        exception of work() reaches only the caller that ran it."""
        with self._turn:
            mine = self._started + 1  # the next pass to start serves this caller
            while self._running and self._ended < mine:
                self._turn.wait()
            if self._ended >= mine:
                return
            self._running, self._started = True, mine
        try:
            work()
        finally:
            with self._turn:
                self._running, self._ended = False, mine
                self._turn.notify_all()


class UnitOfWork:
    """Made once per app (create_app): where its changes' items go (Queues), the request's
    connection (connect), and the turns and timing of the relay that follows each commit."""

    def __init__(self, connect: Callable, queues: Queues, config):
        self.connect, self.queues, self.turns = connect, queues, Turns()
        # outbox.relay()'s keywords from the settings: how long it waits for the relay lock, and
        # how long a holder that stopped making progress keeps it.
        self.relay_timing = {"wait": lock_wait(config), "lease": config["OUTBOX_RELAY_LEASE"]}

    @contextmanager
    def group_change(self, appid: int, gid: int | None = None, *, code: str | None = None,
                     asking: list[int] = (), conn=None):
        """Yield (cursor, the app's group gid or with that join code, row-locked, Changes); see above.

        With neither gid nor code the group is None: the block creates groups or locks its own
        (through groups.lock_group, in id order). asking: uids whose membership the block checks,
        read with the lock. conn: another connection than the request's."""
        conn, changes = conn or self.connect(), Changes()
        with transaction(conn) as cur:
            if code is not None:
                group = groups.lock_group_by_code(cur, appid, code)
            else:
                group = None if gid is None else groups.lock_group(cur, appid, gid, asking)
            yield cur, group, changes
            stored = self.store(cur, changes)
        if stored:
            self._relay_after_commit(conn)

    def relationship_change(self, write: Callable, *args) -> None:
        """Run write(cur, events, *args) (models/relationship.py) in a unit of work of its own.

        A deadlock rolls it back whole (nothing was queued) and runs it again, a few times."""
        conn = self.connect()
        for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
            changes = Changes()
            try:
                with transaction(conn) as cur:
                    write(cur, changes.relationship_events, *args)
                    stored = self.store(cur, changes)
                break
            except pymysql.OperationalError as exc:
                if exc.args[0] != ER_LOCK_DEADLOCK or attempt == DEADLOCK_ATTEMPTS:
                    raise
                time.sleep(random.uniform(0, 0.005 * attempt))  # so the two do not meet again at once
        if stored:
            self._relay_after_commit(conn)

    def relay(self, r, *, sweep: bool = True) -> int:
        """Relay the outbox now on the request's connection (the background relay, `flask relay-outbox`)."""
        return outbox.relay(self.connect(), r, sweep=sweep, **self.relay_timing)

    def store(self, cur, changes: Changes) -> bool:
        """Number the change's notifications and append every item to the outbox, for after the
        commit (they go to MySQL with it); whether there were any."""
        q = self.queues
        notes = [group_notification(q.ids.next(), *note) for note in changes.notes]
        rows = [{"command": "LPUSH", "key": q.group_events, "item": dumps(e), "chain": GROUP_CHAIN}
                for e in changes.events]
        rows += [{"command": "LPUSH", "key": q.relationship_events, "item": dumps(e), "chain": RELATIONSHIP_CHAIN}
                 for e in changes.relationship_events]
        rows += [{"command": "LPUSH", "key": q.messages, "item": dumps(m), "chain": ""} for m in notes]
        rows += [{"command": "HDEL", "key": key, "item": field, "chain": ""} for key, field in changes.cleared]
        if rows:  # one multi-row INSERT: its rows commit, and are relayed, together
            defer(cur, INSERT_ITEMS.format(values=values(cur, ITEM_ROW, rows)))
        return bool(rows)

    def _relay_after_commit(self, conn) -> None:
        """Relay the outbox before the response, in this thread or in the one already relaying for
        this process; if Redis or MySQL fails just then, the background relay will."""
        def relay() -> None:
            try:
                outbox.relay(conn, self.queues.redis, sweep=False, **self.relay_timing)
            except (redis.RedisError, RedisClusterException, pymysql.Error) as exc:
                log.warning("relay after commit failed, left to the background relay: %s", exc)

        self.turns.take(relay)
