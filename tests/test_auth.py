"""Server auth (Basic appid:md5hex(secret)), client auth (Bearer token), IP allow-lists, roles."""
import base64
import hashlib

import pytest
from helpers import (
    TEST_CONFIG,
    Api,
    assert_error,
    basic,
    bearer,
    insert_group,
    make_app,
    nothing_written,
    queue,
    rows,
    token_for,
)

from app import create_app

GRANT = "/auth/grant"


def raw_basic(text: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(text.encode()).decode()}


# --- server auth: credentials ---------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": ""},
    {"Authorization": "Basic"},
    {"Authorization": "Basic "},
    {"Authorization": "Digest abc"},
    {"Authorization": "basic-ish " + base64.b64encode(b"1:x").decode()},
], ids=["none", "empty", "basic-no-credentials", "basic-blank", "other-scheme", "unknown-scheme"])
def test_missing_or_unknown_credentials_are_401(client, demo, db, r, headers):
    status, body = Api(client, headers).post(GRANT, {"uid": 1})
    assert_error(status, body, 401, code=2001)
    nothing_written(db, r)


@pytest.mark.parametrize("credentials", ["!!!not-base64!!!", "YWJj=ZGVm", "%%%%",
                                         base64.b64encode(b"\xff\xfe:x").decode()],
                         ids=["punctuation", "padding-inside", "percent", "not-utf8"])
def test_garbled_basic_credentials_are_401(client, demo, db, r, credentials):
    status, body = Api(client, {"Authorization": "Basic " + credentials}).post(GRANT, {"uid": 1})
    assert_error(status, body, 401, code=2001)
    nothing_written(db, r)


@pytest.mark.parametrize("appid", ["abc", "", "1.5", "0x10"])
def test_non_integer_appid_is_401(client, demo, db, r, appid):
    digest = hashlib.md5(demo["secret"].encode()).hexdigest()
    status, body = Api(client, raw_basic(f"{appid}:{digest}")).post(GRANT, {"uid": 1})
    assert_error(status, body, 401)
    nothing_written(db, r)


@pytest.mark.parametrize("appid", [-1, 2**63, 10**30])
def test_appid_out_of_range_is_401(client, demo, db, r, appid):
    digest = hashlib.md5(demo["secret"].encode()).hexdigest()
    status, body = Api(client, raw_basic(f"{appid}:{digest}")).post(GRANT, {"uid": 1})
    assert_error(status, body, 401)
    nothing_written(db, r)


def test_unknown_app_is_401(client, demo, db, r):
    status, body = Api(client, basic(demo["id"] + 1000, demo["secret"])).post(GRANT, {"uid": 1})
    assert_error(status, body, 401, code=2002)
    nothing_written(db, r)


@pytest.mark.parametrize("secret_of", ["wrong", "other-app", "raw-secret-not-md5"])
def test_wrong_secret_is_401(client, demo, other, db, r, secret_of):
    headers = {
        "wrong": basic(demo["id"], "not the secret"),
        "other-app": basic(demo["id"], other["secret"]),
        "raw-secret-not-md5": raw_basic(f"{demo['id']}:{demo['secret']}"),
    }[secret_of]
    status, body = Api(client, headers).post(GRANT, {"uid": 1})
    assert_error(status, body, 401, code=2003)
    nothing_written(db, r)


def test_upper_case_hex_digest_is_accepted(client, demo):
    digest = hashlib.md5(demo["secret"].encode()).hexdigest().upper()
    status, body = Api(client, raw_basic(f"{demo['id']}:{digest}")).post(GRANT, {"uid": 1})
    assert status == 200, body
    assert body["data"]["token"]


def test_auth_is_checked_before_the_body(client):
    response = client.post(GRANT, data=b"{not json", content_type="application/json")
    assert_error(response.status_code, response.get_json(), 401, code=2001)


def test_app_inserted_by_hand_works_at_once(client, db):
    appid, secret = 987654, "hand-made"
    headers = basic(appid, secret)
    status, body = Api(client, headers).post(GRANT, {"uid": 1})
    assert_error(status, body, 401, code=2002)
    with db.cursor() as cur:  # only the columns that matter: the rest have defaults
        cur.execute("INSERT INTO app (id, secret) VALUES (%s, %s)", (appid, secret))
    status, body = Api(client, headers).post(GRANT, {"uid": 1})
    assert status == 200, body


