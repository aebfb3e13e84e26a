"""Faults caused for real: a Redis and a MariaDB of the test's own are stopped and started again."""
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pymysql
import pytest
import redis
from helpers import TEST_CONFIG, Api, basic, bearer, free_port, gone_within, queue, rows, token_for, wait_for

import config
from app import create_app, start_relay_thread
from models import outbox
from models.connection import Connection, mysql_connect_args
from models.migrations import init_db


class Server:
    """A server process of the test's own that can be stopped, frozen and started again."""

    def __init__(self, argv, ready):
        self.argv, self.ready, self.proc = argv, ready, None

    def start(self):
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.ready, what=self.argv[0])

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def accepting(port):
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


@pytest.fixture
def own_redis():
    port = free_port()
    server = Server([shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no"], lambda: accepting(port))
    server.start()
    server.port = port
    yield server
    server.stop()


@pytest.fixture
def own_mariadb():
    yield from mariadb_of_our_own()


@pytest.fixture
def tls_mariadb():
    """A MariaDB of the test's own that offers TLS (a self-signed certificate)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (.ci/run installs it)")
    certs = tempfile.mkdtemp(prefix="gobelieve-mariadb-tls-")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", f"{certs}/key.pem", "-out", f"{certs}/cert.pem"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield from mariadb_of_our_own([f"--ssl-cert={certs}/cert.pem", f"--ssl-key={certs}/key.pem"])
    shutil.rmtree(certs, ignore_errors=True)


def mariadb_of_our_own(options=()):
    datadir = tempfile.mkdtemp(prefix="gobelieve-mariadb-")
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={datadir}/data", "--user=root",
                    "--auth-root-authentication-method=normal", "--skip-test-db"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = free_port()
    server = Server(["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={datadir}/data", f"--port={port}",
                     "--bind-address=127.0.0.1", f"--socket={datadir}/sock", f"--pid-file={datadir}/pid",
                     "--user=root", "--skip-log-bin", "--innodb-buffer-pool-size=32M", "--skip-grant-tables",
                     *options],
                    lambda: accepting(port))
    server.start()
    server.port = port
    yield server
    server.stop()
    shutil.rmtree(datadir, ignore_errors=True)


@pytest.fixture
def flaky_redis_app(own_redis):
    """The app on the test database but on a Redis of its own."""
    return create_app({**TEST_CONFIG, "REDIS_PORT": own_redis.port, "REDIS_DB": 0, "REDIS_TIMEOUT": 1})


def chain_ok(events):
    return all(b["previous_action_id"] == a["action_id"] and b["action_id"] == a["action_id"] + 1
               for a, b in zip(events, events[1:]))


def test_while_redis_is_away_requests_that_need_it_get_503_and_group_changes_are_delivered_later(
        flaky_redis_app, own_redis, demo, db):
    api = Api(flaky_redis_app.test_client(), demo["auth"])
    r = flaky_redis_app.extensions["redis"]
    token = token_for(api, 7)
    gid = api.post("/groups", {"master": 1, "name": "g", "members": [1]})[1]["data"]["group_id"]
    before = queue(r, "group_event_queue")
    own_redis.stop()

    started = time.monotonic()
    status, body = api.post("/messages/peers", {"sender": 1, "receiver": 2, "content": "x"})
    print(f"figure: message post with Redis down answered 503 in {time.monotonic() - started:.3f} s")
    assert status == 503 and body["meta"]["code"] == 7001
    response = api.client.get("/readyz")
    assert response.status_code == 503 and response.headers["Retry-After"]
    # Refused requests leave nothing behind in MySQL.
    client = Api(api.client, bearer(token))
    assert client.post("/groups", {"master": 7, "name": "refused"})[0] == 503
    assert api.post("/auth/grant", {"uid": 99, "user_name": "nobody"})[0] == 503
    assert rows(db, "SELECT id FROM `group` WHERE name = 'refused'") == []
    assert rows(db, "SELECT uid FROM user WHERE uid = 99") == []
    # A server-auth group change commits; its events wait in the outbox.
    assert api.post(f"/groups/{gid}/members", [2, 3])[0] == 200
    assert api.delete(f"/groups/{gid}/members/1")[0] == 200
    assert rows(db, "SELECT COUNT(*) AS n FROM outbox")[0]["n"] == 8  # 3 events, 3 notifications, 2 sync keys

    own_redis.start()  # empty: it keeps nothing on disk
    status, body = api.get("/readyz")  # the token granted above is recorded but gone from Redis
    assert status == 503 and "restore-redis" in body["meta"]["message"]
    with flaky_redis_app.app_context():
        assert flaky_redis_app.test_cli_runner().invoke(args=["restore-redis"]).exit_code == 0
    assert api.get("/readyz")[0] == 200
    assert r.hget(f"access_token_{token}", "user_id") == "7"
    assert api.post(f"/groups/{gid}/members", [4])[0] == 200  # relays the backlog first, then its own
    events = queue(r, "group_event_queue")
    assert [(e["name"], e["member_id"]) for e in events] == [
        ("group_member_add", 2), ("group_member_add", 3), ("group_member_remove", 1), ("group_member_add", 4)]
    assert events[0]["previous_action_id"] == before[-1]["action_id"] and chain_ok(events)
    notes = [m["content"] for m in queue(r, "im_message_queue")]
    assert ['add_member' in n for n in notes] == [True, True, False, True]
    assert rows(db, "SELECT COUNT(*) AS n FROM outbox")[0]["n"] == 0


def test_the_background_relay_delivers_the_backlog_without_any_request(flaky_redis_app, own_redis, demo, db):
    api = Api(flaky_redis_app.test_client(), demo["auth"])
    own_redis.stop()
    assert api.post("/groups", {"master": 1, "name": "g", "members": [1, 2]})[0] == 200
    flaky_redis_app.config["OUTBOX_RELAY_INTERVAL"] = 0.1
    start_relay_thread(flaky_redis_app)
    time.sleep(0.3)  # a few failed rounds against the dead Redis
    own_redis.start()
    back = time.monotonic()
    wait_for(lambda: rows(db, "SELECT COUNT(*) AS n FROM outbox")[0]["n"] == 0, what="the relay")
    print(f"figure: background relay delivered the backlog {time.monotonic() - back:.3f} s after Redis was back")
    events = queue(flaky_redis_app.extensions["redis"], "group_event_queue")
    assert [e["name"] for e in events] == ["group_create", "group_member_add", "group_member_add"]
    assert chain_ok(events)
    flaky_redis_app.config["OUTBOX_RELAY_INTERVAL"] = 0  # stops the thread


@pytest.fixture
def mariadb_app(own_mariadb, r):
    config = {**TEST_CONFIG, "MYSQL_PORT": own_mariadb.port, "MYSQL_TIMEOUT": 1}
    app = create_app(config)
    init_db(app.config)
    conn = pymysql.connect(**mysql_connect_args(app.config))
    with conn.cursor() as cur:
        cur.execute("INSERT INTO app (name, `key`, secret) VALUES ('m', 'k', 'sec')")
        appid = cur.lastrowid
    conn.close()
    api = Api(app.test_client(), basic(appid, "sec"))
    api.appid = appid
    return app, api


def test_mysql_going_away_gives_503_quickly_and_pooled_connections_are_replaced(mariadb_app, own_mariadb, r):
    app, api = mariadb_app
    assert api.post("/groups", {"master": 1, "name": "a", "members": [1]})[0] == 200

    own_mariadb.stop()
    started = time.monotonic()
    status, body = api.post("/groups", {"master": 1, "name": "b"})
    assert status == 503 and body["meta"]["code"] == 7001
    assert api.get("/readyz")[0] == 503
    print(f"figure: group create and /readyz with MySQL stopped answered 503 in {time.monotonic() - started:.3f} s")
    assert time.monotonic() - started < 5
    # A new user's token is not kept when its `user` row could not be written.
    assert api.post("/auth/grant", {"uid": 5, "user_name": "five"})[0] == 503
    assert r.hget(f"users_{api.appid}_5", "access_token") is None

    own_mariadb.start()
    assert api.post("/groups", {"master": 1, "name": "c", "members": [1]})[0] == 200
    assert api.get("/readyz")[0] == 200
    assert api.post("/auth/grant", {"uid": 5, "user_name": "five"})[0] == 200
    conn = pymysql.connect(**mysql_connect_args(app.config))
    assert rows(conn, "SELECT name FROM user WHERE uid = 5") == [{"name": "five"}]
    conn.close()


def test_a_frozen_mysql_costs_a_request_at_most_the_configured_timeout(mariadb_app, own_mariadb):
    app, api = mariadb_app
    assert api.get("/groups/1")[0] == 404  # the pool holds a live connection now
    os.kill(own_mariadb.proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        status, _ = api.get("/groups/1")
        elapsed = time.monotonic() - started
    finally:
        os.kill(own_mariadb.proc.pid, signal.SIGCONT)
    print(f"figure: with MySQL frozen (MYSQL_TIMEOUT=1) a read answered 503 in {elapsed:.3f} s")
    assert status == 503
    assert elapsed < 4 * app.config["MYSQL_TIMEOUT"] + 1
    assert api.get("/groups/1")[0] == 404  # and the next request finds a working connection


def test_a_killed_pooled_connection_is_replaced_on_the_next_request(app, api, db):
    assert api.get("/groups/1")[0] == 404
    with db.cursor() as cur:
        cur.execute("SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()",
                    (app.config["MYSQL_DATABASE"],))
        killed = [row["id"] for row in cur.fetchall()]
        for session in killed:
            cur.execute("KILL %s", (session,))
    gone_within(db, killed)
    assert api.post("/groups", {"master": 1, "name": "after kill"})[0] == 200


def test_the_check_on_checkout_holds_over_tls_which_pymysql_takes_when_the_server_offers_it(tls_mariadb):
    """PyMySQL 1.2 asks for TLS whenever the server offers it. A TLS 1.3 server sends session
    tickets after the handshake: they are read during the login, so a healthy session at rest
    still has nothing waiting on its socket, and a killed one is still seen."""
    args = mysql_connect_args(config.load({**TEST_CONFIG, "MYSQL_PORT": tls_mariadb.port}), database=False)
    conn, killer = Connection(**args), pymysql.connect(**args)
    with conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
        assert cur.fetchone()["Value"].startswith("TLSv1.")
        cur.execute("SELECT 1")
    time.sleep(0.2)
    assert conn.ping() is True
    with killer.cursor() as cur:
        cur.execute("KILL %s", (conn.thread_id(),))
    gone_within(killer, [conn.thread_id()])
    assert conn.ping() is False
    killer.close()


def test_a_redis_write_refused_for_good_is_dropped_and_does_not_hold_back_the_rest(api, db, r, demo, caplog):
    gid = api.post("/groups", {"master": 1, "name": "g", "members": [1]})[1]["data"]["group_id"]
    r.set(f"users_{demo['id']}_2", "not a hash")  # the sync-key HDEL for uid 2 gets WRONGTYPE
    assert api.post(f"/groups/{gid}/members", [2, 3])[0] == 200
    assert rows(db, "SELECT COUNT(*) AS n FROM outbox") == [{"n": 0}]
    events = queue(r, "group_event_queue")
    assert [(e["name"], e.get("member_id")) for e in events][-2:] == [("group_member_add", 2), ("group_member_add", 3)]
    assert "refused by Redis, dropped" in caplog.text


def test_a_redis_stall_during_group_changes_queues_every_event_exactly_once(flaky_redis_app, own_redis, demo, db):
    """kill -STOP on Redis for longer than REDIS_TIMEOUT while members are added: a relay whose reply
    timed out ran when Redis resumed; the rows it had pushed are not pushed a second time."""
    api = Api(flaky_redis_app.test_client(), demo["auth"])
    r = flaky_redis_app.extensions["redis"]
    gid = api.post("/groups", {"master": 1, "name": "g", "members": [1]})[1]["data"]["group_id"]
    statuses = []

    def add(uids):
        client = Api(flaky_redis_app.test_client(), demo["auth"])
        statuses.extend(client.post(f"/groups/{gid}/members", [uid])[0] for uid in uids)

    threads = [threading.Thread(target=add, args=(range(100 + 5 * n, 105 + 5 * n),)) for n in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    os.kill(own_redis.proc.pid, signal.SIGSTOP)
    time.sleep(2.5)
    os.kill(own_redis.proc.pid, signal.SIGCONT)
    for thread in threads:
        thread.join()
    assert statuses == [200] * 40  # committed in MySQL whatever Redis did; the outbox holds the rest
    conn = pymysql.connect(**mysql_connect_args(flaky_redis_app.config))
    outbox.relay(conn, r)
    conn.close()
    events = queue(r, "group_event_queue")
    adds = [e["member_id"] for e in events if e["name"] == "group_member_add"]
    assert sorted(adds) == [1] + list(range(100, 140))  # each once
    assert chain_ok(events) and len({e["action_id"] for e in events}) == len(events)
    ids = [m["id"] for m in queue(r, "im_message_queue")]
    assert len(ids) == len(set(ids)) == 41  # the create notification and one add_member each
    assert rows(db, "SELECT COUNT(*) AS n FROM outbox")[0]["n"] == 0


def test_a_message_post_resent_after_a_redis_stall_is_queued_once(flaky_redis_app, own_redis, demo):
    """Redis frozen past REDIS_TIMEOUT: redis-py resends the push on a new connection and, once
    Redis resumes, both copies run; the post's own key makes the second one push nothing."""
    api = Api(flaky_redis_app.test_client(), demo["auth"])
    r = flaky_redis_app.extensions["redis"]
    answer = {}
    post = threading.Thread(target=lambda: answer.update(
        zip(("status", "body"), api.post("/messages/peers", {"sender": 1, "receiver": 2, "content": "x"}))))
    assert api.post("/messages/peers", {"sender": 1, "receiver": 2, "content": "warm"})[0] == 200  # script loaded
    r.delete("im_message_queue")
    os.kill(own_redis.proc.pid, signal.SIGSTOP)
    post.start()
    time.sleep(1.6)  # past the first timeout (1 s): the retry is on its way too
    os.kill(own_redis.proc.pid, signal.SIGCONT)
    post.join()
    items = queue(r, "im_message_queue")
    assert answer["status"] in (200, 503), answer
    assert len(items) == (1 if answer["status"] == 200 else len(items)) and len(items) <= 1, items
    if answer["status"] == 200:
        assert items[0]["id"] == answer["body"]["data"]["id"]


def test_a_redis_out_of_memory_keeps_the_items_for_a_later_relay(flaky_redis_app, own_redis, demo, db):
    """maxmemory reached: the pushes are refused, not dropped; once Redis has room, each goes once."""
    api = Api(flaky_redis_app.test_client(), demo["auth"])
    r = flaky_redis_app.extensions["redis"]
    gid = api.post("/groups", {"master": 1, "name": "g", "members": [1]})[1]["data"]["group_id"]
    r.config_set("maxmemory", r.info("memory")["used_memory"])  # full: writes that add memory fail
    try:
        assert api.post(f"/groups/{gid}/members", [2, 3])[0] == 200  # committed; its relay failed
        assert len(queue(r, "group_event_queue")) == 2  # the create's only
        assert rows(db, "SELECT COUNT(*) AS n FROM outbox WHERE seq IS NOT NULL")[0]["n"] > 0
    finally:
        r.config_set("maxmemory", 0)
    conn = pymysql.connect(**mysql_connect_args(flaky_redis_app.config))
    outbox.relay(conn, r)
    conn.close()
    events = queue(r, "group_event_queue")
    assert [(e["name"], e.get("member_id")) for e in events] == [
        ("group_create", None), ("group_member_add", 1), ("group_member_add", 2), ("group_member_add", 3)]
    assert chain_ok(events)
    assert len(queue(r, "im_message_queue")) == 3 and rows(db, "SELECT COUNT(*) AS n FROM outbox")[0]["n"] == 0


def test_a_registration_while_redis_refuses_writes_leaves_nothing_and_its_retry_succeeds(
        flaky_redis_app, own_redis, demo, db):
    api = Api(flaky_redis_app.test_client(), demo["auth"])
    full = redis.Redis(port=own_redis.port)
    full.config_set("maxmemory-policy", "noeviction")
    full.config_set("maxmemory", 1)  # every write is refused: OOM command not allowed
    batch = [{"uid": 1, "name": "Ann", "avatar": "https://a/1.png"}, {"uid": 2, "name": "Ben"}]
    status, body = api.post("/users", batch)
    assert status == 503, body
    assert rows(db, "SELECT uid FROM user") == []

    full.config_set("maxmemory", 0)
    status, body = api.post("/users", batch)
    assert (status, body) == (200, {"data": [{"uid": 1}, {"uid": 2}]})
    r = flaky_redis_app.extensions["redis"]
    assert r.hgetall(f"users_{demo['id']}_1") == {"name": "Ann", "avatar": "https://a/1.png"}
    assert r.hgetall(f"users_{demo['id']}_2") == {"name": "Ben"}
    assert [row["uid"] for row in rows(db, "SELECT uid FROM user ORDER BY uid")] == [1, 2]
