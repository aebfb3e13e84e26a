"""The bridge's loop: take, deliver, acknowledge; retry with capped backoff; stop cleanly on SIGTERM.

Its state lives in Redis. An item moves atomically from its queue onto `{queue}:processing`
when taken and leaves that list only once the router has it (or it is dead-lettered), so a
crash loses nothing: the next bridge to hold the lease moves the processing list back onto
the queue's pop end, in order, and delivers it again (at least once).

Every loop ends by itself when told to (an event it waits on, a flag it checks), never by
being cancelled: on Python 3.11 `asyncio.wait_for`, which redis-py uses for its socket
timeout, can swallow a cancellation that arrives as the call completes, and a loop that
swallowed it would run on and keep the process from exiting.
"""
import asyncio
import json
import random
import signal
import time
from collections import OrderedDict

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from models import keys
from models.queue_items import USER_FORBIDDEN, USER_TOKEN_REVOKED
from models.router import Malformed, Refused, RouterClient, Unavailable, call_for
from outage import Outage

from . import deadletter, logs, order, streams
from .lanes import LANES, Lanes
from .lease import Lease
from .metrics import Health, Metrics, serve
from .settings import Settings

BACKOFF_FIRST, BACKOFF_CAP = 0.05, 5.0
TAKE_BATCH = 200  # items moved per round trip while the queue is full
BLOCK_SECONDS = 1  # a blocking take returns this often, to see a stop or a lost lease
EVENT_RUN = 100  # stream events written in one step, at most, when they wait together in their lane
ENDING_SECONDS = 6.0  # for the loops of a term to see it end: one Redis call's timeout (5 s) and a little

# Move up to ARGV[1] items from the queue's pop end onto the processing list and count them, in one
# step. KEYS: queue, processing list, its take counter; for the message queue also each event queue
# and its take counter, whose horizons (taken so far + waiting) it reads in the same step (bridge/order.py).
# Returns {{counter, horizon, ...}, {item, ...}}.
TAKE = """
local taken = {}
for i = 1, tonumber(ARGV[1]) do
  local item = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not item then break end
  taken[i] = item
end
local counts = {redis.call('INCRBY', KEYS[3], #taken)}
for i = 4, #KEYS, 2 do
  counts[#counts + 1] = tonumber(redis.call('GET', KEYS[i + 1]) or '0') + redis.call('LLEN', KEYS[i])
end
return {counts, taken}
"""
# Put the processing list back on the queue's pop end, oldest nearest to it, in one step.
REDRIVE = """
local n = 0
while redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT') do n = n + 1 end
return n
"""


async def wait_until(seconds: float, *events: asyncio.Event) -> None:
    """Wait `seconds`, or less if one of the events is set or becomes set."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def end(tasks: list[asyncio.Task], seconds: float) -> int:
    """Give tasks that were told to end `seconds` to do so, then cancel them; how many still run."""
    if not tasks:
        return 0
    _, running = await asyncio.wait(tasks, timeout=seconds)
    for task in running:
        task.cancel()
    if running:
        _, running = await asyncio.wait(running, timeout=1)
    for task in set(tasks) - running:
        if not task.cancelled() and task.exception() is not None:
            logs.error("a loop of the bridge failed", error=repr(task.exception()))
    return len(running)


def backoff(attempt: int) -> float:
    """Seconds before retry number `attempt` (1, 2, ...): exponential, capped, with jitter."""
    ceiling = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)  # half fixed, so retries never bunch at zero


class Taken:
    """One item between take and acknowledgement: for an event, its place in its queue's takes; for
    a message, the event queues' horizons when it was taken."""

    __slots__ = ("horizons", "item", "place", "raw", "seq")

    def __init__(self, raw: bytes, item: dict | None, seq: int, place: int, horizons: dict):
        self.raw, self.item, self.seq, self.place, self.horizons = raw, item, seq, place, horizons


