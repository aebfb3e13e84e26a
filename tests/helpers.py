"""Helpers the tests share: the test settings, HTTP calls with auth, readers of MySQL rows and Redis
queues, and the assertions every refusal and change is checked with."""
import base64
import hashlib
import itertools
import json
import os
import socket
import tempfile
import threading
import time

import pytest
from redis.cluster import RedisCluster

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


def all_keys(r, pattern: str = "*") -> list[str]:
    """Every key matching pattern, on a single Redis or on every master of a cluster."""
    if isinstance(r, RedisCluster):
        return sorted(r.keys(pattern, target_nodes=RedisCluster.PRIMARIES))
    return sorted(r.keys(pattern))


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


def insert_group(db, appid: int, gid: int, members=(1, 2), master: int = 1, deleted: int = 0) -> int:
    """A group written straight into MySQL (as an operator or the router's own tools would), with members."""
    with db.cursor() as cur:
        cur.execute("INSERT INTO `group` (id, appid, master, name, deleted) VALUES (%s, %s, %s, 'g', %s)",
                    (gid, appid, master, deleted))
        cur.executemany("INSERT INTO group_member (group_id, uid) VALUES (%s, %s)", [(gid, uid) for uid in members])
    return gid
