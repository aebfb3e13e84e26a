"""Operations: health probes, request ids, Prometheus metrics and the access log (its shape: logformat.py)."""
import hmac
import ipaddress
import logging
import os
import random
import re
import sys
import time

from flask import Flask, Response, current_app, request
from flask.views import MethodView
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from logformat import JsonFormatter, access_line
from models import marker, outbox
from models.db import get_db, ping_mysql
from models.errors import Forbidden, Unavailable
from models.redis_client import get_redis
from outage import backend

from . import schemas
from .authentication import client_address
from .common import Blueprint, ok
from .docs import responds
from .fields import setting

blp = Blueprint("ops", __name__, description="Health checks for load balancers and orchestrators")
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# Its _count series are the request counts by endpoint and status: one metric update per request.
REQUESTS = Histogram("im_api_request_seconds", "Time to answer a request", ["method", "endpoint", "status"],
                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
# Media (views/media.py): uploads and their bytes by kind, thumbnails and MP3s made, refusals by kind and error.
MEDIA_UPLOADS = Counter("im_api_media_uploads", "Media objects uploaded", ["kind"])
MEDIA_BYTES = Counter("im_api_media_upload_bytes", "Bytes of media uploaded", ["kind"])
MEDIA_CONVERSIONS = Counter("im_api_media_conversions", "Thumbnails and MP3s made and kept", ["kind"])
MEDIA_FAILURES = Counter("im_api_media_failures", "Media uploads, thumbnails and conversions refused or failed",
                         ["kind", "error"])
METRICS = (REQUESTS, MEDIA_UPLOADS, MEDIA_BYTES, MEDIA_CONVERSIONS, MEDIA_FAILURES)


@blp.route("/healthz")
class Health(MethodView):
    @responds("healthz", schemas.StatusSchema)
    def get(self):
        """The process is up.

        For a liveness probe: answers 200 without touching MySQL or Redis."""
        return ok({"status": "ok"})


@blp.route("/readyz")
class Ready(MethodView):
    @responds("readyz", schemas.StatusSchema, errors=(Unavailable,))
    def get(self):
        """MySQL and Redis are reachable and Redis holds what MySQL recorded (503 naming what is not).

        For a readiness probe or a load balancer's health check: take the node out while it
        answers 503."""
        checks = (("MySQL", lambda: ping_mysql(get_db())), ("Redis", lambda: get_redis().ping()))
        down = [f"{name} is not answering ({type(exc).__name__})"
                for name, check in checks if (exc := failure(check)) is not None]
        if down:
            raise Unavailable(f"Not ready: {'; '.join(down)}.")
        if not marker.intact(get_redis(), get_db()):
            raise Unavailable(marker.LOST)
        return ok({"status": "ready"})


def failure(check) -> Exception | None:
    """What check() raised, or None."""
    try:
        check()
    except Exception as exc:  # any failure of a backend means not ready
        return exc
    return None


class BacklogCollector:
    """Queue lengths and the outbox backlog, read when Prometheus scrapes."""

    def __init__(self, app: Flask):
        self.app = app

    def collect(self):
        # Each gauge on its own: the outbox backlog (MySQL) matters most while Redis is down.
        lengths = GaugeMetricFamily("im_api_queue_length", "Items waiting in a Redis queue", labels=["queue"])
        backlog = GaugeMetricFamily("im_api_outbox_pending", "Committed queue items not yet in Redis")
        queues = self.app.extensions["queues"]
        try:
            found = [(name, queues.redis.llen(name)) for name in queues.names()]
        except Exception as exc:  # a scrape must not fail because a backing service did
            logging.getLogger(__name__).warning("metrics: queue lengths unread (%s)", backend(exc))
        else:
            yield from self._with(lengths, found)
        try:
            pending = outbox.pending(get_db())
        except Exception as exc:
            logging.getLogger(__name__).warning("metrics: outbox backlog unread (%s)", backend(exc))
        else:
            yield from self._with(backlog, [(None, pending)])

    @staticmethod
    def _with(family, values):
        for label, value in values:
            family.add_metric([] if label is None else [label], value)
        yield family


def metrics_allowed() -> bool:
    """Whether the caller may read /metrics: its address is in METRICS_ALLOWED, or it sends METRICS_TOKEN."""
    token = setting("METRICS_TOKEN")
    if token is not None:
        kind, _, sent = request.headers.get("Authorization", "").partition(" ")
        if kind.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(), token.encode()):
            return True
    allowed, address = setting("METRICS_ALLOWED"), client_address()
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # no IP address: a peer on a unix socket
        return allowed.unix
    return any(ip in network for network in allowed.networks)


def metrics():
    """Prometheus text format: this process's counters, or every worker's under gunicorn."""
    if not metrics_allowed():
        raise Forbidden("/metrics is not open to this client (METRICS_ALLOWED, METRICS_TOKEN).")
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        for metric in METRICS:
            registry.register(metric)
    registry.register(BacklogCollector(current_app._get_current_object()))
    # content_type, not mimetype: Flask would add a second charset to the one CONTENT_TYPE_LATEST has.
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


class Observed:
    """WSGI middleware: a request id (X-Request-ID passed through or made), the latency
    histogram and one JSON access line per request.

    It wraps Flask from outside rather than hooking into it, so that this work, done for
    every request, costs no request-context lookups. The access line is one os.write() of
    the encoded line, not a logging record (whose record, handler and formatter took a
    twelfth of a short request's instructions); one write of a line under 4 KiB to a pipe,
    or of any line to an O_APPEND file, is never interleaved with another process's.
    """

    def __init__(self, app: Flask, fd: int = 1):
        self.wsgi_app, self.fd = app.wsgi_app, fd
        self.access_log = app.config["ACCESS_LOG"]
        self.histograms = {}  # (method, endpoint, status) -> REQUESTS.labels(...), which is slower to find

    def __call__(self, environ: dict, start_response):
        started = time.perf_counter()
        given = environ.get("HTTP_X_REQUEST_ID")
        # random's generator is reseeded in every forked worker; os.urandom would cost a system call.
        request_id = environ["im.request_id"] = given if given and REQUEST_ID.fullmatch(given) \
            else f"{random.getrandbits(128):032x}"
        status = "500"  # what gunicorn answers if the app raises

        def start(line: str, headers: list, exc_info=None):
            nonlocal status
            status = line[:3]
            headers.append(("X-Request-ID", request_id))
            return start_response(line, headers, exc_info)

        try:
            return self.wsgi_app(environ, start)
        finally:
            self.record(environ, int(status), time.perf_counter() - started)

    def record(self, environ: dict, status: int, elapsed: float) -> None:
        method = environ["REQUEST_METHOD"] if environ["REQUEST_METHOD"] in METHODS else "other"  # bounded labels
        key = (method, environ.get("im.endpoint", "unmatched"), status)
        histogram = self.histograms.get(key) or self.histograms.setdefault(key, REQUESTS.labels(*key))
        histogram.observe(elapsed)
        if self.access_log:
            os.write(self.fd, access_line(environ, status, elapsed))


def init_app(app: Flask) -> None:
    """Request ids, metrics and JSON logs to stdout (left alone under the test runner)."""
    app.wsgi_app = Observed(app)
    app.add_url_rule("/metrics", "metrics", metrics)
    if not app.testing:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(app.config["LOG_LEVEL"])
        # JsonFormatter writes neither: skip gathering them for every record (logging HOWTO, "Optimization").
        # Not logProcesses / logThreads: other formatters (gunicorn's) read %(process)d, which None breaks.
        logging.logMultiprocessing = False
        logging._srcfile = None
