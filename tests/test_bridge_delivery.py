"""The bridge's promises under load and faults: order per conversation, concurrency, a router down or
refusing, kill -9, a standby taking over, SIGTERM, and what its metrics and health endpoint say."""
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import assert_ok
from router_standin import free_port
from test_bridge import (LEASE, ROOT, bridges, drained, in_order, peer, push, redis_kwargs,  # noqa: F401
                         router, wait_for)


def test_one_conversation_stays_in_order_while_conversations_go_concurrently(r, router, bridges):
    router.delay(0.002)  # long enough that RPCs overlap
    items, seqs = [], {}
    for n in range(1500):
        a, b = random.sample(range(1, 31), 2)  # 435 unordered pairs; a>b and b>a are one conversation
        pair = (min(a, b), max(a, b))
        seqs[pair] = seqs.get(pair, 0) + 1
        item = peer(n, a, b)
        item["content"] = f"{pair}#{seqs[pair]}"
        items.append(item)
    push(r, "im_message_queue", *items)
    bridges(BRIDGE_CONCURRENCY=16).wait_active()
    wait_for(lambda: len(router.taken()) == 1500, 60, "1500 messages")
    for conversation, got in in_order(router.taken()).items():
        assert got == sorted(got), conversation
    assert router.max_in_flight > 4, "conversations did not go concurrently"
    assert router.max_in_flight <= 16, "more RPCs in flight than BRIDGE_CONCURRENCY"
    wait_for(lambda: drained(r, "im_message_queue"), what="the processing list to empty")


def test_a_slow_conversation_does_not_hold_up_the_others(api, demo, r, router, bridges):
    slow = assert_ok(*api.post("/groups", {"master": 1, "name": "slow", "members": [1]}))["group_id"]
    fast = assert_ok(*api.post("/groups", {"master": 1, "name": "fast", "members": [1]}))["group_id"]
    router.delay(2.0, when=lambda q: q.query.get("receiver") == str(slow))  # under BRIDGE_RPC_TIMEOUT (3 s here)
    for n in range(5):
        assert_ok(*api.post("/messages/groups", {"sender": 1, "receiver": slow, "content": f"slow#{n}"}))
        assert_ok(*api.post("/messages/groups", {"sender": 1, "receiver": fast, "content": f"fast#{n}"}))
        assert_ok(*api.post("/messages/peers", {"sender": 1, "receiver": 2, "content": f"peer#{n}"}))
    started = time.monotonic()
    bridges(BRIDGE_RPC_TIMEOUT=3).wait_active()
    wait_for(lambda: len([q for q in router.taken("/post_group_message") if q.text.startswith("fast")]) == 5
             and len(router.taken("/post_peer_message")) == 5, 10, "the fast conversations")
    assert time.monotonic() - started < 2.0 + 1.5, "the fast conversations waited for the slow one"
    assert len([q for q in router.taken() if q.text.startswith("slow")]) <= 1
    wait_for(lambda: len([q for q in router.taken() if q.text.startswith("slow")]) == 5, 20, "the slow group")
    assert in_order(router.taken("/post_group_message"))["slow"] == [0, 1, 2, 3, 4]


def test_a_router_down_then_back_loses_nothing_and_is_retried_with_backoff_not_a_spin(r, router, bridges):
    router.down()
    push(r, "im_message_queue", *[peer(n, n % 5 + 1, 100) for n in range(50)])
    bridge = bridges().wait_active()
    time.sleep(4)
    # 5 conversations, each retrying after 0.05, 0.1, 0.2 ... s (jittered): about 7 tries each in 4 s.
    retried = bridge.metric("bridge_retried_total")
    assert 5 <= retried <= 5 * 10, retried
    assert r.llen("{im_message_queue}:processing") == 50 and r.llen("im_message_queue") == 0
    router.up()
    wait_for(lambda: len(router.taken()) == 50, 15, "all 50 after the router came back")
    assert {q.text for q in router.taken()} == {peer(n, n % 5 + 1, 100)["content"] for n in range(50)}
    for conversation, got in in_order(router.taken()).items():
        assert got == sorted(got), conversation
    wait_for(lambda: drained(r, "im_message_queue"), what="the processing list to empty")


def test_5xx_and_slow_answers_are_retried_with_growing_gaps_and_never_dropped(r, router, bridges):
    router.answer(500, times=6)
    router.answer(429, times=1)
    push(r, "im_message_queue", peer(1, 1, 2))
    bridges().wait_active()
    wait_for(lambda: len(router.taken()) == 1, 20, "the message after 7 failures")
    times = [q.at for q in router.attempts]
    assert len(times) == 8
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps[-1] > gaps[0] * 4 and gaps[-1] >= 0.05 * 2 ** 6 / 2, gaps  # exponential: 0.05 s doubling, half jitter
    assert max(gaps) <= 5.5


