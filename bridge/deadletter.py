"""Dead letters: items the router refused for good, kept in `{queue}:dead` to be looked at and re-driven.

An entry is JSON: {"id", "queue", "item" (the item's exact text), "status" (the router's
HTTP status, 0 when the item itself was malformed), "reason", "time"}. The id is the
item's id (message) or action_id (event), else one made up, so an operator can name it.
"""
import json
import secrets
from datetime import UTC, datetime

from models import keys

# Move an item from the processing list to the dead letters in one step.
# KEYS: processing, dead. ARGV: the item, the entry.
BURY = """
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('LREM', KEYS[1], -1, ARGV[1])
return 1
"""
# Put a dead letter's item back on its queue (at the back, as a new item), unless it is gone.
# KEYS: dead, queue. ARGV: the entry, the item.
REDRIVE = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


def entry_id(item: dict | None) -> str:
    """What an operator calls a dead letter: the item's id or action_id, else a made-up one."""
    for field in ("id", "action_id"):
        if isinstance(item, dict) and item.get(field) is not None:
            return str(item[field])
    return "x" + secrets.token_hex(4)


def entry(queue: str, raw: bytes, item: dict | None, status: int, reason: str) -> str:
    """The JSON text of a dead letter."""
    return json.dumps({"id": entry_id(item), "queue": queue, "item": raw.decode("utf-8", "replace"),
                       "status": status, "reason": reason,
                       "time": datetime.now(UTC).isoformat(timespec="milliseconds")},
                      ensure_ascii=False)


async def bury(r, queue: str, raw: bytes, item: dict | None, status: int, reason: str) -> str:
    """Move an item from the processing list to the dead letters; return the entry's id."""
    text = entry(queue, raw, item, status, reason)
    await r.eval(BURY, 2, keys.processing(queue), keys.dead(queue), raw, text)
    return json.loads(text)["id"]


def entries(r, queue: str) -> list[dict]:
    """A queue's dead letters, oldest first, each with its exact text under "raw"."""
    found = []
    for text in reversed(r.lrange(keys.dead(queue), 0, -1)):
        text = text.decode() if isinstance(text, bytes) else text
        try:
            found.append({**json.loads(text), "raw": text})
        except ValueError:
            found.append({"id": "?", "queue": queue, "item": text, "status": 0, "reason": "unreadable entry",
                          "time": "", "raw": text})
    return found


def redrive(r, queue: str, dead_letter: dict) -> bool:
    """Put one dead letter's item back on its queue; False if it was already gone."""
    return bool(r.eval(REDRIVE, 2, keys.dead(queue), queue, dead_letter["raw"], dead_letter["item"]))
