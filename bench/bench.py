"""Throughput and latency of the hot endpoints under gunicorn as deployed, against a floor.

Usage: .venv/bin/python bench/bench.py [--seconds 2] [--rounds 12] [--connections 32] [--only "label,..."]
Needs wrk (apt-get install wrk), ss (iproute2), MariaDB and Redis. Uses the database gobelieve_bench and
Redis DB 9, which it empties. Prints a table; docs/PERFORMANCE.md holds a run of it.
"""
import argparse
import base64
import hashlib
import os
import platform
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import pymysql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import config  # noqa: E402
from models.connection import mysql_connect_args  # noqa: E402
from models.migrations import init_db  # noqa: E402

DATABASE, REDIS_DB = "gobelieve_bench", 9

# wrk scripts: each request gets its own random ids, as an app server's traffic would.
LUA = {
    "peers": 'wrk.method = "POST"\nrequest = function()\n'
             '  return wrk.format(nil, nil, nil, string.format(\'{"sender": %d, "receiver": %d, "content": "hello"}\','
             ' math.random(1, 100000), math.random(1, 100000)))\nend',
    "grant": 'wrk.method = "POST"\nrequest = function()\n'
             '  return wrk.format(nil, nil, nil,'
             ' string.format(\'{"uid": %d, "user_name": "user"}\', math.random(1, 1000)))\nend',
    # Almost every uid new: the user row and its token (and its record) are written.
    "grant_new": 'wrk.method = "POST"\nrequest = function()\n'
                 '  return wrk.format(nil, nil, nil,'
                 ' string.format(\'{"uid": %d, "user_name": "user"}\', math.random(1, 1000000000)))\nend',
    "settings": 'wrk.method = "POST"\nrequest = function()\n'
                '  return wrk.format(nil, string.format("/users/%d", math.random(100001, 101000)), nil,'
                ' string.format(\'{"name": "user %d", "mute": true}\', math.random(1, 1000)))\nend',
    "bind": 'wrk.method = "POST"\nrequest = function()\n'
            '  return wrk.format(nil, string.format("/users/%d/bind", math.random(1, 1000)), nil,'
            ' string.format(\'{"apns_device_token": "%032x"}\', math.random(1, 2000000000)))\nend',
    "create": 'wrk.method = "POST"\nrequest = function()\n'
              '  return wrk.format(nil, nil, nil, \'{"master": 1, "name": "bench", "members": [1, 2, 3]}\')\nend',
    "add": 'wrk.method = "POST"\nrequest = function()\n'
           '  return wrk.format(nil, nil, nil, string.format(\'[%d]\', math.random(1, 1000000)))\nend',
    "get": 'wrk.method = "GET"',
    # Random pairs (the path's uid and the body's never meet), so most requests make a new row.
    "friends": 'wrk.method = "POST"\nrequest = function()\n'
               '  return wrk.format(nil, string.format("/users/%d/friends", math.random(1, 100000)), nil,'
               ' string.format(\'{"friend_uid": %d}\', math.random(100001, 200000)))\nend',
    "blacklist": 'wrk.method = "POST"\nrequest = function()\n'
                 '  return wrk.format(nil, string.format("/users/%d/blacklist", math.random(1, 100000)), nil,'
                 ' string.format(\'{"uid": %d}\', math.random(100001, 200000)))\nend',
    "batch": 'wrk.method = "POST"\nlocal items = {}\nfor i = 1, 100 do\n'
             '  items[i] = string.format(\'{"sender": 1, "receiver": %d, "content": "hello"}\', i)\nend\n'
             'wrk.body = "[" .. table.concat(items, ",") .. "]"',
}


