"""The outbox relay: numbering at relay time, exactly once into Redis, nothing global held by a change."""
import threading
import time

import pymysql
import pytest
from helpers import TEST_CONFIG, Api, queue, rows
from redis.exceptions import RedisClusterException

from app import create_app
from models import outbox
from models.connection import mysql_connect_args
from models.queue_items import Changes, group_event
from models.unit_of_work import Turns


def pending_change(app, db, appid, gid, n=3):
    """Outbox rows of a change on group gid (n events, n notifications), committed and not relayed."""
    changes = Changes()
    changes.events = [group_event("group_member_add", appid, gid, member_id=uid) for uid in range(1, n + 1)]
    changes.notes = [(appid, gid, "update", {}, []) for _ in range(n)]
    with db.cursor() as cur:
        cur.execute("BEGIN")
        app.extensions["units"].store(cur, changes)
        cur.execute("COMMIT")


def number_under_the_lock(db):
    """The relay's first step alone (as a relay that dies after it)."""
    with db.cursor() as cur:
        cur.execute(outbox.TAKE_RELAY_LOCK, {"seconds": 5})
        cur.execute(outbox.OUTSTANDING, {"pushed": 0, "limit": outbox.RELAY_BATCH})
        batch, _ = outbox._outstanding(cur.fetchall())
        counters = {row["name"]: row["value"] for row in rows(db, "SELECT name, value FROM sequence")}
        outbox._number(db, [row for row in batch if row["seq"] is None], counters)
        cur.execute(outbox.RELEASE_RELAY_LOCK)


def numbered_rows(db):
    return rows(db, "SELECT id, seq, command, redis_key, item FROM outbox WHERE seq IS NOT NULL ORDER BY seq")


def test_rows_pushed_just_before_a_crash_are_not_pushed_again(app, db, r, demo):
    pending_change(app, db, demo["id"], 5)
    number_under_the_lock(db)
    outbox._push(r, numbered_rows(db))  # ... and the relay died before deleting the rows
    assert len(queue(r, "group_event_queue")) == 3
    assert outbox.relay(db, r) == 6  # the next relay finds them again
    events = queue(r, "group_event_queue")
    assert [e["member_id"] for e in events] == [1, 2, 3]
    assert len({e["action_id"] for e in events}) == 3
    assert len(queue(r, "im_message_queue")) == 3
    assert rows(db, "SELECT COUNT(*) AS n FROM outbox") == [{"n": 0}]


def test_a_push_redis_ran_twice_queues_once(app, db, r, demo):
    """What redis-py's retry does after a timeout whose command did run: the script skips it."""
    pending_change(app, db, demo["id"], 5)
    number_under_the_lock(db)
    numbered = numbered_rows(db)
    outbox._push(r, numbered)
    outbox._push(r, numbered)
    assert len(queue(r, "group_event_queue")) == 3 and len(queue(r, "im_message_queue")) == 3
    marks = {queue_name: max(row["seq"] for row in numbered if row["redis_key"] == queue_name)
             for queue_name in ("group_event_queue", "im_message_queue")}
    assert {name: int(r.get(f"{{{name}}}:relayed")) for name in marks} == marks


def test_events_are_numbered_by_the_relay_gap_free_and_numbering_survives_a_failed_push(app, db, r, demo):
    before = rows(db, "SELECT value FROM sequence WHERE name = 'group_action'")[0]["value"]
    pending_change(app, db, demo["id"], 5)
    stored = rows(db, "SELECT item FROM outbox WHERE chain = 'group_action'")
    assert all("action_id" not in row["item"] for row in stored)  # not numbered inside the change
    number_under_the_lock(db)
    first = [row["item"] for row in numbered_rows(db)]
    pending_change(app, db, demo["id"], 6)
    outbox.relay(db, r)
    events = queue(r, "group_event_queue")
    assert [e["action_id"] for e in events] == list(range(before + 1, before + 7))
    assert [e["previous_action_id"] for e in events] == list(range(before, before + 6))
    assert [e["group_id"] for e in events] == [5, 5, 5, 6, 6, 6]
    assert first[0] in [item for item in r.lrange("group_event_queue", 0, -1)]  # numbered once, kept