def test_a_timeout_is_retried_and_the_item_delivered(r, router, bridges):
    router.delay(3, times=1)  # the first answer comes after BRIDGE_RPC_TIMEOUT (1 s)
    push(r, "im_message_queue", peer(1, 1, 2))
    bridge = bridges().wait_active()
    wait_for(lambda: len(router.attempts) >= 2, 10, "a second attempt after the timeout")
    wait_for(lambda: drained(r, "im_message_queue"), 10, "the acknowledgement")
    assert bridge.metric("bridge_retried_total") >= 1


def test_a_refused_item_is_dead_lettered_listed_and_redriven(app, r, router, bridges):
    router.answer(400, when=lambda q: q.text.endswith("#2"))
    push(r, "im_message_queue", peer(1, 1, 2), peer(2, 1, 2), peer(3, 1, 2), b"not json", {"id": 5, "kind": "fax"})
    bridge = bridges().wait_active()
    wait_for(lambda: r.llen("{im_message_queue}:dead") == 3, what="3 dead letters")
    wait_for(lambda: drained(r, "im_message_queue"), what="the processing list to empty")
    assert [q.text for q in router.taken()] == ["1>2#1", "1>2#3"]
    # Three conversations (the malformed each in a lane of its own): their dead letters come in any order.
    letters = sorted((json.loads(x) for x in r.lrange("{im_message_queue}:dead", 0, -1)), key=lambda x: -x["status"])
    assert [(x["id"], x["status"]) for x in letters[:1]] == [("2", 400)]
    assert json.loads(letters[0]["item"]) == json.loads(json.dumps(peer(2, 1, 2) | {"timestamp": json.loads(
        letters[0]["item"])["timestamp"]}))
    assert "stand-in told to fail" in letters[0]["reason"] and letters[0]["time"]
    assert {x["status"] for x in letters[1:]} == {0}
    assert {x["id"] for x in letters[1:]} - {"5"} and [x["reason"] for x in letters if x["id"] == "5"] == [
        "malformed: unknown kind 'fax'"]
    assert any(line["level"] == "error" and line.get("id") == "2" and line.get("status") == 400
               for line in bridge.lines())
    wait_for(lambda: bridge.metric("bridge_dead_lettered_total") == 3, what="the dead-letter counter")

    runner = app.test_cli_runner()
    listed = runner.invoke(args=["bridge-dead", "list"])
    assert listed.exit_code == 0 and len(listed.output.splitlines()) == 3
    assert sum(line.startswith("im_message_queue\t2\t") for line in listed.output.splitlines()) == 1
    router.clear()
    assert runner.invoke(args=["bridge-dead", "redrive", "nope"]).exit_code == 1
    done = runner.invoke(args=["bridge-dead", "redrive", "2"])
    assert done.exit_code == 0 and "re-driven im_message_queue 2" in done.output
    wait_for(lambda: [q.text for q in router.taken()] == ["1>2#1", "1>2#3", "1>2#2"], what="the re-driven item")
    assert r.llen("{im_message_queue}:dead") == 2
    assert runner.invoke(args=["bridge-dead", "redrive"]).exit_code == 2  # neither ids nor --all
    assert runner.invoke(args=["bridge-dead", "redrive", "--all"]).exit_code == 0
    wait_for(lambda: r.llen("{im_message_queue}:dead") == 2, what="the two malformed ones to come back dead")


def test_kill_9_in_the_middle_of_a_burst_loses_nothing(api, r, router, bridges):
    for batch in range(4):  # 2000 messages in through the API, 40 conversations
        body = [{"sender": n % 40 + 1, "receiver": 1000, "content": f"{n % 40 + 1}#{batch * 500 + n}"}
                for n in range(500)]
        assert_ok(*api.post("/messages/peers/batch", body))
    router.delay(0.003)
    first = bridges().wait_active()
    wait_for(lambda: len(router.taken()) >= 400, 30, "the burst to be under way")
    first.kill()
    assert r.llen("{im_message_queue}:processing") > 0  # taken, not yet acknowledged: kept
    router.clear()
    bridges().wait_active()
    wait_for(lambda: drained(r, "im_message_queue"), 60, "the rest of the burst")
    contents = [q.text for q in router.taken()]
    assert set(contents) == {f"{n % 40 + 1}#{b * 500 + n}" for b in range(4) for n in range(500)}  # none lost
    firsts = {}
    for text in contents:  # at least once: a repeat may follow a crash, but first deliveries keep queue order
        firsts.setdefault(text, len(firsts))
    for conversation, got in in_order(router.taken()).items():
        unique = list(dict.fromkeys(got))
        assert unique == sorted(unique), conversation
    print(f"figure: {len(contents) - 2000} repeats after kill -9 of 2000")


