"""Tokens (POST /auth/grant), user settings (POST/PATCH /users/{uid}) and device tokens."""
import time

import pytest
from helpers import Api, assert_error, bearer, queue, rows, token_for

KINDS = ["apns", "pushkit", "xg", "xm", "hw", "gcm", "jp"]
CUSTOMER_ID_BASE = 2**53  # SPEC 6: customer-service client ids start here; app uids stay below




def user_rows(db):
    return list(rows(db, "SELECT appid, uid, name FROM user ORDER BY appid, uid"))


def user_hash(r, demo, uid):
    return r.hgetall(f"users_{demo['id']}_{uid}")


# --- POST /auth/grant -----------------------------------------------------------------------------

def test_grant_returns_a_token_stored_where_the_router_looks(api, demo, r):
    status, body = api.post("/auth/grant", {"uid": 7, "user_name": "Ann"})
    assert status == 200, body
    token = body["data"]["token"]
    assert isinstance(token, str) and len(token) >= 20
    assert r.hgetall(f"access_token_{token}") | {"notification_on": None} == {
        "user_id": "7", "app_id": str(demo["id"]), "user_name": "Ann", "notification_on": None}
    assert r.hget(f"users_{demo['id']}_7", "access_token") == token


def test_grant_twice_gives_the_same_token(api, r):
    first, second = token_for(api, 7), token_for(api, 7)
    assert first == second
    assert len(r.keys("access_token_*")) == 1


def test_different_users_get_different_tokens(api):
    assert token_for(api, 7) != token_for(api, 8)


def test_same_uid_in_two_apps_gets_two_tokens(api, client, other, r):
    mine, theirs = token_for(api, 7), token_for(Api(client, other["auth"]), 7)
    assert mine != theirs
    assert r.hget(f"access_token_{theirs}", "app_id") == str(other["id"])


def test_grant_records_the_user_row_with_its_name(api, demo, db):
    token_for(api, 7, "Ann 😀")
    token_for(api, 8)
    assert user_rows(db) == [{"appid": demo["id"], "uid": 7, "name": "Ann 😀"},
                             {"appid": demo["id"], "uid": 8, "name": ""}]


def test_grant_with_a_new_name_renames_and_without_a_name_keeps_it(api, demo, db, r):
    token = token_for(api, 7, "Ann")
    token_for(api, 7, "Anna")
    assert user_rows(db) == [{"appid": demo["id"], "uid": 7, "name": "Anna"}]
    assert r.hget(f"access_token_{token}", "user_name") == "Anna"
    token_for(api, 7)
    assert user_rows(db) == [{"appid": demo["id"], "uid": 7, "name": "Anna"}]
    assert r.hget(f"access_token_{token}", "user_name") == "Anna"


def test_grant_counts_distinct_users_per_app(api, client, demo, other, r):
    for uid in (1, 2, 1, 3, 2):
        token_for(api, uid)
    token_for(Api(client, other["auth"]), 1)
    assert r.pfcount(f"statistics_users_{demo['id']}") == 3
    assert r.pfcount(f"statistics_users_{other['id']}") == 1


@pytest.mark.parametrize("uid", [0, CUSTOMER_ID_BASE - 1])
def test_grant_accepts_the_uid_range_bounds(api, demo, db, uid):
    token = token_for(api, uid)
    assert user_rows(db) == [{"appid": demo["id"], "uid": uid, "name": ""}]
    assert token


@pytest.mark.parametrize("body,field", [
    ({}, "uid"),
    ({"user_name": "Ann"}, "uid"),
    ({"uid": None}, "uid"),
    ({"uid": -1}, "uid"),
    ({"uid": CUSTOMER_ID_BASE}, "uid"),
    ({"uid": 2**63 - 1}, "uid"),
    ({"uid": 2**63}, "uid"),
    ({"uid": 10**30}, "uid"),
    ({"uid": "abc"}, "uid"),
    ({"uid": "7x"}, "uid"),
    ({"uid": True}, "uid"),
    ({"uid": [7]}, "uid"),
    ({"uid": {"id": 7}}, "uid"),
    ({"uid": 7, "user_name": "x" * 256}, "user_name"),
    ({"uid": 7, "user_name": 5}, "user_name"),
    ({"uid": 7, "platform_id": -1}, "platform_id"),
    ({"uid": 7, "device_id": ["d"]}, "device_id"),
])
def test_grant_bad_input_is_400_naming_the_field_and_writes_nothing(api, db, r, body, field):
    status, answer = api.post("/auth/grant", body)
    assert_error(status, answer, 400, field, code=1001)
    assert user_rows(db) == []
    assert r.keys("*") == []