def test_one_relay_moves_every_committed_change_and_the_next_finds_nothing_left(app, db, r, demo):
    """Group commit: the first change's relay moves both changes' rows, in commit order; the second
    change's relay, once it has the lock, has nothing left to do."""
    pending_change(app, db, demo["id"], 5), pending_change(app, db, demo["id"], 6)
    assert outbox.relay(db, r, sweep=False) == 12
    assert outbox.relay(db, r, sweep=False) == 0
    assert [e["group_id"] for e in queue(r, "group_event_queue")] == [5, 5, 5, 6, 6, 6]
    assert outbox.pending(db) == 0


def test_rows_done_in_redis_are_never_pushed_again_and_the_background_relay_deletes_them(
        app, db, r, demo, monkeypatch):
    """A relay that died after its pushes, before deleting its rows (the delete runs after it let
    the lock go): the next relays skip them by the pushed mark, without the queues' marks."""
    pending_change(app, db, demo["id"], 5)
    # the delete that did not happen
    monkeypatch.setattr(outbox, "END_RELAY", outbox.END_RELAY.replace(outbox.DELETE_RELAYED, "DO 0 IN %(ids)s"))
    assert outbox.relay(db, r, sweep=False) == 6
    monkeypatch.undo()
    assert rows(db, "SELECT value FROM sequence WHERE name = 'outbox_pushed'") == [
        {"value": max(row["seq"] for row in numbered_rows(db))}]
    r.delete("{group_event_queue}:relayed", "{im_message_queue}:relayed")
    pending_change(app, db, demo["id"], 6)
    assert outbox.relay(db, r, sweep=False) == 6  # only the new change's rows
    assert [e["group_id"] for e in queue(r, "group_event_queue")] == [5, 5, 5, 6, 6, 6]
    assert len(numbered_rows(db)) == 6  # a change's relay leaves the others' rows be
    assert outbox.relay(db, r) == 0 and outbox.pending(db) == 0  # the background relay's clean-up


def test_a_relay_whose_session_lost_the_lock_numbers_nothing(app, db, r, demo, monkeypatch):
    """As after the pool reconnected a session that had taken the lock (MySQL dropped it): another
    relay may hold the lock now, and two relays numbering the same rows would push them twice."""
    pending_change(app, db, demo["id"], 5)
    other = pymysql.connect(**mysql_connect_args(app.config))
    with other.cursor() as cur:
        cur.execute(outbox.TAKE_RELAY_LOCK, {"seconds": 0})
    # believes it took the lock
    monkeypatch.setattr(outbox, "START_RELAY", outbox.START_RELAY.replace(outbox.TAKE_RELAY_LOCK, "SELECT 1 AS got"))
    with pytest.raises(outbox.RelayLockLost):
        outbox.relay(db, r)
    other.close()  # its lock goes with it
    monkeypatch.undo()
    assert numbered_rows(db) == [] and queue(r, "group_event_queue") == []
    assert outbox.relay(db, r) == 6
    assert [e["action_id"] - e["previous_action_id"] for e in queue(r, "group_event_queue")] == [1, 1, 1]


def test_a_group_change_holds_no_global_lock_while_it_runs(app, db, r, demo, api):
    """With the action counter row locked by someone else, a change still commits: it does not touch it."""
    gid = api.post("/groups", {"master": 1, "name": "g", "members": [1]})[1]["data"]["group_id"]
    holder = pymysql.connect(**mysql_connect_args(app.config))
    with holder.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT value FROM sequence WHERE name = 'group_action' FOR UPDATE")
    answer = {}
    change = threading.Thread(target=lambda: answer.setdefault("status", api.post(f"/groups/{gid}/members", [2])[0]))
    change.start()
    deadline = time.monotonic() + 3  # less than the lock wait timeout: seen while the counter is still locked
    while not rows(db, "SELECT uid FROM group_member WHERE group_id = %s AND uid = 2", gid):
        assert time.monotonic() < deadline, "the change waited for the action counter"
        time.sleep(0.02)
    holder.rollback()
    holder.close()
    change.join()
    assert answer["status"] == 200
    outbox.relay(db, r)
    events = queue(r, "group_event_queue")
    assert [(e["name"], e.get("member_id")) for e in events][-1] == ("group_member_add", 2)


