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
