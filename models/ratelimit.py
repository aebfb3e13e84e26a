"""Fixed-window rate limits kept in Redis, so every worker and host shares one count."""
import math
import threading
import time

from . import keys


def retry_after(r, name: str, limit: tuple[int, int]) -> int | None:
    """Count a hit against `name` under limit (allowed, window seconds); seconds to wait when over it, else None."""
    allowed, window = limit
    key = keys.rate_limit(name)
    pipe = r.pipeline(transaction=True)
    pipe.incr(key)
    pipe.expire(key, window, nx=True)
    pipe.ttl(key)
    hits, _, ttl = pipe.execute()
    return max(ttl, 1) if hits > allowed else None


def forgive(r, name: str, limit: tuple[int, int]) -> None:
    """Take back one hit counted against `name` (a try that turned out not to count)."""
    key = keys.rate_limit(name)
    pipe = r.pipeline(transaction=True)
    pipe.decr(key)
    pipe.expire(key, limit[1], nx=True)  # should the window have ended in between, the key still goes
    pipe.execute()


def count_hits(r, limits: list[tuple[str, tuple[int, int]]]) -> int | None:
    """Count a hit against each (name, limit) in one round trip; the longest wait among those
    over their limit, else None. (No MULTI: the names may lie in different cluster slots; a key
    left without its expiry gets it from the next hit's EXPIRE NX.)"""
    pipe = r.pipeline(transaction=False)
    for name, (_, window) in limits:
        key = keys.rate_limit(name)
        pipe.incr(key)
        pipe.expire(key, window, nx=True)
        pipe.ttl(key)
    replies = pipe.execute()
    waits = [max(replies[3 * i + 2], 1) for i, (_, (allowed, _)) in enumerate(limits) if replies[3 * i] > allowed]
    return max(waits, default=None)


class Holds:
    """Who is held back in this process, and until when: client addresses past their limit of
    failed authentications, and unknown appids past theirs. Bounded: entries that ended go at
    the next hold a minute on (SWEEP_EVERY), and when full the ones that end first go too."""

    SWEEP_EVERY = 60  # seconds

    def __init__(self, size: int = 10_000):
        self._until: dict = {}
        self._size, self._lock = size, threading.Lock()
        self._sweep_at = time.monotonic() + self.SWEEP_EVERY

    def __len__(self) -> int:  # also its truth: empty, nobody is held back
        return len(self._until)

    def wait(self, key) -> int | None:
        """Seconds `key` is still held back, or None."""
        until = self._until.get(key)
        if until is None:
            return None
        left = until - time.monotonic()
        if left <= 0:
            self._until.pop(key, None)
            return None
        return math.ceil(left)

    def hold(self, key, seconds: int) -> None:
        with self._lock:
            now = time.monotonic()
            if now >= self._sweep_at or len(self._until) >= self._size:
                self._sweep(now)
            self._until[key] = now + seconds

    def _sweep(self, now: float) -> None:
        """Drop the holds that ended; still full, the tenth that end first."""
        self._sweep_at = now + self.SWEEP_EVERY
        for key in [key for key, until in list(self._until.items()) if until <= now]:
            self._until.pop(key, None)
        if len(self._until) >= self._size:
            first = sorted(list(self._until.items()), key=lambda item: item[1])[: max(1, self._size // 10)]
            for key, _ in first:
                self._until.pop(key, None)

    def clear(self) -> None:
        self._until.clear()
