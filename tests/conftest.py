"""Fixtures: the app on a dedicated test database and Redis DB, emptied around every test."""
import base64
import hashlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pymysql
import pytest
import redis
from redis.cluster import RedisCluster

import config
from app import create_app
from models.connection import mysql_connect_args
from models.migrations import init_db

TEST_CONFIG = {
    "MYSQL_DATABASE": os.environ.get("TEST_MYSQL_DATABASE", "gobelieve_test"),
    "REDIS_DB": int(os.environ.get("TEST_REDIS_DB", 15)),
    "OUTBOX_RELAY_INTERVAL": 0,
    "ACCESS_LOG": False,  # tests/test_ops.py turns it on where it checks the line
    "TESTING": True,
    # uploads go to a directory of the test run's, not to media/ beside the app
    "MEDIA_STORE": os.path.join(tempfile.gettempdir(), f"im-api-test-media-{os.getpid()}"),
}
TABLES = ("app", "`group`", "group_member", "user", "store", "seller", "customer", "outbox", "idempotency", "friend",
          "blacklist", "user_token", "user_setting", "user_do_not_disturb", "user_device")


def _config() -> dict:
    return config.load(TEST_CONFIG)


@pytest.fixture(scope="session")
def app():
    config = _config()
    conn = pymysql.connect(**mysql_connect_args(config, database=False))
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{config['MYSQL_DATABASE']}`")
    conn.close()
    init_db(config)
    return create_app(TEST_CONFIG)


@pytest.fixture
def db(app):
    """A direct MySQL connection to the test database (autocommit) for checking rows."""
    conn = pymysql.connect(**mysql_connect_args(app.config))
    yield conn
    conn.close()


@pytest.fixture
def r(app):
    """The test Redis DB, flushed before the test."""
    client = redis.Redis(host=app.config["REDIS_HOST"], port=app.config["REDIS_PORT"],
                         db=app.config["REDIS_DB"], password=app.config["REDIS_PASSWORD"], decode_responses=True)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(autouse=True)
def clean(app, db, r):
    with db.cursor() as cur:
        for table in TABLES:
            cur.execute(f"DELETE FROM {table}")
    app.extensions["app_cache"].clear()
    app.extensions["auth_holds"].clear()


@pytest.fixture(scope="session")
def small_app(app):
    """An app on the same database and Redis whose normal groups hold at most 3 members."""
    return create_app(TEST_CONFIG | {"MAX_GROUP_MEMBERS": 3})


@pytest.fixture
def small_api(small_app, demo):
    return Api(small_app.test_client(), demo["auth"])


def port_pair_free(port: int) -> bool:
    """Whether port and its cluster bus port (port + 10000) are both free."""
    for p in (port, port + 10000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


@pytest.fixture(scope="session")
def redis_cluster():
    """A local 3-master Redis Cluster of the test session's own: its startup nodes."""
    server = shutil.which("redis-server")
    if not server or not shutil.which("redis-cli"):
        pytest.skip("redis-server / redis-cli not installed")
    tmp = tempfile.mkdtemp(prefix="gobelieve-cluster-")
    ports, base = [], 20000 + os.getpid() % 20000
    while len(ports) < 3:
        if port_pair_free(base):
            ports.append(base)
        base += 1
    procs = [subprocess.Popen([server, "--port", str(p), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                               "--cluster-config-file", f"{tmp}/nodes-{p}.conf", "--dir", tmp, "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for p in ports]
    try:
        for p in ports:
            _wait(lambda port=p: _answers(port), f"redis-server on {p}")
        subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
                       "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=60)
        _wait(lambda: all("cluster_state:ok" in _cli(p, "cluster", "info") for p in ports), "cluster_state:ok")
        yield ",".join(f"127.0.0.1:{p}" for p in ports)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def _cli(port: int, *args) -> str:
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True).stdout


def _answers(port: int) -> bool:
    return _cli(port, "ping").strip() == "PONG"


def _wait(check, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def cluster_app(app, redis_cluster):
    """The app on the test database and the test session's Redis Cluster."""
    return create_app(TEST_CONFIG | {"REDIS_CLUSTER_NODES": redis_cluster})


@pytest.fixture
def cluster_r(cluster_app, redis_cluster):
    """A client of the test session's Redis Cluster, every master flushed before the test."""
    host, port = redis_cluster.split(",")[0].split(":")
    client = RedisCluster(host=host, port=int(port), decode_responses=True)
    client.flushall(target_nodes=RedisCluster.PRIMARIES)
    yield client
    client.close()


def all_keys(r, pattern: str = "*") -> list[str]:
    """Every key matching pattern, on a single Redis or on every master of a cluster."""
    if isinstance(r, RedisCluster):
        return sorted(r.keys(pattern, target_nodes=RedisCluster.PRIMARIES))
    return sorted(r.keys(pattern))


@pytest.fixture
def client(app):
    return app.test_client()


def basic(appid: int, secret: str) -> dict:
    digest = hashlib.md5(secret.encode()).hexdigest()
    return {"Authorization": "Basic " + base64.b64encode(f"{appid}:{digest}".encode()).decode()}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def make_app(db, name="demo", **columns) -> dict:
    """Insert an app row; return it with its server-auth headers."""
    row = {"name": name, "key": "k" + name, "secret": "s3cret-" + name, "store_id": 0, "disabled": 0,
           "allowed_ips": "", **columns}
    with db.cursor() as cur:
        cur.execute("INSERT INTO app (name, `key`, secret, store_id, disabled, allowed_ips) VALUES "
                    "(%(name)s, %(key)s, %(secret)s, %(store_id)s, %(disabled)s, %(allowed_ips)s)", row)
        row["id"] = cur.lastrowid
    row["auth"] = basic(row["id"], row["secret"])
    return row


@pytest.fixture
def demo(db):
    return make_app(db)


@pytest.fixture
def other(db):
    """A second app, to check that apps cannot see each other's objects."""
    return make_app(db, name="other")


class Api:
    """Sends JSON requests as an app server (or with the headers given) and decodes answers."""

    def __init__(self, client, headers):
        self.client, self.headers = client, headers

    def call(self, method, path, body=None, headers=None, **kwargs):
        data = None if body is None else json.dumps(body)
        response = self.client.open(path, method=method, data=data, headers={
            "Content-Type": "application/json", **self.headers, **(headers or {})}, **kwargs)
        return response.status_code, response.get_json()

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.call("POST", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.call("PATCH", path, body, **kw)

    def put(self, path, body=None, **kw):
        return self.call("PUT", path, body, **kw)

    def delete(self, path, body=None, **kw):
        return self.call("DELETE", path, body, **kw)


@pytest.fixture
def api(client, demo):
    return Api(client, demo["auth"])


def queue(r, name) -> list[dict]:
    """The items of a Redis queue, oldest first (the producer LPUSHes)."""
    return [json.loads(item) for item in reversed(r.lrange(name, 0, -1))]


def rows(db, sql, params=None) -> list[dict]:
    with db.cursor() as cur:
        cur.execute(sql, params if params is None or isinstance(params, (tuple, dict)) else (params,))
        return list(cur.fetchall())


def gone_within(db, sessions: list[int], seconds: float = 5) -> None:
    """Wait until MySQL has closed the killed sessions (KILL returns before their sockets close)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with db.cursor() as cur:
            cur.execute("SELECT COUNT(*) AS n FROM information_schema.processlist WHERE id IN %s", (sessions or [0],))
            if cur.fetchone()["n"] == 0:
                return
        time.sleep(0.01)
    raise AssertionError(f"sessions {sessions} still open after {seconds} s")


def token_for(api, uid, name=None) -> str:
    status, body = api.post("/auth/grant", {"uid": uid, **({"user_name": name} if name else {})})
    assert status == 200, body
    return body["data"]["token"]


def assert_ok(status, body):
    """A success: 200 with exactly {"data": ...}; returns the data."""
    assert status == 200, body
    assert set(body) == {"data"}, body
    return body["data"]


def assert_error(status, body, expected_status, field=None, code=None):
    """A failure in the envelope {"meta": {"code": int, "message": non-empty str}} with this status; the
    message starts with the field's name and the business code is this one, when they are given."""
    assert status == expected_status, body
    assert set(body) == {"meta"} and set(body["meta"]) == {"code", "message"}, body
    assert isinstance(body["meta"]["code"], int) and isinstance(body["meta"]["message"], str), body
    assert body["meta"]["message"], body
    if field is not None:
        assert body["meta"]["message"].startswith(field), body
    if code is not None:
        assert body["meta"]["code"] == code, body


# Every table with the order its rows are compared in (sequence holds the group_action counter).
SNAPSHOT_TABLES = {
    "app": "id", "user": "appid, uid", "`group`": "id", "group_member": "group_id, uid", "outbox": "id",
    "idempotency": "appid, idem_key", "store": "id", "seller": "id", "customer": "id", "sequence": "name",
    "friend": "appid, uid, friend_uid", "blacklist": "appid, uid, friend_uid",
    "user_token": "appid, uid", "user_setting": "appid, uid", "user_do_not_disturb": "appid, uid, kind, target",
    "user_device": "appid, uid, kind",
}


def redis_state(r) -> dict:
    """Every key of the test Redis DB with its value (strings as DUMPed bytes: some are HyperLogLogs)."""
    read = {"hash": r.hgetall, "set": r.smembers, "list": lambda key: r.lrange(key, 0, -1),
            "zset": lambda key: r.zrange(key, 0, -1, withscores=True)}
    return {key: read.get(r.type(key), r.dump)(key) for key in sorted(r.keys("*"))}


def snapshot(db, r) -> dict:
    """Everything a refused call must leave alone: every row of every table, the sequence counters
    included, and every Redis key with its value, but rate-limit counters (a refused wrong
    face-to-face code is meant to count)."""
    state = {table.strip("`"): rows(db, f"SELECT * FROM {table} ORDER BY {order}")
             for table, order in SNAPSHOT_TABLES.items()}
    redis = {key: value for key, value in redis_state(r).items() if not key.startswith("rate_limit_")}
    return state | {"redis": redis}


