"""MySQL keeps the record of every router key a user owns (SPEC 5.3), written before Redis."""
import threading

import pytest
from helpers import Api, assert_ok, assert_refused, bearer, rows, token_for

KINDS = ["apns", "pushkit", "xg", "xm", "hw", "gcm", "jp"]


def token_rows(db):
    return rows(db, "SELECT appid, uid, token, user_name FROM user_token ORDER BY appid, uid")


def setting_row(db, appid, uid):
    found = rows(db, "SELECT forbidden, mute, notification_on FROM user_setting WHERE appid = %s AND uid = %s",
                 (appid, uid))
    return found[0] if found else None


def quiet_rows(db, appid, uid):
    return rows(db, "SELECT kind, target, do_not_disturb FROM user_do_not_disturb WHERE appid = %s AND uid = %s "
                    "ORDER BY kind, target", (appid, uid))


def device_rows(db, appid, uid):
    return rows(db, "SELECT kind, device_token, timestamp FROM user_device WHERE appid = %s AND uid = %s ORDER BY kind",
                (appid, uid))


@pytest.fixture
def ann(api, client):
    """A client of the demo app acting as uid 7."""
    return Api(client, bearer(token_for(api, 7, "Ann")))


# --- tokens ---------------------------------------------------------------------------------------

def test_a_grant_records_the_token_with_the_user_row(api, demo, db, r):
    token = token_for(api, 7, "Ann")
    assert token_rows(db) == [{"appid": demo["id"], "uid": 7, "token": token, "user_name": "Ann"}]
    assert rows(db, "SELECT uid, name FROM user") == [{"uid": 7, "name": "Ann"}]
    assert r.hgetall(f"access_token_{token}") == {"user_id": "7", "app_id": str(demo["id"]), "user_name": "Ann"}


def test_a_known_users_grant_writes_nothing_to_mysql(api, demo, db):
    token = token_for(api, 7, "Ann")
    with db.cursor() as cur:  # were the grant to write its record again, the row would come back
        cur.execute("DELETE FROM user_token")
    assert token_for(api, 7, "Ann") == token
    assert token_for(api, 7) == token
    assert token_rows(db) == []


def test_a_grant_under_a_new_name_renames_the_record(api, demo, db, r):
    token = token_for(api, 7, "Ann")
    assert token_for(api, 7, "Anna") == token
    assert token_rows(db) == [{"appid": demo["id"], "uid": 7, "token": token, "user_name": "Anna"}]
    assert r.hget(f"access_token_{token}", "user_name") == "Anna"


def test_a_grant_after_redis_lost_the_token_gives_back_the_recorded_one(api, demo, db, r):
    token = token_for(api, 7, "Ann")
    r.flushdb()
    assert token_for(api, 7) == token
    assert r.hgetall(f"access_token_{token}") == {"user_id": "7", "app_id": str(demo["id"]), "user_name": "Ann"}
    assert r.hget(f"users_{demo['id']}_7", "access_token") == token
    assert r.keys("access_token_*") == [f"access_token_{token}"]  # the token made meanwhile is gone
    assert token_rows(db) == [{"appid": demo["id"], "uid": 7, "token": token, "user_name": "Ann"}]


