"""CPU per request of the hot endpoints, in one process, without a network or gunicorn.

Usage: .venv/bin/python bench/cpu.py [--requests 3000] [--rounds 5] [--only floor,peers,grant] [--cprofile peers]
Calls each WSGI app directly with a prepared request, so the figures are the app's own
work (its MySQL and Redis round trips included) on the database and Redis DB of bench.py.
Under valgrind (--tool=callgrind, --rounds 1) the difference between two --requests
counts gives instructions per request, which do not vary with the machine's load.
"""
import argparse
import base64
import cProfile
import hashlib
import io
import logging
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/, so that "bench" is the package

from bench.bench import DATABASE, REDIS_DB, prepare  # noqa: E402

PEER = b'{"sender": 1, "receiver": 2, "content": "hello"}'
GRANT = b'{"uid": 1, "user_name": "user"}'


def environ(path: str, body: bytes, auth: str) -> dict:
    from werkzeug.test import EnvironBuilder

    return EnvironBuilder(path=path, method="POST", data=body, content_type="application/json",
                          headers={"Authorization": auth}).get_environ()


def call(app, env: dict, body: bytes) -> None:
    statuses = []
    answer = b"".join(app({**env, "wsgi.input": io.BytesIO(body)}, lambda status, *_: statuses.append(status)))
    if not statuses[0].startswith("2"):
        raise SystemExit(f"{env['PATH_INFO']}: {statuses[0]} {answer[:300]!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="per label and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="floor,peers,grant")
    parser.add_argument("--cprofile", help="a label to profile: prints its top functions by own time")
    args = parser.parse_args()

    appid, secret, _ = prepare()
    os.environ.update(REDIS_DB=str(REDIS_DB), BENCH_APPID=str(appid), BENCH_SECRET=secret)  # for the floor
    # Metrics in files shared by processes, as under gunicorn (set before prometheus_client is imported).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="im-bench-metrics-")
    from app import create_app
    from bench.floor import app as floor

    service = create_app({"MYSQL_DATABASE": DATABASE, "REDIS_DB": REDIS_DB, "ACCESS_LOG": True})
    for handler in logging.getLogger().handlers:  # keep the JSON lines' cost, not the terminal's
        handler.stream = open(os.devnull, "w")
    service.wsgi_app.fd = os.open(os.devnull, os.O_WRONLY)  # the access lines
    auth = "Basic " + base64.b64encode(f"{appid}:{hashlib.md5(secret.encode()).hexdigest()}".encode()).decode()
    runs = {"floor": (floor, "/messages/peers", PEER), "peers": (service, "/messages/peers", PEER),
            "grant": (service, "/auth/grant", GRANT)}
    runs = {label: (app, environ(path, body, auth), body) for label, (app, path, body) in runs.items()
            if label in args.only.split(",")}
    for app, env, body in runs.values():
        for _ in range(200):  # warm up: caches, pools, the message-id block, the user's token
            call(app, env, body)
    cpu = {label: [] for label in runs}
    for _ in range(args.rounds):  # interleaved, so that a busy spell of the machine hits every label
        for label, (app, env, body) in runs.items():
            profiler = cProfile.Profile() if label == args.cprofile else None
            started = time.process_time()
            if profiler:
                profiler.enable()
            for _ in range(args.requests):
                call(app, env, body)
            if profiler:
                profiler.disable()
                pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
            cpu[label].append((time.process_time() - started) / args.requests * 1e6)
    for label, figures in cpu.items():
        us = statistics.median(figures)
        ratio = f", {us / statistics.median(cpu['floor']):.2f}x the floor" if "floor" in cpu else ""
        print(f"{label}: {us:.0f} us CPU per request (median of {args.rounds}){ratio}")


if __name__ == "__main__":
    main()
