"""Messages per second from im_message_queue through the bridge into a router stand-in that answers at once.

Usage: .venv/bin/python bench/bridge.py [--messages 50000] [--conversations 1000] [--concurrency 64]
           [--rounds 3] [--groups 2000] [--outage SECONDS]
Needs Redis; uses Redis DB 9 (BENCH_REDIS_DB overrides it), which it empties. The stand-in (an
asyncio HTTP/1.1 server in a process of its own) answers every POST with 200 at once and records
each body; at the end every conversation's messages must have arrived in queue order, each once.
Two figures: messages to groups without fresh changes (--messages over --conversations groups),
and groups created and messaged at once (--groups groups, each with its create and three member
adds queued, then its create notification and a message: these wait for their events and the
router's apply time, BRIDGE_APPLY_SECONDS). --outage SECONDS instead runs a router down that long
with --messages waiting: the bridge's memory meanwhile, then the rate it drains at.
docs/PERFORMANCE.md ("Bridge") holds a run.
"""
import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

import redis

ROOT = Path(__file__).resolve().parent.parent
REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "9"))
QUEUE, EVENTS = "im_message_queue", "group_event_queue"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def standin(port: int, expected: int, results) -> None:
    """Answer POSTs with 200 until `expected` have come; send (bodies, first, last) to `results`."""
    bodies, times, done = [], [], None

    async def serve(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                bodies.append(await reader.readexactly(length))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                if len(bodies) == 1:
                    times.append(time.perf_counter())
                if len(bodies) >= expected and not done.done():
                    times.append(time.perf_counter())
                    done.set_result(None)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()  # the bridge hung up, or the run is over

    async def main():
        nonlocal done
        done = asyncio.get_running_loop().create_future()
        server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=1024)
        results.put("ready")
        await done
        server.close()

    asyncio.run(main())
    results.put(([b.decode() for b in bodies], times[0], times[-1]))


def fill(r: redis.Redis, messages: int, conversations: int) -> int:
    """LPUSH the messages as the API would, round-robin over the conversations (groups with no
    fresh change); how many RPCs they make."""
    now = int(time.time() * 1000)
    pipe = r.pipeline(transaction=False)
    for n in range(messages):
        conv = n % conversations
        pipe.lpush(QUEUE, json.dumps({"id": n + 1, "kind": "group", "appid": 1, "sender": 1, "receiver": conv + 1,
                                      "content": f"{conv}#{n // conversations}", "timestamp": now}))
        if n % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    return messages


def fill_created(r: redis.Redis, groups: int) -> int:
    """Per group, as the API queues a create and then a message: group_create and three member
    adds, then the create notification and a group message; how many RPCs they make."""
    now, action = int(time.time() * 1000), 0
    pipe = r.pipeline(transaction=False)
    for gid in range(1, groups + 1):
        members = [3 * gid, 3 * gid + 1, 3 * gid + 2]
        for name, member in [("group_create", 0)] + [("group_member_add", m) for m in members]:
            action += 1
            pipe.lpush(EVENTS, json.dumps({"action_id": action, "previous_action_id": action - 1, "name": name,
                                           "appid": 1, "group_id": gid, "member_id": member, "super": 0,
                                           "timestamp": now}))
        note = {"id": 2 * gid, "kind": "group_notification", "appid": 1, "sender": None, "receiver": gid,
                "content": f"g{gid}#0", "members": members, "timestamp": now}
        message = {"id": 2 * gid + 1, "kind": "group", "appid": 1, "sender": members[0], "receiver": gid,
                   "content": f"g{gid}#1", "timestamp": now}
        pipe.lpush(QUEUE, json.dumps(note), json.dumps(message))
        if gid % 1000 == 0:
            pipe.execute()
    pipe.execute()
    return 2 * groups