def assert_refused(db, r, call, status, code):
    """Make the call; it must fail with this status and business code and change nothing."""
    before = snapshot(db, r)
    got, body = call()
    assert_error(got, body, status, code=code)
    assert snapshot(db, r) == before


def nothing_written(db, r):
    """No row in any table but app and no Redis key at all but rate-limit counters (a failed
    authentication is meant to count)."""
    for table in TABLES:
        if table != "app":
            assert rows(db, f"SELECT * FROM {table}") == [], table
    assert [key for key in r.keys("*") if not key.startswith("rate_limit_")] == []


@pytest.fixture
def other_api(client, other):
    return Api(client, other["auth"])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on at the moment."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, seconds=20, what="it"):
    """Poll check() every 50 ms until it is true; fail the test after `seconds`."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


# --- groups: made through the API, and what they leave in MySQL and the Redis queues ------------

EVENTS, MESSAGES = "group_event_queue", "im_message_queue"
# The stock GoBelieve router loads a group's members with exactly this query.
ROUTER_MEMBERS = "SELECT uid, timestamp, mute FROM group_member WHERE group_id=%s AND deleted=0"


def create(api, members=(1, 2, 3), master=1, name="team", **fields) -> int:
    """Create a group through the API and return its id."""
    status, body = api.post("/groups", {"master": master, "name": name, "members": list(members), **fields})
    assert status == 200, body
    return body["data"]["group_id"]


def events(r) -> list[dict]:
    return queue(r, EVENTS)


def messages(r) -> list[dict]:
    return queue(r, MESSAGES)


def notes(r) -> list[dict]:
    """The decoded contents ({op: body}) of the group notifications queued, oldest first."""
    items = messages(r)
    assert all(item["kind"] == "group_notification" for item in items), items
    return [json.loads(item["content"]) for item in items]


def flush_queues(r) -> None:
    r.delete(EVENTS, MESSAGES)


def member_rows(db, gid) -> dict[int, dict]:
    """Every group_member row of the group, live or not, by uid."""
    found = rows(db, "SELECT uid, timestamp, nickname, mute, deleted FROM group_member WHERE group_id=%s", gid)
    return {row["uid"]: row for row in found}


def router_members(db, gid) -> list[int]:
    return sorted(row["uid"] for row in rows(db, ROUTER_MEMBERS, gid))


def assert_chain(items: list[dict], after: int | None = None) -> None:
    """Each event's action_id is the one before plus 1, and previous_action_id names it."""
    for item in items:
        assert item["action_id"] == item["previous_action_id"] + 1, item
    for before, item in itertools.pairwise(items):
        assert item["previous_action_id"] == before["action_id"], (before, item)
    if after is not None and items:
        assert items[0]["previous_action_id"] == after


