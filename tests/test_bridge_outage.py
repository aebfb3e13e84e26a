"""The bridge under a long router outage: memory bounded by BRIDGE_MAX_PENDING, nothing lost or doubled,
and the backlog drained afterwards at the rate it drains without one.

bench/bridge.py --outage runs the same with a million items and minutes of outage
(docs/PERFORMANCE.md, "Bridge").
"""
import json
import time
from pathlib import Path

from bridge_process import drained, starter
from helpers import wait_for

ITEMS = 50_000
CONVERSATIONS = 1000
OUTAGE = 20  # seconds
BEFORE = 5_000  # delivered with the router up, for the usual rate


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def fill(r, first: int, count: int) -> None:
    pipe = r.pipeline(transaction=False)
    for n in range(first, first + count):
        sender = n % CONVERSATIONS + 1
        pipe.lpush("im_message_queue", json.dumps({"id": n, "kind": "peer", "appid": 1, "sender": sender,
                                                   "receiver": 100_000, "content": f"{sender}#{n}",
                                                   "timestamp": int(time.time() * 1000)}))
        if n % 5000 == 4999:
            pipe.execute()
    pipe.execute()


def rate_of(requests: list) -> float:
    times = sorted(q.at for q in requests)
    return (len(times) - 1) / (times[-1] - times[0])


def test_a_router_down_for_long_with_a_backlog_keeps_memory_bounded_loses_and_doubles_nothing(
        app, r, router, tmp_path):
    with starter(app, router.url, tmp_path) as start:
        fill(r, 0, BEFORE)
        bridge = start(BRIDGE_MAX_PENDING=2000).wait_active()
        wait_for(lambda: len(router.taken()) == BEFORE, 60, "the first items")
        usual = rate_of(router.taken())
        router.down()
        fill(r, BEFORE, ITEMS - BEFORE)
        down_at, samples = time.monotonic(), []
        while time.monotonic() - down_at < OUTAGE:
            samples.append((rss_mib(bridge.proc.pid), r.llen("{im_message_queue}:processing")))
            time.sleep(1)
        router.up()
        wait_for(lambda: len(router.taken()) >= ITEMS, 300, "the backlog to drain")
        wait_for(lambda: drained(r, "im_message_queue"), 30, "the acknowledgements")
        after = rate_of(router.taken()[BEFORE:])
        end_rss = rss_mib(bridge.proc.pid)

    contents = [q.text for q in router.taken()]
    print(f"figure: {ITEMS} items, router down {OUTAGE} s: bridge RSS {samples[0][0]:.0f} -> "
          f"{max(s[0] for s in samples):.0f} MiB during, {end_rss:.0f} MiB after; "
          f"drain {after:.0f}/s after the outage, {usual:.0f}/s before")
    assert len(contents) == ITEMS and set(contents) == {f"{n % CONVERSATIONS + 1}#{n}" for n in range(ITEMS)}
    assert max(s[1] for s in samples) <= 2000  # taken and waiting: never more than BRIDGE_MAX_PENDING
    assert max(s[0] for s in samples) - samples[0][0] < 20  # flat while the backlog waits in Redis
    assert after >= usual * 0.5, (after, usual)
    by_sender = {}
    for content in contents:
        sender, n = content.split("#")
        by_sender.setdefault(sender, []).append(int(n))
    assert all(seqs == sorted(seqs) for seqs in by_sender.values())  # each conversation in queue order
