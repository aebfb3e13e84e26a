"""A background task's repeated failure (the outbox relay, the bridge's lease): tried less often and
logged once per change of state, not once per try. Shared by the API and the bridge."""
import logging
import time

import pymysql
import redis


def backend(exc: Exception) -> str:
    """Which backing service an exception came from, for a log line: "MySQL: ...", "Redis: ..."."""
    name = "MySQL" if isinstance(exc, pymysql.Error) else "Redis" if isinstance(exc, redis.RedisError) else "error"
    return f"{name}: {type(exc).__name__}: {exc}"


class Outage:
    """A background task's repeated failure, logged once per change of state: when it starts, every
    `remind` seconds while it lasts, when it ends. failed() and succeeded() return the seconds to
    wait before the next try: `interval` while it works, doubling up to `longest` while it fails."""

    def __init__(self, log: logging.Logger, what: str, interval: float, longest: float = 10, remind: float = 60,
                 clock=time.monotonic):
        self.log, self.what, self.interval, self.longest = log, what, interval, max(longest, interval)
        self.remind, self.clock = remind, clock
        self.since: float | None = None  # when the failures began
        self.told, self.wait = 0.0, interval

    def failed(self, exc: Exception) -> float:
        now = self.clock()
        if self.since is None:
            self.since = self.told = now
            self.log.warning("%s failing (%s)", self.what, backend(exc))
        elif now - self.told >= self.remind:
            self.told = now
            self.log.warning("%s still failing after %.0f s (%s)", self.what, now - self.since, backend(exc))
        self.wait = min(self.longest, self.wait * 2)
        return self.wait

    def succeeded(self) -> float:
        if self.since is not None:
            self.log.warning("%s works again after %.0f s", self.what, self.clock() - self.since)
            self.since = None
        self.wait = self.interval
        return self.wait