# --- disabled apps --------------------------------------------------------------------------------

SERVER_CALLS = [
    ("POST", GRANT, {"uid": 1}),
    ("POST", "/messages/peers", {"sender": 1, "receiver": 2, "content": "hi"}),
    ("POST", "/messages/systems", {"receiver": 2, "content": "hi"}),
    ("POST", "/groups", {"master": 1, "name": "g", "members": [1, 2]}),
    ("GET", "/groups/1", None),
    ("POST", "/users/1", {"mute": True}),
    ("PATCH", "/users/1", {"mute": True}),
    ("POST", "/users/1/bind", {"apns_device_token": "t"}),
    ("POST", "/users/1/unbind", {"apns_device_token": "t"}),
]


@pytest.mark.parametrize("method,path,body", SERVER_CALLS, ids=[f"{m} {p}" for m, p, _ in SERVER_CALLS])
def test_disabled_app_gets_403_with_server_auth(client, db, r, method, path, body):
    app_row = make_app(db, name="off", disabled=1)
    status, answer = Api(client, app_row["auth"]).call(method, path, body)
    assert_error(status, answer, 403, code=2006)
    nothing_written(db, r)
    assert not rows(db, "SELECT id FROM `group`")


CLIENT_CALLS = [
    ("POST", "/device/bind", {"apns_device_token": "t"}),
    ("POST", "/device/unbind", {"apns_device_token": "t"}),
    ("POST", "/groups", {"master": 7, "name": "g"}),
    ("GET", "/groups/1", None),
]


@pytest.mark.parametrize("method,path,body", CLIENT_CALLS, ids=[f"{m} {p}" for m, p, _ in CLIENT_CALLS])
def test_disabled_app_gets_403_with_client_auth(client, db, r, method, path, body):
    app_row = make_app(db, name="off", disabled=1)
    r.hset("access_token_tok", mapping={"user_id": 7, "app_id": app_row["id"], "user_name": ""})
    status, answer = Api(client, bearer("tok")).call(method, path, body)
    assert_error(status, answer, 403, code=2006)
    assert r.keys("users_*") == []
    assert not rows(db, "SELECT id FROM `group`")


def test_disabled_app_with_wrong_secret_is_still_401(client, db):
    app_row = make_app(db, name="off", disabled=1)
    status, body = Api(client, basic(app_row["id"], "wrong")).post(GRANT, {"uid": 1})
    assert_error(status, body, 401, code=2003)


# --- per-app IP allow-list ------------------------------------------------------------------------

ALLOWED = "10.0.0.0/8, 192.168.1.5,2001:db8::/32"
TRUSTED = "127.0.0.1"
UNTRUSTED = "203.0.113.9"


