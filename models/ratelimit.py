"""Fixed-window rate limits kept in Redis, so every worker and host shares one count."""
import re

from .errors import InvalidField

UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def parse_limit(text: str) -> tuple[int, int]:
    """"60/minute" -> (60, 60): requests allowed per window of seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(second|minute|hour|day)\s*", text)
    if not match:
        raise InvalidField(f"Bad rate limit {text!r}: expected like 60/minute.")
    return int(match[1]), UNITS[match[2]]


def retry_after(r, name: str, limit: str) -> int | None:
    """Count a hit against `name`; seconds to wait when over the limit, else None."""
    allowed, window = parse_limit(limit)
    key = f"rate_limit_{name}"
    pipe = r.pipeline(transaction=True)
    pipe.incr(key)
    pipe.expire(key, window, nx=True)
    pipe.ttl(key)
    hits, _, ttl = pipe.execute()
    return max(ttl, 1) if hits > allowed else None