# Print the first failed answer, so a failed run says why.
REPORT_ERROR = """
local reported = false
response = function(status, headers, body)
  if status >= 300 and not reported then io.write("first error: ", status, " ", body, "\\n"); reported = true end
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare() -> tuple[int, str, list[int]]:
    """A fresh bench database with one app and two groups; Redis DB emptied."""
    settings = config.load({"MYSQL_DATABASE": DATABASE})
    conn = pymysql.connect(**mysql_connect_args(settings, database=False))
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{DATABASE}`")
    init_db(settings)
    conn = pymysql.connect(**mysql_connect_args(settings))
    with conn.cursor() as cur:
        cur.execute("INSERT INTO app (name, `key`, secret) VALUES ('bench', 'bench', 'bench-secret')")
        appid = cur.lastrowid
        gids = []
        for big in (1, 0):  # a super group that members are added to, a small one with 3 members to read
            cur.execute("INSERT INTO `group` (appid, master, name, super) VALUES (%s, 1, 'bench', %s)", (appid, big))
            gids.append(cur.lastrowid)
            cur.executemany("INSERT INTO group_member (group_id, uid) VALUES (%s, %s)",
                            [(cur.lastrowid, uid) for uid in (1, 2, 3)])
    import redis
    redis.Redis(db=REDIS_DB).flushdb()
    return appid, "bench-secret", gids


def listening(port: int, seconds: float = 10) -> bool:
    """Whether something accepts connections on the local port within seconds."""
    for _ in range(int(seconds * 10)):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def serve(module: str, env: dict) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind",
                             f"127.0.0.1:{port}", module], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not listening(port):
        raise SystemExit(f"{module} did not start")
    return proc, port


def wrk(url: str, script: str, auth: str, seconds: int, connections: int) -> dict:
    """One wrk run; with "workers": how many gunicorn processes held its connections halfway through."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        # wrk never seeds Lua's generator: unseeded, every run would draw the same ids as the last
        # (a "new user" run would grant the users of the run before it).
        f.write(f"math.randomseed({random.randrange(2**31)})\n" + script + REPORT_ERROR)
    run = subprocess.Popen(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", f.name,
                            "-H", f"Authorization: {auth}", "-H", "Content-Type: application/json", url],
                           stdout=subprocess.PIPE, text=True)
    time.sleep(seconds / 2)
    port = url.split(":")[2].split("/")[0]
    held = subprocess.run(["ss", "-Htnp", "state", "established", f"( sport = :{port} )"],
                          capture_output=True, text=True).stdout
    out = run.communicate()[0]
    os.unlink(f.name)
    if run.returncode:
        raise SystemExit(f"wrk failed on {url}:\n{out}")
    if "Non-2xx" in out:
        raise SystemExit(f"non-2xx answers from {url}:\n{out}")

    def ms(label):
        found = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        if not found:
            raise SystemExit(f"no {label}% latency from {url}:\n{out}")
        value, unit = found.groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]

    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]), "p50": ms(50), "p99": ms(99),
            "requests": int(re.search(r"(\d+) requests in", out)[1]),
            "workers": len(set(re.findall(r"pid=(\d+)", held)))}


# The kernel hands wrk's connections to whichever gunicorn worker accepts first: now and then all
# of them land on one worker, which runs on one core of two (the floor drops to a third). Such a
# run measures that luck, not the code, and is run again, up to this many times in all.
LOPSIDED_TRIES = 4
TICK_US = 1_000_000 / os.sysconf("SC_CLK_TCK")


def steady_wrk(server: subprocess.Popen, url: str, script: str, auth: str, seconds: int, connections: int) -> dict:
    """wrk() until its connections sat on more than one worker (LOPSIDED_TRIES at most); with "reruns"
    and "cpu": microseconds of CPU per request in the gunicorn processes, MariaDB and Redis."""
    reruns = 0
    while True:
        before = cpu_ticks(server.pid)
        result = wrk(url, script, auth, seconds, connections)
        after = cpu_ticks(server.pid)
        if result["workers"] > 1 or reruns == LOPSIDED_TRIES - 1:
            break
        reruns += 1
    per_request = TICK_US / result["requests"]
    return result | {"reruns": reruns, "cpu": {part: (after[part] - before[part]) * per_request
                                               for part in after}}


