"""Messages per second from im_message_queue through the bridge into a router stand-in that answers at once.

Usage: .venv/bin/python bench/bridge.py [--messages 50000] [--conversations 1000] [--concurrency 64] [--rounds 3]
Needs Redis; uses Redis DB 9, which it empties. The stand-in (an asyncio HTTP/1.1 server in a
process of its own) answers every POST with 200 at once and records each body; at the end every
conversation's messages must have arrived in queue order. docs/PERFORMANCE.md ("Bridge") holds a run.
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
REDIS_DB = 9
QUEUE = "im_message_queue"


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


def fill(r: redis.Redis, messages: int, conversations: int) -> None:
    """LPUSH the messages as the API would, round-robin over the conversations."""
    now = int(time.time() * 1000)
    pipe = r.pipeline(transaction=False)
    for n in range(messages):
        conv = n % conversations
        pipe.lpush(QUEUE, json.dumps({"id": n + 1, "kind": "peer", "appid": 1, "sender": conv + 1, "receiver": 0,
                                      "content": f"{conv}#{n // conversations}", "timestamp": now}))
        if n % 5000 == 4999:
            pipe.execute()
    pipe.execute()


def in_order(bodies: list[str]) -> bool:
    last = {}
    for body in bodies:
        conv, seq = body.split("#")
        if int(seq) != last.get(conv, -1) + 1:
            return False
        last[conv] = int(seq)
    return True


def run_once(args) -> tuple[float, bool, int]:
    r = redis.Redis(db=REDIS_DB)
    r.flushdb()
    fill(r, args.messages, args.conversations)
    port, results = free_port(), multiprocessing.Queue()
    router = multiprocessing.Process(target=standin, args=(port, args.messages, results))
    router.start()
    assert results.get(timeout=10) == "ready"
    env = {**os.environ, "REDIS_DB": str(REDIS_DB), "IM_RPC_URL": f"http://127.0.0.1:{port}",
           "BRIDGE_METRICS_PORT": "0", "BRIDGE_CONCURRENCY": str(args.concurrency), "LOG_LEVEL": "WARNING"}
    bridge = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "bridge"], cwd=ROOT, env=env)
    try:
        bodies, first, last = results.get(timeout=600)
    finally:
        bridge.terminate()
        bridge.wait(30)
        router.join(5)
    left = r.llen(QUEUE) + r.llen(f"{{{QUEUE}}}:processing")
    return args.messages / (last - first), in_order(bodies) and len(bodies) == args.messages, left


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rates = []
    for round_ in range(args.rounds):
        rate, ordered, left = run_once(args)
        if not ordered:
            raise SystemExit("a conversation's messages arrived out of order (or some are missing)")
        rates.append(rate)
        print(f"round {round_ + 1}: {rate:.0f} messages/s, order kept, {left} left in Redis", file=sys.stderr)
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    print(f"# {platform.node()}: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
          f"{args.messages} messages in {args.conversations} conversations, BRIDGE_CONCURRENCY={args.concurrency}")
    print(f"bridge: {median(rates):.0f} messages/s (median of {args.rounds}: "
          f"{' '.join(f'{x:.0f}' for x in rates)}), per-conversation order checked")


if __name__ == "__main__":
    main()
