"""How the service writes to Redis: JSON text of queue items, and Lua scripts run by their SHA."""
import hashlib
import json

from redis.exceptions import NoScriptError

_shas = {}  # script text -> its SHA1, as Redis names it

# Made once: json.dumps() with options builds a new encoder on every call.
dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


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
