"""Scaling (SPEC 8): group changes across 16 groups vs 1, and costs against group size.

Usage: .venv/bin/python bench/scaling.py [--part parallel,size,disband] [--rounds 10] [--seconds 2]
       [--connections 16] [--size-rounds 7] [--sizes 1000,10000,100000] [--disbands 5]
Needs wrk, MariaDB (its SEQUENCE engine: seq_1_to_N) and Redis; uses bench.py's database
gobelieve_bench and Redis DB 9, which it empties, and gunicorn as deployed (gunicorn.conf.py).

parallel: interleaved rounds of the floor, member adds (POST /groups/{gid}/members, one random
uid each) all on one super group, and the same spread over 16 super groups, with the same wrk
connections, and the bound (bench/bound.py: less than any correct member add does) on the same
group and over the same 16 groups. Prints requests/s and CPU per request of each, each vs the
floor, 16 groups vs 1 group, and the service vs the bound.

size: groups of 1,000, 10,000 and 100,000 members (rows written with INSERT ... SELECT from a
sequence, member_count set to match), then single requests timed one at a time with
http.client against gunicorn, interleaved over the sizes, medians over the rounds.

disband: one client adds members to 4 small groups, one request at a time, while another
disbands a 100,000-member group every 2 s; the adds' latencies while no disband runs vs
while one does, and how long each disband took (the time it holds its group's lock, at most).
"""
import argparse
import base64
import hashlib
import http.client
import json
import os
import sys
import threading
import time
from pathlib import Path
from statistics import median

import pymysql

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/, so that "bench" is the package

import config  # noqa: E402
from bench.bench import DATABASE, LUA, REDIS_DB, prepare, serve, steady_wrk, wrk  # noqa: E402
from models.connection import mysql_connect_args  # noqa: E402


def db():
    return pymysql.connect(**{**mysql_connect_args(config.load({"MYSQL_DATABASE": DATABASE})), "autocommit": True})


def new_group(cur, appid: int, members: int) -> int:
    """A super group whose members are uids 1..members, written directly, member_count to match."""
    cur.execute("INSERT INTO `group` (appid, master, name, super, member_count) VALUES (%s, 1, 'bench', 1, %s)",
                (appid, members))
    gid = cur.lastrowid
    cur.execute(f"INSERT INTO group_member (group_id, uid, timestamp) SELECT %s, seq, 0 FROM seq_1_to_{members}",
                (gid,))
    return gid


def setup(appid: int, secret: str) -> tuple[str, dict]:
    auth = "Basic " + base64.b64encode(f"{appid}:{hashlib.md5(secret.encode()).hexdigest()}".encode()).decode()
    env = {**os.environ, "MYSQL_DATABASE": DATABASE, "REDIS_DB": str(REDIS_DB), "BENCH_APPID": str(appid),
           "BENCH_SECRET": secret, "QUEUE_MAX_LENGTH": str(10**9), "MAX_SUPER_GROUP_MEMBERS": str(10**7)}
    return auth, env


BOUND_ONE, BOUND = "bound: least member add, 1 group", "bound: least member add, 16 groups"


