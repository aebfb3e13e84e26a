"""Every setting, with its default, read from the environment and checked once, when the app is made.

`load()` parses each setting from create_app's overrides or the environment; a bad value
raises SettingError naming the variable, so the process stops at start with one line
instead of failing requests later.
"""
import ipaddress
import os
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from models import queue_items


class SettingError(ValueError):
    """A setting with a value that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class Setting:
    parse: Callable[[Any], Any]
    default: Any
    env: str | None = None  # the variable's name where it differs from the setting's


def text(value) -> str:
    return str(value)


def optional_text(value) -> str | None:
    """Text, or None when unset or empty (never the word "None": it would be a password or token)."""
    return None if value is None else str(value) or None


def integer(low: int | None = None, high: int | None = None) -> Callable[[Any], int]:
    def parse(value) -> int:
        try:
            if isinstance(value, bool) or isinstance(value, float):
                raise ValueError
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError("expected an integer") from None
        if low is not None and number < low or high is not None and number > high:
            raise ValueError(f"expected {low if low is not None else '...'} to {high if high is not None else '...'}")
        return number
    return parse


def number(low: float = 0) -> Callable[[Any], float]:
    def parse(value) -> float:
        try:
            result = float(value)
        except (TypeError, ValueError):
            raise ValueError("expected a number") from None
        if not result >= low:  # also refuses nan
            raise ValueError(f"expected a number of at least {low}")
        return result
    return parse


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(value) -> str:
    """A logging level by name, in any case (gunicorn takes it in lower case)."""
    level = str(value).strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
    return level


def flag(value) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).strip().lower() in ("1", "true", "yes", "on"):
        return True
    if str(value).strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected 1 or 0")


def names(value) -> tuple[str, ...]:
    """A comma-separated list ("a, b") or a list."""
    items = value.split(",") if isinstance(value, str) else value
    return tuple(str(item).strip() for item in items if str(item).strip())


def url(value) -> str:
    """An http(s) base URL, or empty."""
    text_value = str(value).strip()
    parts = urllib.parse.urlsplit(text_value)
    try:
        parts.port  # noqa: B018 (urlsplit checks the port only when asked)
    except ValueError:
        parts = None
    if text_value and (parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.query):
        raise ValueError("expected an http:// or https:// URL (host and port)")
    return text_value


def origins(value) -> tuple[str, ...]:
    """CORS_ORIGINS: "*", or origins like https://app.example.com separated by commas; empty: no CORS."""
    items = names(value)
    for item in items:
        if item != "*" and not re.fullmatch(r"https?://[^/\s,]+", item):
            raise ValueError(f"{item!r} is not * or an origin like https://app.example.com")
    return items


UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def rate(value) -> tuple[int, int]:
    """"60/minute" -> (60, 60): requests allowed per window of seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(second|minute|hour|day)\s*", str(value))
    if not match:
        raise ValueError("expected a rate like 60/minute")
    return int(match[1]), UNITS[match[2]]


def hosts(value) -> tuple[tuple[str, int], ...]:
    """"a:7000, b:7001" -> (("a", 7000), ("b", 7001)); empty: none."""
    found = []
    for item in names(value):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError("expected host:port, separated by commas")
        found.append((host.strip("[]"), int(port)))
    return tuple(found)


@dataclass(frozen=True)
class Proxies:
    """Peers whose X-Forwarded-For / X-Real-IP are believed; unix: peers on a unix socket."""
    networks: tuple
    unix: bool


def proxies(value) -> Proxies:
    items = names(value)
    try:
        networks = tuple(ipaddress.ip_network(item, strict=False) for item in items if item != "unix")
    except ValueError:
        raise ValueError("expected addresses, networks (CIDR) or unix, separated by commas") from None
    return Proxies(networks, "unix" in items)


ROOT = os.path.dirname(os.path.abspath(__file__))
S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def media_store(value) -> str:
    """MEDIA_STORE: s3://bucket[/prefix], or a directory (relative: beside the app) that is one or can be made."""
    location = str(value).strip()
    if location.startswith("s3://"):
        bucket, _, prefix = location[len("s3://"):].partition("/")
        if not S3_BUCKET.fullmatch(bucket) or ".." in prefix or "\\" in prefix:
            raise ValueError("expected s3://<bucket>[/<prefix>] with an S3 bucket name")
        return location.rstrip("/")
    if not location or "://" in location:
        raise ValueError("expected a directory path or s3://<bucket>[/<prefix>]")
    path = os.path.normpath(os.path.join(ROOT, os.path.expanduser(location)))
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"{existing} is not a directory")
    return path


def sizes(value) -> frozenset[tuple[int, int]]:
    """"128x128, 256x256" -> {(128, 128), (256, 256)}: the thumbnail sizes served."""
    found = set()
    for item in names(value):
        match = re.fullmatch(r"(\d{1,4})x(\d{1,4})", item)
        if not match or not 0 < int(match[1]) <= 4096 or not 0 < int(match[2]) <= 4096:
            raise ValueError("expected sizes like 128x128,256x256 (1 to 4096 pixels)")
        found.add((int(match[1]), int(match[2])))
    if not found:
        raise ValueError("expected at least one size like 128x128")
    return frozenset(found)


