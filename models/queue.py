"""The queues shared with the IM router: item shapes, message ids and the push script."""
import hashlib
import json
import os
import threading
import time

from redis.exceptions import NoScriptError

from .errors import QueueFull

ID_BLOCK = 1000
_shas = {}  # script text -> its SHA1, as Redis names it
RESERVE_IDS = "UPDATE sequence SET value = LAST_INSERT_ID(value + %(n)s) WHERE name = 'message_id'"

# Push every item on the queue and on its users' history lists (bounded), in one atomic
# round trip. Refuse (-1, pushing nothing) when the items would take the queue past its
# bound: the router has fallen too far behind. With an idempotency key (KEYS[2] not empty)
# that a first post left, push nothing and return that post's answer.
# KEYS: queue, idempotency key or '', then every item's history keys in turn.
# ARGV: max queue length, history bound, idempotency ttl, answer to remember, then per item:
# the item and its number of history keys.
# Every redis.call costs a few microseconds of Redis's time, so the queue's length is the
# one LPUSH answers, and a history list is trimmed only once it is longer than its bound.
PUSH_MESSAGES = """
if KEYS[2] ~= '' then
  local first = redis.call('GET', KEYS[2])
  if first then return first end
end
local length
for i = 5, #ARGV, 2 do length = redis.call('LPUSH', KEYS[1], ARGV[i]) end
if length > tonumber(ARGV[1]) then
  redis.call('LTRIM', KEYS[1], (#ARGV - 4) / 2, -1)
  return -1
end
local bound, k = tonumber(ARGV[2]), 3
for i = 5, #ARGV, 2 do
  for j = k, k + tonumber(ARGV[i + 1]) - 1 do
    if redis.call('LPUSH', KEYS[j], ARGV[i]) > bound then redis.call('LTRIM', KEYS[j], 0, bound - 1) end
  end
  k = k + tonumber(ARGV[i + 1])
end
if KEYS[2] ~= '' then redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[3]) end
return 0
"""


def now_ms() -> int:
    return int(time.time() * 1000)


# Made once: json.dumps() with options builds a new encoder on every call.
dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def reserve_ids(conn, n: int) -> int:
    """Reserve n message ids in MySQL (autocommit); return the last one."""
    with conn.cursor() as cur:
        cur.execute(RESERVE_IDS, {"n": n})
        return cur.lastrowid


class MessageIds:
    """Message ids unique across processes and hosts: blocks reserved in MySQL, used up locally.

    A MySQL counter survives a Redis flush; one round trip buys ID_BLOCK ids.
    """

    def __init__(self, connect):
        self._connect = connect
        self._forget()
        # After a fork the child must not reuse the ids its parent had left.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock, self._next, self._last = threading.Lock(), 1, 0

    def next(self) -> int:
        with self._lock:
            if self._next > self._last:
                conn = self._connect()
                try:
                    self._last = reserve_ids(conn, ID_BLOCK)
                finally:
                    conn.close()
                self._next = self._last - ID_BLOCK + 1
            self._next += 1
            return self._next - 1


def message(msg_id: int, kind: str, appid: int, sender: int | None, receiver: int, content: str,
            members: list[int] | None = None) -> dict:
    """An im_message_queue item."""
    item = {"id": msg_id, "kind": kind, "appid": appid, "sender": sender, "receiver": receiver,
            "content": content, "timestamp": now_ms()}
    if members is not None:
        item["members"] = members
    return item


def group_notification(msg_id: int, appid: int, group_id: int, op: str, body: dict) -> dict:
    """A group_notification message whose content is one GoBelieve operation object."""
    content = {op: {"group_id": group_id, "timestamp": int(time.time()), **body}}
    return message(msg_id, "group_notification", appid, None, group_id, dumps(content))


def group_event(name: str, appid: int, group_id: int, **fields) -> dict:
    """A group_event_queue item; the outbox fills in action_id and previous_action_id."""
    return {"name": name, "appid": appid, "group_id": group_id, **fields, "timestamp": now_ms()}


def user_event(name: str, appid: int, uid: int, **fields) -> dict:
    """A user_event_queue item."""
    return {"name": name, "appid": appid, "uid": uid, **fields, "timestamp": now_ms()}


def run_script(r, text: str, keys: list, args: list):
    """Run a Lua script by its SHA, sending its text only when Redis does not know it yet.

    (redis-py's Script object does the same with more work on every call.)"""
    sha = _shas.get(text) or _shas.setdefault(text, hashlib.sha1(text.encode()).hexdigest())
    try:
        return r.evalsha(sha, len(keys), *keys, *args)
    except NoScriptError:
        return r.eval(text, len(keys), *keys, *args)


def history_owners(item: dict) -> list[int]:
    """Whose history lists a queued message goes to: its sender and its receiving user.

    A group or room message reaches its members through the router, which may record it."""
    owners = [item["sender"]] if item["sender"] else []  # 0 and None: the system
    if item["kind"] in ("peer", "system", "notification", "customer") and item["receiver"] not in owners:
        owners.append(item["receiver"])
    return owners


def push_messages(r, queue: str, max_length: int, history_length: int, items: list[dict],
                  idempotency: tuple[str, int, str] | None = None) -> str | None:
    """LPUSH items on the message queue and the users' history lists, unless the queue is full.

    idempotency is (Redis key, seconds to keep it, the answer to remember): when a first
    post already used the key, nothing is pushed and the first answer is returned."""
    key, ttl, answer = idempotency or ("", 0, "")
    keys, args = [queue, key], [max_length, history_length, ttl, answer]
    for item in items:
        owners = history_owners(item) if history_length > 0 else []
        keys += [f"history_{item['appid']}_{uid}" for uid in owners]
        args += [dumps(item), len(owners)]
    result = run_script(r, PUSH_MESSAGES, keys, args)
    if result == -1:
        raise QueueFull()
    return None if result == 0 else result
