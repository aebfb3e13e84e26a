"""One active bridge at a time: a lease key in Redis, taken with SET NX PX, renewed by compare-and-set."""
import os
import secrets
import socket
import time

from redis.exceptions import RedisError

# Extend the lease only while we still hold it; a holder that lost it must not take it back.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    """The bridge's lease; `held` says whether this process believed it held it at its last word with Redis."""

    def __init__(self, r, key: str, seconds: float):
        self.r, self.key, self.ms = r, key, int(seconds * 1000)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.held, self._confirmed = False, 0.0

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it."""
        self.held = bool(await self.r.set(self.key, self.holder, nx=True, px=self.ms))
        self._confirmed = time.monotonic() if self.held else 0.0
        return self.held

    async def renew(self) -> bool:
        """Extend the lease; False once it is lost (taken by another, or not confirmed for a whole term)."""
        try:
            self.held = bool(await self.r.eval(RENEW, 1, self.key, self.holder, self.ms))
            if self.held:
                self._confirmed = time.monotonic()
        except (RedisError, OSError):
            # Redis is away: the lease may expire there unseen, so count it lost once it would have.
            self.held = time.monotonic() - self._confirmed < self.ms / 1000
        return self.held

    async def release(self) -> None:
        """Give the lease up at once, so a standby need not wait for it to expire."""
        if self.held:
            self.held = False
            await self.r.eval(RELEASE, 1, self.key, self.holder)

    async def holder_now(self) -> str | None:
        """Who holds the lease now (for logs)."""
        value = await self.r.get(self.key)
        return value.decode() if isinstance(value, bytes) else value
