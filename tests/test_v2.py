"""Every route answers under /v2 exactly as at /: GoBelieve's SDKs call <API_URL>/... with an API_URL
that ends in /v2, and app servers call /v2/auth/grant (SPEC 6, "The client API of the original")."""
import base64
import io
import json
import re

import pytest
from helpers import TEST_CONFIG, Api, assert_error, bearer, events, messages, rows, token_for
from media_files import amr, png

from app import create_app
from logformat import access_line

ORIGIN = "https://chat.example.com"
# Answers that may differ between two calls: the counters of /metrics, the document's URL in the pages.
OPS = ("/metrics", "/docs", "/redoc", "/openapi.json")
COMPARED_HEADERS = ("Content-Type", "Allow", "WWW-Authenticate", "Retry-After", "Cache-Control")
ARGUMENT = re.compile(r"<(?:[^:>]+:)?([^>]+)>")


@pytest.fixture
def world(api, demo):
    """A user with a token, a group it is the master of with a second member, a store with a seller,
    a friendship: so that reads with real ids answer data."""
    token = token_for(api, 7, "Seven")
    api.post("/users", [{"uid": 8, "name": "Eight"}, {"uid": 9}])
    status, body = api.post("/groups", {"master": 7, "name": "g", "members": [7, 8]})
    assert status == 200, body
    store = api.post("/stores", {"name": "s"})[1]["data"]["store_id"]
    seller = api.post(f"/stores/{store}/sellers", {"name": "ann"})[1]["data"]["seller_id"]
    api.post("/users/7/friends", {"friend_uid": 8})
    api.post("/users/7/blacklist", {"uid": 9})
    return {"token": token, "gid": body["data"]["group_id"], "uid": 7, "mid": 8, "fid": 8, "bid": 9,
            "store_id": store, "seller_id": seller}


def concrete(rule, values: dict) -> str:
    """The rule's path with each argument filled in (a real id where the world has one)."""
    return ARGUMENT.sub(lambda m: str(values.get(m.group(1), 5)), rule.rule)


def answer(response) -> tuple:
    """What must be the same at / and at /v2: status, the headers that matter and the body."""
    headers = {name: response.headers.get(name) for name in COMPARED_HEADERS}
    return response.status_code, headers, response.get_data()


def twins(client, method: str, path: str, **kwargs) -> tuple:
    """The answers to the same request at path and at /v2 + path."""
    return tuple(answer(client.open(prefix + path, method=method, **kwargs)) for prefix in ("", "/v2"))


def all_rules(app):
    return sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule)


def test_every_rule_and_method_answers_under_v2_as_at_the_root_without_credentials(app, client, world):
    checked = 0
    for rule in all_rules(app):
        path = concrete(rule, world)
        for method in sorted(rule.methods):
            at_root, under_v2 = twins(client, method, path, data=b"{}", content_type="application/json")
            if rule.rule.startswith(OPS) or rule.rule.startswith("/docs/"):
                assert at_root[:2] == under_v2[:2], (method, path)
            else:
                assert at_root == under_v2, (method, path)
            checked += 1
    assert checked > 150  # every route of every blueprint, each method, HEAD and OPTIONS too


@pytest.mark.parametrize("as_client", [False, True], ids=["server", "client"])
def test_every_read_answers_under_v2_the_same_data_as_at_the_root(app, client, demo, world, as_client):
    headers = bearer(world["token"]) if as_client else demo["auth"]
    statuses = set()
    for rule in all_rules(app):
        if "GET" in rule.methods and not rule.rule.startswith(OPS + ("/docs/",)):
            path = concrete(rule, world)
            at_root, under_v2 = twins(client, "GET", path, headers=headers)
            assert at_root == under_v2, path
            statuses.add(at_root[0])
    assert 200 in statuses


def test_a_v2_prefix_needs_its_slash_and_is_taken_once(client):
    assert client.get("/v2/healthz").status_code == 200
    for path in ("/v2", "/v2/", "/v2healthz", "/v2x/healthz", "/v2/v2/healthz", "/V2/healthz", "/api/v2/healthz"):
        response = client.get(path)
        assert_error(response.status_code, response.get_json(), 404, code=1003)


def test_unknown_paths_and_methods_get_the_same_envelopes_under_v2(client, demo):
    missing = client.get("/v2/no/such/thing", headers=demo["auth"])
    assert_error(missing.status_code, missing.get_json(), 404, code=1003)
    wrong = client.get("/v2/auth/grant", headers=demo["auth"])
    assert_error(wrong.status_code, wrong.get_json(), 405)
    assert wrong.headers["Allow"] == client.get("/auth/grant", headers=demo["auth"]).headers["Allow"]
    assert "POST" in wrong.headers["Allow"]