class QueueDrain:
    """One queue: take items onto its processing list, deliver them lane by lane, acknowledge them."""

    def __init__(self, bridge: "Bridge", role: str, name: str):
        self.bridge, self.role, self.name = bridge, role, name
        self.r, self.metrics = bridge.r, bridge.metrics
        self.processing = keys.processing(name)
        self.lane_of = LANES[role]
        self.lanes = Lanes(self.deliver_run, EVENT_RUN if role in streams.STREAMS else 1)
        self.horizon = order.Horizon(bridge.settings.apply_seconds) if role in order.EVENT_ROLES else None
        # KEYS of a take: the queue, its processing list and counter; the message queue's, the event queues' too
        self.take_keys = [name, self.processing, keys.taken(name)]
        if role == "messages":
            for event_role in order.EVENT_ROLES:
                self.take_keys += [bridge.settings.queues[event_role], keys.taken(bridge.settings.queues[event_role])]
        self.outstanding: OrderedDict[int, int] = OrderedDict()  # seq -> item timestamp (ms), take order
        self.acks: list[bytes] = []
        self.ack_ready, self.room = asyncio.Event(), asyncio.Event()
        self.seq = 0

    async def redrive(self) -> None:
        """Put what a previous holder left unacknowledged back at the queue's pop end."""
        moved = await self.r.eval(REDRIVE, 2, self.processing, self.name)
        if moved:
            logs.warning("re-driven unacknowledged items", queue=self.name, count=moved)

    async def take_loop(self) -> None:
        """Take items while the bridge is active and fewer than BRIDGE_MAX_PENDING are outstanding."""
        attempt = 0
        while self.bridge.taking():
            room = self.bridge.settings.max_pending - len(self.outstanding)
            if room <= 0:
                self.room.clear()
                await wait_until(BLOCK_SECONDS, self.room, self.bridge.stop, self.bridge.lost)
                continue
            try:
                counts, raws = await self.r.eval(TAKE, len(self.take_keys), *self.take_keys, min(TAKE_BATCH, room))
                if not raws:
                    # Wait for an item without taking it (a move from the tail to the tail): every
                    # take is the counted one above, so a message's horizons miss no event.
                    await self.r.blmove(self.name, self.name, BLOCK_SECONDS, "RIGHT", "RIGHT")
                    continue
                attempt = 0
            except (RedisError, OSError) as exc:
                attempt += 1
                logs.warning("taking failed", queue=self.name, error=str(exc), attempt=attempt)
                await wait_until(backoff(attempt), self.bridge.stop, self.bridge.lost)
                continue
            horizons = dict(zip(order.EVENT_ROLES, counts[1:], strict=False))
            taken = [self.dispatch(raw, counts[0] - len(raws) + 1 + i, horizons) for i, raw in enumerate(raws)]
            if self.horizon is not None:
                self.horizon.took(counts[0], [(t.place, order.event_key(self.role, t.item)) for t in taken if t.item])

    def dispatch(self, raw: bytes, place: int, horizons: dict) -> Taken:
        """Hand a taken item to its lane (or straight to the dead letters when it is not JSON)."""
        self.seq += 1
        try:
            item = json.loads(raw)
        except ValueError:
            item = None
        if not isinstance(item, dict):
            item = None  # dead-lettered by deliver(): not a JSON object
        timestamp = item.get("timestamp") if item else None
        self.outstanding[self.seq] = timestamp if isinstance(timestamp, (int, float)) else int(time.time() * 1000)
        taken = Taken(raw, item, self.seq, place, horizons)
        self.lanes.add(self.lane_of(item) if item else ("malformed", self.seq), taken)
        return taken

    async def deliver_run(self, run: list[Taken]) -> None:
        """A lane's next items: stream events that all can go in one step, as one; else one at a time."""
        if len(run) > 1 and all(streams.appendable(taken.item, self.role) for taken in run):
            return await self.deliver(run[0], run)
        for taken in run:
            if self.lanes.closing:
                return  # the rest stay in the processing list
            await self.deliver(taken)

    async def deliver(self, taken: Taken, run: list[Taken] | None = None) -> None:
        """Deliver one item (or a run of well-formed stream events it begins) until the router takes
        it or refuses it for good; never drop it.

        The item keeps its slot while it waits to retry: a router that is down then sees at
        most BRIDGE_CONCURRENCY items retrying, however many conversations are waiting. Once
        the lanes are closing it is not tried again: it stays in the processing list."""
        attempt = 0
        if not await self.bridge.after_events(taken):
            return  # the term ends: left in the processing list, for the next holder
        async with self.bridge.slots:
            while True:
                try:
                    if taken.item is None:
                        raise Malformed("not a JSON object")
                    if run:
                        await self.bridge.append_events(self, [t.item for t in run])
                    else:
                        await self.bridge.deliver(self, taken.item)
                    for done in run or [taken]:
                        self.acknowledge(done)
                    return
                except Malformed as exc:
                    return await self.bury(taken, 0, f"malformed: {exc}")
                except Refused as exc:
                    return await self.bury(taken, exc.status, exc.reason)
                except (Unavailable, RedisError, OSError) as exc:
                    if self.lanes.closing:
                        return logs.warning("delivery failed while stopping, left for the next holder",
                                            queue=self.name, id=deadletter.entry_id(taken.item), error=str(exc))
                    attempt += 1
                    self.metrics.retried.labels(self.name).inc()
                    logs.warning("delivery failed, will retry", queue=self.name, id=deadletter.entry_id(taken.item),
                                 attempt=attempt, status=getattr(exc, "status", None), error=str(exc))
                    await asyncio.sleep(backoff(attempt))

    def acknowledge(self, taken: Taken) -> None:
        """The router has it: count it, and let the ack flusher take it off the processing list."""
        self.metrics.delivered.labels(self.name).inc()
        self.acks.append(taken.raw)
        self.ack_ready.set()
        self.settle(taken)

    def settle(self, taken: Taken) -> None:
        self.outstanding.pop(taken.seq, None)
        self.room.set()
        if self.horizon is not None and taken.item is not None:
            self.horizon.done(taken.place, order.event_key(self.role, taken.item))

    async def bury(self, taken: Taken, status: int, reason: str) -> None:
        """Move a refused item to the dead letters, retrying Redis until that is done (or the lanes close)."""
        attempt = 0
        while True:
            try:
                dead_id = await deadletter.bury(self.r, self.name, taken.raw, taken.item, status, reason)
                break
            except (RedisError, OSError) as exc:
                if self.lanes.closing:
                    return logs.warning("dead-lettering failed while stopping, left for the next holder",
                                        queue=self.name, error=str(exc))
                attempt += 1
                logs.warning("dead-lettering failed, will retry", queue=self.name, error=str(exc))
                await asyncio.sleep(backoff(attempt))
        self.metrics.dead.labels(self.name).inc()
        logs.error("refused by the router, dead-lettered", queue=self.name, id=dead_id, status=status,
                   reason=reason)
        self.settle(taken)

    async def ack_loop(self) -> None:
        """Take acknowledged items off the processing list, many per round trip, until the term ends.

        The term's end sets ack_ready too, to wake it; wind_down() flushes what is left."""
        attempt = 0
        ending = self.bridge.ending
        while not ending.is_set():
            await self.ack_ready.wait()
            self.ack_ready.clear()
            try:
                await self.flush_acks()
                attempt = 0
            except (RedisError, OSError) as exc:
                attempt += 1
                logs.warning("acknowledging failed, will retry", queue=self.name, error=str(exc))
                self.ack_ready.set()
                await wait_until(backoff(attempt), ending)

    async def flush_acks(self) -> None:
        """LREM every acknowledged item (searching from the old end, where it sits)."""
        batch, self.acks = self.acks, []
        if not batch:
            return
        try:
            async with self.r.pipeline(transaction=False) as pipe:
                for raw in batch:
                    pipe.lrem(self.processing, -1, raw)
                await pipe.execute()
        except BaseException:
            self.acks[:0] = batch  # LREM twice is harmless; forgetting one would re-deliver it
            raise

    def lag(self) -> float:
        """Seconds since the oldest outstanding item was queued (0 when none is)."""
        if not self.outstanding:
            return 0.0
        return max(0.0, time.time() - next(iter(self.outstanding.values())) / 1000)


