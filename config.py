"""Configuration read from the environment, with defaults for a local MariaDB and Redis."""
import os


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


class Config:
    MYSQL_HOST = os.environ.get("MYSQL_HOST", "127.0.0.1")
    MYSQL_PORT = _int("MYSQL_PORT", 3306)
    MYSQL_USER = os.environ.get("MYSQL_USER", "root")
    MYSQL_PASSWORD = os.environ.get("MYSQL_PASSWORD", "")
    MYSQL_DATABASE = os.environ.get("MYSQL_DATABASE", "gobelieve")
    MYSQL_POOL_SIZE = _int("MYSQL_POOL_SIZE", 8)
    # Seconds: a dead or overloaded MySQL costs a request at most about this long.
    MYSQL_TIMEOUT = _int("MYSQL_TIMEOUT", 5)

    REDIS_HOST = os.environ.get("REDIS_HOST", "127.0.0.1")
    REDIS_PORT = _int("REDIS_PORT", 6379)
    REDIS_DB = _int("REDIS_DB", 0)
    REDIS_PASSWORD = os.environ.get("REDIS_PASSWORD") or None
    REDIS_TIMEOUT = _int("REDIS_TIMEOUT", 2)

    IM_MESSAGE_QUEUE = os.environ.get("IM_MESSAGE_QUEUE", "im_message_queue")
    GROUP_EVENT_QUEUE = os.environ.get("GROUP_EVENT_QUEUE", "group_event_queue")
    USER_EVENT_QUEUE = os.environ.get("USER_EVENT_QUEUE", "user_event_queue")
    RELATIONSHIP_EVENT_QUEUE = os.environ.get("RELATIONSHIP_EVENT_QUEUE", "relationship_event_queue")
    # Past this many waiting messages the router is taken to be down: posts get 503.
    QUEUE_MAX_LENGTH = _int("QUEUE_MAX_LENGTH", 1_000_000)
    RETRY_AFTER = _int("RETRY_AFTER", 5)

    # Peers (addresses, CIDRs, or "unix" for a unix socket) whose X-Forwarded-For / X-Real-IP are believed.
    TRUSTED_PROXIES = _list("TRUSTED_PROXIES", "127.0.0.1,::1,unix")
    APP_CACHE_TTL = min(_int("APP_CACHE_TTL", 30), 60)
    # Seconds between background outbox drains in each gunicorn worker; 0 turns it off.
    OUTBOX_RELAY_INTERVAL = float(os.environ.get("OUTBOX_RELAY_INTERVAL", 1))

    # Seconds a message post's Idempotency-Key (or msgid) is remembered.
    IDEMPOTENCY_TTL = _int("IDEMPOTENCY_TTL", 86400)
    # Messages kept in each user's history_<appid>_<uid> list (GET /messages); 0 keeps none.
    HISTORY_LENGTH = _int("HISTORY_LENGTH", 100)
    # POST /auth/customer is open to the internet: requests per client address.
    CUSTOMER_RATE_LIMIT = os.environ.get("CUSTOMER_RATE_LIMIT", "60/minute")
    # Customer client ids start here; app uids must stay below it.
    CUSTOMER_ID_BASE = _int("CUSTOMER_ID_BASE", 2**53)

    MAX_GROUP_MEMBERS = _int("MAX_GROUP_MEMBERS", 2000)
    MAX_SUPER_GROUP_MEMBERS = _int("MAX_SUPER_GROUP_MEMBERS", 100_000)
    MAX_BATCH = _int("MAX_BATCH", 500)
    MAX_CONTENT_BYTES = _int("MAX_CONTENT_BYTES", 64 * 1024)
    MAX_CONTENT_LENGTH = _int("MAX_BODY_BYTES", 1024 * 1024)

    # The bridge (bridge/, flask --app app bridge) feeds a stock router's HTTP RPC at IM_RPC_URL.
    IM_RPC_URL = os.environ.get("IM_RPC_URL", "")
    BRIDGE_CONCURRENCY = _int("BRIDGE_CONCURRENCY", 64)  # RPCs in flight at once
    BRIDGE_RPC_TIMEOUT = float(os.environ.get("BRIDGE_RPC_TIMEOUT", 5))
    BRIDGE_LEASE_SECONDS = float(os.environ.get("BRIDGE_LEASE_SECONDS", 5))
    BRIDGE_METRICS_PORT = _int("BRIDGE_METRICS_PORT", 9108)  # metrics and /healthz; 0: off
    BRIDGE_MAX_PENDING = _int("BRIDGE_MAX_PENDING", 5000)  # items taken and not yet acknowledged, per queue
    BRIDGE_STOP_SECONDS = float(os.environ.get("BRIDGE_STOP_SECONDS", 20))  # SIGTERM: time to finish in-flight

    LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
    # One JSON line per request (method, path, status, ms, appid, request id) on stdout.
    ACCESS_LOG = os.environ.get("ACCESS_LOG", "1") == "1"

    API_TITLE = "IM application-server API"
    API_VERSION = "1.0"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "docs"
    OPENAPI_SWAGGER_UI_URL = os.environ.get(
        "OPENAPI_SWAGGER_UI_URL", "https://cdn.jsdelivr.net/npm/swagger-ui-dist/"
    )