def test_bad_bodies_get_the_same_errors_under_v2(app, client, demo):
    cases = [(b"{nope", "application/json"), (b'{"uid": -1}', "application/json"), (b"uid=1", "text/plain"),
             (b'{"uid": 1, "user_name": "' + b"x" * (app.config["MAX_CONTENT_LENGTH"] + 1) + b'"}',
              "application/json")]
    statuses = []
    for body, content_type in cases:
        at_root, under_v2 = twins(client, "POST", "/auth/grant", data=body, content_type=content_type,
                                  headers=demo["auth"])
        assert at_root == under_v2
        statuses.append(at_root[0])
    assert statuses == [400, 400, 415, 413]


def test_wrong_credentials_get_the_same_401_under_v2(client, demo):
    for headers in ({}, {"Authorization": "Basic bm9wZTpub3Bl"}, bearer("no-such-token")):
        at_root, under_v2 = twins(client, "GET", "/groups", headers=headers)
        assert at_root == under_v2 and at_root[0] == 401 and at_root[1]["WWW-Authenticate"]


# --- representative changes, one per blueprint, made under /v2 -----------------------------------

def test_v2_grant_and_revoke_share_the_tokens_of_the_root(api, r):
    status, body = api.post("/v2/auth/grant", {"uid": 1, "user_name": "Alice"})
    assert status == 200, body
    token = body["data"]["token"]
    assert api.post("/auth/grant", {"uid": 1})[1] == {"data": {"token": token}}
    assert r.hget(f"access_token_{token}", "user_id") == "1"
    assert api.post("/v2/auth/revoke", {"uid": 1}) == (200, {"data": {"success": True}})
    assert not r.exists(f"access_token_{token}")


def test_v2_users_and_settings_are_the_users_of_the_root(api, db, r, demo):
    status, body = api.post("/v2/users", [{"uid": 30, "name": "Thirty"}, {"uid": 31}])
    assert (status, body) == (200, {"data": [{"uid": 30}, {"uid": 31}]})
    assert [row["uid"] for row in rows(db, "SELECT uid FROM user ORDER BY uid")] == [30, 31]
    assert api.post("/v2/users/30", {"name": "Renamed"}) == (200, {"data": {"success": True}})
    assert api.get("/users/30")[1]["data"]["name"] == "Renamed"
    assert api.get("/v2/users/30") == api.get("/users/30")
    assert r.hget(f"users_{demo['id']}_30", "name") == "Renamed"


def test_v2_friends_are_the_friends_of_the_root(api, db, r):
    api.post("/users", [{"uid": 40}, {"uid": 41}])
    assert api.post("/v2/users/40/friends", {"friend_uid": 41}) == (200, {"data": {"success": True}})
    friends = api.get("/users/40/friends")
    assert [f["uid"] for f in friends[1]["data"]["friends"]] == [41]
    assert api.get("/v2/users/40/friends") == friends
    assert rows(db, "SELECT uid, friend_uid FROM friend ORDER BY uid") == [{"uid": 40, "friend_uid": 41},
                                                                          {"uid": 41, "friend_uid": 40}]


def test_v2_groups_change_mysql_and_queue_events_as_at_the_root(api, db, r):
    status, body = api.post("/v2/groups", {"master": 1, "name": "team", "members": [1, 2]})
    assert status == 200, body
    gid = body["data"]["group_id"]
    assert rows(db, "SELECT uid FROM group_member WHERE group_id = %s AND deleted = 0 ORDER BY uid", gid) == [
        {"uid": 1}, {"uid": 2}]
    assert api.post(f"/v2/groups/{gid}/members", [3]) == (200, {"data": {"success": True}})
    assert [(e["group_id"], e.get("member_id")) for e in events(r)][-1] == (gid, 3)
    assert api.get(f"/v2/groups/{gid}") == api.get(f"/groups/{gid}")
    token = token_for(api, 1)
    as_client = Api(api.client, bearer(token))
    assert as_client.get("/v2/client/groups") == as_client.get("/client/groups") == as_client.get("/groups")


def test_v2_messages_are_queued_once_with_the_idempotency_keys_of_the_root(api, r):
    body = {"sender": 1, "receiver": 2, "content": "hi"}
    first = api.post("/messages/peers", body, headers={"Idempotency-Key": "k1"})
    again = api.post("/v2/messages/peers", body, headers={"Idempotency-Key": "k1"})
    assert first[0] == 200 and again == first
    other = api.post("/v2/messages/peers", body)
    assert other[0] == 200 and other[1]["data"]["id"] != first[1]["data"]["id"]
    assert [(m["sender"], m["receiver"]) for m in messages(r)] == [(1, 2), (1, 2)]


