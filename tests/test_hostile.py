"""Hostile input: generated requests from the served OpenAPI document and fuzzed raw bodies.

Whatever arrives, the answer is the JSON envelope with a status below 500, and a refused
request leaves MySQL and Redis as they were.
"""
import json
import os

import marshmallow as ma
import pytest
import schemathesis
from helpers import TEST_CONFIG, bearer, rows, token_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import create_app
from views.fields import SLOW, Schema

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", 15))
HYPOTHESIS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
TABLES = ("`group`", "group_member", "user", "outbox", "store", "seller", "customer", "idempotency")
QUEUES = ("im_message_queue", "group_event_queue", "user_event_queue")


# The OpenAPI document as the app serves it (building it touches neither MySQL nor Redis).
OPERATIONS = {op.ok().label: op.ok() for op in
              schemathesis.openapi.from_wsgi("/openapi.json", create_app(TEST_CONFIG)).get_all_operations()}


def assert_envelope(status: int, body) -> None:
    # 501: a router-backed read without the router configured (the documented answer)
    assert status < 500 or status == 501 and body["meta"]["code"] == 7004, body
    assert isinstance(body, dict) and ("data" in body or set(body) == {"meta"}), body
    if status >= 400:
        assert set(body["meta"]) == {"code", "message"} and body["meta"]["message"]


def row_and_queue_counts(db, r) -> tuple:
    """The row count of each table and the length of each queue: cheap enough for every hypothesis example
    (the rows pile up across examples), unlike helpers.snapshot, which compares every row and key."""
    counts = tuple(rows(db, f"SELECT COUNT(*) AS n FROM {table}")[0]["n"] for table in TABLES)
    return counts, tuple(r.llen(name) for name in QUEUES)


@pytest.mark.parametrize("label", sorted(OPERATIONS))
@HYPOTHESIS
@given(data=st.data())
def test_generated_requests_get_the_envelope_and_never_a_500(api, demo, label, data):
    operation = OPERATIONS[label]
    case = data.draw(operation.as_strategy())
    client_only = operation.definition.raw.get("security") == [{"client": []}]
    headers = bearer(token_for(api, 1)) if client_only else demo["auth"]
    response = case.call(headers=headers)
    assert response.headers["content-type"][0].startswith("application/json")
    assert_envelope(response.status_code, response.json())


# Any JSON at all: scalars, deep nesting, huge numbers, NUL bytes, emoji.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30)
FIELDS = st.fixed_dictionaries({}, optional={
    key: JSON for key in ("uid", "sender", "receiver", "content", "master", "name", "members", "group_id",
                          "do_not_disturb", "mute", "forbidden", "quiet", "code", "inviter", "nickname")})
WRITES = [("POST", "/auth/grant"), ("POST", "/users/1"), ("POST", "/users/1/bind"), ("POST", "/groups"),
          ("POST", "/messages/peers"), ("POST", "/messages/groups/notifications"), ("POST", "/users")]


@pytest.mark.parametrize("method,path", WRITES)
@HYPOTHESIS
@given(body=FIELDS | JSON)
def test_fuzzed_bodies_are_refused_cleanly_or_accepted_whole(api, db, r, method, path, body):
    before = row_and_queue_counts(db, r)
    status, answer = api.call(method, path, body)
    assert_envelope(status, answer)
    if status >= 400:
        assert row_and_queue_counts(db, r) == before


@pytest.mark.parametrize("raw", [
    b"{", b"[1, 2", b'{"uid": 1,}', b"\xff\xfe", b'{"uid": NaN}', b'{"uid": Infinity}',
    b'{"uid": ' + b"9" * 5000 + b"}", b"[" * 100000 + b"]" * 100000, b'{"uid": 1, "user_name": "a\\u0000b"}',
    b'"just a string"', b"12", b"null",
])
def test_raw_bodies_that_are_not_acceptable_json_are_400(api, db, r, raw):
    before = row_and_queue_counts(db, r)
    response = api.client.post("/auth/grant", data=raw, headers={**api.headers, "Content-Type": "application/json"})
    body = response.get_json()
    assert_envelope(response.status_code, body)
    assert response.status_code in (200, 400)  # the NUL byte is a fine character in a name
    if response.status_code == 400:
        assert row_and_queue_counts(db, r) == before


def test_a_body_over_the_limit_is_413(api, app):
    body = json.dumps({"uid": 1, "user_name": "x" * app.config["MAX_CONTENT_LENGTH"]})
    response = api.client.post("/auth/grant", data=body, headers={**api.headers, "Content-Type": "application/json"})
    assert response.status_code == 413 and response.get_json()["meta"]["code"] == 1005


def schemas_with_a_short_cut() -> list:
    """An instance of every request schema whose load() can skip marshmallow (views/fields.py, Schema)."""
    found, classes = [], [Schema]
    while classes:
        cls = classes.pop()
        classes += cls.__subclasses__()
        if (schema := cls()).quick_fields:
            found.append(schema)
    return found


QUICK = schemas_with_a_short_cut()
SMALL_LIMITS = create_app(TEST_CONFIG | {"CUSTOMER_ID_BASE": 1000, "MAX_CONTENT_BYTES": 8})
# Values at the edges of ids and contents (of the small app above), and of every other type.
EDGES = [-1, 0, 999, 1000, 2**63 - 1, 2**63, True, 7.0, 7.5, "7", "x", None, [1], {}, "", "😀" * 2, "😀" * 3]
VALUES = st.sampled_from(EDGES) | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5) \
    | st.integers(0, 260).map(lambda n: "é" * n)


def outcome(load, body):
    try:
        return load(body)
    except ma.ValidationError as exc:
        return exc.messages


def marshmallow(schema):
    return lambda body: ma.Schema.load(schema, body)


def test_the_message_schemas_take_the_short_cut():
    names = {type(schema).__name__ for schema in QUICK}
    assert {"PeerMessageSchema", "GroupMessageSchema", "SystemMessageSchema", "MemberSchema"} <= names


@pytest.mark.parametrize("schema", QUICK, ids=lambda schema: type(schema).__name__)
def test_the_short_cut_loads_what_marshmallow_loads_at_every_edge(schema):
    with SMALL_LIMITS.app_context():
        valid = {name: next(v for v in (1, "a") if field.quick(v) is not SLOW) for name, field in schema.quick_fields}
        assert schema.load(valid) == valid
        for name, field in schema.quick_fields:
            lengths = [getattr(field, "length", 0) + 1, getattr(field, "length", 0), getattr(field, "shortest", 0) - 1]
            for value in EDGES + ["é" * n for n in lengths if n >= 0]:
                body = valid | {name: value}
                assert outcome(schema.load, body) == outcome(marshmallow(schema), body), (name, value)
            body = {key: value for key, value in valid.items() if key != name}
            assert outcome(schema.load, body) == outcome(marshmallow(schema), body), name


@pytest.mark.parametrize("schema", QUICK, ids=lambda schema: type(schema).__name__)
@HYPOTHESIS
@given(data=st.data())
def test_the_short_cut_loads_what_marshmallow_loads(schema, data):
    body = data.draw(st.fixed_dictionaries({}, optional={name: VALUES for name in [*schema.fields, "extra"]}))
    with SMALL_LIMITS.app_context():
        assert outcome(schema.load, body) == outcome(marshmallow(schema), body)