def test_concurrent_grants_after_redis_lost_the_token_all_give_back_the_recorded_one(app, api, demo, db, r):
    token = token_for(api, 7, "Ann")
    r.flushdb()
    barrier, answers = threading.Barrier(8), []

    def grant():
        client = Api(app.test_client(), demo["auth"])
        barrier.wait()
        answers.append(client.post("/auth/grant", {"uid": 7}))

    threads = [threading.Thread(target=grant) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [status for status, _ in answers] == [200] * 8
    assert {body["data"]["token"] for _, body in answers} == {token}
    assert r.keys("access_token_*") == [f"access_token_{token}"]
    assert r.hget(f"users_{demo['id']}_7", "access_token") == token
    assert [row["token"] for row in token_rows(db)] == [token]


def test_a_revoke_clears_the_recorded_token_then_the_token(api, demo, db, r):
    token = token_for(api, 7, "Ann")
    assert_ok(*api.post("/auth/revoke", {"uid": 7}))
    assert token_rows(db) == [{"appid": demo["id"], "uid": 7, "token": None, "user_name": "Ann"}]  # granted once
    assert not r.exists(f"access_token_{token}")
    fresh = token_for(api, 7)
    assert fresh != token and token_rows(db) == [{"appid": demo["id"], "uid": 7, "token": fresh, "user_name": "Ann"}]
    assert_ok(*api.post("/auth/revoke", {"uid": 7}))
    assert token_for(api, 7, "Annie") not in (token, fresh)
    assert token_rows(db)[0]["user_name"] == "Annie"


def test_a_visitors_token_is_recorded_without_a_user_row(api, client, demo, db, r):
    assert_ok(*api.post("/stores", {"name": "shop"}))
    status, body = Api(client, {}).post("/auth/customer", {"appid": demo["id"], "customer_id": "v1", "name": "Vi"})
    assert status == 200, body
    data = body["data"]
    assert token_rows(db) == [{"appid": demo["id"], "uid": data["client_id"], "token": data["token"],
                               "user_name": "Vi"}]
    assert rows(db, "SELECT uid FROM user") == []


def test_a_visitors_seller_is_recorded_when_it_is_chosen(api, client, demo, db, r):
    store = assert_ok(*api.post("/stores", {"name": "shop"}))["store_id"]
    seller = assert_ok(*api.post(f"/stores/{store}/sellers", {"name": "Sam"}))["seller_id"]
    data = assert_ok(*Api(client, {}).post("/auth/customer", {"appid": demo["id"], "customer_id": "v1"}))
    visitor = Api(client, bearer(data["token"]))
    assert assert_ok(*visitor.get(f"/supporters?store_id={store}"))["seller_id"] == seller
    found = rows(db, "SELECT uid, store_id, seller_id FROM user_setting")
    assert found == [{"uid": data["client_id"], "store_id": store, "seller_id": seller}]
    assert r.hmget(f"users_{demo['id']}_{data['client_id']}", "store_id", "seller_id") == [str(store), str(seller)]


# --- settings -------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["post", "patch"])
def test_settings_are_recorded_and_written_to_the_user_hash(api, demo, db, r, method):
    token = token_for(api, 7, "Ann")
    call = getattr(api, method)
    assert_ok(*call("/users/7", {"forbidden": True, "mute": 1, "do_not_disturb": {"peer_uid": 9, "on": True}}))
    assert setting_row(db, demo["id"], 7) == {"forbidden": 1, "mute": 1, "notification_on": None}
    assert_ok(*call("/users/7", {"notification_on": False, "name": "Annie",
                                 "do_not_disturb": {"peer_uid": 9, "on": False}}))
    assert setting_row(db, demo["id"], 7) == {"forbidden": 1, "mute": 1, "notification_on": 0}
    assert quiet_rows(db, demo["id"], 7) == [{"kind": "peer", "target": 9, "do_not_disturb": 0}]
    assert token_rows(db)[0]["user_name"] == "Annie"
    assert rows(db, "SELECT name FROM user") == [{"name": "Annie"}]
    fields = r.hgetall(f"users_{demo['id']}_7")
    assert {k: fields[k] for k in ("forbidden", "mute", "notification_on", "peer_9", "name")} == {
        "forbidden": "1", "mute": "1", "notification_on": "0", "peer_9": "0", "name": "Annie"}
    assert r.hget(f"access_token_{token}", "user_name") == "Annie"


def test_refused_settings_write_nothing(api, demo, db, r):
    assert_ok(*api.post("/users/7", {"mute": True}))
    assert_refused(db, r, lambda: api.post("/users/7", {"mute": True, "forbidden": "maybe"}), 400, 1001)


@pytest.fixture
def gid(api):
    status, body = api.post("/groups", {"master": 1, "name": "g", "members": [1, 7]})
    assert status == 200, body
    return body["data"]["group_id"]


def test_group_do_not_disturb_is_recorded_in_every_form(api, ann, demo, db, r, gid):
    assert_ok(*api.post(f"/groups/{gid}/members/7", {"quiet": 1}))
    assert quiet_rows(db, demo["id"], 7) == [{"kind": "group", "target": gid, "do_not_disturb": 1}]
    assert_ok(*ann.post(f"/notification/groups/{gid}", {"quiet": 0}))
    assert quiet_rows(db, demo["id"], 7) == [{"kind": "group", "target": gid, "do_not_disturb": 0}]
    assert_ok(*ann.patch(f"/groups/{gid}/members/7", {"do_not_disturb": True}))
    assert quiet_rows(db, demo["id"], 7) == [{"kind": "group", "target": gid, "do_not_disturb": 1}]
    assert r.hget(f"users_{demo['id']}_7", f"group_{gid}") == "1"
    assert r.smembers(f"users_{demo['id']}_7_group_do_not_disturb") == {str(gid)}


def test_a_refused_group_do_not_disturb_writes_nothing(api, db, r, gid):
    assert_refused(db, r, lambda: api.post(f"/groups/{gid}/members/8", {"quiet": 1}), 404, None)


# --- device tokens --------------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["server", "client"])
def test_device_tokens_are_recorded_with_their_bind_time(api, ann, demo, db, r, form):
    bind, unbind, caller = (("/users/7/bind", "/users/7/unbind", api) if form == "server"
                            else ("/device/bind", "/device/unbind", ann))
    assert_ok(*caller.post(bind, {f"{kind}_device_token": f"tok-{kind}" for kind in KINDS}))
    recorded = device_rows(db, demo["id"], 7)
    fields = r.hgetall(f"users_{demo['id']}_7")
    assert [row["kind"] for row in recorded] == sorted(KINDS)
    for row in recorded:
        assert fields[f"{row['kind']}_device_token"] == row["device_token"] == f"tok-{row['kind']}"
        assert fields[f"{row['kind']}_timestamp"] == str(row["timestamp"])
    assert_ok(*caller.post(unbind, {"apns_device_token": "tok-apns", "xg_device_token": "stale"}))
    assert [row["kind"] for row in device_rows(db, demo["id"], 7)] == sorted(set(KINDS) - {"apns"})
    assert "apns_device_token" not in r.hgetall(f"users_{demo['id']}_7")


def test_a_refused_bind_writes_nothing(api, db, r):
    assert_ok(*api.post("/users/7/bind", {"apns_device_token": "a"}))
    assert_refused(db, r, lambda: api.post("/users/7/bind", {"apns_device_token": 5}), 400, 1001)


# --- deleting a user ------------------------------------------------------------------------------

def test_deleting_a_user_deletes_its_record_and_its_keys(api, demo, db, r, gid):
    token_for(api, 7, "Ann")
    assert_ok(*api.post("/users/7", {"forbidden": True, "do_not_disturb": {"peer_uid": 9, "on": True}}))
    assert_ok(*api.post(f"/groups/{gid}/members/7", {"quiet": 1}))
    assert_ok(*api.post("/users/7/bind", {"apns_device_token": "a"}))
    token_for(api, 8, "Ben")
    assert_ok(*api.delete("/users/7"))
    for table in ("user_setting", "user_do_not_disturb", "user_device"):
        assert [row["uid"] for row in rows(db, f"SELECT uid FROM {table}")] in ([], [8]), table
    assert [(row["uid"], row["token"], row["user_name"]) for row in token_rows(db)][0] == (7, None, "")
    assert api.delete("/users/7")[0] == 404  # nothing of it left
    appid = demo["id"]
    assert r.exists(f"users_{appid}_7", f"users_{appid}_7_peer_do_not_disturb",
                    f"users_{appid}_7_group_do_not_disturb") == 0
