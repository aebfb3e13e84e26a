"""POST /auth/grant of this project against the original GoBelieve gobelieve_api, interleaved.

Usage: .venv/bin/python bench/original.py --original DIR --original-python PY [--rounds 10] [--seconds 2]
       [--connections 32]
DIR is a checkout of the original (richmonkey/gobelieve_api, commit fd62113); it is only read. PY is a Python
whose environment has the original's pinned PyMySQL 0.9.3 plus Flask, redis and gunicorn: newer PyMySQL builds
a TLS context for every connection (~42 ms), and the original opens one MySQL connection per request.
Ours runs as bench.py runs it (database gobelieve_bench, Redis DB 9); the original gets the database
gobelieve_orig and Redis DB 7. All four are emptied. Both run under gunicorn.conf.py's defaults.
Needs what bench.py needs: wrk, ss, MariaDB and Redis on this host.
"""
import argparse
import base64
import hashlib
import http.client
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

import pymysql
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/, so that "bench" is the package

from bench.bench import DATABASE, LUA, REDIS_DB, free_port, listening, prepare, serve, steady_wrk, wrk  # noqa: E402

ORIGINAL_DB, ORIGINAL_REDIS_DB = "gobelieve_orig", 7
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
KNOWN_USERS = 1000  # LUA["grant"] draws its uids from 1..1000
SCRIPTS = {"grant": "known user", "grant_new": "new user"}

# The original reads its settings from a top-level module named config (app.py: import config).
ORIGINAL_CONFIG = f"""\
DEBUG = False
REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
REDIS_DB = {ORIGINAL_REDIS_DB}
REDIS_PASSWORD = None
MYSQL_HOST = {MYSQL["host"]!r}
MYSQL_PORT = {MYSQL["port"]}
MYSQL_AUTOCOMMIT = True
MYSQL_CHARSET = "utf8"
MYSQL_USER = {MYSQL["user"]!r}
MYSQL_PASSWD = {MYSQL["password"]!r}
MYSQL_DATABASE = {ORIGINAL_DB!r}
MYSQL = (MYSQL_HOST, MYSQL_PORT, MYSQL_USER, MYSQL_PASSWD, MYSQL_DATABASE, MYSQL_AUTOCOMMIT, MYSQL_CHARSET)
FS_HOST = "127.0.0.1"
FS_PORT = 8083
IM_RPC_URL = "http://127.0.0.1:6666"
EXTERNAL_GROUP_ID = True
IP_PERMISSIONS = {{}}
DISABLED_APP_IDS = set()
"""

# gunicorn.conf.py's defaults (its JSON logger, metrics and relay hooks belong to this project's app).
ORIGINAL_GUNICORN = """\
import os
workers = int(os.environ.get("WEB_CONCURRENCY", (os.cpu_count() or 1) * 2))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", 4))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
graceful_timeout = 30
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", 15))
max_requests = 50000
max_requests_jitter = 5000
preload_app = True
limit_request_line = 8190
accesslog = None
errorlog = "-"
loglevel = "info"
control_socket_disable = True
"""

# The original's one table that POST /auth/grant reads (the app's secret).
CREATE_APP = f"""CREATE TABLE `{ORIGINAL_DB}`.`app` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `name` VARCHAR(255) NOT NULL DEFAULT '',
  `key` VARCHAR(64) NOT NULL DEFAULT '',
  `secret` VARCHAR(64) NOT NULL DEFAULT '',
  `store_id` BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB"""


def basic(appid: int, secret: str) -> str:
    """The Authorization header both APIs take for an app: its id and the MD5 of its secret."""
    return "Basic " + base64.b64encode(f"{appid}:{hashlib.md5(secret.encode()).hexdigest()}".encode()).decode()


def check_python(python: str) -> None:
    """Stop unless python imports the original's pinned PyMySQL."""
    found = subprocess.run([python, "-c", "import pymysql; print(pymysql.__version__)"],
                           capture_output=True, text=True)
    if found.returncode or found.stdout.strip() != "0.9.3":
        raise SystemExit(f"{python} must have PyMySQL 0.9.3: {(found.stdout + found.stderr).strip()}")