def test_v2_customer_service_is_the_same_store(api, client, demo, db):
    store = api.post("/v2/stores", {"name": "shop"})[1]["data"]["store_id"]
    assert api.get(f"/stores/{store}")[0] == 200
    anon = Api(client, {})
    status, body = anon.post("/v2/auth/customer", {"appid": demo["id"], "customer_id": "visitor"})
    assert status == 200, body
    assert anon.post("/auth/customer", {"appid": demo["id"], "customer_id": "visitor"})[1] == body
    assert rows(db, "SELECT COUNT(*) AS n FROM customer")[0]["n"] == 1


def test_the_customer_rate_limit_counts_root_and_v2_together(app, demo, api):
    api.post("/stores", {"name": "shop"})
    limited = Api(create_app({**TEST_CONFIG, "CUSTOMER_RATE_LIMIT": "3/minute"}).test_client(), {})
    for n, prefix in enumerate(("", "/v2", "")):
        status, body = limited.post(prefix + "/auth/customer", {"appid": demo["id"], "customer_id": f"c{n}"})
        assert status == 200, body
    status, body = limited.post("/v2/auth/customer", {"appid": demo["id"], "customer_id": "c4"})
    assert_error(status, body, 429, code=6001)


def test_cors_treats_v2_paths_as_their_root_paths(app, demo, api):
    browser = create_app(TEST_CONFIG | {"CORS_ORIGINS": ORIGIN}).test_client()
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}
    for path in ("/device/bind", "/groups", "/auth/customer", "/users", "/messages/peers"):
        at_root = browser.options(path, headers=preflight)
        under_v2 = browser.options("/v2" + path, headers=preflight)
        cors = {k: v for k, v in at_root.headers.items() if k.lower().startswith("access-control-")}
        assert cors == {k: v for k, v in under_v2.headers.items() if k.lower().startswith("access-control-")}, path
        assert bool(cors) == (path in ("/device/bind", "/groups", "/auth/customer")), path
    served = browser.get("/v2/groups", headers={"Origin": ORIGIN, **demo["auth"]})  # server auth: no CORS
    assert served.status_code == 200
    assert not [k for k in served.headers.keys() if k.lower().startswith("access-control-")]
    token = token_for(api, 1)
    served = browser.get("/v2/groups", headers={"Origin": ORIGIN, **bearer(token)})
    assert served.status_code == 200 and served.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_the_access_log_names_the_path_as_requested():
    line = access_line({"im.request_id": "r", "REQUEST_METHOD": "GET", "SCRIPT_NAME": "/v2", "PATH_INFO": "/groups"},
                       200, 0.001)
    assert b'"path": "/v2/groups"' in line


def test_the_document_lists_each_operation_once_without_v2(client):
    document = client.get("/openapi.json").get_json()
    assert document["paths"] and not [path for path in document["paths"] if path.startswith("/v2")]
    assert client.get("/v2/openapi.json").get_json()["paths"].keys() == document["paths"].keys()


# --- GoBelieve's SDKs, as they send their requests ---------------------------------------------

# The Android SDK (retrofit 1 with Gson): JSON of the fields set, this Content-Type, a Bearer token.
ANDROID_JSON = "application/json; charset=UTF-8"


def test_the_android_sdk_binds_and_unbinds_its_push_token_under_v2(api, client, demo, r):
    token = token_for(api, 5)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": ANDROID_JSON}
    bound = client.post("/v2/device/bind", data=b'{"xm_device_token":"xm-abc"}', headers=headers)
    assert (bound.status_code, bound.get_json()) == (200, {"data": {"success": True}})
    assert r.hget(f"users_{demo['id']}_5", "xm_device_token") == "xm-abc"
    unbound = client.post("/v2/device/unbind", data=b'{"xm_device_token":"xm-abc"}', headers=headers)
    assert (unbound.status_code, unbound.get_json()) == (200, {"data": {"success": True}})
    assert r.hget(f"users_{demo['id']}_5", "xm_device_token") is None