def assert_now_s(value: int) -> None:
    assert abs(value - time.time()) < 10, value


def run_together(app, headers, calls: list[tuple]) -> list[int]:
    """Make the (method, path, body) calls at the same moment, one thread and client each; their statuses."""
    barrier, statuses = threading.Barrier(len(calls)), [None] * len(calls)

    def work(index: int, method: str, path: str, body) -> None:
        client = Api(app.test_client(), headers)
        barrier.wait()
        statuses[index] = client.call(method, path, body)[0]

    threads = [threading.Thread(target=work, args=(i, *call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


@pytest.fixture
def router():
    """A stand-in for a stock GoBelieve router's HTTP RPC (tests/router_standin.py) on a free port."""
    from router_standin import RouterStandin  # it imports conftest's free_port

    standin = RouterStandin()
    yield standin
    standin.close()


def insert_group(db, appid: int, gid: int, members=(1, 2), master: int = 1, deleted: int = 0) -> int:
    """A group written straight into MySQL (as an operator or the router's own tools would), with members."""
    with db.cursor() as cur:
        cur.execute("INSERT INTO `group` (id, appid, master, name, deleted) VALUES (%s, %s, %s, 'g', %s)",
                    (gid, appid, master, deleted))
        cur.executemany("INSERT INTO group_member (group_id, uid) VALUES (%s, %s)", [(gid, uid) for uid in members])
    return gid


def pytest_terminal_summary(terminalreporter):
    """One line naming what this machine lacks when tests were skipped for it, so a part of the suite
    is never skipped silently (README, "What the full test suite needs")."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        parts = "; ".join(f"{reason} ({count})" for reason, count in reasons.items())
        terminalreporter.write_line(f"NOT RUN: {sum(reasons.values())} tests skipped: {parts}. "
                                    "See README, \"What the full test suite needs\".")
