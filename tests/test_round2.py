"""Hostile input and faults, round 2 (issue 15): each test fails on the code before its fix."""
import base64
import json

import pytest
from conftest import Api, assert_refused, basic, bearer, make_app, queue, rows, token_for

LONE = "\ud800"  # an unpaired high surrogate: not a Unicode scalar value, never storable as UTF-8


def raw_json(body: dict, encoding: str = "utf-8") -> bytes:
    """The body as JSON text with lone surrogates written raw (not as \\u escapes)."""
    return json.dumps(body, ensure_ascii=False).encode(encoding, "surrogatepass")


# Each endpoint that stores or queues a string, with a body holding a lone surrogate in `field`.
STRING_WRITES = [
    ("POST", "/messages/peers", {"sender": 1, "receiver": 2, "content": "a" + LONE}, "content"),
    ("POST", "/groups", {"master": 1, "name": "g" + LONE, "members": [1]}, "name"),
    ("POST", "/auth/grant", {"uid": 1, "user_name": "n" + LONE}, "user_name"),
    ("POST", "/users", [{"uid": 1, "name": "n" + LONE}], "name"),
    ("POST", "/users/1/bind", {"apns": "t" + LONE}, "apns"),
]


def post_raw(api, method, path, data: bytes, headers=None):
    response = api.client.open(path, method=method, data=data,
                               headers={**api.headers, "Content-Type": "application/json", **(headers or {})})
    return response.status_code, response.get_json()


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-le", "utf-32-be"])
@pytest.mark.parametrize("method,path,body,field", STRING_WRITES)
def test_a_raw_lone_surrogate_is_400_and_writes_nothing(api, db, r, method, path, body, field, encoding):
    assert_refused(db, r, lambda: post_raw(api, method, path, raw_json(body, encoding)), 400, 1000)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32-le"])
def test_an_escaped_lone_surrogate_in_a_utf16_or_utf32_body_is_400(api, db, r, encoding):
    data = '{"sender": 1, "receiver": 2, "content": "a\\ud800"}'.encode(encoding)
    assert_refused(db, r, lambda: post_raw(api, "POST", "/messages/peers", data), 400, 1000)


def test_the_utf8_bytes_ed_a0_80_are_400_on_the_customer_and_group_update_paths(api, client, db, r, demo):
    api.post("/stores", {"name": "shop"})
    anon = Api(client, {})
    data = b'{"appid": %d, "customer_id": "v\xed\xa0\x80"}' % demo["id"]
    assert_refused(db, r, lambda: post_raw(anon, "POST", "/auth/customer", data), 400, 1000)
    gid = api.post("/groups", {"master": 1, "name": "g", "members": [1]})[1]["data"]["group_id"]
    assert_refused(db, r, lambda: post_raw(api, "PATCH", f"/groups/{gid}", b'{"name": "\xed\xa0\x80"}'), 400, 1000)


def test_a_message_in_utf16_without_surrogates_is_still_accepted(api, r):
    data = json.dumps({"sender": 1, "receiver": 2, "content": "h\u00e9 \U0001f600"}, ensure_ascii=False)
    status, body = post_raw(api, "POST", "/messages/peers", data.encode("utf-16"))
    assert status == 200, body
    assert queue(r, "im_message_queue")[0]["content"] == "h\u00e9 \U0001f600"


# --- 2. a refused grant leaves no token ------------------------------------------------------------

def test_a_grant_that_fails_after_the_token_was_made_leaves_no_token(api, db, r, monkeypatch):
    from models import user as users

    def broken(*args):
        raise RuntimeError("Redis answered something unexpected")

    monkeypatch.setattr(users, "save_name", broken)
    status, body = api.post("/auth/grant", {"uid": 7, "user_name": "x"})
    assert status == 500, body
    assert r.keys("access_token_*") == []
    assert all(r.hget(key, "access_token") is None for key in r.keys("users_*"))


def test_a_grant_whose_row_fails_for_any_reason_leaves_no_token(api, db, r, monkeypatch):
    from models import user as users

    def broken(*args):
        raise UnicodeEncodeError("utf-8", "x", 0, 1, "surrogates not allowed")

    monkeypatch.setattr(users, "record_user", broken)
    status, body = api.post("/auth/grant", {"uid": 8, "user_name": "x"})
    assert status == 500, body
    assert r.keys("access_token_*") == []


