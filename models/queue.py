"""The queues shared with the IM router: message ids, and the Queues object that pushes (what goes on
them: queue_items.py)."""
import json
import logging
import os
import threading

from redis.cluster import RedisCluster
from redis.exceptions import RedisError

from . import keys
from .errors import QueueFull
from .queue_items import dumps, history_owners, queue_names
from .redis_io import run_script

ID_BLOCK = 1000
RESENT_POST_TTL = 60  # seconds: a resent push arrives within the client's retry, a few seconds at most
log = logging.getLogger(__name__)
RESERVE_IDS = "UPDATE sequence SET value = LAST_INSERT_ID(value + %(n)s) WHERE name = 'message_id'"

# Push every item on the queue and on its users' history lists (bounded), in one atomic
# round trip. Refuse (-1, pushing nothing) when the items would take the queue past its
# bound: the router has fallen too far behind. When the post's key (KEYS[2]: its Idempotency-Key,
# or its first message's id) was left by a first post, push nothing and return that post's answer.
# KEYS: queue, the post's key, then every item's history keys in turn.
# ARGV: max queue length, history bound, idempotency ttl, answer to remember, then per item:
# the item and its number of history keys.
# Every redis.call costs a few microseconds of Redis's time, so the queue's length is the
# one LPUSH answers, and a history list is trimmed only once it is longer than its bound.
PUSH_MESSAGES = """
local first = redis.call('GET', KEYS[2])
if first then return first end
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
redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[3])
return 0
"""
# In a Redis Cluster the history lists lie in other slots: this is PUSH_MESSAGES on the queue and
# the post's key alone (one slot: the key carries the queue's name as its hash tag), the commit
# point of a post; the history lists follow in a pipeline (docs/SCALING.md).
# KEYS: queue, the post's key. ARGV: max queue length, idempotency ttl, answer to remember, items.
PUSH_QUEUED = """
local first = redis.call('GET', KEYS[2])
if first then return first end
local length
for i = 4, #ARGV do length = redis.call('LPUSH', KEYS[1], ARGV[i]) end
if length > tonumber(ARGV[1]) then
  redis.call('LTRIM', KEYS[1], #ARGV - 3, -1)
  return -1
end
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[2])
return 0
"""


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


class Queues:
    """The queues shared with the router, made once from the settings (create_app): their names,
    bounds and the message-id source, with the Redis client that pushes to them."""

    def __init__(self, r, ids: MessageIds, config):
        self.redis, self.ids = r, ids
        names = queue_names(config)
        self.messages, self.group_events = names["messages"], names["group_events"]
        self.user_events, self.relationship_events = names["user_events"], names["relationship_events"]
        self.max_length = config["QUEUE_MAX_LENGTH"]
        self.history_length = config["HISTORY_LENGTH"]
        self.idempotency_ttl = config["IDEMPOTENCY_TTL"]
        # The one place the single-Redis and the Redis Cluster paths differ, chosen once here, so
        # the single-Redis hot path pays no test per post.
        self.cluster = isinstance(r, RedisCluster)
        self._push = self._push_in_steps if self.cluster else self._push_fused

    def names(self) -> tuple[str, ...]:
        return self.messages, self.group_events, self.user_events, self.relationship_events

    def push_messages(self, items: list[dict], answer: dict, idempotency: tuple[int, str, str] | None = None) -> dict:
        """LPUSH items on the message queue and the users' history lists, unless the queue is full
        (QueueFull); return the answer.

        idempotency is (appid, caller, key): when a first post already used the key, nothing
        is pushed and the first post's answer is returned. Without one, the first item's id is
        the key for a minute: a push resent by redis-py's retry after a timeout, whose first
        copy did run, pushes nothing."""
        key, ttl = self._post_key(items, idempotency)
        result = self._push(items, key, ttl, dumps(answer))
        if result == -1:
            raise QueueFull()
        return answer if result == 0 else json.loads(result)

    def _post_key(self, items: list[dict], idempotency: tuple[int, str, str] | None) -> tuple[str, int]:
        """The post's de-duplication key and how long it is kept: its Idempotency-Key's, or its first id's."""
        if idempotency:
            return keys.idempotency(self.messages, *idempotency), self.idempotency_ttl
        return keys.posted(self.messages, items[0]["id"]), RESENT_POST_TTL

    def _push_fused(self, items: list[dict], key: str, ttl: int, answer: str):
        """The push on a single Redis: queue and history lists in one script (atomic, one round trip)."""
        script_keys, args = [self.messages, key], [self.max_length, self.history_length, ttl, answer]
        for item in items:
            owners = history_owners(item) if self.history_length > 0 else []
            script_keys += [keys.history(item["appid"], uid) for uid in owners]
            args += [dumps(item), len(owners)]
        return run_script(self.redis, PUSH_MESSAGES, script_keys, args)

    def _push_in_steps(self, items: list[dict], key: str, ttl: int, answer: str):
        """The push in a Redis Cluster: the queue step (bound, idempotency: the commit point) in one
        script, then the history lists; a post the queue step finds already made pushes no history again."""
        texts = [dumps(item) for item in items]
        result = run_script(self.redis, PUSH_QUEUED, [self.messages, key], [self.max_length, ttl, answer, *texts])
        if result == 0 and self.history_length > 0:
            self._push_histories(items, texts)
        return result

    def _push_histories(self, items: list[dict], texts: list[str]) -> None:
        """Each queued message on its owners' history lists, bounded (a Redis Cluster's second step)."""
        pipe = self.redis.pipeline(transaction=False)
        for item, text in zip(items, texts):
            for uid in history_owners(item):
                pipe.lpush(keys.history(item["appid"], uid), text)
                pipe.ltrim(keys.history(item["appid"], uid), 0, self.history_length - 1)
        try:
            pipe.execute()
        except RedisError as exc:  # the messages are queued: the post succeeded, its history did not
            log.warning("message %s queued, history lists not written: %s", items[0]["id"], exc)


def history(r, appid: int, uid: int) -> list[dict]:
    """The user's recent messages, newest first."""
    return [json.loads(raw) for raw in r.lrange(keys.history(appid, uid), 0, -1)]