def test_grant_fractional_uid_is_400(api, db, r):
    status, answer = api.post("/auth/grant", {"uid": 7.5})
    assert_error(status, answer, 400, "uid")
    assert user_rows(db) == []
    assert r.keys("*") == []


def test_grant_user_name_of_255_characters_is_accepted(api, db):
    token_for(api, 7, "é" * 255)
    assert user_rows(db)[0]["name"] == "é" * 255


# --- POST / PATCH /users/{uid}: settings ----------------------------------------------------------

METHODS = ["POST", "PATCH"]


@pytest.mark.parametrize("method", METHODS)
def test_setting_the_name_updates_the_hash_and_the_row(api, demo, db, r, method):
    token_for(api, 7, "Ann")
    status, body = api.call(method, "/users/7", {"name": "Bob 🎉"})
    assert (status, body) == (200, {"data": {"success": True}})
    assert user_hash(r, demo, 7)["name"] == "Bob 🎉"
    assert user_rows(db) == [{"appid": demo["id"], "uid": 7, "name": "Bob 🎉"}]


@pytest.mark.parametrize("method", METHODS)
def test_setting_the_name_of_a_new_user_creates_its_row(api, demo, db, method):
    status, body = api.call(method, "/users/9", {"name": "Zed"})
    assert status == 200, body
    assert user_rows(db) == [{"appid": demo["id"], "uid": 9, "name": "Zed"}]


# A never-seen user: GET 404, and any settings call (POST or PATCH) registers it, so GET agrees afterwards.
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("settings", [{"mute": True}, {"forbidden": True}, {"notification_on": False},
                                      {"do_not_disturb": {"peer_uid": 8, "on": True}}])
def test_settings_for_a_never_seen_user_register_it_and_get_then_finds_it(api, demo, db, method, settings):
    assert api.get("/users/9")[0] == 404
    assert user_rows(db) == []
    assert api.call(method, "/users/9", settings) == (200, {"data": {"success": True}})
    assert user_rows(db) == [{"appid": demo["id"], "uid": 9, "name": ""}]
    status, body = api.get("/users/9")
    assert status == 200 and body["data"]["uid"] == 9 and body["data"]["name"] == ""
    flags = {"mute": False, "forbidden": False, "notification_on": True} | {
        k: v for k, v in settings.items() if k != "do_not_disturb"}
    assert {k: body["data"][k] for k in flags} == flags


@pytest.mark.parametrize("method", METHODS)
def test_settings_without_a_name_keep_a_known_users_name(api, demo, db, method):
    token_for(api, 7, "Ann")
    assert api.call(method, "/users/7", {"mute": True})[0] == 200
    assert user_rows(db) == [{"appid": demo["id"], "uid": 7, "name": "Ann"}]


@pytest.mark.parametrize("method", METHODS)
def test_peer_do_not_disturb_on_then_off(api, demo, r, method):
    key = f"users_{demo['id']}_7"
    status, body = api.call(method, "/users/7", {"do_not_disturb": {"peer_uid": 8, "on": True}})
    assert status == 200, body
    assert r.hget(key, "peer_8") == "1"
    assert r.smembers(f"{key}_peer_do_not_disturb") == {"8"}
    status, body = api.call(method, "/users/7", {"do_not_disturb": {"peer_uid": 8, "on": False}})
    assert status == 200, body
    assert r.hget(key, "peer_8") == "0"
    assert r.smembers(f"{key}_peer_do_not_disturb") == set()


def test_peer_do_not_disturb_keeps_other_peers(api, demo, r):
    for peer in (8, 9):
        api.post("/users/7", {"do_not_disturb": {"peer_uid": peer, "on": True}})
    api.patch("/users/7", {"do_not_disturb": {"peer_uid": 8, "on": False}})
    assert r.smembers(f"users_{demo['id']}_7_peer_do_not_disturb") == {"9"}
    assert (r.hget(f"users_{demo['id']}_7", "peer_8"), r.hget(f"users_{demo['id']}_7", "peer_9")) == ("0", "1")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("value,stored", [(True, "1"), (False, "0")])
