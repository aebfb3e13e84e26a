"""gunicorn settings, each overridable from the environment (a --bind on the command line wins).

Signals: HUP re-reads this file and replaces the workers gracefully; with preload_app the
code itself is loaded once in the master, so a new release needs USR2 (or a restart).
"""
import os
import shutil
import tempfile

from gunicorn.glogging import Logger

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Requests mostly wait on MySQL and Redis: a few threads per process keep each core busy
# while a worker blocks on I/O. More processes than cores buys little here.
workers = int(os.environ.get("WEB_CONCURRENCY", str((os.cpu_count() or 1) * 2)))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# A request is bounded by MYSQL_TIMEOUT / REDIS_TIMEOUT well below this; a worker silent
# this long is stuck and is replaced.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 30
# nginx keeps upstream connections open (keepalive in deploy/nginx.conf).
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "15"))
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
loglevel = os.environ.get("LOG_LEVEL", "info").lower()


class JsonLogger(Logger):
    """gunicorn's own lines (stderr) and its access lines, when asked for, as JSON like the app's.

    Not logconfig_dict: any logconfig turns gunicorn's access logging on, which costs every
    request the building of its log fields even when nothing writes them.
    """

    def setup(self, cfg):
        super().setup(cfg)
        # Imported here, not at the top: by now the app's directory is on sys.path.
        from views.ops import JsonFormatter

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