def cpu_ticks(server_pid: int) -> dict:
    """CPU time used so far (clock ticks) by the gunicorn master and its workers, MariaDB and Redis."""
    ticks = {"gunicorn": 0, "mariadb": 0, "redis": 0}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # ended meanwhile
        name, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        part = ("gunicorn" if server_pid in (int(pid), int(fields[1])) else
                "mariadb" if name == "mariadbd" else "redis" if name == "redis-server" else None)
        if part:
            ticks[part] += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=12, help="runs of every endpoint, in turn; the median is shown")
    parser.add_argument("--only", help='comma-separated labels to run, e.g. "POST /auth/grant" (the floor always runs)')
    args = parser.parse_args()

    appid, secret, (gid, small_gid) = prepare()
    auth = "Basic " + base64.b64encode(f"{appid}:{hashlib.md5(secret.encode()).hexdigest()}".encode()).decode()
    env = {**os.environ, "MYSQL_DATABASE": DATABASE, "REDIS_DB": str(REDIS_DB), "BENCH_APPID": str(appid),
           "BENCH_SECRET": secret, "QUEUE_MAX_LENGTH": str(10**9)}
    runs = [("floor: POST /messages/peers", "bench.floor:app", "/messages/peers", "peers"),
            ("POST /messages/peers", "app:app", "/messages/peers", "peers"),
            ("POST /auth/grant", "app:app", "/auth/grant", "grant"),
            ("POST /auth/grant (new user)", "app:app", "/auth/grant", "grant_new"),
            ("POST /users/{uid} (settings)", "app:app", "/users/1", "settings"),
            ("POST /users/{uid}/bind", "app:app", "/users/1/bind", "bind"),
            ("POST /groups", "app:app", "/groups", "create"),
            ("POST /groups/{gid}/members", "app:app", f"/groups/{gid}/members", "add"),
            ("GET /groups/{gid}", "app:app", f"/groups/{small_gid}", "get"),  # the group has 3 members
            ("POST /users/{uid}/friends", "app:app", "/users/1/friends", "friends"),  # the script picks the uids
            ("POST /users/{uid}/blacklist", "app:app", "/users/1/blacklist", "blacklist"),
            ("POST /messages/peers/batch (100 per request)", "app:app", "/messages/peers/batch", "batch")]
    results, servers = {label: [] for label, *_ in runs}, {}
    wanted = args.only.split(",") if args.only else [run[0] for run in runs]
    runs = [run for run in runs if run[1] == "bench.floor:app" or run[0] in wanted]
    try:
        for round_ in range(args.rounds):  # interleaved: a slow spell of the machine hits every endpoint
            for label, module, path, script in runs:
                if module not in servers:
                    servers[module] = serve(module, env)
                url = f"http://127.0.0.1:{servers[module][1]}{path}"
                if round_ == 0:
                    wrk(url, LUA[script], auth, 2, args.connections)  # warm up
                run = steady_wrk(servers[module][0], url, LUA[script], auth, args.seconds, args.connections)
                results[label].append(run)
                print(f"round {round_ + 1}: {label}: {run['rps']:.0f}/s over {run['workers']} workers",
                      file=sys.stderr)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait()
    floors = results.pop("floor: POST /messages/peers")
    print(f"# {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"wrk -t1 -c{args.connections} -d{args.seconds}s, {args.rounds} rounds, gunicorn.conf.py defaults")
    print("Medians over the rounds; 'vs floor' is the median of each round's ratio to the floor run just before it.")
    print("CPU: microseconds per request in gunicorn (app and workers), MariaDB and Redis, medians over the rounds.")
    print("| endpoint | requests/s | p50 ms | p99 ms | vs floor | each round | CPU gunicorn | MariaDB | Redis |")
    print("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for label, rounds in {"floor: POST /messages/peers": floors, **results}.items():
        if not rounds:
            continue
        ratios = [r["rps"] / f["rps"] for r, f in zip(rounds, floors)]
        cpu = " | ".join(f"{median(r['cpu'][part] for r in rounds):.0f}" for part in ("gunicorn", "mariadb", "redis"))
        print(f"| {label} | {median(r['rps'] for r in rounds):.0f} | {median(r['p50'] for r in rounds):.2f} | "
              f"{median(r['p99'] for r in rounds):.2f} | {median(ratios):.2f}x | "
              f"{' '.join(f'{ratio:.2f}' for ratio in ratios)} | {cpu} |")
    print(f"\nruns run again because all their connections sat on one worker: "
          f"{sum(r['reruns'] for rounds in (floors, *results.values()) for r in rounds)}")
    batch = results["POST /messages/peers/batch (100 per request)"]
    if batch:
        print(f"\nbatch: {median(r['rps'] for r in batch) * 100:.0f} messages/s")


if __name__ == "__main__":
    main()
