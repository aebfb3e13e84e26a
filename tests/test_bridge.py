"""The bridge (bridge/) against a router stand-in: what reaches the router, in what order, and what survives a crash.

The bridge runs as a real process (`flask --app app bridge`) on the test database and Redis DB;
items go in through the API where it has an endpoint for them. First what each item becomes,
then the promises under load and faults: order per conversation, concurrency, a router down
or refusing, kill -9, a standby taking over, SIGTERM, and what the metrics and health say.
"""
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from bridge_process import LEASE, ROOT, BridgeProcess, drained, push, redis_kwargs_of, starter
from helpers import assert_ok, free_port, queue, rows, wait_for
from router_standin import (
    LOAD_MEMBERS,
    ForbiddenListener,
    StreamReader,
)

from models.connection import mysql_connect_args


@pytest.fixture
def bridges(app, router, r, tmp_path):
    """Start bridges: bridges() -> a running BridgeProcess (r first: Redis is flushed before any starts)."""
    with starter(app, router.url, tmp_path) as start:
        yield start


@pytest.fixture
def redis_kwargs(app):
    return redis_kwargs_of(app)


def peer(seq, sender, receiver, appid=1, **extra):
    return {"id": seq, "kind": "peer", "appid": appid, "sender": sender, "receiver": receiver,
            "content": f"{sender}>{receiver}#{seq}", "timestamp": int(time.time() * 1000), **extra}


def in_order(requests) -> dict:
    """Per conversation, the sequence numbers in the order the router took them."""
    seen = {}
    for request in requests:
        conversation, seq = request.text.rsplit("#", 1)
        seen.setdefault(conversation, []).append(int(seq))
    return seen


# What each message kind becomes.

def test_every_message_kind_reaches_its_rpc_with_exact_parameters_and_body(api, demo, r, router, bridges):
    appid = demo["id"]
    gid = assert_ok(*api.post("/groups", {"master": 1, "name": "g", "members": [1, 2]}))["group_id"]
    assert_ok(*api.post("/messages/peers", {"sender": 1, "receiver": 2, "content": "hi \u263a"}))
    assert_ok(*api.post("/messages/groups", {"sender": 1, "receiver": gid, "content": "to all"}))
    assert_ok(*api.post("/messages/systems", {"receiver": 3, "content": "system"}))
    assert_ok(*api.post("/messages/notifications", {"receiver": 4, "content": "online only"}))
    assert_ok(*api.post("/messages/groups/notifications", {"group_id": gid, "content": "note", "members": [9]}))
    assert_ok(*api.post("/messages/rooms", {"sender": 5, "receiver": 77, "content": "room talk"}))
    push(r, "im_message_queue", {"id": 99, "kind": "customer", "appid": appid, "sender": 10, "receiver": 2**53 + 1,
                                 "content": "may I help", "store_id": 3, "seller_id": 10, "timestamp": 1})
    create_note = queue(r, "im_message_queue")[0]["content"]
    bridges().wait_active()
    wait_for(lambda: len(router.taken()) == 8, what="8 RPCs")

    got = [(q.path, q.query, q.body) for q in router.taken()]
    a = str(appid)
    expected = [
        ("/post_group_notification", {}, json.dumps({"appid": appid, "group_id": gid, "notification": create_note,
                                                     "members": [1, 2]}, separators=(",", ":")).encode()),
        ("/post_peer_message", {"appid": a, "sender": "1", "receiver": "2"}, "hi \u263a".encode()),
        ("/post_group_message", {"appid": a, "sender": "1", "receiver": str(gid)}, b"to all"),
        ("/post_system_message", {}, json.dumps({"appid": appid, "receivers": [3], "content": "system"},
                                                separators=(",", ":")).encode()),
        ("/post_notification", {"appid": a, "uid": "4"}, b"online only"),
        ("/post_group_notification", {}, json.dumps({"appid": appid, "group_id": gid, "notification": "note",
                                                     "members": [9]}, separators=(",", ":")).encode()),
        ("/post_room_message", {"appid": a, "uid": "5", "room": "77"}, b"room talk"),
        ("/post_customer_message", {}, json.dumps({"sender_appid": appid, "sender": 10, "receiver_appid": appid,
                                                   "receiver": 2**53 + 1, "content": "may I help"},
                                                  separators=(",", ":")).encode()),
    ]
    # Different conversations go concurrently; within the group's, queue order holds.
    assert sorted(got, key=repr) == sorted(expected, key=repr)
    assert [g for g in got if g[0].startswith("/post_group")] == [e for e in expected if e[0].startswith("/post_group")]
    wait_for(lambda: drained(r, "im_message_queue"), what="the processing list to empty")