@pytest.mark.parametrize("name", ["mute", "notification_on"])
def test_mute_and_notification_on_are_stored_as_flags_in_the_user_hash(api, demo, r, method, value, stored, name):
    status, body = api.call(method, "/users/7", {name: value})
    assert status == 200, body
    assert user_hash(r, demo, 7) == {name: stored}  # users_<appid>_<uid>, where the router reads them at login
    assert queue(r, "user_event_queue") == []
    assert api.call("POST", "/users", [{"uid": 7}])[0] == 200
    assert api.get("/users/7")[1]["data"][name] is value


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("value,stored", [(True, 1), (False, 0)])
def test_forbidden_is_stored_and_told_to_the_router(api, demo, r, method, value, stored):
    before = int(time.time() * 1000)
    status, body = api.call(method, "/users/7", {"forbidden": value})
    after = int(time.time() * 1000)
    assert status == 200, body
    assert user_hash(r, demo, 7) == {"forbidden": str(stored)}
    [event] = queue(r, "user_event_queue")
    assert event == {"name": "user_forbidden", "appid": demo["id"], "uid": 7, "forbidden": stored,
                     "timestamp": event["timestamp"]}
    assert before <= event["timestamp"] <= after


def test_several_settings_at_once(api, demo, r):
    status, body = api.patch("/users/7", {"mute": True, "forbidden": True,
                                          "do_not_disturb": {"peer_uid": 3, "on": True}})
    assert status == 200, body
    assert user_hash(r, demo, 7) == {"mute": "1", "forbidden": "1", "peer_3": "1"}
    assert len(queue(r, "user_event_queue")) == 1


def test_settings_do_not_touch_another_app(api, client, demo, other, r):
    Api(client, other["auth"]).post("/users/7", {"mute": True})
    api.post("/users/7", {"mute": False})
    assert r.hget(f"users_{other['id']}_7", "mute") == "1"
    assert r.hget(f"users_{demo['id']}_7", "mute") == "0"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("body,field", [
    ({}, None),
    (None, None),
    ({"unknown": 1}, None),
    ({"name": "x" * 256}, "name"),
    ({"name": None}, "name"),
    ({"mute": "maybe"}, "mute"),
    ({"mute": 2}, "mute"),
    ({"forbidden": [True]}, "forbidden"),
    ({"do_not_disturb": {"on": True}}, "do_not_disturb.peer_uid"),
    ({"do_not_disturb": {"peer_uid": 8}}, "do_not_disturb.on"),
    ({"do_not_disturb": {"peer_uid": -8, "on": True}}, "do_not_disturb.peer_uid"),
    ({"do_not_disturb": {"peer_uid": CUSTOMER_ID_BASE, "on": True}}, "do_not_disturb.peer_uid"),
    ({"do_not_disturb": True}, "do_not_disturb"),
    ({"mute": True, "forbidden": "perhaps"}, "forbidden"),
])
def test_bad_settings_are_400_and_write_nothing(api, db, r, method, body, field):
    status, answer = api.call(method, "/users/7", body)
    assert_error(status, answer, 400, field, code=1001)
    assert r.keys("*") == []
    assert user_rows(db) == []


INVALID_UIDS = ["-1", "abc", "1.5", str(CUSTOMER_ID_BASE), str(2**63)]


@pytest.mark.parametrize("uid", INVALID_UIDS)
@pytest.mark.parametrize("path,body", [("/users/{uid}", {"mute": True}),
                                       ("/users/{uid}/bind", {"xm_device_token": "t"}),
                                       ("/users/{uid}/unbind", {"xm_device_token": "t"})])
def test_an_invalid_uid_in_the_path_is_404(api, r, path, body, uid):
    status, answer = api.post(path.format(uid=uid), body)
    assert_error(status, answer, 404)
    assert r.keys("*") == []


# --- device tokens: /users/{uid}/bind, /users/{uid}/unbind -------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_bind_stores_the_token_and_its_timestamp(api, demo, r, kind):
    before = int(time.time())
    status, body = api.post("/users/7/bind", {f"{kind}_device_token": "tok-" + kind})
    assert (status, body) == (200, {"data": {"success": True}})
    stored = user_hash(r, demo, 7)
    assert set(stored) == {f"{kind}_device_token", f"{kind}_timestamp"}
    assert stored[f"{kind}_device_token"] == "tok-" + kind
    assert before <= int(stored[f"{kind}_timestamp"]) <= int(time.time())


@pytest.mark.parametrize("kind", KINDS)
def test_unbind_with_the_bound_token_clears_it(api, demo, r, kind):
    api.post("/users/7/bind", {f"{kind}_device_token": "tok"})
    status, body = api.post("/users/7/unbind", {f"{kind}_device_token": "tok"})
    assert (status, body) == (200, {"data": {"success": True}})
    assert user_hash(r, demo, 7) == {}


