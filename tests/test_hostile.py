"""Hostile input: generated requests from the served OpenAPI document and fuzzed raw bodies.

Whatever arrives, the answer is the JSON envelope with a status below 500, and a refused
request leaves MySQL and Redis as they were.
"""
import json
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings, strategies as st

from app import create_app
from conftest import TEST_CONFIG, bearer, rows, token_for

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", 15))
HYPOTHESIS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
TABLES = ("`group`", "group_member", "user", "outbox", "store", "seller", "customer", "idempotency")
QUEUES = ("im_message_queue", "group_event_queue", "user_event_queue")


# The OpenAPI document as the app serves it (building it touches neither MySQL nor Redis).
OPERATIONS = {op.ok().label: op.ok() for op in
              schemathesis.openapi.from_wsgi("/openapi.json", create_app(TEST_CONFIG)).get_all_operations()}


def assert_envelope(status: int, body) -> None:
    assert status < 500, body
    assert isinstance(body, dict) and ("data" in body or set(body) == {"meta"}), body
    if status >= 400:
        assert set(body["meta"]) == {"code", "message"} and body["meta"]["message"]


def snapshot(db, r) -> tuple:
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
    before = snapshot(db, r)
    status, answer = api.call(method, path, body)
    assert_envelope(status, answer)
    if status >= 400:
        assert snapshot(db, r) == before


@pytest.mark.parametrize("raw", [
    b"{", b"[1, 2", b'{"uid": 1,}', b"\xff\xfe", b'{"uid": NaN}', b'{"uid": Infinity}',
    b'{"uid": ' + b"9" * 5000 + b"}", b"[" * 100000 + b"]" * 100000, b'{"uid": 1, "user_name": "a\\u0000b"}',
    b'"just a string"', b"12", b"null",
])
def test_raw_bodies_that_are_not_acceptable_json_are_400(api, db, r, raw):
    before = snapshot(db, r)
    response = api.client.post("/auth/grant", data=raw, headers={**api.headers, "Content-Type": "application/json"})
    body = response.get_json()
    assert_envelope(response.status_code, body)
    assert response.status_code in (200, 400)  # the NUL byte is a fine character in a name
    if response.status_code == 400:
        assert snapshot(db, r) == before


def test_a_body_over_the_limit_is_413(api, app):
    body = json.dumps({"uid": 1, "user_name": "x" * app.config["MAX_CONTENT_LENGTH"]})
    response = api.client.post("/auth/grant", data=body, headers={**api.headers, "Content-Type": "application/json"})
    assert response.status_code == 413 and response.get_json()["meta"]["code"] == 1005