# Group, relationship and user events.

GROUP_FIELDS = ["action_id", "previous_action_id", "name", "app_id", "group_id", "member_id", "super", "mute"]


def test_group_events_reach_the_stream_with_exact_fields_and_the_router_view_matches_mysql(
        api, demo, r, db, router, bridges, redis_kwargs, app):
    last = rows(db, "SELECT value FROM sequence WHERE name = 'group_action'")[0]["value"]
    r.set("groups_actions", f"{last - 1}:{last}")  # a router that has seen every earlier event
    reader = StreamReader(redis_kwargs, mysql_connect_args(app.config))
    try:
        gid = assert_ok(*api.post("/groups", {"master": 1, "name": "g", "members": [1, 2]}))["group_id"]
        assert_ok(*api.post(f"/groups/{gid}/members", [3, 4]))
        assert_ok(*api.patch(f"/groups/{gid}/members/3", {"mute": True}))
        assert_ok(*api.delete(f"/groups/{gid}/members/2"))
        assert_ok(*api.post(f"/groups/{gid}/upgrade"))
        gone = assert_ok(*api.post("/groups", {"master": 1, "name": "gone", "members": [1]}))["group_id"]
        assert_ok(*api.delete(f"/groups/{gone}"))
        events = queue(r, "group_event_queue")
        bridges().wait_active()
        assert reader.wait_for(events[-1]["action_id"]), "the reader never saw the last event"

        entries = [fields for _, fields in r.xrange("group_manager_stream")]
        assert [list(fields) for fields in entries] == [GROUP_FIELDS] * len(events)  # field order too
        assert entries == [{"action_id": str(e["action_id"]), "previous_action_id": str(e["previous_action_id"]),
                            "name": e["name"], "app_id": str(demo["id"]), "group_id": str(e["group_id"]),
                            "member_id": str(e.get("member_id", 0)), "super": str(e.get("super", 0)),
                            "mute": str(e.get("mute", 0))} for e in events]
        assert [e["name"] for e in entries] == ["group_create", "group_member_add", "group_member_add",
                                                "group_member_add", "group_member_add", "group_member_mute",
                                                "group_member_remove", "group_upgrade", "group_create",
                                                "group_member_add", "group_disband"]
        assert r.get("groups_actions") == f"{events[-1]['previous_action_id']}:{events[-1]['action_id']}"
        assert reader.gaps == []
        # What the router built from the stream is what its own MySQL queries say.
        members = {m["uid"]: m["mute"] for m in rows(db, LOAD_MEMBERS, gid)}
        assert reader.cache[gid] == {"appid": demo["id"], "super": True, "members": members}
        assert members == {1: 0, 3: 1, 4: 0}
        assert gone not in reader.cache and reader.group(gone) is None
        wait_for(lambda: drained(r, "group_event_queue"), what="the processing list to empty")
    finally:
        reader.close()


def group_event(action_id, name="group_member_add", **fields):
    return {"action_id": action_id, "previous_action_id": action_id - 1, "name": name, "appid": 1, "group_id": 5,
            "member_id": 7, "timestamp": 1, **fields}


def test_an_action_id_is_never_written_to_the_stream_twice(r, router, bridges, redis_kwargs):
    r.set("groups_actions", "9:10")  # the router was given up to 10
    reader = StreamReader(redis_kwargs)
    try:
        push(r, "group_event_queue", group_event(10), group_event(11), group_event(11), group_event(9),
             group_event(12))
        bridge = bridges().wait_active()
        wait_for(lambda: drained(r, "group_event_queue"), what="the events")
        assert [f["action_id"] for _, f in r.xrange("group_manager_stream")] == ["11", "12"]
        assert r.get("groups_actions") == "11:12"
        assert reader.wait_for(12) and reader.gaps == []
        wait_for(lambda: bridge.metric("bridge_skipped_total", "group_event_queue") == 3, what="3 skips counted")
    finally:
        reader.close()


