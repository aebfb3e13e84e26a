"""A gunicorn worker's memory under minutes of steady mixed load: RSS each minute, and what grew.

Usage: .venv/bin/python bench/memory.py [--minutes 15] [--rate 100] [--database gobelieve_memory] [--no-trace]
One gunicorn worker (4 threads) on a MariaDB database of this run's own (dropped first) and a
redis-server of its own on a free port. The worker is never recycled (max_requests off); it
runs tracemalloc (1 frame) and, on SIGUSR2, writes a snapshot; the run diffs the one taken after
the warm-up minutes against the last one and prints the lines whose allocations grew most.
docs/PERFORMANCE.md holds a run of it.
"""
import argparse
import base64
import hashlib
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import pymysql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import config  # noqa: E402
from models.connection import mysql_connect_args  # noqa: E402
from models.migrations import init_db  # noqa: E402

# The worker's extra hooks: the project's gunicorn.conf.py, plus tracemalloc and a snapshot on SIGUSR2.
HOOKS = """
exec(open({conf!r}).read())
_relay_hook = post_worker_init
max_requests = 0  # no recycling: the run watches one worker's whole life


def post_worker_init(worker):
    import os, signal, tracemalloc
    _relay_hook(worker)
    if os.environ.get("MEMORY_TRACE") != "1":
        return
    tracemalloc.start(1)
    def dump(signum, frame):
        tracemalloc.take_snapshot().dump({snapshots!r} + "/" + str(int(__import__("time").time())))
    signal.signal(signal.SIGUSR2, dump)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, what: str) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not start")


def prepare(database: str) -> tuple[int, str]:
    """A fresh database with one app; its id and secret."""
    settings = config.load({"MYSQL_DATABASE": database})
    conn = pymysql.connect(**mysql_connect_args(settings, database=False))
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
    init_db(settings)
    conn = pymysql.connect(**mysql_connect_args(settings))
    with conn.cursor() as cur:
        cur.execute("INSERT INTO app (name, `key`, secret) VALUES ('memory', 'memory', 'memory-secret')")
        return cur.lastrowid, "memory-secret"


def basic(appid: int, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{appid}:{hashlib.md5(secret.encode()).hexdigest()}".encode()).decode()


class Load:
    """Threads sending a mix of requests at a steady total rate; counts answers by status."""

    def __init__(self, port: int, auth: str, appid: int, rate: float, threads: int = 4):
        self.port, self.auth, self.appid = port, auth, appid
        self.interval = threads / rate
        self.statuses, self.lock, self.stop = {}, threading.Lock(), threading.Event()
        self.groups = []
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def start(self):
        for thread in self.threads:
            thread.start()

    def requests(self):
        """One of the mix: (method, path, body, authorization, X-Forwarded-For); wrong secrets come through the
        proxy (127.0.0.1, trusted) from a random address each, so the app's own calls are never
        held back while they fill the per-process holds of failed authentications."""
        uid, other = random.randint(1, 100_000), random.randint(1, 100_000)
        kind = random.random()
        if kind < 0.35:
            return "POST", "/messages/peers", {"sender": uid, "receiver": other, "content": "hello"}, self.auth, None
        if kind < 0.5:
            return "POST", "/auth/grant", {"uid": uid, "user_name": f"user {uid}"}, self.auth, None
        if kind < 0.55 or not self.groups:
            return "POST", "/groups", {"master": uid, "name": "g", "members": [uid, other]}, self.auth, None
        gid = random.choice(self.groups)
        if kind < 0.65:
            return "POST", f"/groups/{gid}/members", [other], self.auth, None
        if kind < 0.75:
            return "GET", f"/groups/{gid}", None, self.auth, None
        if kind < 0.8:
            return "POST", f"/users/{uid}", {"name": f"name {uid}"}, self.auth, None
        if kind < 0.85:
            return "POST", f"/users/{uid}/friends", {"friend_uid": other}, self.auth, None
        if kind < 0.9:
            return "POST", "/auth/grant", {"uid": uid}, basic(self.appid, "wrong"), f"10.{uid % 256}.{other % 256}.1"
        if kind < 0.95:
            return "GET", f"/nothing/{uid}", None, self.auth, None
        return "POST", "/messages/peers", {"sender": "x"}, self.auth, None

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        next_at = time.monotonic()
        while not self.stop.is_set():
            method, path, body, auth, address = self.requests()
            data = None if body is None else json.dumps(body)
            headers = {"Authorization": auth, "Content-Type": "application/json"}
            if address:
                headers["X-Forwarded-For"] = address
            try:
                conn.request(method, path, data, headers)
                response = conn.getresponse()
                answer = response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                status, answer = "error", b""
            if status == 200 and method == "POST" and path == "/groups" and len(self.groups) < 1000:
                self.groups.append(json.loads(answer)["data"]["group_id"])
            with self.lock:
                self.statuses[status] = self.statuses.get(status, 0) + 1
            next_at += self.interval
            time.sleep(max(0.0, next_at - time.monotonic()))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def worker_of(master: int) -> int:
    for _ in range(100):
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise SystemExit("no gunicorn worker")


def snapshot(pid: int, directory: str) -> tracemalloc.Snapshot:
    before = set(os.listdir(directory))
    os.kill(pid, signal.SIGUSR2)
    for _ in range(600):
        new = set(os.listdir(directory)) - before
        if new:
            time.sleep(1)  # let it finish writing
            return tracemalloc.Snapshot.load(os.path.join(directory, new.pop()))
        time.sleep(0.1)
    raise SystemExit("no snapshot from the worker")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=15)
    parser.add_argument("--rate", type=float, default=100, help="requests a second, in all")
    parser.add_argument("--database", default="gobelieve_memory")
    parser.add_argument("--no-trace", action="store_true", help="RSS alone, without tracemalloc's own memory")
    args = parser.parse_args()

    appid, secret = prepare(args.database)
    work = tempfile.mkdtemp(prefix="gobelieve-memory-")
    redis_port, port = free_port(), free_port()
    redis_server = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no"], stdout=subprocess.DEVNULL)
    wait_port(redis_port, "redis-server")
    hooks = Path(work, "gunicorn_memory.py")
    hooks.write_text(HOOKS.format(conf=str(ROOT / "gunicorn.conf.py"), snapshots=work))
    env = {**os.environ, "MYSQL_DATABASE": args.database, "REDIS_PORT": str(redis_port), "REDIS_DB": "0",
           "MEMORY_TRACE": "0" if args.no_trace else "1",
           "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "4", "ACCESS_LOG": "0", "QUEUE_MAX_LENGTH": str(10**9)}
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(hooks), "--bind", f"127.0.0.1:{port}",
                               "app:app"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, "gunicorn")
        worker = worker_of(server.pid)
        load = Load(port, basic(appid, secret), appid, args.rate)
        load.start()
        print(f"minute 0: RSS {rss_kib(worker) / 1024:.1f} MiB (worker {worker})", flush=True)
        first = None
        for minute in range(1, args.minutes + 1):
            time.sleep(60)
            print(f"minute {minute}: RSS {rss_kib(worker) / 1024:.1f} MiB, answers {dict(load.statuses)}", flush=True)
            if minute == 2 and not args.no_trace:
                first = snapshot(worker, work)
        if first is not None:
            last = snapshot(worker, work)
            size = [sum(stat.size for stat in shot.statistics("filename")) / 1024 for shot in (first, last)]
            print(f"Python heap traced: {size[0]:.0f} KiB at minute 2, {size[1]:.0f} KiB at the end")
            print("changed most since minute 2 (tracemalloc, 1 frame):")
            for stat in last.compare_to(first, "lineno")[:12]:
                print(f"  {stat}")
        load.stop.set()
        print(f"worker {worker} still the same process: {worker_of(server.pid) == worker}")
    finally:
        server.terminate()
        server.wait()
        redis_server.kill()
        redis_server.wait()


if __name__ == "__main__":
    main()