def test_a_standby_takes_over_within_seconds_of_kill_9(r, router, bridges):
    active = bridges().wait_active()
    standby = bridges()
    time.sleep(LEASE)
    assert standby.role() == "standby" and active.role() == "active"
    push(r, "im_message_queue", peer(1, 1, 2))
    wait_for(lambda: len(router.taken()) == 1, what="the first message")
    active.kill()
    killed = time.monotonic()
    standby.wait_active(seconds=LEASE * 3)
    took = time.monotonic() - killed
    print(f"figure: standby active {took:.2f} s after kill -9 (lease {LEASE} s)")
    assert took <= LEASE + 1.5
    push(r, "im_message_queue", peer(2, 1, 2))
    wait_for(lambda: len(router.taken()) == 2, what="a message through the new active bridge")


def test_sigterm_finishes_what_is_in_flight_and_exits_0(r, router, bridges):
    router.delay(1.5)  # under BRIDGE_RPC_TIMEOUT (3 s here)
    push(r, "im_message_queue", *[peer(n, n % 5 + 1, 100) for n in range(10)])  # 5 conversations of 2
    bridge = bridges(BRIDGE_RPC_TIMEOUT=3)
    wait_for(lambda: len(router.attempts) >= 5, what="5 RPCs in flight")
    assert len(router.attempts) == 5
    started = time.monotonic()
    assert bridge.terminate() == 0
    assert time.monotonic() - started < 3
    assert len(router.taken()) == 5  # each in-flight one was finished ...
    assert r.llen("{im_message_queue}:processing") == 5  # ... and acknowledged; the next 5 wait, in order
    assert r.get("{im_message_queue}:bridge_lease") is None  # released: a standby need not wait
    assert any(line["msg"] == "bridge stopped" for line in bridge.lines())
    router.clear()
    bridges().wait_active()
    wait_for(lambda: len(router.taken()) == 10, what="the other 5 after a restart")
    assert in_order(router.taken()) == {f"{n}>100": [n - 1, n + 4] for n in range(1, 6)}


def test_metrics_and_health_say_what_the_bridge_does(r, router, bridges):
    push(r, "im_message_queue", *[peer(n, 1, 2, timestamp=int(time.time() * 1000) - 10_000) for n in range(3)])
    bridge = bridges().wait_active()
    wait_for(lambda: bridge.metric("bridge_delivered_total") == 3, what="3 delivered")
    status, body = bridge.health()
    assert status == 200 and body["role"] == "active" and body["status"] == "ok"
    router.delay(30, when=lambda q: q.text.endswith("#9"))
    push(r, "im_message_queue", peer(9, 1, 2, timestamp=int(time.time() * 1000) - 60_000), peer(10, 1, 2))
    wait_for(lambda: bridge.metric("bridge_lag_seconds") >= 60, what="the lag of the stuck item")
    wait_for(lambda: bridge.metric("bridge_processing_length") == 2, what="the processing gauge")
    text = bridge.metrics()
    for name in ("bridge_queue_length", "bridge_retried_total", "bridge_dead_lettered_total", "bridge_active 1.0"):
        assert name in text
    assert 'bridge_queue_length{queue="group_event_queue"} 0.0' in text
    standby = bridges()
    wait_for(lambda: standby.health() == (200, {"status": "ok", "role": "standby", "redis": True, "loop": True}),
             what="the standby's health")


def test_health_fails_when_redis_is_unreachable(app, router, tmp_path):
    from test_bridge import BridgeProcess
    bridge = BridgeProcess(app, router.url, tmp_path / "bridge.log", REDIS_PORT=free_port())
    try:
        bridge.start()
        wait_for(lambda: bridge.health() and bridge.health()[0] == 503, what="a 503")
        assert bridge.health()[1]["redis"] is False
    finally:
        bridge.stop()


@pytest.mark.parametrize("url, message", [
    ("", "IM_RPC_URL is not set"),
    ("ftp://router", "IM_RPC_URL is not an http://host:port address"),
    ("http://router:notaport", "IM_RPC_URL is not an http://host:port address"),
])
def test_a_missing_or_bad_im_rpc_url_is_a_one_line_error(app, url, message):
    env = {**os.environ, "IM_RPC_URL": url, "REDIS_DB": str(app.config["REDIS_DB"])}
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "bridge"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and message in done.stderr
    assert "Traceback" not in done.stderr