@pytest.mark.parametrize("kind", KINDS)
def test_unbind_with_another_token_keeps_the_bound_one(api, demo, r, kind):
    api.post("/users/7/bind", {f"{kind}_device_token": "new-phone"})
    bound = user_hash(r, demo, 7)
    status, body = api.post("/users/7/unbind", {f"{kind}_device_token": "old-phone"})
    assert status == 200, body
    assert user_hash(r, demo, 7) == bound


def test_bind_all_kinds_at_once_and_unbind_only_the_matching_ones(api, demo, r):
    api.post("/users/7/bind", {f"{kind}_device_token": kind for kind in KINDS})
    assert set(user_hash(r, demo, 7)) == {f"{k}_{f}" for k in KINDS for f in ("device_token", "timestamp")}
    status, body = api.post("/users/7/unbind", {"apns_device_token": "apns", "xg_device_token": "stale"})
    assert status == 200, body
    left = user_hash(r, demo, 7)
    assert "apns_device_token" not in left and "apns_timestamp" not in left
    assert left["xg_device_token"] == "xg" and "xg_timestamp" in left


def test_rebinding_replaces_the_token(api, demo, r):
    api.post("/users/7/bind", {"hw_device_token": "one"})
    api.post("/users/7/bind", {"hw_device_token": "two"})
    assert user_hash(r, demo, 7)["hw_device_token"] == "two"


def test_bind_keeps_the_users_other_settings(api, demo, r):
    token = token_for(api, 7)
    api.post("/users/7/bind", {"jp_device_token": "jp"})
    assert user_hash(r, demo, 7)["access_token"] == token


@pytest.mark.parametrize("path", ["/users/7/bind", "/users/7/unbind"])
@pytest.mark.parametrize("body,field", [
    ({}, None),
    (None, None),
    ({"foo_device_token": "x"}, None),
    ({"apns_device_token": 5}, "apns_device_token"),
    ({"jp_device_token": None}, "jp_device_token"),
    ({"gcm_device_token": "x" * 513}, "gcm_device_token"),
])
def test_bad_device_bodies_are_400(api, r, path, body, field):
    status, answer = api.post(path, body)
    assert_error(status, answer, 400, field, code=1001)
    assert r.keys("*") == []


# --- /device/bind, /device/unbind: the caller's own tokens ------------------------------------------

@pytest.fixture
def ann(api, client):
    """A client of the demo app acting as uid 7."""
    return Api(client, bearer(token_for(api, 7)))


@pytest.mark.parametrize("kind", KINDS)
def test_device_bind_and_unbind_act_for_the_caller_only(api, ann, demo, r, kind):
    field = f"{kind}_device_token"
    api.post("/users/8/bind", {field: "tok"})
    status, body = ann.post("/device/bind", {field: "tok"})
    assert (status, body) == (200, {"data": {"success": True}})
    assert r.hget(f"users_{demo['id']}_7", field) == "tok"
    assert r.hget(f"users_{demo['id']}_7", f"{kind}_timestamp")
    status, body = ann.post("/device/unbind", {field: "tok"})
    assert status == 200, body
    assert r.hget(f"users_{demo['id']}_7", field) is None
    assert r.hget(f"users_{demo['id']}_8", field) == "tok"


def test_device_unbind_only_clears_a_matching_token(ann, demo, r):
    ann.post("/device/bind", {"apns_device_token": "current"})
    ann.post("/device/unbind", {"apns_device_token": "stale"})
    assert r.hget(f"users_{demo['id']}_7", "apns_device_token") == "current"


def test_device_bind_ignores_a_uid_in_the_body(ann, demo, r):
    status, body = ann.post("/device/bind", {"uid": 8, "apns_device_token": "tok"})
    assert status == 200, body
    assert r.exists(f"users_{demo['id']}_8") == 0
    assert r.hget(f"users_{demo['id']}_7", "apns_device_token") == "tok"


@pytest.mark.parametrize("path", ["/device/bind", "/device/unbind"])
def test_device_bind_without_a_token_field_is_400(ann, demo, r, path):
    before = user_hash(r, demo, 7)
    status, body = ann.post(path, {})
    assert_error(status, body, 400, code=1001)
    assert user_hash(r, demo, 7) == before


def test_a_new_name_in_the_settings_reaches_the_token_hash_too(api, demo, r, db):
    token = token_for(api, 5, "old")
    assert api.post("/users/5", {"name": "new"})[0] == 200
    assert r.hget(f"access_token_{token}", "user_name") == "new"
    assert r.hget(f"users_{demo['id']}_5", "name") == "new"
    assert rows(db, "SELECT name FROM user WHERE uid = 5") == [{"name": "new"}]
