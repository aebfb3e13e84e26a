"""Fixed-window rate limits kept in Redis, so every worker and host shares one count."""
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