def test_a_grant_that_fails_leaves_an_existing_token_alone(api, db, r, monkeypatch):
    token = token_for(api, 9, "x")
    from models import user as users

    monkeypatch.setattr(users, "save_name", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    status, _ = api.post("/auth/grant", {"uid": 9, "user_name": "y"})
    assert status == 500
    assert r.hget(f"access_token_{token}", "user_id") == "9"


# --- 3. deep JSON content --------------------------------------------------------------------------

@pytest.mark.parametrize("depth", range(900, 1000))
def test_deeply_nested_content_is_400_never_500(api, db, r, depth):
    content = "[" * depth + "]" * depth
    data = ('{"sender": 1, "receiver": 2, "content": ' + content + "}").encode()
    status, body = post_raw(api, "POST", "/messages/peers", data)
    assert status in (200, 400), body
    if status == 400:
        assert body["meta"]["code"] in (1000, 1001)
        assert r.llen("im_message_queue") == 0


@pytest.mark.parametrize("depth", range(880, 1000, 2))
def test_deeply_nested_content_in_a_batch_or_group_notification_is_400(api, db, r, depth):
    content = "{\"a\":" * depth + "1" + "}" * depth
    for path, data in [("/messages/peers/batch", '[{"sender": 1, "receiver": 2, "content": ' + content + "}]"),
                       ("/messages/systems", '{"receiver": 2, "content": ' + content + "}")]:
        status, body = post_raw(api, "POST", path, data.encode())
        assert status in (200, 400), (path, body)


# --- 5. idempotency namespaces (done before this round; the collision the issue names) ---------------

def test_a_server_key_spelled_like_a_clients_stored_key_does_not_collide(api, client, db):
    client_api = Api(client, bearer(token_for(api, 5)))
    status, body = client_api.post("/groups", {"master": 5, "name": "mine", "members": [5]},
                                   headers={"Idempotency-Key": "k1"})
    assert status == 200, body
    mine = body["data"]["group_id"]
    for forged in ("5:k1", "client:5:k1", "client_5_k1"):
        status, body = api.post("/groups", {"master": 1, "name": "server's", "members": [1]},
                                headers={"Idempotency-Key": forged})
        assert status == 200 and body["data"]["group_id"] != mine, (forged, body)
    status, body = client_api.post("/groups", {"master": 5, "name": "mine", "members": [5]},
                                   headers={"Idempotency-Key": "k1"})
    assert body["data"]["group_id"] == mine
    assert rows(db, "SELECT COUNT(*) AS n FROM `group`")[0]["n"] == 4


# --- 8. the scheme word in any case; every 401 says how to authenticate -----------------------------

@pytest.mark.parametrize("word", ["basic", "BASIC", "bAsIc"])
def test_the_basic_scheme_word_is_case_insensitive(client, demo, word):
    header = demo["auth"]["Authorization"].replace("Basic", word, 1)
    status, body = Api(client, {"Authorization": header}).post("/auth/grant", {"uid": 1})
    assert status == 200, body


@pytest.mark.parametrize("word", ["bearer", "BEARER", "beaRer"])
def test_the_bearer_scheme_word_is_case_insensitive(api, client, word):
    token = token_for(api, 3)
    status, body = Api(client, {"Authorization": f"{word} {token}"}).get("/groups")
    assert status == 200, body


@pytest.mark.parametrize("path,headers,scheme", [
    ("/auth/grant", {}, "Basic"),
    ("/auth/grant", {"Authorization": "Digest x"}, "Basic"),
    ("/auth/grant", {"Authorization": "Basic !!!"}, "Basic"),
    ("/auth/grant", {"Authorization": "Basic OTk5OTk5OmFiYw=="}, "Basic"),  # 999999:abc, no such app
    ("/groups", {}, "Bearer"),  # both schemes: a challenge for each
    ("/groups", {"Authorization": "Bearer nope"}, "Bearer"),
    ("/device/bind", {}, "Bearer"),
])
def test_every_401_carries_www_authenticate(client, demo, path, headers, scheme):
    response = client.post(path, json={"uid": 1}, headers=headers)
    assert response.status_code == 401, response.get_json()
    assert scheme in response.headers.get("WWW-Authenticate", ""), response.headers


def test_a_wrong_secret_is_401_with_a_basic_challenge(client, demo):
    response = client.post("/auth/grant", json={"uid": 1}, headers=basic(demo["id"], "wrong"))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic realm=")


# --- 9. a malformed allowed_ips fails closed ---------------------------------------------------------

@pytest.mark.parametrize("allowed", ["10.0.0.1;10.0.0.2", "not-an-ip", "10.0.0.0/33"])
def test_a_malformed_allow_list_is_403_and_logged_once_per_cache_period(client, db, r, allowed, caplog):
    fenced = make_app(db, name="fenced", allowed_ips=allowed)
    with caplog.at_level("ERROR"):
        for _ in range(3):
            status, body = Api(client, fenced["auth"]).post("/auth/grant", {"uid": 1})
            assert status == 403 and body["meta"]["code"] == 2005, body
    logged = [rec for rec in caplog.records if rec.levelname == "ERROR" and "allowed_ips" in rec.getMessage()]
    assert len(logged) == 1 and str(fenced["id"]) in logged[0].getMessage(), [r.getMessage() for r in logged]
    assert r.keys("access_token_*") == []


# --- 10. an empty secret never authenticates --------------------------------------------------------

def test_an_app_with_an_empty_secret_never_authenticates(client, db, r):
    with db.cursor() as cur:
        cur.execute("INSERT INTO app (id, name) VALUES (424242, 'by hand')")
    assert rows(db, "SELECT secret FROM app WHERE id = 424242")[0]["secret"] == ""
    for digest_of in ("", "x"):
        status, body = Api(client, basic(424242, digest_of)).post("/auth/grant", {"uid": 1})
        assert status == 401 and body["meta"]["code"] == 2003, body
    raw = {"Authorization": "Basic " + base64.b64encode(b"424242:").decode()}
    status, body = Api(client, raw).post("/auth/grant", {"uid": 1})
    assert status == 401, body
    assert r.keys("access_token_*") == []


# --- 11. customer-service visitors and groups ------------------------------------------------------

def visitor_api(api, client, demo) -> tuple[Api, int]:
    api.post("/stores", {"name": "shop"})
    status, body = Api(client, {}).post("/auth/customer", {"appid": demo["id"], "customer_id": "v-1"})
    assert status == 200, body
    return Api(client, bearer(body["data"]["token"])), body["data"]["client_id"]


def test_a_visitor_gets_403_on_every_group_path(api, client, demo, db, r):
    gid = api.post("/groups", {"master": 1, "name": "team", "members": [1, 2], "code": "4711"})[1]["data"]["group_id"]
    visitor, cid = visitor_api(api, client, demo)
    calls = [("GET", f"/groups/{gid}", None), ("GET", f"/client/groups/{gid}", None), ("GET", "/groups", None),
             ("GET", f"/groups/{gid}/members", None), ("POST", "/groups", {"master": cid, "name": "x"}),
             ("POST", f"/groups/{gid}/members", [cid]), ("POST", "/groups/join", {"code": "4711"}),
             ("PATCH", f"/groups/{gid}", {"name": "y"}), ("DELETE", f"/groups/{gid}", None),
             ("POST", f"/notification/groups/{gid}", {"quiet": 1}), ("DELETE", f"/groups/{gid}/members/2", None)]
    for method, path, body in calls:
        assert_refused(db, r, lambda m=method, p=path, b=body: visitor.call(m, p, b), 403, 2007)


# --- 12. master rights need live membership -------------------------------------------------------

def test_a_master_the_server_removed_has_no_master_rights_left(api, client, db, r):
    gid = api.post("/groups", {"master": 1, "name": "team", "members": [1, 2, 3]})[1]["data"]["group_id"]
    master = Api(client, bearer(token_for(api, 1)))
    status, body = api.delete(f"/groups/{gid}/members/1")
    assert status == 200, body
    for method, path, body in [("PATCH", f"/groups/{gid}", {"name": "mine again"}),
                               ("DELETE", f"/groups/{gid}/members/2", None),
                               ("DELETE", f"/groups/{gid}/members", [3]),
                               ("PATCH", f"/groups/{gid}/members/2", {"mute": True}),
                               ("DELETE", f"/groups/{gid}", None)]:
        assert_refused(db, r, lambda m=method, p=path, b=body: master.call(m, p, b), 403, 4003)


def test_a_live_master_keeps_its_rights(api, client):
    gid = api.post("/groups", {"master": 1, "name": "team", "members": [1, 2]})[1]["data"]["group_id"]
    master = Api(client, bearer(token_for(api, 1)))
    assert master.patch(f"/groups/{gid}", {"name": "renamed"})[0] == 200
    assert master.delete(f"/groups/{gid}")[0] == 200


# --- 13. wrong face-to-face codes are limited per user ---------------------------------------------

@pytest.fixture(scope="module")
def join_app():
    from conftest import TEST_CONFIG

    from app import create_app
    return create_app(TEST_CONFIG | {"JOIN_RATE_LIMIT": "3/minute"})


def test_wrong_codes_are_limited_per_user_with_retry_after(join_app, demo, db, r):
    client = join_app.test_client()
    server = Api(client, demo["auth"])
    gid = server.post("/groups", {"master": 1, "name": "f2f", "members": [1], "code": "4711"})[1]["data"]["group_id"]
    guesser, other = Api(client, bearer(token_for(server, 7))), Api(client, bearer(token_for(server, 8)))
    assert guesser.post("/groups/join", {"code": "4711"})[0] == 200  # a right code does not count
    for code in ("0001", "0002", "0003"):
        assert guesser.post("/groups/join", {"code": code})[0] == 404
    response = client.post("/groups/join", json={"code": "4711"}, headers=guesser.headers)
    assert response.status_code == 429 and response.get_json()["meta"]["code"] == 6001
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert other.post("/groups/join", {"code": "4711"}) == (200, {"data": {"group_id": gid}})  # same address
    assert rows(db, "SELECT uid FROM group_member WHERE group_id = %s AND deleted = 0 ORDER BY uid", gid) == \
        [{"uid": 1}, {"uid": 7}, {"uid": 8}]


def test_the_join_rate_limit_is_a_setting_parsed_at_start():
    import config
    assert config.load({})["JOIN_RATE_LIMIT"] == (10, 60)
    with pytest.raises(config.SettingError, match="JOIN_RATE_LIMIT"):
        config.load({"JOIN_RATE_LIMIT": "often"})


# --- 14. a list's length is checked before its items ----------------------------------------------

HUGE = [1] * 400_000  # within the body limit when written compactly


@pytest.mark.parametrize("method,path,body,field", [
    ("POST", "/groups/{gid}/members", HUGE, "members"),
    ("DELETE", "/groups/{gid}/members", HUGE, "members"),
    ("POST", "/groups", {"master": 1, "name": "big", "members": HUGE}, "members"),
    ("POST", "/users", [{"uid": 1}] * 60_000, "users"),
    ("POST", "/messages/peers/batch", [{"sender": 1, "receiver": 2, "content": ""}] * 20_000, "messages"),
    ("POST", "/messages/groups/notifications", {"group_id": 1, "content": "x", "members": HUGE}, "members"),
])
def test_a_huge_list_is_refused_before_any_item_is_validated(api, db, r, monkeypatch, method, path, body, field):
    import marshmallow as ma

    from views import fields
    gid = api.post("/groups", {"master": 1, "name": "team", "members": [1]})[1]["data"]["group_id"]
    for cls in (fields.MemberField, ma.fields.Nested):  # the item kinds of these lists
        monkeypatch.setattr(cls, "_deserialize", lambda *a, **k: pytest.fail("an item was validated"))
    if path == "/messages/groups/notifications":  # its items are Uids (and no other field is one)
        monkeypatch.setattr(fields.Uid, "_deserialize", lambda *a, **k: pytest.fail("an item was validated"))
    data = json.dumps(body, separators=(",", ":")).encode()
    status, answer = post_raw(api, method, path.format(gid=gid), data)
    assert status == 400 and answer["meta"]["code"] == 1002 and field in answer["meta"]["message"], answer


# --- 15. /metrics is restricted ---------------------------------------------------------------------

def test_metrics_is_refused_to_other_addresses_by_default(client):
    assert client.get("/metrics").status_code == 200  # the test client's peer is 127.0.0.1
    response = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert response.status_code == 403 and response.get_json()["meta"]["code"] == 2007
    # through a trusted proxy, the forwarded client address is the one that counts
    forwarded = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert forwarded.status_code == 403


def test_metrics_opens_to_the_configured_networks_and_token():
    from conftest import TEST_CONFIG

    from app import create_app
    app = create_app(TEST_CONFIG | {"METRICS_ALLOWED": "10.0.0.0/8", "METRICS_TOKEN": "scrape-me"})
    client = app.test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    assert client.get("/metrics").status_code == 403  # localhost is no longer listed
    outside = {"REMOTE_ADDR": "203.0.113.9"}
    for token, status in (("scrape-me", 200), ("wrong", 403)):
        response = client.get("/metrics", environ_base=outside, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == status