class Config:
    MYSQL_HOST = Setting(text, "127.0.0.1")
    MYSQL_PORT = Setting(integer(1, 65535), 3306)
    MYSQL_USER = Setting(text, "root")
    MYSQL_PASSWORD = Setting(text, "")
    MYSQL_DATABASE = Setting(text, "gobelieve")
    MYSQL_POOL_SIZE = Setting(integer(1), 8)
    # Seconds: a dead or overloaded MySQL costs a request at most about this long.
    MYSQL_TIMEOUT = Setting(integer(1), 5)
    # host:port,... of MySQL replicas for the paged listings; a replica down or more than
    # MYSQL_REPLICA_MAX_LAG seconds behind is skipped (docs/SCALING.md).
    MYSQL_REPLICA_HOSTS = Setting(hosts, "")
    MYSQL_REPLICA_MAX_LAG = Setting(number(0), 5)

    REDIS_HOST = Setting(text, "127.0.0.1")
    REDIS_PORT = Setting(integer(1, 65535), 6379)
    REDIS_DB = Setting(integer(0), 0)
    REDIS_PASSWORD = Setting(optional_text, None)
    REDIS_TIMEOUT = Setting(number(0.001), 2)
    # host:port,... of Redis Cluster nodes: set, it replaces REDIS_HOST/PORT/DB (docs/SCALING.md).
    REDIS_CLUSTER_NODES = Setting(hosts, "")

    # The queues to the router (their names: models/queue_items.py).
    IM_MESSAGE_QUEUE = Setting(text, queue_items.IM_MESSAGE_QUEUE.default)
    GROUP_EVENT_QUEUE = Setting(text, queue_items.GROUP_EVENT_QUEUE.default)
    USER_EVENT_QUEUE = Setting(text, queue_items.USER_EVENT_QUEUE.default)
    RELATIONSHIP_EVENT_QUEUE = Setting(text, queue_items.RELATIONSHIP_EVENT_QUEUE.default)
    # Past this many waiting messages the router is taken to be down: posts get 503.
    QUEUE_MAX_LENGTH = Setting(integer(1), 1_000_000)
    RETRY_AFTER = Setting(integer(1), 5)

    # A stock GoBelieve router's HTTP RPC: im (messages; the bridge and the offline count) and
    # imr (online status). Empty: not configured (GET /messages/offline reads `unread`; the other
    # router-backed reads answer 501).
    IM_RPC_URL = Setting(url, "")
    IMR_RPC_URL = Setting(url, "")
    # Seconds a router-backed read waits for the router.
    ROUTER_RPC_TIMEOUT = Setting(number(0.001), 2)

    # Peers (addresses, CIDRs, or "unix" for a unix socket) whose X-Forwarded-For / X-Real-IP are believed.
    TRUSTED_PROXIES = Setting(proxies, "127.0.0.1,::1,unix")
    # Who may read /metrics: client addresses or networks (and "unix" for a peer on a unix socket),
    # or anyone sending "Authorization: Bearer <METRICS_TOKEN>" when that is set.
    METRICS_ALLOWED = Setting(proxies, "127.0.0.1,::1,unix")
    METRICS_TOKEN = Setting(optional_text, None)
    APP_CACHE_TTL = Setting(integer(0, 60), 30)
    # Browsers' origins allowed to call client-auth endpoints (views/cors.py): "*" or a comma list; empty: none.
    CORS_ORIGINS = Setting(origins, "")
    # Seconds between background outbox drains in each gunicorn worker; 0 turns it off.
    OUTBOX_RELAY_INTERVAL = Setting(number(0), 1)
    # Seconds the relay lock outlives a holder that stopped making progress (a frozen node); longer
    # than a Redis push (REDIS_TIMEOUT) takes, or such a push costs the relay its lock.
    OUTBOX_RELAY_LEASE = Setting(integer(1), 3)

    # Seconds a message post's Idempotency-Key (or msgid) is remembered.
    IDEMPOTENCY_TTL = Setting(integer(1), 86400)
    # Messages kept in each user's history_<appid>_<uid> list (GET /messages); 0 keeps none.
    HISTORY_LENGTH = Setting(integer(0), 100)
    # POST /auth/customer is open to the internet: requests per client address.
    CUSTOMER_RATE_LIMIT = Setting(rate, "60/minute")
    # POST /groups/join: wrong face-to-face codes per user (a right one does not count).
    JOIN_RATE_LIMIT = Setting(rate, "10/minute")
    # Failed authentications (unknown appid, wrong secret, bad token) per client address, and per
    # appid; past either, 429 for the failing address (views/authentication.py).
    AUTH_FAIL_RATE_LIMIT = Setting(rate, "20/minute")
    AUTH_FAIL_APP_RATE_LIMIT = Setting(rate, "100/minute")
    # Customer client ids start here; app uids must stay below it.
    CUSTOMER_ID_BASE = Setting(integer(1, 2**63 - 1), 2**53)

    MAX_GROUP_MEMBERS = Setting(integer(1), 2000)
    MAX_SUPER_GROUP_MEMBERS = Setting(integer(1), 100_000)
    MAX_BATCH = Setting(integer(1), 500)
    # GET /groups/{gid} lists at most this many members (by uid); the rest page with ?after=.
    MEMBERS_INLINE = Setting(integer(1), 2000)
    MAX_CONTENT_BYTES = Setting(integer(1), 64 * 1024)
    MAX_CONTENT_LENGTH = Setting(integer(1), 1024 * 1024, env="MAX_BODY_BYTES")

    # The bridge (bridge/, flask --app app bridge) feeds the router's HTTP RPC at IM_RPC_URL.
    BRIDGE_CONCURRENCY = Setting(integer(1), 64)  # RPCs in flight at once
    BRIDGE_RPC_TIMEOUT = Setting(number(0.001), 5)
    BRIDGE_LEASE_SECONDS = Setting(number(0.1), 5)
    BRIDGE_METRICS_PORT = Setting(integer(0, 65535), 9108)  # metrics and /healthz; 0: off
    # Where they listen: loopback unless told (0.0.0.0: every interface); /metrics obeys METRICS_ALLOWED
    # and METRICS_TOKEN there as the API's does.
    BRIDGE_METRICS_HOST = Setting(text, "127.0.0.1")
    BRIDGE_MAX_PENDING = Setting(integer(1), 5000)  # items taken and not yet acknowledged, per queue
    BRIDGE_STOP_SECONDS = Setting(number(0.001), 20)  # SIGTERM: time to finish what is in flight
    BRIDGE_APPLY_SECONDS = Setting(number(0), 0.25)  # a router's time to apply an event before what follows it

    # Media (views/media.py): a directory (default: media/ beside the app) or s3://bucket[/prefix];
    # MEDIA_S3_ENDPOINT_URL for S3-compatible stores other than AWS (credentials: boto3's usual
    # AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_DEFAULT_REGION).
    MEDIA_STORE = Setting(media_store, "media")
    MEDIA_S3_ENDPOINT_URL = Setting(url, "")
    MEDIA_STORE_TIMEOUT = Setting(number(0.001), 5)  # seconds for one call to the S3 store
    MEDIA_MAX_IMAGE_BYTES = Setting(integer(1), 10 * 1024 * 1024)
    MEDIA_MAX_AUDIO_BYTES = Setting(integer(1), 10 * 1024 * 1024)
    MEDIA_MAX_FILE_BYTES = Setting(integer(1), 50 * 1024 * 1024)
    MEDIA_MAX_PIXELS = Setting(integer(1), 40_000_000)  # decompression bombs: width x height of one frame
    MEDIA_THUMBNAIL_SIZES = Setting(sizes, "128x128,256x256")
    MEDIA_FFMPEG = Setting(text, "ffmpeg")
    MEDIA_CONVERT_SECONDS = Setting(number(0.1), 20)  # one AMR -> MP3 conversion, then it is killed
    MEDIA_MAX_MP3_BYTES = Setting(integer(1), 20 * 1024 * 1024)  # the conversion's output
    # The scheme and host of src_url (https://media.example.com); empty: the request's own.
    MEDIA_BASE_URL = Setting(url, "")

    LOG_LEVEL = Setting(log_level, "INFO")
    # One JSON line per request (method, path, status, ms, appid, request id) on stdout.
    ACCESS_LOG = Setting(flag, True)

    # flask-smorest's, fixed.
    API_TITLE = "IM application-server API"
    API_VERSION = "1.0"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "docs"
    OPENAPI_REDOC_PATH = "redoc"
    # The UIs' scripts, served by this service from pinned packages (views/docs.py): no CDN, works offline.
    OPENAPI_SWAGGER_UI_URL = Setting(text, "/docs/assets/swagger-ui/")
    OPENAPI_REDOC_URL = Setting(text, "/docs/assets/redoc/redoc.standalone.js")
    # validatorUrl none: Swagger UI would otherwise send the document to validator.swagger.io.
    OPENAPI_SWAGGER_UI_CONFIG = {"validatorUrl": None, "displayOperationId": True}


def load(overrides: dict | None = None, environ=os.environ) -> dict:
    """Every setting, parsed: an override wins over the environment, which wins over the default."""
    overrides = overrides or {}
    settings = {}
    for name, declared in vars(Config).items():
        if not name.isupper():
            continue
        if not isinstance(declared, Setting):
            settings[name] = overrides.get(name, declared)
            continue
        variable = declared.env or name
        raw = overrides[name] if name in overrides else environ.get(variable, declared.default)
        try:
            settings[name] = declared.parse(raw)
        except (ValueError, TypeError) as exc:
            raise SettingError(f"{variable}={raw!r}: {exc}") from None
    return {**overrides, **settings}