@pytest.mark.parametrize("peer,headers,expected", [
    # a direct (untrusted) peer is judged by its own address; its proxy headers are ignored
    ("10.1.2.3", {}, 200),
    ("192.168.1.5", {}, 200),
    ("192.168.1.6", {}, 403),
    (UNTRUSTED, {}, 403),
    (UNTRUSTED, {"X-Forwarded-For": "10.1.2.3"}, 403),
    (UNTRUSTED, {"X-Real-IP": "10.1.2.3"}, 403),
    ("10.1.2.3", {"X-Forwarded-For": UNTRUSTED, "X-Real-IP": UNTRUSTED}, 200),
    # a trusted proxy's headers are believed
    (TRUSTED, {}, 403),
    (TRUSTED, {"X-Forwarded-For": "10.1.2.3"}, 200),
    (TRUSTED, {"X-Forwarded-For": UNTRUSTED}, 403),
    (TRUSTED, {"X-Real-IP": "192.168.1.5"}, 200),
    (TRUSTED, {"X-Real-IP": "192.168.1.6"}, 403),
    ("::1", {"X-Forwarded-For": "2001:db8::7"}, 200),
    ("::1", {"X-Forwarded-For": "2001:db9::7"}, 403),
    # X-Forwarded-For is read right to left: the client controls its left end
    (TRUSTED, {"X-Forwarded-For": "10.1.2.3, " + UNTRUSTED}, 403),
    (TRUSTED, {"X-Forwarded-For": UNTRUSTED + ", 10.1.2.3"}, 200),
    (TRUSTED, {"X-Forwarded-For": "10.1.2.3, 127.0.0.1"}, 200),
    (TRUSTED, {"X-Forwarded-For": UNTRUSTED + ", 127.0.0.1, ::1"}, 403),
    # X-Real-IP is only the fallback
    (TRUSTED, {"X-Forwarded-For": UNTRUSTED, "X-Real-IP": "10.1.2.3"}, 403),
    (TRUSTED, {"X-Forwarded-For": "10.1.2.3", "X-Real-IP": UNTRUSTED}, 200),
    (TRUSTED, {"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "10.1.2.3"}, 200),
    # garbage is never an allowed address
    (TRUSTED, {"X-Forwarded-For": "not-an-ip"}, 403),
])
def test_ip_allow_list(client, db, r, peer, headers, expected):
    app_row = make_app(db, name="fenced", allowed_ips=ALLOWED)
    status, body = Api(client, app_row["auth"]).post(GRANT, {"uid": 1}, headers=headers,
                                                     environ_base={"REMOTE_ADDR": peer})
    if expected == 200:
        assert status == 200, body
        assert r.hget(f"users_{app_row['id']}_1", "access_token") == body["data"]["token"]
    else:
        assert_error(status, body, 403, code=2005)
        nothing_written(db, r)


def test_app_without_allow_list_accepts_any_address(client, demo):
    status, body = Api(client, demo["auth"]).post(GRANT, {"uid": 1}, environ_base={"REMOTE_ADDR": UNTRUSTED})
    assert status == 200, body


def test_trusted_proxies_come_from_config(db, r):
    proxied = create_app({**TEST_CONFIG, "TRUSTED_PROXIES": ["172.16.0.0/12"]})
    proxied.extensions["app_cache"].clear()
    app_row = make_app(db, name="fenced", allowed_ips="10.0.0.0/8")
    api = Api(proxied.test_client(), app_row["auth"])
    from_proxy = api.post(GRANT, {"uid": 1}, headers={"X-Forwarded-For": "10.1.2.3"},
                          environ_base={"REMOTE_ADDR": "172.20.0.1"})
    assert from_proxy[0] == 200, from_proxy
    # 127.0.0.1 is no longer trusted under this configuration
    from_localhost = api.post(GRANT, {"uid": 2}, headers={"X-Forwarded-For": "10.1.2.3"},
                              environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert_error(*from_localhost, 403, code=2005)
    assert r.exists(f"users_{app_row['id']}_2") == 0


def test_allow_list_does_not_apply_to_client_tokens(client, db, r):
    app_row = make_app(db, name="fenced", allowed_ips="10.0.0.0/8")
    r.hset("access_token_tok", mapping={"user_id": 7, "app_id": app_row["id"], "user_name": ""})
    status, body = Api(client, bearer("tok")).post("/device/bind", {"apns_device_token": "t"},
                                                   environ_base={"REMOTE_ADDR": UNTRUSTED})
    assert status == 200, body
    assert r.hget(f"users_{app_row['id']}_7", "apns_device_token") == "t"


# --- client auth ----------------------------------------------------------------------------------

@pytest.mark.parametrize("token_hash", [
    None,
    {"user_id": 7},
    {"app_id": "APP"},
    {"user_id": 7, "app_id": 999999},
], ids=["unknown", "no-app-id", "no-user-id", "app-does-not-exist"])
def test_bad_token_is_401(client, demo, r, token_hash):
    if token_hash is not None:
        r.hset("access_token_tok", mapping={k: demo["id"] if v == "APP" else v for k, v in token_hash.items()})
    status, body = Api(client, bearer("tok")).post("/device/bind", {"apns_device_token": "t"})
    assert_error(status, body, 401, code=2004)
    assert r.keys("users_*") == []


def test_granted_token_authenticates_the_user(api, client, demo, r):
    token = token_for(api, 7)
    status, body = Api(client, bearer(token)).post("/device/bind", {"xg_device_token": "x"})
    assert status == 200, body
    assert r.hget(f"users_{demo['id']}_7", "xg_device_token") == "x"


GROUP_CALLS = [
    ("GET", "/groups/{gid}", None),
    ("PATCH", "/groups/{gid}", {"name": "stolen"}),
    ("DELETE", "/groups/{gid}", None),
    ("POST", "/groups/{gid}/members", [5]),
    ("DELETE", "/groups/{gid}/members/2", None),
    ("POST", "/groups/{gid}/members/1", {"quiet": 1}),
]


@pytest.mark.parametrize("as_client", [True, False], ids=["client", "server"])
@pytest.mark.parametrize("method,path,body", GROUP_CALLS, ids=[f"{m} {p}" for m, p, _ in GROUP_CALLS])
def test_another_apps_group_is_404(api, client, demo, other, db, r, as_client, method, path, body):
    insert_group(db, other["id"], 4242, members=(1, 2), master=1)
    # uid 1 of the demo app is a different person from uid 1 of the other app, who owns the group
    caller = Api(client, bearer(token_for(api, 1))) if as_client else api
    status, answer = caller.call(method, path.format(gid=4242), body)
    assert_error(status, answer, 404, code=4001)
    assert rows(db, "SELECT name, deleted FROM `group` WHERE id=4242") == [{"name": "g", "deleted": 0}]
    assert rows(db, "SELECT uid FROM group_member WHERE group_id=4242 AND deleted=0 ORDER BY uid") == [
        {"uid": 1}, {"uid": 2}]
    assert queue(r, "group_event_queue") == [] and queue(r, "im_message_queue") == []
    assert r.keys(f"users_{other['id']}_*") == []


def test_token_of_one_app_acts_only_in_its_own_app(api, client, demo, other, r):
    token = token_for(api, 7)
    status, body = Api(client, bearer(token)).post("/device/bind", {"gcm_device_token": "g"})
    assert status == 200, body
    assert r.hget(f"users_{demo['id']}_7", "gcm_device_token") == "g"
    assert r.exists(f"users_{other['id']}_7") == 0


SERVER_ONLY = [
    ("POST", GRANT, {"uid": 7}),
    ("POST", "/users/7", {"mute": True}),
    ("PATCH", "/users/7", {"forbidden": False}),
    ("POST", "/users/7/bind", {"apns_device_token": "t"}),
    ("POST", "/users/7/unbind", {"apns_device_token": "t"}),
    ("POST", "/messages/peers", {"sender": 7, "receiver": 8, "content": "hi"}),
    ("POST", "/messages/groups", {"sender": 7, "receiver": 4242, "content": "hi"}),
    ("POST", "/messages/systems", {"receiver": 8, "content": "hi"}),
    ("POST", "/messages/notifications", {"receiver": 8, "content": "hi"}),
    ("POST", "/messages/groups/notifications", {"group_id": 4242, "content": "hi"}),
    ("POST", "/messages/rooms", {"sender": 7, "receiver": 1, "content": "hi"}),
    ("POST", "/groups/4242/upgrade", None),
]


@pytest.mark.parametrize("method,path,body", SERVER_ONLY, ids=[f"{m} {p}" for m, p, _ in SERVER_ONLY])
def test_client_token_on_server_only_endpoint_is_403(api, client, demo, db, r, method, path, body):
    insert_group(db, demo["id"], 4242, members=(7, 8), master=7)
    token = token_for(api, 7)
    before = r.hgetall(f"users_{demo['id']}_7")
    status, answer = Api(client, bearer(token)).call(method, path, body)
    assert_error(status, answer, 403, code=2007)
    assert r.hgetall(f"users_{demo['id']}_7") == before
    assert r.keys("access_token_*") == [f"access_token_{token}"]
    for name in ("im_message_queue", "group_event_queue", "user_event_queue"):
        assert queue(r, name) == []
    assert rows(db, "SELECT super FROM `group` WHERE id=4242") == [{"super": 0}]


@pytest.mark.parametrize("path", ["/device/bind", "/device/unbind"])
def test_server_credentials_on_client_only_endpoint_is_403(api, r, path):
    status, body = api.post(path, {"apns_device_token": "t"})
    assert_error(status, body, 403, code=2007)
    assert r.keys("users_*") == []


def test_a_grant_that_fails_after_the_token_was_made_leaves_no_token(api, db, r, monkeypatch):
    from models import token as tokens

    def broken(*args):
        raise RuntimeError("Redis answered something unexpected")

    monkeypatch.setattr(tokens, "save_name", broken)
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
    from models import token as tokens

    monkeypatch.setattr(tokens, "save_name", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    status, _ = api.post("/auth/grant", {"uid": 9, "user_name": "y"})
    assert status == 500
    assert r.hget(f"access_token_{token}", "user_id") == "9"


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
