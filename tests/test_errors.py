"""The error envelope everywhere (SPEC 3), hostile bodies, probes and the OpenAPI document."""
import pytest
from helpers import TEST_CONFIG, nothing_written, rows

from app import create_app

GRANT = "/auth/grant"
PEERS = "/messages/peers"
MIB = 1024 * 1024
DEEP = 100_000


def send(client, demo, method, path, data=None, content_type="application/json", auth=True):
    """A raw request: data is sent as given (bytes), content_type None sends no Content-Type."""
    headers = dict(demo["auth"]) if auth else {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return client.open(path, method=method, data=data, headers=headers)


def assert_envelope(response, status, code=None):
    """A JSON error body {"meta": {"code", "message"}} with this status: never HTML, never a trace."""
    assert response.status_code == status, response.data[:300]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"meta"} and set(body["meta"]) == {"code", "message"}, body
    assert isinstance(body["meta"]["code"], int) and isinstance(body["meta"]["message"], str)
    assert "Traceback" not in body["meta"]["message"] and "<" not in body["meta"]["message"]
    if code is not None:
        assert body["meta"]["code"] == code, body


# (id, method, path, raw body, content type, use server auth, status, business code)
CASES = [
    ("unknown-route", "GET", "/nope", None, "application/json", False, 404, 1003),
    ("unknown-route-authenticated", "POST", "/nope/deeper", b"{}", "application/json", True, 404, 1003),
    ("id-over-range-in-path", "POST", f"/users/{2**63}/bind", b'{"apns_device_token": "t"}', "application/json",
     True, 404, 1003),
    ("negative-id-in-path", "GET", "/groups/-5", None, "application/json", True, 404, 1003),
    ("wrong-method-get", "GET", GRANT, None, "application/json", True, 405, 1004),
    ("wrong-method-delete", "DELETE", PEERS, None, "application/json", True, 405, 1004),
    ("wrong-method-on-probe", "POST", "/healthz", None, "application/json", False, 405, 1004),
    ("malformed-json", "POST", GRANT, b'{"uid": 1', "application/json", True, 400, 1000),
    ("trailing-garbage", "POST", GRANT, b'{"uid": 1} x', "application/json", True, 400, 1000),
    ("single-quotes", "POST", GRANT, b"{'uid': 1}", "application/json", True, 400, 1000),
    ("json-string", "POST", GRANT, b'"hello"', "application/json", True, 400, None),
    ("json-number", "POST", GRANT, b"42", "application/json", True, 400, None),
    ("json-null", "POST", GRANT, b"null", "application/json", True, 400, None),
    ("json-array", "POST", GRANT, b"[1]", "application/json", True, 400, None),
    ("message-json-string", "POST", PEERS, b'"hello"', "application/json", True, 400, None),
    ("text-plain", "POST", GRANT, b'{"uid": 1}', "text/plain", True, 415, 1006),
    ("form-urlencoded", "POST", GRANT, b"uid=1", "application/x-www-form-urlencoded", True, 415, 1006),
    ("form-on-messages", "POST", PEERS, b"sender=1&receiver=2&content=x", "application/x-www-form-urlencoded",
     True, 415, 1006),
    ("xml", "POST", GRANT, b"<uid>1</uid>", "application/xml", True, 415, 1006),
    ("nan", "POST", GRANT, b'{"uid": NaN}', "application/json", True, 400, 1000),
    ("infinity", "POST", GRANT, b'{"uid": 1, "user_name": -Infinity}', "application/json", True, 400, 1000),
    ("nan-inside-content", "POST", PEERS, b'{"sender": 1, "receiver": 2, "content": {"a": NaN}}',
     "application/json", True, 400, 1000),
    ("5000-digit-integer", "POST", GRANT, b'{"uid": ' + b"1" * 5000 + b"}", "application/json", True, 400, None),
    ("5000-digit-float", "POST", GRANT, b'{"uid": ' + b"1" * 5000 + b".5}", "application/json", True, 400, None),
    ("float-overflow", "POST", GRANT, b'{"uid": 1e400}', "application/json", True, 400, None),
    ("deep-arrays", "POST", GRANT, b"[" * DEEP + b"]" * DEEP, "application/json", True, 400, 1000),
    ("deep-objects-in-a-field", "POST", PEERS,
     b'{"sender": 1, "receiver": 2, "content": ' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"}",
     "application/json", True, 400, 1000),
    ("invalid-utf8", "POST", GRANT, b'{"uid": 1, "user_name": "\xff\xfe"}', "application/json", True, 400, 1000),
    ("raw-nul-byte", "POST", GRANT, b'{"uid": 1,\x00 "user_name": "a"}', "application/json", True, 400, 1000),
    ("body-over-1-mib", "POST", GRANT, b'{"uid": 1, "user_name": "' + b"x" * MIB + b'"}', "application/json",
     True, 413, 1005),
    ("message-body-over-1-mib", "POST", PEERS, b'{"sender": 1, "receiver": 2, "content": "' + b"x" * MIB + b'"}',
     "application/json", True, 413, 1005),
]


