"""Many threads against a multi-worker gunicorn: the action_id chain stays gap-free and in commit order."""
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import free_port, queue, rows

ROOT = Path(__file__).resolve().parent.parent
GROUPS, UIDS, THREADS, CALLS = 3, 12, 16, 40


@pytest.fixture
def server(app):
    """gunicorn as deployed (gunicorn.conf.py), 3 workers x 4 threads, on the test database."""
    port = free_port()
    env = {**os.environ, "MYSQL_DATABASE": app.config["MYSQL_DATABASE"], "REDIS_DB": str(app.config["REDIS_DB"]),
           "WEB_CONCURRENCY": "3", "GUNICORN_THREADS": "4", "GUNICORN_ACCESS_LOG": "/dev/null",
           "OUTBOX_RELAY_INTERVAL": "0.5", "ACCESS_LOG": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind",
                             f"127.0.0.1:{port}", "app:app"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("gunicorn did not start")
                time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def call(conn, method, path, headers, body=None):
    conn.request(method, path, body=None if body is None else json.dumps(body),
                 headers={"Content-Type": "application/json", **headers})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def churn(port, headers, gids, seed, failures):
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(CALLS):
        gid, uids = rng.choice(gids), rng.sample(range(1, UIDS + 1), rng.randint(1, 3))
        if rng.random() < 0.5:
            status, body = call(conn, "POST", f"/groups/{gid}/members", headers, uids)
        elif len(uids) == 1:
            status, body = call(conn, "DELETE", f"/groups/{gid}/members/{uids[0]}", headers)
        else:
            status, body = call(conn, "DELETE", f"/groups/{gid}/members", headers, uids)
        if status != 200:
            failures.append((status, body))
    conn.close()


def test_concurrent_member_changes_keep_the_chain_gap_free_and_in_commit_order(server, demo, db, r):
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=30)
    gids = [call(conn, "POST", "/groups", demo["auth"], {"master": 1, "name": f"g{i}", "members": [1]})[1]
            ["data"]["group_id"] for i in range(GROUPS)]
    failures = []
    threads = [threading.Thread(target=churn, args=(server, demo["auth"], gids, seed, failures))
               for seed in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert rows(db, "SELECT COUNT(*) AS n FROM outbox") == [{"n": 0}]

    events = queue(r, "group_event_queue")
    assert len(events) > GROUPS * 2
    for before, after in zip(events, events[1:]):
        assert after["previous_action_id"] == before["action_id"]
        assert after["action_id"] == before["action_id"] + 1

    # Replaying the events in queue order must be possible (no add of a live member, no
    # remove of an absent one) and must end in the state MySQL holds.
    members = {gid: set() for gid in gids}
    for event in events:
        live = members[event["group_id"]]
        if event["name"] == "group_member_add":
            assert event["member_id"] not in live
            live.add(event["member_id"])
        elif event["name"] == "group_member_remove":
            assert event["member_id"] in live
            live.remove(event["member_id"])
    for gid in gids:
        in_mysql = rows(db, "SELECT uid FROM group_member WHERE group_id = %s AND deleted = 0", gid)
        assert members[gid] == {row["uid"] for row in in_mysql}

    # Every committed add and remove has its notification too (the initial members' come with create).
    notes = [next(iter(json.loads(m["content"]))) for m in queue(r, "im_message_queue")]
    names = [event["name"] for event in events]
    assert notes.count("add_member") == names.count("group_member_add") - GROUPS
    assert notes.count("quit_group") == names.count("group_member_remove")