class Bridge:
    """Holds the lease, runs a QueueDrain per queue while it does, and stops on SIGTERM."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.r = aioredis.Redis(**settings.redis)
        self.rpc = RouterClient(settings.router, settings.rpc_timeout)
        self.metrics, self.health = Metrics(), Health(max(3.0, settings.lease_seconds), self.role)
        self.lease = Lease(self.r, keys.lease(settings.queues["messages"]), settings.lease_seconds)
        self.drains = [QueueDrain(self, role, name) for role, name in settings.queues.items()]
        self.stop, self.lost = asyncio.Event(), asyncio.Event()
        self.ending = asyncio.Event()  # set once a term's lanes are finished: its other loops then end
        self.slots = asyncio.Semaphore(settings.concurrency)
        # Redis down: the standby keeps polling for the lease, but logs the outage once per change.
        self.lease_outage = Outage(logs.log, "taking the lease", self.poll_seconds())
        self.horizons = {drain.role: drain.horizon for drain in self.drains if drain.horizon is not None}

    def role(self) -> str:
        """What /healthz says this bridge is."""
        return "active" if self.lease.held and self.taking() else "standby"

    def taking(self) -> bool:
        return not (self.stop.is_set() or self.lost.is_set())

    async def run(self) -> int:
        """Stand by until the lease is free, drain while it is held; return 0 after a SIGTERM or SIGINT."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig)
        server = serve(self.settings, self.metrics, self.health) if self.settings.metrics_port else None
        watch = asyncio.create_task(self.observe_loop())
        logs.info("bridge started", holder=self.lease.holder, router=self.settings.router.host,
                  queues=list(self.settings.queues.values()))
        try:
            while not self.stop.is_set():
                if await self.try_lease():
                    await self.active_term()
                else:
                    await wait_until(self.poll_seconds(), self.stop)
        finally:
            self.stop.set()  # ends the observer too, if an error got us here
            await end([watch], ENDING_SECONDS)
            await self.close(server)
        logs.info("bridge stopped")
        return 0

    def request_stop(self, sig) -> None:
        logs.info("stopping: finishing what is in flight", signal=signal.Signals(sig).name)
        self.stop.set()

    def poll_seconds(self) -> float:
        """How often a standby tries the lease (a takeover comes within the lease plus this)."""
        return min(0.5, self.settings.lease_seconds / 5)

    async def try_lease(self) -> bool:
        try:
            taken = await self.lease.acquire()
        except (RedisError, OSError) as exc:
            self.lease_outage.failed(exc)
            return False
        self.lease_outage.succeeded()
        return taken

    async def active_term(self) -> None:
        """Everything done while holding the lease: re-drive, take and deliver, then wind down."""
        self.lost.clear()
        self.ending.clear()
        for horizon in self.horizons.values():
            horizon.reset()
        self.metrics.active.set(1)
        logs.info("lease taken: active", holder=self.lease.holder)
        tasks = []
        try:
            for drain in self.drains:
                await drain.redrive()
            tasks = [asyncio.create_task(self.renew_loop())]
            tasks += [asyncio.create_task(drain.ack_loop()) for drain in self.drains]
            takers = [asyncio.create_task(drain.take_loop()) for drain in self.drains]
            await asyncio.gather(*takers)  # they return on a stop or a lost lease
        except (RedisError, OSError) as exc:
            logs.warning("Redis failed while starting to drain", error=str(exc))
        finally:
            await self.wind_down(tasks)

    async def wind_down(self, tasks: list) -> None:
        """Finish the items in flight and acknowledge them; leave the rest in the processing lists."""
        for horizon in self.horizons.values():
            horizon.close()  # a message waiting for events is left for the next term
        cuts = await asyncio.gather(*(drain.lanes.finish(self.settings.stop_seconds) for drain in self.drains))
        for drain, cut in zip(self.drains, cuts, strict=True):
            if cut:
                logs.warning("left unfinished in the processing list", queue=drain.name, count=cut)
        self.ending.set()  # the renewer and the ack flushers end (a flush they are in puts its batch back)
        for drain in self.drains:
            drain.ack_ready.set()
        if await end(tasks, ENDING_SECONDS):
            logs.warning("a loop of the bridge did not end when told to")
        for drain in self.drains:
            try:
                await drain.flush_acks()
            except (RedisError, OSError) as exc:
                logs.warning("could not acknowledge; will be delivered again", queue=drain.name, error=str(exc))
            drain.lanes.reopen()
            drain.outstanding.clear()
        self.metrics.active.set(0)
        if self.stop.is_set():
            try:
                await self.lease.release()
            except (RedisError, OSError):
                pass  # it expires by itself
        else:
            logs.warning("lease lost: standing by")

    async def renew_loop(self) -> None:
        """Renew the lease a few times per lease period until the term ends; on losing it, stop taking."""
        while True:
            await wait_until(self.settings.lease_seconds / 3, self.ending)
            if self.ending.is_set():
                return
            if not await self.lease.renew():
                logs.warning("lease lost", holder=await self.safe_holder())
                self.lost.set()
                return

    async def safe_holder(self) -> str | None:
        try:
            return await self.lease.holder_now()
        except (RedisError, OSError):
            return None

    async def observe_loop(self) -> None:
        """Once a second until the bridge stops: queue lengths and lag for the metrics, the heartbeat for /healthz."""
        while not self.stop.is_set():
            try:
                async with self.r.pipeline(transaction=False) as pipe:
                    for drain in self.drains:
                        pipe.llen(drain.name).llen(drain.processing).llen(keys.dead(drain.name))
                    lengths = await pipe.execute()
                for i, drain in enumerate(self.drains):
                    self.metrics.queue_length.labels(drain.name).set(lengths[3 * i])
                    self.metrics.processing_length.labels(drain.name).set(lengths[3 * i + 1])
                    self.metrics.dead_length.labels(drain.name).set(lengths[3 * i + 2])
                    self.metrics.lag.labels(drain.name).set(drain.lag())
                self.health.mark(True)
            except (RedisError, OSError):
                self.health.mark(False)
            await wait_until(1, self.stop)

    async def after_events(self, taken: Taken) -> bool:
        """Wait until the events a message follows are done and the router had time to apply them
        (bridge/order.py); at once for an event, or a message whose conversations have none in flight.
        False when the term ends first."""
        if not taken.horizons or taken.item is None:
            return True
        for role, key in order.waits_for(taken.item):
            if not await self.horizons[role].follow(key, taken.horizons[role]):
                return False
        return True

    async def deliver(self, drain: QueueDrain, item: dict) -> None:
        """Give one item to the router, the way its queue's kind of item goes (SPEC 7)."""
        if drain.role == "messages":
            await self.rpc.post(call_for(item))
        elif drain.role in streams.STREAMS:
            await self.append_events(drain, [item])
        elif item.get("name") == USER_FORBIDDEN:
            await self.r.publish(keys.SPEAK_FORBIDDEN, streams.forbidden_message(item))
        elif item.get("name") == USER_TOKEN_REVOKED:
            # A stock router reads tokens only at login: nothing to tell it (README, "The bridge").
            logs.info("token revoked: no router input for it", queue=drain.name, appid=item.get("appid"),
                      uid=item.get("uid"))
        else:
            raise Malformed(f"unknown user event {item.get('name')!r}")

    async def append_events(self, drain: QueueDrain, items: list[dict]) -> None:
        """Write events to their stream in one step, in order (Malformed if one cannot go)."""
        stream, actions, _, _ = streams.STREAMS[drain.role]
        args = [keys.STREAM_MAXLEN] + [arg for item in items for arg in streams.event_args(item, drain.role)]
        results = await self.r.eval(streams.APPEND_EVENTS, 2, stream, actions, *args)
        for item, written in zip(items, results, strict=True):
            if written == 0:
                drain.metrics.skipped.labels(drain.name).inc()
                logs.info("event already in the stream, skipped", queue=drain.name, id=item.get("action_id"))
            elif written == 2:
                logs.warning("replaced a malformed chain position", key=actions, id=item.get("action_id"))

    async def close(self, server) -> None:
        if server is not None:
            server.shutdown()
            server.server_close()
        await self.rpc.close()
        await self.r.aclose()


def run(settings: Settings) -> int:
    """Run the bridge until SIGTERM/SIGINT; the process's exit status."""
    return asyncio.run(Bridge(settings).run())
