"""CPU per request of the hot endpoints, in one process, without a network or gunicorn.

Usage: .venv/bin/python bench/cpu.py [--requests 5000] [--cprofile "POST /auth/grant"]
Calls each WSGI app directly with a prepared request, so the figures are the app's own
work plus its MySQL/Redis round trips (on the same database and Redis DB as bench.py).
"""
import argparse
import base64
import cProfile
import hashlib
import io
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


def environ(path: str, body: bytes, auth: str) -> dict:
    from werkzeug.test import EnvironBuilder

    return EnvironBuilder(path=path, method="POST", data=body, content_type="application/json",
                          headers={"Authorization": auth}).get_environ()


def call(app, env: dict, body: bytes) -> bytes:
    statuses = []
    env = {**env, "wsgi.input": io.BytesIO(body)}
    answer = b"".join(app(env, lambda status, headers, exc_info=None: statuses.append(status)))
    if not statuses[0].startswith("2"):
        raise SystemExit(f"{env['PATH_INFO']}: {statuses[0]} {answer[:300]!r}")
    return answer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="per label and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cprofile", help="label to profile, printing the top functions by own time")
    args = parser.parse_args()

    appid, secret, _ = prepare()
    os.environ.update(REDIS_DB=str(REDIS_DB), BENCH_APPID=str(appid), BENCH_SECRET=secret)  # for the floor
    # Metrics in files shared by processes, as under gunicorn (set before prometheus_client is imported).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="im-bench-metrics-")
    import logging

    from app import create_app
    from bench.floor import app as floor

    service = create_app({"MYSQL_DATABASE": DATABASE, "REDIS_DB": REDIS_DB, "ACCESS_LOG": os.environ.get("ACCESS_LOG", "1") == "1"})
    for handler in logging.getLogger().handlers:  # keep the JSON lines' cost, not the terminal's
        handler.stream = open(os.devnull, "w")
    auth = "Basic " + base64.b64encode(f"{appid}:{hashlib.md5(secret.encode()).hexdigest()}".encode()).decode()
    peer = b'{"sender": 1, "receiver": 2, "content": "hello"}'
    runs = [("floor: POST /messages/peers", floor, "/messages/peers", peer),
            ("POST /messages/peers", service, "/messages/peers", peer),
            ("POST /auth/grant", service, "/auth/grant", b'{"uid": 1, "user_name": "user"}')]
    envs = {label: environ(path, body, auth) for label, _, path, body in runs}
    for label, app, _, body in runs:
        for _ in range(200):  # warm up: caches, pools, the message-id block, the user's token
            call(app, envs[label], body)
    cpu = {label: [] for label, *_ in runs}
    for _ in range(args.rounds):  # interleaved, so that a busy moment of the machine hits every label
        for label, app, _, body in runs:
            profiler = cProfile.Profile() if label == args.cprofile else None
            started = time.process_time()
            if profiler:
                profiler.enable()
            for _ in range(args.requests):
                call(app, envs[label], body)
            if profiler:
                profiler.disable()
                profiler.dump_stats("/tmp/prof.out") if os.environ.get("DUMP") else None
                pstats.Stats(profiler).sort_stats(os.environ.get("SORT", "tottime")).print_stats(
                    int(os.environ.get("TOP", 30)))
            cpu[label].append((time.process_time() - started) / args.requests * 1e6)
    floor = statistics.median(cpu[runs[0][0]])
    for label, figures in cpu.items():
        median = statistics.median(figures)
        print(f"{label}: {median:.0f} us CPU per request (median of {args.rounds}), {median / floor:.2f}x the floor")

if __name__ == "__main__":
    main()