def test_the_unit_of_work_locks_the_group_itself(app, db, demo, api):
    """group_change takes the group's row lock: a second change of the same group waits for the first."""
    gid = api.post("/groups", {"master": 1, "name": "g", "members": [1]})[1]["data"]["group_id"]
    conn = pymysql.connect(**mysql_connect_args(app.config))
    other = pymysql.connect(**mysql_connect_args(app.config) | {"read_timeout": 10})
    with app.extensions["units"].group_change(demo["id"], gid, conn=conn) as (cur, group, changes):
        assert group["id"] == gid
        with other.cursor() as probe:
            probe.execute("SET SESSION innodb_lock_wait_timeout = 1")
            try:
                probe.execute("SELECT id FROM `group` WHERE id = %s FOR UPDATE", (gid,))
                locked = False
            except pymysql.err.OperationalError as exc:
                locked = exc.args[0] == 1205  # lock wait timeout
    assert locked
    conn.close()
    other.close()


def test_a_relay_after_redis_lost_its_scripts_pushes_everything_once(app, db, r, demo):
    pending_change(app, db, demo["id"], 5)
    r.script_flush()  # as after a restart of Redis: the pipeline's EVALSHA finds no script
    assert outbox.relay(db, r) == 6
    assert [e["member_id"] for e in queue(r, "group_event_queue")] == [1, 2, 3]
    assert len(queue(r, "im_message_queue")) == 3 and outbox.pending(db) == 0


def test_turns_serve_the_threads_that_wait_with_one_pass():
    """While one thread relays, the others that came meanwhile wait; one of them then runs a single
    pass for all of them, and none returns before a pass that began after it came has ended."""
    turns, passes, ended = Turns(), [], {}
    first_running, release_first = threading.Event(), threading.Event()

    def work():
        passes.append(threading.current_thread().name)
        if len(passes) == 1:
            first_running.set()
            release_first.wait(5)

    def change(name):
        turns.take(work)
        ended[name] = len(passes)

    threads = [threading.Thread(target=change, args=("first",), name="first")]
    threads[0].start()
    first_running.wait(5)
    threads += [threading.Thread(target=change, args=(name,), name=name) for name in ("a", "b", "c")]
    for thread in threads[1:]:
        thread.start()
    time.sleep(0.2)
    assert passes == ["first"] and ended == {}  # the others wait for a pass that began after them
    release_first.set()
    for thread in threads:
        thread.join(5)
    assert len(passes) == 2 and passes[1] in ("a", "b", "c")  # one pass, run by one of them, for all
    assert ended == {"first": 1, "a": 2, "b": 2, "c": 2}


def test_a_failed_turn_reaches_only_the_thread_that_ran_it_and_the_next_caller_runs_a_pass():
    turns, passes = Turns(), []

    def failing():
        passes.append(1)
        raise RuntimeError("Redis went away")

    with pytest.raises(RuntimeError):
        turns.take(failing)
    turns.take(lambda: passes.append(2))
    assert passes == [1, 2]


def test_a_change_whose_relay_meets_a_cluster_outage_still_answers_200(app, db, r, demo, api, monkeypatch):
    """redis-py's RedisClusterException (all slots not covered...) is not a RedisError: the change
    committed, so it answers 200 and its items wait for the background relay."""
    def outage(*args, **kwargs):
        raise RedisClusterException("Cluster is in a down state")

    monkeypatch.setattr(outbox, "relay", outage)
    status, body = api.post("/groups", {"master": 1, "name": "g", "members": [1]})
    assert status == 200, body
    monkeypatch.undo()
    assert queue(r, "group_event_queue") == [] and outbox.pending(db) > 0
    outbox.relay(db, r)
    assert [e["name"] for e in queue(r, "group_event_queue")] == ["group_create", "group_member_add"]


