"""Whether Redis still holds what MySQL recorded (SPEC 5.3): a marker key a lost Redis lacks.

A restart without persistence, a FLUSHALL or a failover to an empty replica removes the marker.
On a Redis Cluster there is one marker in every slot, so that it moves with its slot when the
cluster is resharded; a check reads one slot of each master.

A missing marker means a new Redis or a lost one. A sample of the record tells which: the first
and last rows of each record table, whose keys a Redis that lost nothing holds (a request writes
MySQL and then Redis; a revoke or a delete removes the row first). All there, or nothing
recorded: the marker is written and Redis counts as whole. One missing: Redis lost its data
until restore-redis writes it back and marks it.
"""
import logging
import time

from redis.cluster import RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from . import keys

log = logging.getLogger(__name__)
SAMPLE_EACH_END = 10
SAMPLE = " UNION ALL ".join(
    f"(SELECT {token} AS token, appid, uid FROM {table} WHERE {live} ORDER BY appid {order}, uid {order} LIMIT %(n)s)"
    for token, table, live in (("token", "user_token", "token IS NOT NULL"), ("''", "user_setting", "TRUE"),
                               ("''", "user_do_not_disturb", "TRUE"), ("''", "user_device", "TRUE"))
    for order in ("ASC", "DESC"))
LOST = ("Redis lost its data (its marker key is missing): the tokens, user settings, do-not-disturb flags "
        "and device tokens recorded in MySQL are not in Redis, so users cannot log in at the router. "
        "Run: flask --app app restore-redis")
_slot_tags: list[str] = []  # a hash tag of each cluster slot, made once
_reported = False  # whether this process has logged the loss (once, not once a request)


def slot_tags() -> list[str]:
    """For each cluster slot, a short text whose key slot it is."""
    if not _slot_tags:
        tags, missing, i = [""] * REDIS_CLUSTER_HASH_SLOTS, REDIS_CLUSTER_HASH_SLOTS, 0
        while missing:
            slot = key_slot(str(i).encode())
            if not tags[slot]:
                tags[slot], missing = str(i), missing - 1
            i += 1
        _slot_tags[:] = tags
    return _slot_tags


def mark(r) -> None:
    """Write the marker (in every slot of a cluster)."""
    value = f"written {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
    if isinstance(r, RedisCluster):
        r.mset_nonatomic({keys.redis_marker(tag): value for tag in slot_tags()})
    else:
        r.set(keys.redis_marker(), value)


def _probes(r) -> list[str]:
    """The marker keys to read: one; in a cluster, that of each master's first slot."""
    if not isinstance(r, RedisCluster):
        return [keys.redis_marker()]
    first = {}
    for slot, nodes in r.nodes_manager.slots_cache.items():
        if nodes and slot < first.get(nodes[0].name, REDIS_CLUSTER_HASH_SLOTS):
            first[nodes[0].name] = slot
    tags = slot_tags()
    return [keys.redis_marker(tags[slot]) for slot in first.values()]


def sample_keys(conn) -> list[str]:
    """The Redis keys of a sample of the record (none when nothing is recorded)."""
    with conn.cursor() as cur:
        cur.execute(SAMPLE, {"n": SAMPLE_EACH_END})
        found = cur.fetchall()
    return sorted({keys.token(row["token"]) if row["token"] else keys.user(row["appid"], row["uid"]) for row in found})


def intact(r, conn) -> bool:
    """Whether Redis holds what MySQL recorded (marking it when it does); logs a loss once a process."""
    global _reported
    probes = _probes(r)
    if r.exists(*probes) == len(probes):
        _reported = False
        return True
    sample = sample_keys(conn)
    if not sample or r.exists(*sample) == len(sample):
        mark(r)
        return True
    if not _reported:
        log.error(LOST)
        _reported = True
    return False
