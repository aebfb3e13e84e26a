"""The bridge's settings, read once from the app's configuration and checked at start."""
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from models.queue_items import queue_names


class SettingError(ValueError):
    """A setting that stops the bridge from starting; the message names the variable."""


@dataclass(frozen=True)
class RouterAddress:
    scheme: str
    host: str
    port: int
    prefix: str  # a path the RPC paths go under, '' for none


@dataclass(frozen=True)
class Settings:
    router: RouterAddress
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


def router_address(url: str) -> RouterAddress:
    """IM_RPC_URL parsed: http(s)://host[:port][/prefix]."""
    if not url:
        raise SettingError("IM_RPC_URL is not set: give the router's HTTP RPC address, e.g. http://127.0.0.1:6666")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1 or parts.query:
        raise SettingError(f"IM_RPC_URL is not an http://host:port address: {url!r}")
    default = 443 if parts.scheme == "https" else 80
    return RouterAddress(parts.scheme, parts.hostname, port or default, parts.path.rstrip("/"))


def _positive(config, name: str, kind=float):
    try:
        value = kind(config[name])
    except (TypeError, ValueError):
        raise SettingError(f"{name} must be a number, not {config[name]!r}") from None
    if value <= 0:
        raise SettingError(f"{name} must be above 0, not {value}")
    return value


def _networks(allowed) -> tuple:
    """METRICS_ALLOWED's networks (config.proxies parsed it), or loopback alone where it is not set."""
    if allowed is None:
        return (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    return tuple(allowed.networks)


def _not_negative(config, name: str) -> float:
    try:
        value = float(config[name])
    except (TypeError, ValueError):
        raise SettingError(f"{name} must be a number, not {config[name]!r}") from None
    if value < 0:
        raise SettingError(f"{name} must be 0 or more, not {value}")
    return value


def from_config(config) -> Settings:
    """Settings from a Flask config (or any mapping with the same names); SettingError if one is wrong."""
    port = int(config["BRIDGE_METRICS_PORT"])
    if not 0 <= port < 65536:
        raise SettingError(f"BRIDGE_METRICS_PORT must be a port number or 0, not {port}")
    return Settings(
        router=router_address(config.get("IM_RPC_URL", "")),
        queues=queue_names(config),
        concurrency=_positive(config, "BRIDGE_CONCURRENCY", int),
        rpc_timeout=_positive(config, "BRIDGE_RPC_TIMEOUT"),
        lease_seconds=_positive(config, "BRIDGE_LEASE_SECONDS"),
        metrics_port=port,
        metrics_host=config.get("BRIDGE_METRICS_HOST", "127.0.0.1"),
        metrics_allowed=_networks(config.get("METRICS_ALLOWED")),
        metrics_token=config.get("METRICS_TOKEN"),
        max_pending=_positive(config, "BRIDGE_MAX_PENDING", int),
        stop_seconds=_positive(config, "BRIDGE_STOP_SECONDS"),
        apply_seconds=_not_negative(config, "BRIDGE_APPLY_SECONDS"),
        redis={"host": config["REDIS_HOST"], "port": config["REDIS_PORT"], "db": config["REDIS_DB"],
               "password": config["REDIS_PASSWORD"], "socket_timeout": max(5.0, config["REDIS_TIMEOUT"]),
               "socket_connect_timeout": config["REDIS_TIMEOUT"]},
    )
