"""Prometheus metrics and /healthz on a port of the bridge's own, served from one small thread."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .settings import SettingError


class Metrics:
    """The bridge's counters and gauges, labelled by queue name."""

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.delivered = Counter("bridge_delivered", "Items the router took", ["queue"], registry=r)
        self.retried = Counter("bridge_retried", "Deliveries that failed and will be tried again", ["queue"],
                               registry=r)
        self.dead = Counter("bridge_dead_lettered", "Items moved to the dead letters", ["queue"], registry=r)
        self.skipped = Counter("bridge_skipped", "Events not written: their action_id was already in the stream",
                               ["queue"], registry=r)
        self.queue_length = Gauge("bridge_queue_length", "Items waiting in the queue", ["queue"], registry=r)
        self.processing_length = Gauge("bridge_processing_length", "Items taken and not yet acknowledged",
                                       ["queue"], registry=r)
        self.dead_length = Gauge("bridge_dead_length", "Dead letters kept", ["queue"], registry=r)
        self.lag = Gauge("bridge_lag_seconds", "Age of the oldest item taken and not yet delivered", ["queue"],
                         registry=r)
        self.active = Gauge("bridge_active", "1 while this bridge holds the lease", registry=r)


class Health:
    """What /healthz says: the loop's last heartbeat, whether Redis answered it, active or standby."""

    def __init__(self, stale_after: float, role):
        self.stale_after, self.role = stale_after, role  # role() -> "active" | "standby", read at each request
        self.beat, self.redis_ok = 0.0, False

    def mark(self, redis_ok: bool) -> None:
        self.beat, self.redis_ok = time.monotonic(), redis_ok

    def report(self) -> tuple[int, dict]:
        alive = time.monotonic() - self.beat < self.stale_after
        ok = alive and self.redis_ok
        return (200 if ok else 503), {"status": "ok" if ok else "failing", "role": self.role(),
                                      "redis": self.redis_ok, "loop": alive}


def serve(port: int, metrics: Metrics, health: Health) -> ThreadingHTTPServer:
    """Serve /metrics and /healthz on `port` (all interfaces, as a scraper expects), in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?")[0] == "/healthz":
                status, body = health.report()
                self._answer(status, "application/json", json.dumps(body).encode())
            elif self.path.split("?")[0] == "/metrics":
                self._answer(200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry))
            else:
                self._answer(404, "text/plain", b"not found\n")

        def _answer(self, status, content_type, body):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # scrapes are not worth a log line each
            pass

    try:
        server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    except OSError as exc:  # the port is taken, or not ours to bind: stop with one line naming the setting
        raise SettingError(f"BRIDGE_METRICS_PORT={port}: cannot listen there ({exc.strerror or exc}); "
                           "free the port, or set another one (0: no metrics port)") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="bridge-metrics", daemon=True).start()
    return server