def prepare_original() -> tuple[int, str]:
    """A fresh database gobelieve_orig with one app; Redis DB 7 emptied."""
    conn = pymysql.connect(**MYSQL, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{ORIGINAL_DB}`")
        cur.execute(f"CREATE DATABASE `{ORIGINAL_DB}` DEFAULT CHARSET utf8mb4")
        cur.execute(CREATE_APP)
        cur.execute(f"INSERT INTO `{ORIGINAL_DB}`.app (name, `key`, secret) VALUES ('bench', 'bench', 'bench-secret')")
        appid = cur.lastrowid
    conn.close()
    redis.Redis(db=ORIGINAL_REDIS_DB).flushdb()
    return appid, "bench-secret"


def serve_original(source: Path, python: str, workdir: Path) -> tuple[subprocess.Popen, int]:
    """The original under gunicorn, with its config.py and gunicorn settings from workdir; source is only read."""
    (workdir / "config.py").write_text(ORIGINAL_CONFIG)
    (workdir / "gunicorn.conf.py").write_text(ORIGINAL_GUNICORN)
    port, log = free_port(), workdir / "gunicorn.log"
    # workdir is the current directory and first on PYTHONPATH: its config.py wins over one in source.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(workdir), str(source)]),
           "PYTHONDONTWRITEBYTECODE": "1"}  # no __pycache__ in source
    with open(log, "w") as stderr:
        proc = subprocess.Popen([python, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
                                 "app:app"], cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    if listening(port):
        return proc, port
    proc.terminate()
    proc.wait()
    raise SystemExit(f"the original did not start:\n{log.read_text()[-3000:]}")


def grant(conn: http.client.HTTPConnection, auth: str, uid: int) -> str:
    """POST /auth/grant for uid; its token, or stop with the answer."""
    conn.request("POST", "/auth/grant", json.dumps({"uid": uid, "user_name": "user"}),
                 {"Authorization": auth, "Content-Type": "application/json"})
    answer = conn.getresponse()
    body = answer.read()
    token = answer.status == 200 and json.loads(body).get("data", {}).get("token")
    if not token:
        raise SystemExit(f"port {conn.port}: grant of uid {uid}: {answer.status} {body[:300]!r}")
    return token


def grant_known_users(port: int, auth: str) -> None:
    """Every uid of LUA["grant"] granted once, so that its runs grant known users."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for uid in range(1, KNOWN_USERS + 1):
        grant(conn, auth, uid)
    conn.close()


def check_original(port: int, auth: str, appid: int, new_requests: int) -> str:
    """Stop unless the original stored a fresh grant's token, and a token for (nearly) every new-user request."""
    uid = 4242424242  # above the new-user script's range: never granted before
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    token = grant(conn, auth, uid)
    conn.close()
    rds = redis.Redis(db=ORIGINAL_REDIS_DB, decode_responses=True)
    stored = rds.hgetall(f"access_token_{token}")
    if stored.get("user_id") != str(uid) or stored.get("app_id") != str(appid):
        raise SystemExit(f"the original's token {token} for uid {uid} is not in its Redis: {stored}")
    tokens = sum(1 for _ in rds.scan_iter("access_token_*", count=10000))
    # Random uids from 1..10^9 repeat now and then; 1% covers that with a wide margin.
    expected = KNOWN_USERS + 1 + int(new_requests * 0.99)
    if tokens < expected:
        raise SystemExit(f"the original holds {tokens} tokens in Redis, fewer than the {expected} expected")
    return (f"the original did the work: a fresh grant answered 200 with a token stored in access_token_{token} "
            f"(user_id {uid}, app_id {appid}); {tokens} tokens in its Redis DB {ORIGINAL_REDIS_DB}, "
            f"at least {expected} expected from the known users and the measured new-user requests")


def load1() -> str:
    """The one-minute load average."""
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def measure(servers: dict, rounds: int, seconds: int, connections: int) -> tuple[dict, list]:
    """Each script on each server once per round, the first server alternating; the runs and each round's load."""
    results, loads = {(name, script): [] for name in servers for script in SCRIPTS}, []
    for _, port, auth in servers.values():
        for script in SCRIPTS:  # warm up, as bench.py's first round does
            wrk(f"http://127.0.0.1:{port}/auth/grant", LUA[script], auth, 2, connections)
    for round_ in range(rounds):
        loads.append(load1())
        order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
        for script in SCRIPTS:
            for name in order:
                proc, port, auth = servers[name]
                run = steady_wrk(proc, f"http://127.0.0.1:{port}/auth/grant", LUA[script], auth, seconds, connections)
                results[(name, script)].append(run)
                print(f"round {round_ + 1}: {name} {script}: {run['rps']:.0f}/s over {run['workers']} workers",
                      file=sys.stderr)
    return results, loads


def print_ratios(results: dict, loads: list) -> None:
    """Per round: both servers' requests/s and ours/original, for both scripts; medians last."""
    print("| round | load1 | ours known /s | original known /s | ratio | ours new /s | original new /s | ratio |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rps = {key: [run["rps"] for run in runs] for key, runs in results.items()}
    ratios = {script: [o / x for o, x in zip(rps[("ours", script)], rps[("original", script)])] for script in SCRIPTS}
    for i, load in enumerate(loads):
        cells = [f"{rps[('ours', s)][i]:.0f} | {rps[('original', s)][i]:.0f} | {ratios[s][i]:.2f}" for s in SCRIPTS]
        print(f"| {i + 1} | {load} | {' | '.join(cells)} |")
    cells = [f"{median(rps[('ours', s)]):.0f} | {median(rps[('original', s)]):.0f} | **{median(ratios[s]):.2f}**"
             for s in SCRIPTS]
    print(f"| median | | {' | '.join(cells)} |")


def print_medians(results: dict) -> None:
    """Per server and script: medians of requests/s, latency and CPU per request."""
    print("| server | grant | req/s | p50 ms | p99 ms | CPU gunicorn | MariaDB | Redis | reruns |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (name, script), runs in results.items():
        cpu = " | ".join(f"{median(r['cpu'][part] for r in runs):.0f}" for part in ("gunicorn", "mariadb", "redis"))
        print(f"| {name} | {SCRIPTS[script]} | {median(r['rps'] for r in runs):.0f} | "
              f"{median(r['p50'] for r in runs):.2f} | {median(r['p99'] for r in runs):.2f} | {cpu} | "
              f"{sum(r['reruns'] for r in runs)} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, required=True, help="checkout of richmonkey/gobelieve_api")
    parser.add_argument("--original-python", required=True, help="a Python with PyMySQL 0.9.3, Flask, redis, gunicorn")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    source = args.original.resolve()
    if not (source / "app.py").is_file() or not (source / "views" / "user.py").is_file():
        raise SystemExit(f"{source} is not a checkout of gobelieve_api (no app.py, views/user.py)")
    check_python(args.original_python)

    appid, secret, _ = prepare()
    env = {**os.environ, "MYSQL_DATABASE": DATABASE, "REDIS_DB": str(REDIS_DB), "BENCH_APPID": str(appid),
           "BENCH_SECRET": secret, "QUEUE_MAX_LENGTH": str(10**9)}
    original_appid, original_secret = prepare_original()
    servers = {}
    with tempfile.TemporaryDirectory(prefix="gobelieve-original-") as workdir:
        try:
            servers["ours"] = (*serve("app:app", env), basic(appid, secret))
            servers["original"] = (*serve_original(source, args.original_python, Path(workdir)),
                                   basic(original_appid, original_secret))
            for _, port, auth in servers.values():
                grant_known_users(port, auth)
            results, loads = measure(servers, args.rounds, args.seconds, args.connections)
            new_requests = sum(run["requests"] for run in results[("original", "grant_new")])
            verdict = check_original(servers["original"][1], servers["original"][2], original_appid, new_requests)
        finally:
            for proc, _, _ in servers.values():
                proc.terminate()
                proc.wait()

    print(f"# {platform.node()}: {os.cpu_count()} cores, wrk -t1 -c{args.connections} -d{args.seconds}s, "
          f"{args.rounds} rounds, both under gunicorn.conf.py defaults; original: {source}")
    print("ratio: ours / original in that round; who ran first alternated per round. "
          "CPU: microseconds per request, medians (MariaDB and Redis count anyone's use).\n")
    print_ratios(results, loads)
    print()
    print_medians(results)
    print(f"\n{verdict}")


if __name__ == "__main__":
    main()