def test_events_waiting_together_are_written_as_one_by_one_would_and_a_malformed_one_alone(r, router, bridges):
    """Up to 100 events that wait together in their lane go to the stream in one script: the same
    entries, in the same order, with the same skips, as one at a time; a malformed one is dead-lettered."""
    events = [group_event(n, member_id=n) for n in range(1, 251)]
    events[100] = {**events[100], "name": "group_bogus"}  # action_id 101
    push(r, "group_event_queue", *events, events[7])  # and a repeat of 8, after 250
    bridge = bridges().wait_active()
    wait_for(lambda: drained(r, "group_event_queue"), what="the events")
    entries = [fields for _, fields in r.xrange("group_manager_stream")]
    assert [e["action_id"] for e in entries] == [str(n) for n in range(1, 251) if n != 101]
    assert entries[0] == {"action_id": "1", "previous_action_id": "0", "name": "group_member_add", "app_id": "1",
                          "group_id": "5", "member_id": "1", "super": "0", "mute": "0"}
    assert all(e["member_id"] == e["action_id"] for e in entries)
    assert r.get("groups_actions") == "249:250"
    letters = [json.loads(x) for x in r.lrange("{group_event_queue}:dead", 0, -1)]
    assert [(x["id"], x["reason"]) for x in letters] == [("101", "malformed: unknown event 'group_bogus'")]
    wait_for(lambda: bridge.metric("bridge_skipped_total", "group_event_queue") == 1, what="the repeat skipped")


def test_a_gap_in_the_chain_reaches_the_router_as_a_gap_and_it_reloads_from_mysql(
        api, demo, r, router, bridges, redis_kwargs, app):
    gid = assert_ok(*api.post("/groups", {"master": 1, "name": "g", "members": [1]}))["group_id"]
    bridge = bridges().wait_active()
    wait_for(lambda: drained(r, "group_event_queue"), what="the create")
    reader = StreamReader(redis_kwargs, mysql_connect_args(app.config))
    try:
        last = int(r.get("groups_actions").split(":")[1])
        assert reader.group(gid)["members"] == {1: 0}  # loaded with the router's queries
        assert_ok(*api.post(f"/groups/{gid}/members", [2]))
        assert reader.wait_for(last + 1) and reader.cache[gid]["members"] == {1: 0, 2: 0}
        push(r, "group_event_queue", group_event(last + 5, group_id=gid, member_id=3))  # events lost upstream
        assert reader.wait_for(last + 5)
        assert reader.gaps == [(last + 1, last + 4)]
        assert gid not in reader.cache  # dirty: dropped, and the next look reloads it from MySQL
        assert reader.group(gid)["members"] == {1: 0, 2: 0}
        assert bridge.proc.poll() is None
    finally:
        reader.close()


def test_relationship_events_reach_relationship_stream_and_friends_actions(r, router, bridges, redis_kwargs):
    reader = StreamReader(redis_kwargs, stream="relationship_stream", actions="friends_actions")
    try:
        events = [{"action_id": 1, "previous_action_id": 0, "name": "friend", "appid": 3, "uid": 1, "friend_uid": 2,
                   "friend": 1, "timestamp": 1},
                  {"action_id": 2, "previous_action_id": 1, "name": "friend", "appid": 3, "uid": 2, "friend_uid": 1,
                   "friend": 1, "timestamp": 1},
                  {"action_id": 3, "previous_action_id": 2, "name": "blacklist", "appid": 3, "uid": 1,
                   "friend_uid": 4, "blacklist": 1, "timestamp": 1}]
        push(r, "relationship_event_queue", *events, events[1])
        bridges().wait_active()
        assert reader.wait_for(3)
        wait_for(lambda: drained(r, "relationship_event_queue"), what="the events")
        assert [f for _, f in r.xrange("relationship_stream")] == [
            {"action_id": "1", "previous_action_id": "0", "name": "friend", "app_id": "3", "uid": "1",
             "friend_uid": "2", "friend": "1", "blacklist": "0"},
            {"action_id": "2", "previous_action_id": "1", "name": "friend", "app_id": "3", "uid": "2",
             "friend_uid": "1", "friend": "1", "blacklist": "0"},
            {"action_id": "3", "previous_action_id": "2", "name": "blacklist", "app_id": "3", "uid": "1",
             "friend_uid": "4", "friend": "0", "blacklist": "1"}]
        assert r.get("friends_actions") == "2:3" and reader.gaps == []
    finally:
        reader.close()


