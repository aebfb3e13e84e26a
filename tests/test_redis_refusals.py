"""A Redis that is up but refuses writes (full at maxmemory, a read-only replica, a failed
snapshot): every endpoint that writes to it answers 503 with Retry-After, like a Redis that is away."""
import shutil

import pytest
import redis
from helpers import TEST_CONFIG, Api, assert_error, bearer, free_port, token_for
from test_faults import Server, accepting

from app import create_app
from views.errors import refuses_writes

UNAVAILABLE = 7001


@pytest.fixture
def full_redis():
    """A Redis of the test's own with a tiny maxmemory and no eviction (set once the test is ready)."""
    port = free_port()
    server = Server([shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--maxmemory", "8mb", "--maxmemory-policy", "noeviction"],
                    lambda: accepting(port))
    server.start()
    server.port = port
    yield server
    server.stop()


@pytest.fixture
def full_app(full_redis):
    return create_app({**TEST_CONFIG, "REDIS_PORT": full_redis.port, "REDIS_DB": 0, "REDIS_TIMEOUT": 1})


def fill(r) -> None:
    """Put Redis well past its maxmemory: from now on every write that adds memory is refused."""
    for n in range(4):
        r.set(f"ballast_{n}", "x" * 1024 * 1024)
    r.config_set("maxmemory", "2mb")  # noeviction: nothing can be freed to make room
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        r.set("one_more", "x")


def writes(demo, token, gid):
    """Every kind of request that writes to Redis: (name, path, body, headers)."""
    server, user = demo["auth"], bearer(token)
    return [
        ("message post", "/messages/peers", {"sender": 1, "receiver": 2, "content": "hi"}, server),
        ("grant", "/auth/grant", {"uid": 9}, server),
        ("settings", "/users/1", {"name": "new name"}, server),
        ("device bind", "/device/bind", {"apns_device_token": "t"}, user),
        ("member quiet", f"/groups/{gid}/members/1", {"quiet": 1}, server),
        ("group quiet", f"/notification/groups/{gid}", {"quiet": 1}, user),
        ("customer", "/auth/customer", {"appid": demo["id"], "customer_id": "v"}, {}),
    ]


def assert_unavailable(response, retry_after: int, name: str) -> None:
    """503 in the envelope, code 7001, with Retry-After."""
    assert_error(response.status_code, response.get_json(), 503, code=UNAVAILABLE), name
    assert response.headers.get("Retry-After") == str(retry_after), name


def test_a_full_redis_answers_503_with_retry_after_on_every_write(full_app, demo):
    client = full_app.test_client()
    api = Api(client, demo["auth"])
    token = token_for(api, 1)
    gid = api.post("/groups", {"master": 1, "name": "g", "members": [1, 2]})[1]["data"]["group_id"]
    assert api.post("/stores", {"name": "shop"})[0] == 200
    fill(full_app.extensions["redis"])
    for name, path, body, headers in writes(demo, token, gid):
        assert_unavailable(client.post(path, json=body, headers=headers), full_app.config["RETRY_AFTER"], name)


def test_a_read_only_redis_answers_503_with_retry_after(full_app, full_redis, demo):
    r = full_app.extensions["redis"]
    r.replicaof("127.0.0.1", free_port())  # a replica of nobody: it refuses every write with READONLY
    try:
        response = full_app.test_client().post("/auth/grant", json={"uid": 9}, headers=demo["auth"])
    finally:
        r.replicaof("NO", "ONE")
    assert_unavailable(response, full_app.config["RETRY_AFTER"], "grant")


@pytest.mark.parametrize("text, refused", [
    ("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.", True),
    ("Command # 1 (SET a b) of pipeline caused error: MISCONF Redis is configured to save RDB snapshots", True),
    ("user_script:1: OOM command not allowed when used memory > 'maxmemory'.", True),
    ("WRONGTYPE Operation against a key holding the wrong kind of value", False),
    ("user_script:1: Script attempted to access nonexistent global variable 'OOM'", False),
])
def test_refusals_are_told_by_their_reply_code_where_redis_py_has_no_class(text, refused):
    assert refuses_writes(redis.ResponseError(text)) is refused
