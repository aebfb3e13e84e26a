"""Fixtures: the app on a dedicated test database and Redis DB, emptied around every test."""
import base64
import hashlib
import json
import os

import pymysql
import pytest
import redis

import config
from app import create_app
from models.db import mysql_connect_args
from models.migrations import init_db

TEST_CONFIG = {
    "MYSQL_DATABASE": os.environ.get("TEST_MYSQL_DATABASE", "gobelieve_test"),
    "REDIS_DB": int(os.environ.get("TEST_REDIS_DB", 15)),
    "OUTBOX_RELAY_INTERVAL": 0,
    "ACCESS_LOG": False,  # tests/test_ops.py turns it on where it checks the line
    "TESTING": True,
}
TABLES = ("app", "`group`", "group_member", "user", "store", "seller", "customer", "outbox", "idempotency", "friend",
          "blacklist")


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


@pytest.fixture(scope="session")
def small_app(app):
    """An app on the same database and Redis whose normal groups hold at most 3 members."""
    return create_app(TEST_CONFIG | {"MAX_GROUP_MEMBERS": 3})


@pytest.fixture
def small_api(small_app, demo):
    return Api(small_app.test_client(), demo["auth"])


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
    """A failure in the envelope, with the status, and the field named and the code when given."""
    assert status == expected_status, body
    assert set(body) == {"meta"} and isinstance(body["meta"]["message"], str)
    if field is not None:
        assert field in body["meta"]["message"], body
    if code is not None:
        assert body["meta"]["code"] == code, body


def snapshot(db, r) -> dict:
    """Everything a refused call must leave alone: the user and group tables, the outbox and all of Redis
    but rate-limit counters (a refused wrong face-to-face code is meant to count)."""
    return {
        "user": rows(db, "SELECT * FROM user ORDER BY appid, uid"),
        "group": rows(db, "SELECT * FROM `group` ORDER BY id"),
        "group_member": rows(db, "SELECT * FROM group_member ORDER BY group_id, uid"),
        "outbox": rows(db, "SELECT id, redis_key, item FROM outbox ORDER BY id"),
        "redis": {key: r.dump(key) for key in sorted(r.keys("*")) if not key.startswith("rate_limit_")},
    }


def assert_refused(db, r, call, status, code):
    """Make the call; it must fail with this status and business code and change nothing."""
    before = snapshot(db, r)
    got, body = call()
    assert_error(got, body, status, code=code)
    assert body["meta"]["message"]
    assert snapshot(db, r) == before
