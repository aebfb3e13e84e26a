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
