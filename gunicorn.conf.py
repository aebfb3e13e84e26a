"""gunicorn settings, each overridable from the environment (a --bind on the command line wins).

Each variable is checked here as config.py checks the app's: a bad value stops gunicorn with one
line naming it (bad setting: GUNICORN_THREADS='x': expected an integer), not a traceback.

Signals: HUP re-reads this file and replaces the workers gracefully; with preload_app the
code itself is loaded once in the master, so a new release needs USR2 (or a restart).
"""
import os
import re
import shutil
import tempfile

from gunicorn.glogging import Logger

from config import integer, log_level  # gunicorn put the app's directory on sys.path before reading this file


def address(value: str) -> str:
    """GUNICORN_BIND: host:port, [v6]:port, unix:/path or fd://N."""
    value = value.strip()
    if not re.fullmatch(r"unix:.+|fd://\d+|(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):\d{1,5}", value) \
            or re.fullmatch(r".*:(\d+)", value) and not value.startswith(("unix:", "fd:")) \
            and not 0 < int(value.rpartition(":")[2]) < 65536:
        raise ValueError("expected host:port, unix:/path or fd://N")
    return value


def setting(name: str, default, parse):
    """The variable parsed, or its default; a bad value ends the start with one line naming it."""
    raw = os.environ.get(name, default)
    try:
        return parse(raw)
    except ValueError as exc:
        raise SystemExit(f"bad setting: {name}={raw!r}: {exc}") from None


bind = setting("GUNICORN_BIND", "127.0.0.1:8000", address)
# Requests mostly wait on MySQL and Redis: a few threads per process keep each core busy
# while a worker blocks on I/O. More processes than cores buys little here.
workers = setting("WEB_CONCURRENCY", (os.cpu_count() or 1) * 2, integer(1, 1000))
worker_class = "gthread"
threads = setting("GUNICORN_THREADS", 4, integer(1, 1000))
# A request is bounded by MYSQL_TIMEOUT / REDIS_TIMEOUT well below this; a worker silent
# this long is stuck and is replaced.
timeout = setting("GUNICORN_TIMEOUT", 30, integer(1, 86400))
graceful_timeout = 30
# nginx keeps upstream connections open (keepalive in deploy/nginx.conf).
keepalive = setting("GUNICORN_KEEPALIVE", 15, integer(0, 3600))
# Recycle workers now and then so a slow leak cannot grow without bound; jitter keeps
# them from restarting together.
max_requests = 50000
max_requests_jitter = 5000
# Import the app once in the master (faster forks, a broken release fails at start);
# MySQL pools, Redis sockets and message-id blocks are made per worker after the fork.
preload_app = True
# gunicorn refuses over-long request lines with an HTML page; its widest limit (8190) lets
# everything through that nginx's 8 KiB header buffers do (deploy/nginx.conf), so behind
# nginx those refusals are nginx's, in the JSON envelope.
limit_request_line = 8190
# The app writes one JSON access line per request itself (ACCESS_LOG), with its request id.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = setting("LOG_LEVEL", "info", log_level).lower()


class JsonLogger(Logger):
    """gunicorn's own lines (stderr) and its access lines, when asked for, as JSON like the app's.

    Not logconfig_dict: any logconfig turns gunicorn's access logging on, which costs every
    request the building of its log fields even when nothing writes them.
    """

    def setup(self, cfg):
        super().setup(cfg)
        # Imported here, not at the top: by now the app's directory is on sys.path.
        from logformat import JsonFormatter

        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter())


logger_class = JsonLogger

# gunicorn's runtime control socket (for gunicornc) only when a path is given, so that several
# instances on one host (tests, the benchmark) never share $HOME/.gunicorn/gunicorn.ctl.
if os.environ.get("GUNICORN_CONTROL_SOCKET"):
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]
else:
    control_socket_disable = True

# Prometheus counters of all workers are summed through files in this directory.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), f"im-api-metrics-{os.getpid()}"))


def on_starting(server):
    shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def post_worker_init(worker):
    # Each worker drains the outbox in the background, so events a request could not
    # push (Redis was down) reach Redis once it is back.
    from app import start_relay_thread

    start_relay_thread(worker.wsgi)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
