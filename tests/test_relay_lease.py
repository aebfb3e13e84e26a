"""The relay lock's lease: a second API node, frozen (SIGSTOP) while it holds the service-wide relay
lock, holds up the healthy node's events for at most OUTBOX_RELAY_LEASE seconds; thawed, it
doubles nothing and the action_id chain stays whole."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import TEST_CONFIG, assert_chain, create, events, wait_for

from models import outbox

ROOT = Path(__file__).resolve().parent.parent
# The frozen node: one member add whose relay, holding the lock, freezes its own process just
# before a step (argv[4]): _number (the counters read, its rows not numbered yet) or _push (its
# rows numbered and committed, not in Redis yet).
NODE = """
import json, os, signal, sys
from app import create_app
from models import outbox

app = create_app()
step = getattr(outbox, sys.argv[4])

def freeze_then_step(*args):
    os.kill(os.getpid(), signal.SIGSTOP)
    return step(*args)

setattr(outbox, sys.argv[4], freeze_then_step)
gid, uid, auth = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
response = app.test_client().post(f"/groups/{gid}/members", json=[uid], headers=auth)
print(response.status_code, flush=True)
"""


def state(pid: int) -> str:
    """The process's state letter in /proc (T: stopped)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return stat[stat.rindex(")") + 2]


@pytest.fixture
def frozen_node(demo):
    """Start the second node's member add; yields a function that does it and waits for the freeze."""
    procs = []

    def start(gid: int, uid: int, step: str) -> subprocess.Popen:
        env = {**os.environ, "MYSQL_DATABASE": TEST_CONFIG["MYSQL_DATABASE"], "REDIS_DB": str(TEST_CONFIG["REDIS_DB"]),
               "OUTBOX_RELAY_INTERVAL": "0", "ACCESS_LOG": "0", "OUTBOX_RELAY_LEASE": "3"}
        proc = subprocess.Popen([sys.executable, "-c", NODE, str(gid), str(uid), json.dumps(demo["auth"]), step],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        wait_for(lambda: state(proc.pid) == "T", what="the second node to freeze while relaying")
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("step", ["_number", "_push"])
def test_a_node_frozen_holding_the_relay_lock_holds_up_the_others_events_only_for_the_lease(
        app, api, db, r, frozen_node, step):
    gid = create(api, members=[1])
    frozen = frozen_node(gid, 100, step)  # its change committed; frozen holding the lock
    frozen_at = time.monotonic()
    arrived = {}
    for uid in range(2, 8):  # the healthy node's adds, each relayed after its commit
        assert api.post(f"/groups/{gid}/members", [uid])[0] == 200
        if uid in {e.get("member_id") for e in events(r)}:
            arrived[uid] = time.monotonic() - frozen_at
    assert sorted(arrived) == list(range(2, 8)), arrived  # every event was queued before its answer
    assert max(arrived.values()) < 3 + 3, arrived  # the lease (3 s) and a little (a busy machine)
    print(f"figure: with a node frozen holding the relay lock, the healthy node's events arrived within "
          f"{max(arrived.values()):.2f} s")
    assert 100 in {e.get("member_id") for e in events(r)}  # the frozen node's change, relayed for it

    os.kill(frozen.pid, signal.SIGCONT)
    out, _ = frozen.communicate(timeout=30)
    assert out.strip().splitlines()[-1] == "200" and frozen.returncode == 0  # its change answered too
    assert api.post(f"/groups/{gid}/members", [8])[0] == 200
    queued = events(r)
    assert [(e["name"], e.get("member_id")) for e in queued] == [
        ("group_create", None), ("group_member_add", 1), ("group_member_add", 100),
        *[("group_member_add", uid) for uid in range(2, 9)]]
    assert_chain(queued)
    assert outbox.relay(db, r) == 0 and outbox.pending(db) == 0
    assert len(events(r)) == len(queued)  # nothing pushed twice, then or now