def test_user_forbidden_is_published_and_a_revoked_token_is_acknowledged_and_logged(
        api, demo, r, router, bridges, redis_kwargs):
    listener = ForbiddenListener(redis_kwargs)
    try:
        assert_ok(*api.post("/auth/grant", {"uid": 8}))
        assert_ok(*api.post("/users/8", {"forbidden": True}))
        assert_ok(*api.post("/users/8", {"forbidden": False}))
        assert_ok(*api.post("/auth/revoke", {"uid": 8}))
        bridge = bridges().wait_active()
        wait_for(lambda: len(listener.messages) == 2, what="two speak_forbidden messages")
        assert listener.messages == [f"{demo['id']},8,1", f"{demo['id']},8,0"]
        wait_for(lambda: drained(r, "user_event_queue"), what="the user events")
        assert any(line["message"].startswith("token revoked") and line["uid"] == 8 for line in bridge.lines())
        assert router.taken() == []
    finally:
        listener.close()


# Order, concurrency and faults.

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
    bridges(BRIDGE_RPC_TIMEOUT=3).wait_active()
    started = time.monotonic()  # from the moment it drains: a start on a busy machine is not what is measured
    wait_for(lambda: len([q for q in router.taken("/post_group_message") if q.text.startswith("fast")]) == 5
             and len(router.taken("/post_peer_message")) == 5, 10, "the fast conversations")
    assert time.monotonic() - started < 2.0, "the fast conversations waited for the slow one"
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
    gaps = [b - a for a, b in itertools.pairwise(times)]
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
    assert any(line["level"] == "ERROR" and line.get("id") == "2" and line.get("status") == 400
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
    # At least once: the first may come again, if the killed bridge had not acknowledged it yet.
    wait_for(lambda: "1>2#2" in [q.text for q in router.taken()], what="a message through the new active bridge")
    wait_for(lambda: drained(r, "im_message_queue"), what="the acknowledgements")
    assert {q.text for q in router.taken()} == {"1>2#1", "1>2#2"}


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
    assert any(line["message"] == "bridge stopped" for line in bridge.lines())
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


def listening_addresses(port: int) -> set[str]:
    """The local addresses a TCP port is listened on, from /proc/net/tcp and tcp6 (hex, as the kernel shows)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_metrics_listen_on_loopback_and_obey_metrics_allowed_and_token(app, router, tmp_path):
    bridge = BridgeProcess(app, router.url, tmp_path / "bridge.log", METRICS_ALLOWED="10.9.0.0/16",
                           METRICS_TOKEN="scrape-me")
    try:
        bridge.start()
        assert listening_addresses(bridge.metrics_port) == {"0100007F"}  # 127.0.0.1 only
        url = f"http://127.0.0.1:{bridge.metrics_port}/metrics"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=2)
        assert refused.value.code == 403 and b"METRICS_ALLOWED" in refused.value.read()
        wrong = urllib.request.Request(url, headers={"Authorization": "Bearer nope"})
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(wrong, timeout=2)
        right = urllib.request.Request(url, headers={"Authorization": "Bearer scrape-me"})
        with urllib.request.urlopen(right, timeout=2) as answer:
            assert answer.status == 200 and b"bridge_delivered" in answer.read()
        assert bridge.health()[0] in (200, 503)  # /healthz stays open, for the service manager
    finally:
        bridge.stop()


def test_metrics_on_every_interface_when_told_and_loopback_allowed_by_default(app, router, tmp_path):
    bridge = BridgeProcess(app, router.url, tmp_path / "bridge.log", BRIDGE_METRICS_HOST="0.0.0.0")
    try:
        bridge.start()
        assert listening_addresses(bridge.metrics_port) == {"00000000"}
        assert "bridge_active" in bridge.metrics()  # METRICS_ALLOWED's default lets loopback in
    finally:
        bridge.stop()


def test_health_fails_when_redis_is_unreachable(app, router, tmp_path):
    bridge = BridgeProcess(app, router.url, tmp_path / "bridge.log", REDIS_PORT=free_port())
    try:
        bridge.start()
        wait_for(lambda: bridge.health() and bridge.health()[0] == 503, what="a 503")
        assert bridge.health()[1]["redis"] is False
    finally:
        bridge.stop()


@pytest.mark.parametrize("url, message", [
    ("", "IM_RPC_URL is not set"),
    ("ftp://router", "bad setting: IM_RPC_URL='ftp://router': expected an http:// or https:// URL"),
    ("http://router:notaport", "bad setting: IM_RPC_URL='http://router:notaport': expected an http://"),
])
def test_a_missing_or_bad_im_rpc_url_is_a_one_line_error(app, url, message):
    env = {**os.environ, "IM_RPC_URL": url, "REDIS_DB": str(app.config["REDIS_DB"])}
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "bridge"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_stop_ends_the_term_even_when_a_redis_call_swallows_its_cancellation(app, r, router):
    """On Python 3.11 redis-py's socket timeout (asyncio.wait_for) can eat a cancellation that lands
    as a call completes; the CI run that hung on SIGTERM was one. Here a flush swallows it every
    time: the bridge must still stop, because its loops end when told to, not when cancelled."""
    import asyncio

    from bridge.settings import from_config
    from bridge.worker import Bridge

    def deaf(flush):
        calls = []

        async def swallowing():
            calls.append(1)
            try:
                await flush()
                if len(calls) == 1:
                    await asyncio.sleep(2)  # the window the stop lands in
            except asyncio.CancelledError:
                pass
        return swallowing

    async def deliver_one_then_stop():
        bridge = Bridge(from_config({**app.config, "IM_RPC_URL": router.url, "BRIDGE_METRICS_PORT": 0}))
        drain = bridge.drains[0]  # im_message_queue
        drain.flush_acks = deaf(drain.flush_acks)
        running = asyncio.create_task(bridge.run())
        push(r, "im_message_queue", peer(1, 1, 2))
        while not router.taken():
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # the ack flusher is now inside its 2 s flush
        bridge.request_stop(signal.SIGTERM)
        return await asyncio.wait_for(running, 10)

    assert asyncio.run(deliver_one_then_stop()) == 0
    assert [q.text for q in router.taken()] == ["1>2#1"]
    assert drained(r, "im_message_queue")  # acknowledged
    assert r.get("{im_message_queue}:bridge_lease") is None


# The parts, without a process.

def test_backoff_doubles_from_50_ms_to_a_5_s_cap_with_jitter():
    from bridge.worker import backoff
    for attempt, ceiling in [(1, 0.05), (2, 0.1), (5, 0.8), (8, 5.0), (50, 5.0)]:
        waits = {backoff(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= w <= ceiling for w in waits) and len(waits) > 1


def test_lanes_are_conversations():
    from bridge.lanes import LANES
    lane = LANES["messages"]
    assert lane(peer(1, 1, 2)) == lane(peer(2, 2, 1)) != lane(peer(3, 1, 3))
    assert lane(peer(1, 1, 2)) != lane(peer(1, 1, 2, appid=2))
    group = {"kind": "group", "appid": 1, "sender": 5, "receiver": 9}
    assert lane(group) == lane({"kind": "group_notification", "appid": 1, "sender": None, "receiver": 9})
    assert lane(group) != lane({**group, "kind": "room"})
    assert LANES["group_events"]({"group_id": 1}) == LANES["group_events"]({"group_id": 2})
    assert LANES["user_events"]({"appid": 1, "uid": 1}) != LANES["user_events"]({"appid": 1, "uid": 2})


def test_every_kind_the_api_queues_becomes_a_router_call():
    from models.queue_items import KINDS
    from models.router import CALLS
    assert sorted(CALLS) == sorted(KINDS)


def test_a_keep_alive_connection_the_router_closed_is_replaced_at_once(router):
    import asyncio

    from bridge.settings import router_address
    from models.router import Call, RouterClient

    async def two_posts():
        client = RouterClient(router_address(router.url), 2)
        call = Call("/post_notification", "appid=1&uid=2", b"x", "text/plain")
        await client.post(call)
        router.down()  # closes the idle connection the client keeps
        router.up()
        started = time.monotonic()
        await client.post(call)
        await client.close()
        return time.monotonic() - started

    assert asyncio.run(two_posts()) < 0.5 and len(router.taken()) == 2


def test_chunked_and_close_delimited_answers_are_read():
    import asyncio

    from models.router import read_response

    async def read(raw: bytes):
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        return await read_response(reader)

    chunked = b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    assert asyncio.run(read(chunked)) == (400, b"hello", True)
    assert asyncio.run(read(b"HTTP/1.0 200 OK\r\n\r\nbye")) == (200, b"bye", False)
    assert asyncio.run(read(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")) == (200, b"", False)