def test_a_relay_does_not_wait_for_the_relay_of_another_database_on_the_same_server(app, db, r, demo, monkeypatch):
    """Named locks are server-wide: a second deployment (or a bench) on the same MariaDB relaying
    must not hold this one's relay up."""
    second = app.config["MYSQL_DATABASE"] + "_second"
    with db.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{second}`")
    other = pymysql.connect(**{**mysql_connect_args(app.config), "database": second})
    try:
        with other.cursor() as cur:
            cur.execute(outbox.TAKE_RELAY_LOCK, {"seconds": 0})
            assert cur.fetchone()["got"] == 1
        pending_change(app, db, demo["id"], 5)
        monkeypatch.setattr(outbox, "START_RELAY", outbox.START_RELAY.replace("%(seconds)s", "0"))
        assert outbox.relay(db, r) == 6  # not 0: "lock busy"
    finally:
        other.close()
        with db.cursor() as cur:
            cur.execute(f"DROP DATABASE `{second}`")


def lock_is_free(app) -> bool:
    other = pymysql.connect(**mysql_connect_args(app.config))
    try:
        with other.cursor() as cur:
            cur.execute(outbox.TAKE_RELAY_LOCK, {"seconds": 0})
            return cur.fetchone()["got"] == 1
    finally:
        other.close()


def test_a_relay_whose_first_read_fails_after_taking_the_lock_lets_it_go(app, db, r, demo, monkeypatch):
    """A pooled session that kept the lock would make every other relay wait RELAY_LOCK_WAIT, then give up."""
    pending_change(app, db, demo["id"], 5)
    monkeypatch.setattr(outbox, "START_RELAY", outbox.TAKE_RELAY_LOCK + ";\nSELECT * FROM no_such_table")
    with pytest.raises(pymysql.Error):
        outbox.relay(db, r)
    assert lock_is_free(app)
    monkeypatch.undo()
    assert outbox.relay(db, r) == 6


@pytest.mark.parametrize("limit", [{"RELAY_BATCH": 2}, {"RELAY_BATCH_BYTES": 1}])
def test_a_relay_of_many_batches_moves_them_all_in_order_and_marks_each(app, db, r, demo, monkeypatch, limit):
    for gid in (5, 6):
        pending_change(app, db, demo["id"], gid)
    for name, value in limit.items():
        monkeypatch.setattr(outbox, name, value)
    assert outbox.relay(db, r, sweep=False) == 12
    assert lock_is_free(app) and outbox.pending(db) == 0
    events = queue(r, "group_event_queue")
    assert [e["group_id"] for e in events] == [5, 5, 5, 6, 6, 6]
    assert [e["action_id"] - e["previous_action_id"] for e in events] == [1] * 6
    assert len(queue(r, "im_message_queue")) == 6
    assert rows(db, "SELECT value FROM sequence WHERE name = 'outbox_pushed'") == rows(
        db, "SELECT value FROM sequence WHERE name = 'outbox_seq'")


def test_the_relay_waits_for_the_lock_one_second_less_than_mysql_timeout(app, db, r, demo, caplog):
    """With MYSQL_TIMEOUT=2 the wait is 1 s: it gives up before the 2 s read timeout would drop the
    connection (a fixed 4 s wait lost it: "Lost connection to MySQL server during query")."""
    short = create_app(TEST_CONFIG | {"MYSQL_TIMEOUT": 2})
    api = Api(short.test_client(), demo["auth"])
    holder = pymysql.connect(**mysql_connect_args(app.config))
    try:
        with holder.cursor() as cur:
            cur.execute(outbox.TAKE_RELAY_LOCK, {"seconds": 0})
            assert cur.fetchone()["got"] == 1
        started = time.monotonic()
        status, body = api.post("/groups", {"master": 1, "name": "g", "members": [1]})
        elapsed = time.monotonic() - started
    finally:
        holder.close()
    assert status == 200, body
    assert 0.9 < elapsed < 2.5, elapsed  # a 1 s wait, not the 2 s read timeout and a reconnect (4.5 s)
    assert "outbox relay lock busy for 1s" in caplog.text
    assert "relay after commit failed" not in caplog.text and "Lost connection" not in caplog.text
    left = outbox.pending(db)
    assert queue(r, "group_event_queue") == [] and left > 0  # left to the next relay
    with short.app_context():
        assert short.extensions["units"].relay(r) == left
    assert [e["name"] for e in queue(r, "group_event_queue")] == ["group_create", "group_member_add"]
