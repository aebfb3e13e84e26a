"""The bridge's settings: its part of the app's, which config.load() parsed and checked. The bridge
adds one check of its own: that IM_RPC_URL is set (the API runs without it)."""
from dataclasses import dataclass

from config import SettingError
from models.queue_items import queue_names
from models.router import Address, address


@dataclass(frozen=True)
class Settings:
    router: Address
    queues: dict  # role ("messages", "group_events", ...) -> queue name
    concurrency: int
    rpc_timeout: float
    lease_seconds: float
    metrics_port: int
    metrics_host: str  # the address /metrics and /healthz listen on
    metrics_allowed: tuple  # networks that may read /metrics (the API's METRICS_ALLOWED)
    metrics_token: str | None  # a bearer token that opens /metrics too (METRICS_TOKEN)
    max_pending: int
    stop_seconds: float
    apply_seconds: float  # a router's time to apply an event before a message that follows it
    redis: dict  # keyword arguments for redis.asyncio.Redis


def router_address(url: str) -> Address:
    """IM_RPC_URL, http(s)://host[:port][/prefix] (config.url checked it), in parts; SettingError if unset."""
    if not url:
        raise SettingError("IM_RPC_URL is not set: give the router's HTTP RPC address, e.g. http://127.0.0.1:6666")
    return address(url)


def from_config(config) -> Settings:
    """The bridge's settings from the app's config (config.load()'s parsed values)."""
    return Settings(
        router=router_address(config["IM_RPC_URL"]),
        queues=queue_names(config),
        concurrency=config["BRIDGE_CONCURRENCY"],
        rpc_timeout=config["BRIDGE_RPC_TIMEOUT"],
        lease_seconds=config["BRIDGE_LEASE_SECONDS"],
        metrics_port=config["BRIDGE_METRICS_PORT"],
        metrics_host=config["BRIDGE_METRICS_HOST"],
        metrics_allowed=config["METRICS_ALLOWED"].networks,
        metrics_token=config["METRICS_TOKEN"],
        max_pending=config["BRIDGE_MAX_PENDING"],
        stop_seconds=config["BRIDGE_STOP_SECONDS"],
        apply_seconds=config["BRIDGE_APPLY_SECONDS"],
        redis={"host": config["REDIS_HOST"], "port": config["REDIS_PORT"], "db": config["REDIS_DB"],
               "password": config["REDIS_PASSWORD"], "socket_timeout": max(5.0, config["REDIS_TIMEOUT"]),
               "socket_connect_timeout": config["REDIS_TIMEOUT"]},
    )
