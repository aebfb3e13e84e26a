"""A bridge process for the tests (not a test module): `flask --app app bridge` on the test database
and Redis DB, with its own metrics port and log file; and the queue helpers the bridge tests share."""
import json
import os
import signal
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from helpers import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
LEASE = 2.0  # seconds; short, so takeovers are quick to test


class BridgeProcess:
    """One `flask --app app bridge` process with its own metrics port and log file."""

    def __init__(self, app, router_url: str, log_path: Path, **env):
        self.metrics_port = free_port()
        self.log_path = log_path
        self.env = {**os.environ, "MYSQL_DATABASE": app.config["MYSQL_DATABASE"],
                    "REDIS_DB": str(app.config["REDIS_DB"]), "IM_RPC_URL": router_url,
                    "BRIDGE_METRICS_PORT": str(self.metrics_port), "BRIDGE_LEASE_SECONDS": str(LEASE),
                    "BRIDGE_RPC_TIMEOUT": "1", **{k: str(v) for k, v in env.items()}}
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "ab")  # noqa: SIM115  (closed in stop(), after the process)
        self.proc = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "bridge"], cwd=ROOT,
                                     env=self.env, stdout=subprocess.DEVNULL, stderr=self.log)
        wait_for(lambda: self.health() is not None, what="the bridge's health endpoint")
        return self

    def health(self):
        """(status, body) of /healthz, or None while nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=1) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
        except OSError:
            return None

    def role(self):
        health = self.health()
        return health and health[1]["role"]

    def wait_active(self, seconds=10):
        wait_for(lambda: self.role() == "active", seconds, "the bridge to be active")
        return self

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as answer:
            return answer.read().decode()

    def metric(self, name: str, queue_name: str = "im_message_queue") -> float:
        for line in self.metrics().splitlines():
            if line.startswith(f'{name}{{queue="{queue_name}"}}'):
                return float(line.split()[-1])
        return 0.0

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.startswith("{")]

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def terminate(self, seconds=15) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(seconds)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.kill()
        self.log.close()


@contextmanager
def starter(app, router_url: str, folder: Path):
    """A function that starts bridges (start(**env) -> a running BridgeProcess); each is killed at the end."""
    started = []

    def start(**env):
        process = BridgeProcess(app, router_url, folder / f"bridge{len(started)}.log", **env)
        started.append(process)
        return process.start()

    try:
        yield start
    finally:
        for process in started:
            process.stop()


def redis_kwargs_of(app) -> dict:
    return {"host": app.config["REDIS_HOST"], "port": app.config["REDIS_PORT"], "db": app.config["REDIS_DB"]}


def push(r, name, *items):
    """Queue items as a producer does (LPUSH)."""
    for item in items:
        r.lpush(name, item if isinstance(item, (str, bytes)) else json.dumps(item))


def drained(r, *names):
    return all(r.llen(n) == 0 and r.llen(f"{{{n}}}:processing") == 0 for n in names)