def in_order(bodies: list[str]) -> bool:
    """Every conversation's items arrived once each, in queue order."""
    last = {}
    for body in bodies:
        if body.startswith("{"):  # a group notification: its content is the "notification" field
            body = json.loads(body)["notification"]
        conv, seq = body.split("#")
        if int(seq) != last.get(conv, -1) + 1:
            return False
        last[conv] = int(seq)
    return True


def start_standin(port: int, expected: int):
    results = multiprocessing.Queue()
    router = multiprocessing.Process(target=standin, args=(port, expected, results))
    router.start()
    assert results.get(timeout=10) == "ready"
    return router, results


def start_bridge(port: int, concurrency: int) -> subprocess.Popen:
    env = {**os.environ, "REDIS_DB": str(REDIS_DB), "IM_RPC_URL": f"http://127.0.0.1:{port}",
           "BRIDGE_METRICS_PORT": "0", "BRIDGE_CONCURRENCY": str(concurrency), "LOG_LEVEL": "ERROR"}
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "bridge"], cwd=ROOT, env=env)


def run_once(args, created: bool) -> tuple[float, bool, int]:
    r = redis.Redis(db=REDIS_DB)
    r.flushdb()
    expected = fill_created(r, args.groups) if created else fill(r, args.messages, args.conversations)
    port = free_port()
    router, results = start_standin(port, expected)
    bridge = start_bridge(port, args.concurrency)
    try:
        bodies, first, last = results.get(timeout=600)
    finally:
        bridge.terminate()
        bridge.wait(30)
        router.join(5)
    left = r.llen(QUEUE) + r.llen(f"{{{QUEUE}}}:processing")
    return expected / (last - first), in_order(bodies) and len(bodies) == expected, left


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def outage(args) -> None:
    """The router down for args.outage seconds with args.messages waiting, then up: memory, then drain rate."""
    r = redis.Redis(db=REDIS_DB)
    r.flushdb()
    expected = fill(r, args.messages, args.conversations)
    port = free_port()
    bridge = start_bridge(port, args.concurrency)  # nothing listens on the port yet: the router is down
    down_at, peak, processing = time.monotonic(), 0.0, 0
    while time.monotonic() - down_at < args.outage:
        time.sleep(1)
        peak = max(peak, rss_mib(bridge.pid))
        processing = max(processing, r.llen(f"{{{QUEUE}}}:processing"))
    router, results = start_standin(port, expected)
    try:
        bodies, first, last = results.get(timeout=3600)
        after = rss_mib(bridge.pid)
    finally:
        bridge.terminate()
        bridge.wait(30)
        router.join(5)
    if not (in_order(bodies) and len(bodies) == expected):
        raise SystemExit("after the outage an item was lost, doubled or out of order")
    print(f"outage: {args.messages} items waiting, router down {args.outage:.0f} s: bridge RSS at most {peak:.0f} MiB "
          f"({processing} items taken at most), {after:.0f} MiB after the drain; drained at "
          f"{expected / (last - first):.0f} messages/s, each once and in order")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--outage", type=float, default=0, help="seconds of router outage (another run)")
    args = parser.parse_args()
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    print(f"# {platform.node()}: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
          f"BRIDGE_CONCURRENCY={args.concurrency}")
    if args.outage:
        return outage(args)
    for created, what in ((False, f"{args.messages} messages to {args.conversations} groups without fresh changes"),
                          (True, f"{args.groups} groups created and messaged at once ({2 * args.groups} RPCs)")):
        rates = []
        for round_ in range(args.rounds):
            rate, ordered, left = run_once(args, created)
            if not ordered:
                raise SystemExit("a conversation's messages arrived out of order (or some are missing)")
            rates.append(rate)
            print(f"round {round_ + 1}: {rate:.0f} messages/s, order kept, {left} left in Redis", file=sys.stderr)
        print(f"bridge, {what}: {median(rates):.0f} messages/s (median of {args.rounds}: "
              f"{' '.join(f'{x:.0f}' for x in rates)}), per-conversation order checked")


if __name__ == "__main__":
    main()
