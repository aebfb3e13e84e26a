"""How the service writes to Redis: Lua scripts run by their SHA, and writes to several keys in an
order safe to cut short (in_order)."""
import hashlib

from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

_shas = {}  # script text -> its SHA1, as Redis names it


def sha(text: str) -> str:
    """The SHA1 by which Redis knows a script (EVALSHA; a pipeline can run it so)."""
    return _shas.get(text) or _shas.setdefault(text, hashlib.sha1(text.encode()).hexdigest())


def run_script(r, text: str, keys: list, args: list):
    """Run a Lua script by its SHA, sending its text only when Redis does not know it yet.

    (redis-py's Script object does the same with more work on every call.)"""
    try:
        return r.evalsha(sha(text), len(keys), *keys, *args)
    except NoScriptError:
        return r.eval(text, len(keys), *keys, *args)


class _OneByOne:
    """A pipeline's interface whose commands run as they are queued, each before the next is sent."""

    def __init__(self, r):
        self._r, self._results = r, []

    def __getattr__(self, name):
        command = getattr(self._r, name)

        def queue(*args, **kwargs):
            self._results.append(command(*args, **kwargs))
            return self
        return queue

    def execute(self) -> list:
        return self._results


def in_order(r):
    """Where to queue writes to keys of several slots, in an order that is safe to cut short.

    On a single Redis they go in one MULTI (atomic, one round trip); a Redis Cluster has no MULTI
    across slots, so there each write is done before the next is sent, in the order queued. This
    is the one place the two differ for such writes. A script among them goes as EVAL (its text):
    none of them is on a hot path."""
    return _OneByOne(r) if isinstance(r, RedisCluster) else r.pipeline(transaction=True)
