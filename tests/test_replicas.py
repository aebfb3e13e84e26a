"""MYSQL_REPLICA_HOSTS: paged listings come from a replica that keeps up; single reads and writes
from the primary; a replica that is frozen, stopped or lagging is skipped within a bounded time.

The test starts a MariaDB primary (binlog on) and a replica of its own, replicating by GTID.
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pymysql
import pytest
from helpers import TEST_CONFIG, Api, basic, free_port

from app import create_app
from models import replicas as replicas_module
from models.connection import mysql_connect_args
from models.migrations import init_db

MARIADBD = "/usr/sbin/mariadbd"


def wait_for(check, seconds=30, what="it"):
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return
        except pymysql.Error:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def connect(port, **kw):
    return pymysql.connect(host="127.0.0.1", port=port, user="root", autocommit=True,
                           cursorclass=pymysql.cursors.DictCursor, connect_timeout=2, **kw)


def one(port, sql, params=None, **kw):
    conn = connect(port, **kw)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def pair():
    """(primary port, replica port, replica process) of a MariaDB pair of the test's own."""
    if not (os.path.exists(MARIADBD) and shutil.which("mariadb-install-db")):
        pytest.skip("mariadbd not installed")
    tmp = tempfile.mkdtemp(prefix="gobelieve-replicas-")
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={tmp}/primary", "--user=root",
                    "--auth-root-authentication-method=normal", "--skip-test-db"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.copytree(f"{tmp}/primary", f"{tmp}/replica", symlinks=True)
    procs, ports = [], {}
    for name, server_id, extra in (("primary", 1, [f"--log-bin={tmp}/primary-bin", "--binlog-format=ROW"]),
                                   ("replica", 2, ["--skip-log-bin", "--skip-slave-start"])):
        ports[name] = port = free_port()
        procs.append(subprocess.Popen(
            [MARIADBD, "--no-defaults", f"--datadir={tmp}/{name}", f"--port={port}", "--bind-address=127.0.0.1",
             f"--socket={tmp}/{name}.sock", f"--pid-file={tmp}/{name}.pid", "--user=root", f"--server-id={server_id}",
             "--innodb-buffer-pool-size=32M", "--skip-grant-tables", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        for port in ports.values():
            wait_for(lambda port=port: one(port, "SELECT 1"), what=f"mariadbd on {port}")
        one(ports["replica"], f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={ports['primary']}, "
                              "MASTER_USER='root', MASTER_USE_GTID=slave_pos")
        one(ports["replica"], "START SLAVE")
        yield ports["primary"], ports["replica"], procs[1]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def replicated(pair):
    """The pair with the schema made on the primary (and replicated), and an app row."""
    primary, replica, _ = pair
    config = TEST_CONFIG | {"MYSQL_PORT": primary}
    init_db(create_app(config).config)
    database = TEST_CONFIG["MYSQL_DATABASE"]
    conn = connect(primary, database=database)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO app (name, `key`, secret, store_id) VALUES ('demo', 'k', 's3cret', 0)")
        appid = cur.lastrowid
    conn.close()
    wait_for(lambda: one(replica, "SELECT id FROM app", database=database), what="the schema on the replica")
    return {"primary": primary, "replica": replica, "appid": appid, "database": database}


def make_api(replicated, **overrides):
    app = create_app(TEST_CONFIG | {"MYSQL_PORT": replicated["primary"], "MYSQL_TIMEOUT": 2,
                                    "MYSQL_REPLICA_HOSTS": f"127.0.0.1:{replicated['replica']}", **overrides})
    return Api(app.test_client(), basic(replicated["appid"], "s3cret"))


def unreplicated(replicated, sql, params):
    """Run a write on the primary that the replica never receives (kept out of the binlog)."""
    conn = connect(replicated["primary"], database=replicated["database"])
    with conn.cursor() as cur:
        cur.execute("SET SESSION sql_log_bin = 0")
        cur.execute(sql, params)
        last = cur.lastrowid
    conn.close()
    return last


def caught_up(replicated):
    status = one(replicated["replica"], "SHOW SLAVE STATUS")[0]
    return status["Seconds_Behind_Master"] == 0 and status["Slave_SQL_Running"] == "Yes"


def listed_gids(api):
    status, body = api.get("/groups?count=500")
    assert status == 200, body
    return {g["id"] for g in body["data"]["groups"]}


def test_listings_come_from_the_replica_single_reads_from_the_primary(replicated):
    api = make_api(replicated)
    gid = api.post("/groups", {"master": 1, "name": "seen", "members": [1, 2]})[1]["data"]["group_id"]
    api.post("/users", [{"uid": 5, "name": "five"}])
    wait_for(lambda: one(replicated["replica"], "SELECT id FROM `group` WHERE id = %s", (gid,),
                         database=replicated["database"]), what="the group on the replica")
    hidden = unreplicated(replicated, "INSERT INTO `group` (appid, master, name) VALUES (%s, 1, 'hidden')",
                          (replicated["appid"],))
    unreplicated(replicated, "INSERT INTO group_member (group_id, uid) VALUES (%s, 3)", (gid,))
    unreplicated(replicated, "INSERT INTO user (appid, uid, name) VALUES (%s, 6, 'six')", (replicated["appid"],))

    assert gid in listed_gids(api) and hidden not in listed_gids(api)  # the replica's answer
    assert api.get(f"/groups/{hidden}")[0] == 200  # a single read: the primary
    members = api.get(f"/groups/{gid}/members")[1]["data"]["members"]
    assert [m["uid"] for m in members] == [1, 2]
    assert [u["uid"] for u in api.get("/users")[1]["data"]["users"]] == [5]
    assert api.get("/users/6")[0] == 200
    # Without replicas every listing is the primary's.
    primary_only = make_api(replicated, MYSQL_REPLICA_HOSTS="")
    assert hidden in listed_gids(primary_only)
    assert [u["uid"] for u in primary_only.get("/users")[1]["data"]["users"]] == [5, 6]


def test_a_replica_whose_sql_thread_stopped_is_skipped(replicated):
    api = make_api(replicated)
    listed_gids(api)  # the replica found fit
    one(replicated["replica"], "STOP SLAVE SQL_THREAD")
    try:
        gid = api.post("/groups", {"master": 1, "name": "new", "members": [1]})[1]["data"]["group_id"]
        time.sleep(replicas_module.REPLICA_CHECK_EVERY + 0.1)
        assert gid in listed_gids(api)  # the replica would not have it: Seconds_Behind_Master is NULL
    finally:
        one(replicated["replica"], "START SLAVE SQL_THREAD")
    wait_for(lambda: caught_up(replicated), what="the replica to catch up")


def test_a_replica_lagging_past_the_bound_is_skipped(replicated):
    api = make_api(replicated, MYSQL_REPLICA_MAX_LAG=1)
    wait_for(lambda: caught_up(replicated), what="the replica to catch up")
    listed_gids(api)
    # Block the replica's SQL thread on a lock: it falls behind the primary second by second.
    blocker = connect(replicated["replica"], database=replicated["database"])
    with blocker.cursor() as cur:
        cur.execute("LOCK TABLES `group` WRITE")
    try:
        gid = api.post("/groups", {"master": 1, "name": "late", "members": [1]})[1]["data"]["group_id"]
        wait_for(lambda: (one(replicated["replica"], "SHOW SLAVE STATUS")[0]["Seconds_Behind_Master"] or 0) > 1,
                 what="the replica to lag")
        time.sleep(replicas_module.REPLICA_CHECK_EVERY + 0.1)
        started = time.monotonic()
        assert gid in listed_gids(api)  # the primary's answer (the replica's table is locked)
        assert time.monotonic() - started < 1
    finally:
        blocker.close()
    wait_for(lambda: caught_up(replicated), what="the replica to catch up")


def test_a_frozen_replica_is_skipped_within_the_bound(replicated, pair):
    *_, replica_proc = pair
    api = make_api(replicated)
    wait_for(lambda: caught_up(replicated), what="the replica to catch up")
    listed_gids(api)
    replica_proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(replicas_module.REPLICA_CHECK_EVERY + 0.1)
        gid = api.post("/groups", {"master": 1, "name": "while-frozen", "members": [1]})[1]["data"]["group_id"]
        started = time.monotonic()
        assert gid in listed_gids(api)
        took = time.monotonic() - started
        print(f"figure: listing with a frozen replica answered from the primary in {took:.3f} s")
        assert took < replicas_module.REPLICA_TIMEOUT + 1
        started = time.monotonic()
        listed_gids(api)  # left alone now: no wait at all
        assert time.monotonic() - started < 0.5
    finally:
        replica_proc.send_signal(signal.SIGCONT)


def test_replica_settings_are_checked_at_start():
    with pytest.raises(Exception, match="MYSQL_REPLICA_HOSTS"):
        create_app(TEST_CONFIG | {"MYSQL_REPLICA_HOSTS": "nohost"})
    with pytest.raises(Exception, match="REDIS_CLUSTER_NODES"):
        create_app(TEST_CONFIG | {"REDIS_CLUSTER_NODES": "a:b"})
    assert mysql_connect_args  # imported for the primary's arguments elsewhere


def test_a_replica_that_froze_since_its_last_check_is_skipped_within_the_bound(replicated, pair, monkeypatch):
    """Frozen while the last check still vouches for it: the ping on checkout finds it within
    REPLICA_TIMEOUT, and the listing is the primary's, not a wait of MYSQL_TIMEOUT or a 503."""
    *_, replica_proc = pair
    monkeypatch.setattr(replicas_module, "REPLICA_CHECK_EVERY", 60)  # a check found it fit: believed for the whole test
    api = make_api(replicated, MYSQL_TIMEOUT=5)
    wait_for(lambda: caught_up(replicated), what="the replica to catch up")
    gid = api.post("/groups", {"master": 1, "name": "before", "members": [1]})[1]["data"]["group_id"]
    wait_for(lambda: gid in listed_gids(api), what="the group on the replica")  # the replica just checked fit
    replica_proc.send_signal(signal.SIGSTOP)
    try:
        hidden = unreplicated(replicated, "INSERT INTO `group` (appid, master, name) VALUES (%s, 1, 'primary only')",
                              (replicated["appid"],))
        started = time.monotonic()
        assert hidden in listed_gids(api)  # the primary's answer
        took = time.monotonic() - started
        print(f"figure: listing with a replica frozen since its last check answered in {took:.3f} s")
        assert took < replicas_module.REPLICA_TIMEOUT + 0.5
        started = time.monotonic()
        assert hidden in listed_gids(api)  # left alone now: no wait at all
        assert time.monotonic() - started < 0.5
    finally:
        replica_proc.send_signal(signal.SIGCONT)
    wait_for(lambda: caught_up(replicated), what="the replica to catch up")
    time.sleep(replicas_module.REPLICA_DOWN_FOR + 0.1)
    assert hidden not in listed_gids(api)  # the replica's answer again, through a new connection
