"""The process's Redis client: made once by the factory (create_app), a RedisCluster when
REDIS_CLUSTER_NODES is set."""
import redis
from flask import current_app
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry


def make_redis(config) -> redis.Redis | RedisCluster:
    """The process's Redis client (a RedisCluster when REDIS_CLUSTER_NODES is set); redis-py
    re-creates its sockets after a fork."""
    common = dict(
        password=config["REDIS_PASSWORD"],
        socket_timeout=config["REDIS_TIMEOUT"],
        socket_connect_timeout=config["REDIS_TIMEOUT"],
        decode_responses=True,
        health_check_interval=30,
        # One quick retry (a dropped idle socket), not seconds of backoff while Redis is down.
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
    )
    if config["REDIS_CLUSTER_NODES"]:
        return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in config["REDIS_CLUSTER_NODES"]],
                            **common)
    return redis.Redis(host=config["REDIS_HOST"], port=config["REDIS_PORT"], db=config["REDIS_DB"], **common)


def get_redis() -> redis.Redis:
    return current_app._get_current_object().extensions["redis"]