def test_the_android_sdk_binds_its_generic_ng_token_as_the_original_kept_it(api, client, db, demo, r):
    headers = {"Authorization": f"Bearer {token_for(api, 6)}", "Content-Type": ANDROID_JSON}
    bound = client.post("/v2/device/bind", data=b'{"ng_device_token":"ng-5f0c2a9e41"}', headers=headers)
    assert (bound.status_code, bound.get_json()) == (200, {"data": {"success": True}})
    assert r.hget(f"users_{demo['id']}_6", "ng_device_token") == "ng-5f0c2a9e41"
    assert r.hget(f"users_{demo['id']}_6", "ng_timestamp").isdigit()
    assert rows(db, "SELECT kind, device_token FROM user_device WHERE uid = 6") == [
        {"kind": "ng", "device_token": "ng-5f0c2a9e41"}]
    client.post("/v2/device/unbind", data=b'{"ng_device_token":"ng-5f0c2a9e41"}', headers=headers)
    assert r.hget(f"users_{demo['id']}_6", "ng_device_token") is None


def test_the_ios_sdk_binds_its_apns_token_under_v2(api, client, demo, r):
    """IMHttpAPI.m: {"apns_device_token": ...} as application/json with the Bearer token."""
    headers = {"Authorization": f"Bearer {token_for(api, 8)}", "Content-Type": "application/json"}
    apns = "740f4707bebcf74f9b7c25d48e3358945f6aa01da5ddb387462c7eaf61bb78ad"
    bound = client.post("/v2/device/bind", data=json.dumps({"apns_device_token": apns}).encode(), headers=headers)
    assert (bound.status_code, bound.get_json()) == (200, {"data": {"success": True}})
    assert r.hget(f"users_{demo['id']}_8", "apns_device_token") == apns


def test_the_sdk_picks_a_supporter_under_v2(api, client, demo):
    store = api.post("/stores", {"name": "shop"})[1]["data"]["store_id"]
    seller = api.post(f"/stores/{store}/sellers", {"name": "ann"})[1]["data"]["seller_id"]
    visitor = Api(client, {}).post("/v2/auth/customer", {"appid": demo["id"], "customer_id": "v1"})[1]["data"]
    response = client.get(f"/v2/supporters?store_id={store}", headers={"Authorization": f"Bearer {visitor['token']}"})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["data"] == {"seller_id": seller, "name": "ann", "avatar": "", "status": "offline"}


def test_an_app_server_grants_a_token_under_v2(client, demo, r):
    response = client.post("/v2/auth/grant", data=b'{"uid": 100, "user_name": "Alice"}',
                           headers={**demo["auth"], "Content-Type": "application/json"})
    assert response.status_code == 200, response.get_json()
    token = response.get_json()["data"]["token"]
    assert r.hgetall(f"access_token_{token}") == {"user_id": "100", "app_id": str(demo["id"]), "user_name": "Alice"}


def test_the_android_sdk_uploads_under_v2_and_the_objects_are_the_roots(app, api, client):
    """IMHttpAPI: POST /images and /audios with the bytes and their Content-Type, /files multipart `file`."""
    headers = bearer(token_for(api, 5))
    picture, voice = png(40, 30), amr()
    uploads = [
        client.post("/v2/images", data=picture, headers={**headers, "Content-Type": "image/png"}),
        client.post("/v2/audios", data=voice, headers={**headers, "Content-Type": "audio/amr"}),
        client.post("/v2/files", data={"file": (io.BytesIO(b"%PDF-1.4 report"), "report.pdf")}, headers=headers,
                    content_type="multipart/form-data"),
    ]
    assert [response.status_code for response in uploads] == [200, 200, 200]
    for response, data in zip(uploads, (picture, voice, b"%PDF-1.4 report")):
        src = response.get_json()["data"]["src"]
        assert client.get(src).get_data() == client.get("/v2" + src).get_data() == data, src
    again = client.post("/images", data=picture, headers={**headers, "Content-Type": "image/png"})
    assert again.get_json()["data"]["src"] == uploads[0].get_json()["data"]["src"]  # one object, whichever path


def test_failed_authentications_count_root_and_v2_together(app, demo, client):
    guarded = create_app({**TEST_CONFIG, "AUTH_FAIL_RATE_LIMIT": "3/minute"}).test_client()
    wrong = {"Authorization": "Basic " + base64.b64encode(f"{demo['id']}:{'0' * 32}".encode()).decode()}
    statuses = [guarded.get(prefix + "/users", headers=wrong).status_code for prefix in ("", "/v2", "", "/v2")]
    assert statuses[:3] == [401, 401, 401] and statuses[3] == 429
    held = guarded.get("/users", headers=demo["auth"])  # the address is held back, right secret or not
    assert held.status_code == 429 and held.headers["Retry-After"].isdigit()