def parallel(args) -> None:
    appid, secret, _ = prepare()
    auth, env = setup(appid, secret)
    with db().cursor() as cur:
        gids = [new_group(cur, appid, 3) for _ in range(17)]
    one, many = gids[0], gids[1:]
    spread = ('wrk.method = "POST"\nlocal gids = {' + ", ".join(map(str, many)) + '}\n'
              'request = function()\n'
              '  return wrk.format(nil, string.format("/groups/%d/members", gids[math.random(1, #gids)]), nil,'
              ' string.format(\'[%d]\', math.random(1, 1000000)))\nend')
    runs = [("floor: POST /messages/peers", "bench.floor:app", "/messages/peers", LUA["peers"]),
            ("member adds, 1 group", "app:app", f"/groups/{one}/members", LUA["add"]),
            ("member adds, 16 groups", "app:app", f"/groups/{many[0]}/members", spread),
            (BOUND_ONE, "bench.bound:app", f"/groups/{one}/members", LUA["add"]),
            (BOUND, "bench.bound:app", f"/groups/{many[0]}/members", spread)]
    results, servers = {label: [] for label, *_ in runs}, {}
    lopsided = dict.fromkeys(results, 0)
    try:
        for round_ in range(args.rounds):
            for label, module, path, script in runs:
                if module not in servers:
                    servers[module] = serve(module, env)
                url = f"http://127.0.0.1:{servers[module][1]}{path}"
                if round_ == 0:
                    wrk(url, script, auth, 2, args.connections)
                run = steady_wrk(servers[module][0], url, script, auth, args.seconds, args.connections)
                lopsided[label] += run["reruns"]
                results[label].append(run)
                print(f"round {round_ + 1}: {label}: {run['rps']:.0f}/s over {run['workers']} workers",
                      file=sys.stderr)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait()
    floors = results["floor: POST /messages/peers"]
    print(f"# {os.cpu_count()} cores, wrk -t1 -c{args.connections} -d{args.seconds}s, {args.rounds} rounds, "
          "gunicorn.conf.py defaults; medians over the rounds; ratios are medians of per-round ratios")
    print("| run | requests/s | p50 ms | p99 ms | vs floor | each round vs floor | CPU us: gunicorn | MariaDB |")
    print("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
    for label, rounds in results.items():
        ratios = [r["rps"] / f["rps"] for r, f in zip(rounds, floors)]
        print(f"| {label} | {median(r['rps'] for r in rounds):.0f} | {median(r['p50'] for r in rounds):.2f} | "
              f"{median(r['p99'] for r in rounds):.2f} | {median(ratios):.2f}x | "
              f"{' '.join(f'{x:.2f}' for x in ratios)} | {median(r['cpu']['gunicorn'] for r in rounds):.0f} | "
              f"{median(r['cpu']['mariadb'] for r in rounds):.0f} |")
    print(f"\nruns run again because all their connections sat on one worker: {lopsided}")
    gains = [m["rps"] / o["rps"] for m, o in zip(results["member adds, 16 groups"], results["member adds, 1 group"])]
    print(f"\n16 groups / 1 group: {median(gains):.2f}x (each round: {' '.join(f'{x:.2f}' for x in gains)})")
    for groups, bound in (("1 group", BOUND_ONE), ("16 groups", BOUND)):
        near = [m["rps"] / b["rps"] for m, b in zip(results[f"member adds, {groups}"], results[bound])]
        print(f"{groups} / the bound: {median(near):.2f}x (each round: {' '.join(f'{x:.2f}' for x in near)})")


class Client:
    def __init__(self, port: int, auth: str):
        self.conn, self.auth = http.client.HTTPConnection("127.0.0.1", port, timeout=120), auth

    def __call__(self, method: str, path: str, body=None) -> tuple[float, int]:
        """(ms, bytes of the answer's body) of one request; raises on a non-2xx answer."""
        data = None if body is None else json.dumps(body).encode()
        start = time.perf_counter()
        self.conn.request(method, path, data, {"Authorization": self.auth, "Content-Type": "application/json"})
        response = self.conn.getresponse()
        answer = response.read()
        ms = (time.perf_counter() - start) * 1000
        if response.status >= 300:
            raise SystemExit(f"{method} {path}: {response.status} {answer[:300]!r}")
        return ms, len(answer)


def size(args) -> None:
    sizes = [int(n) for n in args.sizes.split(",")]
    appid, secret, _ = prepare()
    auth, env = setup(appid, secret)
    t0 = time.perf_counter()
    groups, copies = {}, {}
    with db().cursor() as cur:
        for n in sizes:
            groups[n] = new_group(cur, appid, n)
            copies[n] = [new_group(cur, appid, n) for _ in range(args.size_rounds + 1)]  # +1: the warm-up
    print(f"seeded {sum(sizes) * (args.size_rounds + 2):,} member rows in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)
    proc, port = serve("app:app", env)
    ops = ["add one member", "POST /messages/groups", "GET /groups/{gid}", "GET /groups/{gid}?members=0 (the header)",
           "first page (count=100)", "deep page ?after= (keyset)",
           "deep page ?start= (offset)", "disband (DELETE /groups/{gid})"]
    ms = {(n, op): [] for n in sizes for op in ops}
    got_bytes = {}
    uid = 10**7
    try:
        client = Client(port, auth)
        for round_ in range(args.size_rounds + 1):  # round 0 is a warm-up, not recorded
            for n in sizes:
                gid, deep = groups[n], n - 150
                uid += 1
                timed = {
                    "add one member": client("POST", f"/groups/{gid}/members", [uid]),
                    # Timed before the pages: right after the 40 ms offset query it measured that query's
                    # after-effects (1.49x at 100,000 members), not its own cost (it reads no member rows).
                    "POST /messages/groups": client("POST", "/messages/groups",
                                                    {"sender": 1, "receiver": gid, "content": "hello"}),
                    "GET /groups/{gid}": client("GET", f"/groups/{gid}"),
                    "GET /groups/{gid}?members=0 (the header)": client("GET", f"/groups/{gid}?members=0"),
                    "first page (count=100)": client("GET", f"/groups/{gid}/members?count=100"),
                    "deep page ?after= (keyset)": client("GET", f"/groups/{gid}/members?after={deep}&count=100"),
                    "deep page ?start= (offset)": client("GET", f"/groups/{gid}/members?start={deep}&count=100"),
                    "disband (DELETE /groups/{gid})": client("DELETE", f"/groups/{copies[n][round_]}"),
                }
                got_bytes[n] = timed["GET /groups/{gid}"][1]
                if round_:
                    for op, (took, _) in timed.items():
                        ms[(n, op)].append(took)
            print(f"size round {round_}", file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait()
    first, last = sizes[0], sizes[-1]
    print(f"# {os.cpu_count()} cores, gunicorn.conf.py defaults, one request at a time (http.client, keep-alive),"
          f" medians of {args.size_rounds} rounds interleaved over the sizes (after one warm-up round), ms")
    print("| request | " + " | ".join(f"{n:,} members" for n in sizes) + f" | {last:,} / {first:,} |")
    print("| --- | " + " | ".join("---:" for _ in sizes) + " | ---: |")
    for op in ops:
        cells = [median(ms[(n, op)]) for n in sizes]
        print(f"| {op} | " + " | ".join(f"{c:.1f}" for c in cells) + f" | {cells[-1] / cells[0]:.2f}x |")
    print("| GET /groups/{gid} bytes | " + " | ".join(f"{got_bytes[n]:,}" for n in sizes)
          + f" | {got_bytes[last] / got_bytes[first]:.2f}x |")


def disband(args) -> None:
    appid, secret, _ = prepare()
    auth, env = setup(appid, secret)
    with db().cursor() as cur:
        small = [new_group(cur, appid, 3) for _ in range(4)]
        big = [new_group(cur, appid, 100_000) for _ in range(args.disbands)]
    proc, port = serve("app:app", env)
    adds, disbands, stop = [], [], threading.Event()

    def add_members():
        client, uid = Client(port, auth), 10**7
        while not stop.is_set():
            uid += 1
            started = time.perf_counter()
            adds.append((started, client("POST", f"/groups/{small[uid % 4]}/members", [uid])[0]))

    adder = threading.Thread(target=add_members)
    try:
        adder.start()
        client = Client(port, auth)
        for gid in big:
            time.sleep(2)
            started = time.perf_counter()
            disbands.append((started, client("DELETE", f"/groups/{gid}")[0]))
        time.sleep(1)
    finally:
        stop.set()
        adder.join()
        proc.terminate()
        proc.wait()
    windows = [(start, start + ms / 1000) for start, ms in disbands]
    during = [ms for at, ms in adds if any(a <= at <= b for a, b in windows)]
    # The first 10 adds warm the worker up; adds within 50 ms of a disband count as neither.
    outside = [ms for at, ms in adds[10:] if not any(a - 0.05 <= at <= b + 0.05 for a, b in windows)]

    def cells(values):
        values = sorted(values)
        return (f"{len(values)} | {median(values):.1f} | {values[int(len(values) * 0.99)]:.1f} | "
                f"{values[-1]:.1f}")

    print(f"# {os.cpu_count()} cores, gunicorn.conf.py defaults; member adds to 4 small groups one at a time"
          f" (http.client, keep-alive) while {args.disbands} disbands of 100,000-member groups run, 2 s apart")
    print("| member adds | requests | p50 ms | p99 ms | max ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(f"| while no disband runs | {cells(outside)} |")
    print(f"| while a disband runs | {cells(during)} |")
    print(f"\ndisband of 100,000 members, ms: {' '.join(f'{ms:.0f}' for _, ms in disbands)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="parallel,size")
    parser.add_argument("--seconds", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10, help="parallel: interleaved wrk rounds")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--size-rounds", type=int, default=7)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--disbands", type=int, default=5)
    args = parser.parse_args()
    parts = args.part.split(",")
    if "parallel" in parts:
        parallel(args)
    if "size" in parts:
        if "parallel" in parts:
            print()
        size(args)
    if "disband" in parts:
        print()
        disband(args)


if __name__ == "__main__":
    main()
