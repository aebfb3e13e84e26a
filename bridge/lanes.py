"""Conversations: which items must reach the router in queue order, and a scheduler that keeps it.

Items of one lane go one at a time, in the order they were taken; different lanes go
concurrently, so one slow conversation holds up only itself.
"""
import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable

from models.queue_items import CUSTOMER, PEER, ROOM, TO_GROUP


def _pair(item: dict) -> tuple:
    a, b = item.get("sender"), item.get("receiver")
    return (a, b) if repr(a) <= repr(b) else (b, a)  # unordered; repr() orders None and ints alike


def message_lane(item: dict) -> Hashable:
    """The conversation of an im_message_queue item."""
    kind, appid = item.get("kind"), item.get("appid")
    if kind in (PEER, CUSTOMER):
        return (kind, appid, *_pair(item))
    if kind in TO_GROUP:
        return ("group", appid, item.get("receiver"))
    if kind == ROOM:
        return ("room", appid, item.get("receiver"))
    return ("user", appid, item.get("receiver"))  # system, notification (and the unknown: dead-lettered)


LANES = {
    "messages": message_lane,
    "group_events": lambda item: "group_events",  # one global action_id chain
    "relationship_events": lambda item: "relationship_events",
    "user_events": lambda item: ("user", item.get("appid"), item.get("uid")),
}


class Lanes:
    """Runs deliver(run) for entries added under a key, in order, one run at a time per key: a run
    is the lane's next entry, or up to `batch` of them when they wait together."""

    def __init__(self, deliver: Callable[[list], Awaitable[None]], batch: int = 1):
        self._deliver, self.batch = deliver, batch
        self._waiting: dict[Hashable, deque] = {}
        self._tasks: set[asyncio.Task] = set()
        self.closing = False  # set: each lane finishes the entry it is on, and starts no other

    def add(self, key: Hashable, entry) -> None:
        """Queue an entry behind the others of its lane; start the lane if it is idle."""
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.append(entry)
            return
        self._waiting[key] = deque([entry])
        task = asyncio.create_task(self._run(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: Hashable) -> None:
        waiting = self._waiting[key]
        try:
            while waiting and not self.closing:
                run = [waiting[i] for i in range(min(self.batch, len(waiting)))]
                await self._deliver(run)
                for _ in run:
                    waiting.popleft()
        finally:
            del self._waiting[key]

    async def finish(self, seconds: float) -> int:
        """Let each lane finish its current entry, for at most `seconds`; return how many were cut off."""
        self.closing = True
        tasks = set(self._tasks)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=seconds)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
            return len(late)
        return 0

    def reopen(self) -> None:
        """After finish(): ready to run again (what was left waits in the processing list)."""
        self._waiting.clear()
        self.closing = False
