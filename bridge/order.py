"""Causal order across the queues (SPEC 7): a message reaches the router only after the events before it.

A change queues its events before anything that follows it is queued, but each queue has a lane
of its own, and stock im applies stream entries asynchronously: a group message handed to it
between a group's `group_create` and its member adds reaches only some members. So every take
from a queue is counted in Redis (keys.taken); a message taken from the message queue learns, in
the same atomic step, each event queue's horizon: its count plus what still waits in it, the
place up to which the events before the message lie. Before the message goes out, the events of
its conversation up to that place must be done (in the stream, published) and at least
BRIDGE_APPLY_SECONDS old, the time the router is given to apply them. A conversation with no
event in flight, and none done within that time, does not wait at all; others go meanwhile.
"""
import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Hashable

from models.queue_items import PEER, TO_GROUP

EVENT_ROLES = ("group_events", "relationship_events", "user_events")  # the message queue waits for these


def _pair(appid, a, b) -> tuple:
    return ("pair", appid, *sorted((a, b), key=repr))


def event_key(role: str, item: dict) -> Hashable:
    """The conversation an event changes: its group, its pair of users, its user."""
    appid = item.get("appid")
    if role == "group_events":
        return ("group", appid, item.get("group_id"))
    if role == "relationship_events":
        return _pair(appid, item.get("uid"), item.get("friend_uid"))
    return ("user", appid, item.get("uid"))


def waits_for(item: dict) -> list[tuple[str, Hashable]]:
    """(event queue role, conversation) whose earlier events a message must follow."""
    kind, appid, sender = item.get("kind"), item.get("appid"), item.get("sender")
    found = [("user_events", ("user", appid, sender))] if sender else []  # a ban, or its lifting
    if kind in TO_GROUP:
        found.append(("group_events", ("group", appid, item.get("receiver"))))
    elif kind == PEER:
        found.append(("relationship_events", _pair(appid, sender, item.get("receiver"))))
    return found


class Horizon:
    """One event queue as the messages see it: how far it has been taken, which events of each
    conversation are in flight, and when each conversation's last event was done."""

    def __init__(self, settle: float):
        self.settle = settle
        self.reset()

    def reset(self) -> None:
        """A new term: nothing taken or in flight (what a last term left is taken anew)."""
        self.taken, self.open = 0, True
        self.pending: dict[Hashable, deque] = {}  # conversation -> places of its events in flight
        self.done_at: OrderedDict[Hashable, float] = OrderedDict()  # conversation -> when its last was done
        self.took_signal = asyncio.Event()
        self.done_signals: dict[Hashable, asyncio.Event] = {}

    def took(self, count: int, events: list[tuple[int, Hashable]]) -> None:
        """The queue's take counter is now `count`; events: (place, conversation) just taken."""
        for place, key in events:
            self.pending.setdefault(key, deque()).append(place)
        self.taken = max(self.taken, count)
        self.took_signal.set()
        self.took_signal = asyncio.Event()

    def done(self, place: int, key: Hashable) -> None:
        """The event at `place` reached the router (or was dead-lettered)."""
        waiting = self.pending.get(key)
        if waiting is not None:
            try:
                waiting.remove(place)
            except ValueError:
                pass
            if not waiting:
                del self.pending[key]
        now = time.monotonic()
        self.done_at[key] = now
        self.done_at.move_to_end(key)
        while self.done_at and next(iter(self.done_at.values())) < now - self.settle:
            self.done_at.popitem(last=False)  # older than the settle time: nobody waits for it
        signal = self.done_signals.pop(key, None)
        if signal is not None:
            signal.set()

    async def follow(self, key: Hashable, horizon: int) -> bool:
        """Wait until the conversation's events up to `horizon` are done and settled; False if the term ends."""
        while self.open and self.taken < horizon:
            await self.took_signal.wait()
        while self.open and (waiting := self.pending.get(key)) and waiting[0] <= horizon:
            await self.done_signals.setdefault(key, asyncio.Event()).wait()
        done = self.done_at.get(key)
        if self.open and done is not None and done + self.settle > time.monotonic():
            await asyncio.sleep(done + self.settle - time.monotonic())
        return self.open

    def close(self) -> None:
        """The term ends: every wait returns False."""
        self.open = False
        self.took_signal.set()
        for signal in self.done_signals.values():
            signal.set()