@pytest.mark.parametrize("method,path,data,content_type,auth,status,code", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_errors_use_the_envelope(client, demo, db, r, method, path, data, content_type, auth, status, code):
    response = send(client, demo, method, path, data, content_type, auth)
    assert_envelope(response, status, code)
    nothing_written(db, r)


@pytest.mark.parametrize("path,data", [
    (GRANT, b'{"uid": 1, "user_name": "\\ud800"}'),
    (PEERS, b'{"sender": 1, "receiver": 2, "content": "\\udfff"}'),
], ids=["user_name", "content"])
def test_a_lone_surrogate_in_a_string_is_400(client, demo, db, r, path, data):
    assert_envelope(send(client, demo, "POST", path, data), 400)
    nothing_written(db, r)


def test_an_escaped_nul_in_a_string_is_kept_or_refused_never_a_500(client, demo, db, r):
    response = send(client, demo, "POST", GRANT, b'{"uid": 1, "user_name": "a\\u0000b"}')
    if response.status_code == 200:
        token = response.get_json()["data"]["token"]
        assert rows(db, "SELECT name FROM user") == [{"name": "a\x00b"}]
        assert r.hget(f"access_token_{token}", "user_name") == "a\x00b"
    else:
        assert_envelope(response, 400)
        nothing_written(db, r)


def test_an_escaped_nul_in_content_is_queued_unchanged(client, demo, r):
    response = send(client, demo, "POST", PEERS, b'{"sender": 1, "receiver": 2, "content": "a\\u0000b"}')
    assert response.status_code == 200, response.data
    assert '"a\\u0000b"' in r.lindex("im_message_queue", 0)


def test_errors_are_json_even_when_the_client_asks_for_html(client):
    response = client.get("/nope", headers={"Accept": "text/html"})
    assert_envelope(response, 404, 1003)


def test_a_field_error_is_400_not_422(client, demo):
    response = send(client, demo, "POST", GRANT, b'{"uid": "seven"}')
    assert_envelope(response, 400, 1001)
    assert "uid" in response.get_json()["meta"]["message"]


@pytest.mark.parametrize("content_type", [None, "application/json; charset=utf-8", "application/vnd.gobelieve+json"],
                         ids=["no-content-type", "with-charset", "json-suffix"])
def test_json_bodies_are_read_with_a_json_or_missing_content_type(client, demo, db, content_type):
    response = send(client, demo, "POST", GRANT, b'{"uid": 7, "user_name": "Ann"}', content_type)
    assert response.status_code == 200, response.data
    assert rows(db, "SELECT uid, name FROM user") == [{"uid": 7, "name": "Ann"}]


def test_a_body_just_under_the_limit_is_read(client, demo, r):
    content = "x" * 60_000
    pad = b"y" * (MIB - 61_000)
    body = b'{"sender": 1, "receiver": 2, "content": "' + content.encode() + b'", "pad": "' + pad + b'"}'
    assert len(body) < MIB
    response = send(client, demo, "POST", PEERS, body)
    assert response.status_code == 200, response.data
    assert r.llen("im_message_queue") == 1


def test_a_field_over_its_limit_under_the_body_limit_is_400_not_413(client, demo, r):
    body = b'{"sender": 1, "receiver": 2, "content": "' + b"x" * 100_000 + b'"}'
    response = send(client, demo, "POST", PEERS, body)
    assert_envelope(response, 400, 1001)
    assert "content" in response.get_json()["meta"]["message"]
    assert r.llen("im_message_queue") == 0


# --- probes ---------------------------------------------------------------------------------------

def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"data": {"status": "ok"}}


def test_readyz_when_mysql_and_redis_are_up(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"data": {"status": "ready"}}


@pytest.mark.parametrize("broken", [{"MYSQL_PORT": 1}, {"REDIS_PORT": 1}], ids=["mysql-down", "redis-down"])
def test_readyz_is_503_when_a_backing_service_is_down(broken):
    down = create_app({**TEST_CONFIG, **broken}).test_client()
    response = down.get("/readyz")
    assert_envelope(response, 503)
    assert int(response.headers["Retry-After"]) > 0
    assert down.get("/healthz").status_code == 200


# --- the OpenAPI document and its UI ----------------------------------------------------------------

MAIN_PATHS = ["/auth/grant", "/users/{uid}", "/users/{uid}/bind", "/users/{uid}/unbind", "/device/bind",
              "/device/unbind", "/groups", "/groups/{gid}", "/groups/{gid}/members", "/groups/{gid}/members/{mid}",
              "/messages/peers", "/messages/groups", "/messages/systems", "/messages/notifications",
              "/messages/groups/notifications", "/messages/rooms", "/healthz", "/readyz"]


def test_openapi_document_lists_the_main_paths(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"].startswith("3.")
    missing = [path for path in MAIN_PATHS if path not in spec["paths"]]
    assert missing == []
    assert "post" in spec["paths"]["/messages/peers"]
    assert set(spec["components"]["securitySchemes"]) >= {"server", "client"}


def test_docs_serve_html(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert b"<html" in response.data.lower() and b"openapi.json" in response.data
