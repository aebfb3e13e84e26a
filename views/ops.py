"""Operations: health probes, request ids, JSON logs and Prometheus metrics."""
import json
import logging
import os
import re
import sys
import time
import uuid

from flask import Flask, Response, current_app, g, has_request_context, request
from flask.views import MethodView
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from models import outbox
from models.db import get_db, get_redis, ping_mysql
from models.errors import Unavailable
from .common import Blueprint, ok

blp = Blueprint("ops", __name__, description="Health checks for load balancers and orchestrators")
access_log = logging.getLogger("im.access")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# Its _count series are the request counts by endpoint and status: one metric update per request.
REQUESTS = Histogram("im_api_request_seconds", "Time to answer a request", ["method", "endpoint", "status"],
                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


@blp.route("/healthz")
class Health(MethodView):
    def get(self):
        """The process is up."""
        return ok({"status": "ok"})


@blp.route("/readyz")
class Ready(MethodView):
    def get(self):
        """MySQL and Redis are reachable (503 when one is not)."""
        try:
            ping_mysql(get_db())
            get_redis().ping()
        except Exception as exc:
            raise Unavailable(f"Not ready: {type(exc).__name__}.") from exc
        return ok({"status": "ready"})


class BacklogCollector:
    """Queue lengths and the outbox backlog, read when Prometheus scrapes."""

    def __init__(self, app: Flask):
        self.app = app

    def collect(self):
        lengths = GaugeMetricFamily("im_api_queue_length", "Items waiting in a Redis queue", labels=["queue"])
        backlog = GaugeMetricFamily("im_api_outbox_pending", "Committed queue items not yet in Redis")
        try:
            r = self.app.extensions["redis"]
            for name in ("IM_MESSAGE_QUEUE", "GROUP_EVENT_QUEUE", "USER_EVENT_QUEUE"):
                lengths.add_metric([self.app.config[name]], r.llen(self.app.config[name]))
            backlog.add_metric([], outbox.pending(get_db()))
        except Exception as exc:  # a scrape must not fail because a backing service did
            logging.getLogger(__name__).warning("metrics: %s", exc)
        yield lengths
        yield backlog


def metrics():
    """Prometheus text format: this process's counters, or every worker's under gunicorn."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(REQUESTS)
    registry.register(BacklogCollector(current_app._get_current_object()))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def start_request():
    g.started = time.perf_counter()
    given = request.headers.get("X-Request-ID", "")
    g.request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def finish_request(response: Response) -> Response:
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    endpoint = request.url_rule.rule if request.url_rule else "unmatched"
    REQUESTS.labels(request.method, endpoint, response.status_code).observe(elapsed)
    response.headers["X-Request-ID"] = g.get("request_id", "")
    if current_app.config["ACCESS_LOG"]:
        caller = g.get("caller")
        access_log.info("request", extra={"fields": {
            "method": request.method, "path": request.path, "status": response.status_code,
            "ms": round(elapsed * 1000, 2), "appid": caller.appid if caller else None,
            "remote": request.remote_addr}})
    return response


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request id of the request being served."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": round(record.created, 3), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        if has_request_context():
            entry["request_id"] = g.get("request_id")
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def init_app(app: Flask) -> None:
    """Request ids, metrics and JSON logs to stdout (left alone under the test runner)."""
    app.before_request(start_request)
    app.after_request(finish_request)
    app.add_url_rule("/metrics", "metrics", metrics)
    if not app.testing:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(app.config["LOG_LEVEL"])
