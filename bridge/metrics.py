"""Prometheus metrics and /healthz on a port of the bridge's own, served from one small thread."""
import hmac
import ipaddress
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from config import SettingError


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


class Server(ThreadingHTTPServer):
    """Listens on an IPv6 address too (BRIDGE_METRICS_HOST=::1)."""

    def __init__(self, address, handler):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, handler)


def allowed(client: str, authorization: str, networks, token: str | None) -> bool:
    """Whether a client may read /metrics, by the API's rule (views/ops.py): its address is in
    METRICS_ALLOWED, or it sends "Authorization: Bearer <METRICS_TOKEN>"."""
    if token is not None:
        kind, _, sent = authorization.partition(" ")
        if kind.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(), token.encode()):
            return True
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def serve(settings, metrics: Metrics, health: Health) -> ThreadingHTTPServer:
    """Serve /metrics (to the clients METRICS_ALLOWED / METRICS_TOKEN let in) and /healthz on
    BRIDGE_METRICS_HOST:BRIDGE_METRICS_PORT, in a daemon thread."""
    host, port = settings.metrics_host, settings.metrics_port
    networks, token = settings.metrics_allowed, settings.metrics_token

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?")[0] == "/healthz":
                status, body = health.report()
                self._answer(status, "application/json", json.dumps(body).encode())
            elif self.path.split("?")[0] == "/metrics":
                if allowed(self.client_address[0], self.headers.get("Authorization", ""), networks, token):
                    self._answer(200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry))
                else:
                    self._answer(403, "text/plain", b"/metrics is not open to this client "
                                                    b"(METRICS_ALLOWED, METRICS_TOKEN)\n")
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
        server = Server((host, port), Handler)
    except OSError as exc:  # the port is taken, or not ours to bind: stop with one line naming the setting
        raise SettingError(f"BRIDGE_METRICS_PORT={port}: cannot listen there on {host} ({exc.strerror or exc}); "
                           "free the port, or set another one (0: no metrics port)") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="bridge-metrics", daemon=True).start()
    return server
