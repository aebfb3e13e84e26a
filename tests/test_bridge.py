"""The bridge (bridge/) against a router stand-in: what reaches the router, in what order, and what survives a crash.

The bridge runs as a real process (`flask --app app bridge`) on the test database and Redis DB;
items go in through the API where it has an endpoint for them.
"""
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import assert_ok, queue, rows
from models.db import mysql_connect_args
from router_standin import LOAD_MEMBERS, ForbiddenListener, RouterStandin, StreamReader, free_port

ROOT = Path(__file__).resolve().parent.parent
LEASE = 2.0  # seconds; short, so takeovers are quick to test


def wait_for(check, seconds=15, what="it"):
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


class BridgeProcess:
    """One `flask --app app bridge` process with its own metrics port and log file."""

    def __init__(self, app, router_url: str, log_path: Path, **env):
        self.metrics_port = free_port()
        self.log_path = log_path
        self.env = {**os.environ, "MYSQL_DATABASE": app.config["MYSQL_DATABASE"],
                    "REDIS_DB": str(app.config["REDIS_DB"]), "IM_RPC_URL": router_url,
                    "BRIDGE_METRICS_PORT": str(self.metrics_port), "BRIDGE_LEASE_SECONDS": str(LEASE),
                    "BRIDGE_RPC_TIMEOUT": "1", **{k: str(v) for k, v in env.items()}}
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "bridge"], cwd=ROOT,
                                     env=self.env, stdout=subprocess.DEVNULL, stderr=self.log)
        wait_for(lambda: self.health() is not None, what="the bridge's health endpoint")
        return self

    def health(self):
        """(status, body) of /healthz, or None while nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=1) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
        except OSError:
            return None

    def role(self):
        health = self.health()
        return health and health[1]["role"]

    def wait_active(self, seconds=10):
        wait_for(lambda: self.role() == "active", seconds, "the bridge to be active")
        return self

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as answer:
            return answer.read().decode()

    def metric(self, name: str, queue_name: str = "im_message_queue") -> float:
        for line in self.metrics().splitlines():
            if line.startswith(f'{name}{{queue="{queue_name}"}}'):
                return float(line.split()[-1])
        return 0.0

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.startswith("{")]

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def terminate(self, seconds=15) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(seconds)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.kill()
        self.log.close()


@pytest.fixture
def router():
    standin = RouterStandin()
    yield standin
    standin.close()


@pytest.fixture
def bridges(app, router, r, tmp_path):
    """Start bridges: bridges() -> a running BridgeProcess (r first: Redis is flushed before any starts)."""
    started = []

    def start(**env):
        process = BridgeProcess(app, router.url, tmp_path / f"bridge{len(started)}.log", **env)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def redis_kwargs(app):
    return {"host": app.config["REDIS_HOST"], "port": app.config["REDIS_PORT"], "db": app.config["REDIS_DB"]}


def push(r, name, *items):
    """Queue items as a producer does (LPUSH)."""
    for item in items:
        r.lpush(name, item if isinstance(item, (str, bytes)) else json.dumps(item))


def drained(r, *names):
    return all(r.llen(n) == 0 and r.llen(f"{{{n}}}:processing") == 0 for n in names)


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
                                                     "members": []}, separators=(",", ":")).encode()),
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
        assert reader.cache[gid] == {"appid": demo["id"], "super": True, "members": members} and members == {1: 0, 3: 1, 4: 0}
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
        assert any(line["msg"].startswith("token revoked") and line["uid"] == 8 for line in bridge.lines())
        assert router.taken() == []
    finally:
        listener.close()
