"""A lost Redis is noticed (/readyz) and restored from the MySQL record (SPEC 5.3), on a single
Redis and on a Redis Cluster; GoBelieve's Redis is taken over into the record."""
import logging
import threading
import time
from types import SimpleNamespace

import pytest
from helpers import Api, all_keys, assert_ok, bearer, rows, token_for
from redis.cluster import RedisCluster
from test_cli import invoke

from models import restore

KINDS = ["apns", "pushkit", "xg", "xm", "hw", "gcm", "jp"]
RECORD_TABLES = ("user_token", "user_setting", "user_do_not_disturb", "user_device", "user")


@pytest.fixture(params=["single", "cluster"])
def backend(request, demo):
    """(app, its Redis client, api as the demo app, whether it is a cluster)."""
    if request.param == "single":
        app, r = request.getfixturevalue("app"), request.getfixturevalue("r")
    else:
        app, r = request.getfixturevalue("cluster_app"), request.getfixturevalue("cluster_r")
    return SimpleNamespace(app=app, r=r, api=Api(app.test_client(), demo["auth"]), cluster=request.param == "cluster")


def router_keys(r) -> dict:
    """Every router user key (SPEC 5.1) with its value: tokens, user hashes, do-not-disturb sets."""
    state = {}
    for key in all_keys(r, "access_token_*") + all_keys(r, "users_*"):
        state[key] = r.hgetall(key) if r.type(key) == "hash" else r.smembers(key)
    return state


def lose(r) -> None:
    """Everything gone, as after a restart without persistence."""
    if isinstance(r, RedisCluster):
        r.flushall(target_nodes=RedisCluster.PRIMARIES)
    else:
        r.flushdb()


def populate(api, client, demo) -> dict:
    """Users with every kind of key, written through every endpoint; some revoked, deleted, banned."""
    tokens = {uid: token_for(api, uid, f"user {uid} ✓") for uid in range(1, 31)}
    assert_ok(*api.post("/users", [{"uid": 40, "name": "Registered", "avatar": "https://a/40.png"}, {"uid": 41}]))
    assert_ok(*api.put("/users/2", {"avatar": "https://a/2.png", "name": "Two renamed"}))
    status, body = api.post("/groups", {"master": 1, "name": "g", "members": [1, 2, 3, 4]})
    gid = body["data"]["group_id"]
    for uid in range(1, 31):
        settings = {"mute": uid % 2 == 0, "notification_on": uid % 3 != 0, "forbidden": uid % 5 == 0,
                    "do_not_disturb": {"peer_uid": uid + 1, "on": uid % 4 != 0}}
        assert_ok(*(api.post if uid % 2 else api.patch)(f"/users/{uid}", settings))
        field = f"{KINDS[uid % len(KINDS)]}_device_token"
        if uid % 2:
            assert_ok(*api.post(f"/users/{uid}/bind", {field: f"dev-{uid}", "gcm_device_token": f"g-{uid}"}))
        else:
            assert_ok(*Api(client, bearer(tokens[uid])).post("/device/bind", {field: f"dev-{uid}"}))
    assert_ok(*api.post("/users/7", {"name": "Seven again"}))
    assert_ok(*api.post(f"/groups/{gid}/members/2", {"quiet": 1}))
    assert_ok(*Api(client, bearer(tokens[3])).post(f"/notification/groups/{gid}", {"quiet": 1}))
    assert_ok(*api.patch(f"/groups/{gid}/members/4", {"do_not_disturb": True}))
    assert_ok(*api.patch(f"/groups/{gid}/members/4", {"do_not_disturb": False}))
    assert_ok(*api.post("/users/9/unbind", {f"{KINDS[9 % len(KINDS)]}_device_token": "dev-9"}))
    assert_ok(*Api(client, bearer(tokens[10])).post("/device/unbind", {f"{KINDS[10 % len(KINDS)]}_device_token": "x"}))
    for uid in (11, 12):
        assert_ok(*api.post("/auth/revoke", {"uid": uid}))
    for uid in (13, 14):
        assert_ok(*api.delete(f"/users/{uid}"))
    store = assert_ok(*api.post("/stores", {"name": "shop"}))["store_id"]
    assert_ok(*api.post(f"/stores/{store}/sellers", {"name": "Sam"}))
    status, body = Api(client, {}).post("/auth/customer", {"appid": demo["id"], "customer_id": "v", "name": "Visitor"})
    assert status == 200, body
    assert_ok(*Api(client, bearer(body["data"]["token"])).get(f"/supporters?store_id={store}"))  # its seller
    return tokens


def restored(app, *args) -> str:
    result = invoke(app, "restore-redis", *args)
    assert result.exit_code == 0, result.output
    return result.output


# --- the marker and /readyz -------------------------------------------------------------------------

def test_a_deployment_that_recorded_nothing_is_ready_and_marked(backend):
    assert all_keys(backend.r, "*") == []
    assert backend.api.get("/readyz")[0] == 200
    assert any(key.endswith(":redis_marker") for key in all_keys(backend.r, "*"))


def test_a_new_redis_that_holds_what_was_recorded_since_is_ready(backend):
    """No marker yet, but the sampled record is all there: a new Redis, not a lost one."""
    for uid in range(25):
        token_for(backend.api, uid, "u")
        assert_ok(*backend.api.post(f"/users/{uid}/bind", {"apns_device_token": "a"}))
    assert backend.api.get("/readyz")[0] == 200


def test_a_lost_redis_makes_readyz_503_naming_what_is_lost_and_is_logged_once(backend, caplog):
    token_for(backend.api, 7, "Ann")
    assert backend.api.get("/readyz")[0] == 200
    lose(backend.r)
    with caplog.at_level(logging.ERROR, logger="models.marker"):
        for _ in range(3):
            response = backend.api.client.get("/readyz")
            assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
    message = response.get_json()["meta"]["message"]
    assert "Redis lost its data" in message and "tokens" in message and "restore-redis" in message
    assert [record.getMessage() for record in caplog.records if record.name == "models.marker"] == [message]
    restored(backend.app)
    assert backend.api.get("/readyz")[0] == 200


def test_one_cluster_master_that_lost_its_data_is_noticed(cluster_app, cluster_r, demo):
    api = Api(cluster_app.test_client(), demo["auth"])
    for uid in range(30):  # keys on every master
        token_for(api, uid)
    assert api.get("/readyz")[0] == 200
    cluster_r.get_primaries()[1].redis_connection.flushall()  # a failover to an empty replica
    assert api.get("/readyz")[0] == 503


# --- restore-redis ----------------------------------------------------------------------------------

def test_a_restore_gives_back_every_router_key_field_by_field(backend, demo):
    tokens = populate(backend.api, backend.app.test_client(), demo)
    before, counted = router_keys(backend.r), backend.r.pfcount(f"statistics_users_{demo['id']}")
    lose(backend.r)
    assert backend.api.get("/readyz")[0] == 503
    output = restored(backend.app)
    assert "restored" in output
    assert router_keys(backend.r) == before
    assert backend.r.pfcount(f"statistics_users_{demo['id']}") == counted == 31  # revoked and deleted count
    assert backend.api.get("/readyz")[0] == 200
    # Tokens authenticate again; revoked and deleted ones stay gone; the banned stay banned.
    assert Api(backend.app.test_client(), bearer(tokens[1])).get("/groups")[0] == 200
    for uid in (11, 12, 13, 14):
        assert Api(backend.app.test_client(), bearer(tokens[uid])).get("/groups")[0] == 401
    assert backend.r.hget(f"users_{demo['id']}_5", "forbidden") == "1"
    restored(backend.app)  # twice: the same
    assert router_keys(backend.r) == before


def test_a_restore_of_one_app_leaves_the_others_alone(api, other_api, demo, other, r):
    token_for(api, 1, "Mine")
    token_for(other_api, 1, "Theirs")
    r.flushdb()
    restored(api.client.application, "--app", str(demo["id"]))
    assert r.exists(f"users_{demo['id']}_1") and not r.exists(f"users_{other['id']}_1")
    assert api.get("/readyz")[0] == 503  # the other app is still missing: not marked


def test_a_restore_in_small_batches_writes_the_same(api, demo, r):
    for uid in range(1, 12):
        token_for(api, uid, f"u{uid}")
        assert_ok(*api.post(f"/users/{uid}", {"do_not_disturb": {"peer_uid": 1, "on": True}, "mute": True}))
        assert_ok(*api.post(f"/users/{uid}/bind", {"apns_device_token": "a", "jp_device_token": "j"}))
    before = router_keys(r)
    r.flushdb()
    restored(api.client.application, "--batch", "2")
    assert router_keys(r) == before


def test_a_write_during_the_restore_is_not_overwritten_by_the_older_record(app, api, demo, db, r, monkeypatch):
    token_for(api, 7, "Ann")
    assert_ok(*api.post("/users/7", {"mute": True}))
    r.flushdb()
    plain, seen = restore.write_rows, {}

    def write_rows(redis, write, found):  # the batch is read and locked: a live change comes now
        if write is restore.WRITERS["settings"] and found:
            live = threading.Thread(target=lambda: seen.setdefault("answer", api.post("/users/7", {"mute": False})))
            live.start()
            live.join(0.5)
            seen["waited"] = live.is_alive()  # its MySQL write waits for the batch's row lock
            plain(redis, write, found)
            seen["live"] = live
            return
        plain(redis, write, found)

    monkeypatch.setattr(restore, "write_rows", write_rows)
    restored(app)
    seen["live"].join(10)
    assert seen["waited"] and seen["answer"][0] == 200
    assert r.hget(f"users_{demo['id']}_7", "mute") == "0"
    assert rows(db, "SELECT mute FROM user_setting") == [{"mute": 0}]


def test_a_revoke_during_the_restore_stays_revoked(app, api, demo, r, monkeypatch):
    token = token_for(api, 7, "Ann")
    r.flushdb()
    plain, seen = restore.write_rows, {}

    def write_rows(redis, write, found):
        plain(redis, write, found)
        if write is restore.WRITERS["tokens"] and found:  # still holding the batch's locks
            live = threading.Thread(target=lambda: seen.setdefault("answer", api.post("/auth/revoke", {"uid": 7})))
            live.start()
            live.join(0.3)
            seen["live"] = live

    monkeypatch.setattr(restore, "write_rows", write_rows)
    restored(app)
    seen["live"].join(10)
    assert seen["answer"][0] == 200
    assert not r.exists(f"access_token_{token}") and r.hget(f"users_{demo['id']}_7", "access_token") is None


def test_restoring_thousands_of_users_takes_seconds(api, demo, db, r):
    count = 3000
    with db.cursor() as cur:
        cur.executemany("INSERT INTO user_token (appid, uid, token, user_name) VALUES (%s, %s, %s, %s)",
                        [(demo["id"], uid, f"tok-{uid}", f"u{uid}") for uid in range(count)])
        cur.executemany("INSERT INTO user_device (appid, uid, kind, device_token, timestamp) VALUES (%s, %s, 'apns', "
                        "%s, 1)", [(demo["id"], uid, f"d{uid}") for uid in range(count)])
    started = time.monotonic()
    restored(api.client.application)
    elapsed = time.monotonic() - started
    print(f"figure: restore-redis of {count} users (token + device) took {elapsed:.2f} s")
    assert len(r.keys("access_token_*")) == count and r.hget(f"users_{demo['id']}_2999", "apns_device_token") == "d2999"
    assert elapsed < 30


# --- taking over GoBelieve's Redis --------------------------------------------------------------------

def gobelieve_keys(r, appid: int) -> None:
    """Keys as a GoBelieve deployment leaves them in Redis (no record in MySQL)."""
    r.hset(f"users_{appid}_1", mapping={"access_token": "gb-token-1", "name": "Old One", "avatar": "a.png",
                                         "forbidden": "1", "notification_on": "0", "peer_2": "1", "group_9": "1",
                                         "apns_device_token": "apns-1", "apns_timestamp": "1600000000",
                                         "unread": "3", "sync_key": "55"})
    r.hset("access_token_gb-token-1", mapping={"user_id": "1", "app_id": str(appid), "user_name": "Old One"})
    r.hset(f"users_{appid}_2", mapping={"access_token": "gb-token-2", "name": "Two"})
    r.hset("access_token_gb-token-2", mapping={"user_id": "2", "app_id": str(appid), "user_name": "Two"})
    r.hset(f"users_{appid}_3", mapping={"access_token": "stale", "mute": "1",  # a token whose hash is gone
                                         "store_id": "4", "seller_id": "5"})
    r.sadd(f"users_{appid}_1_peer_do_not_disturb", 2)


def record(db) -> dict:
    return {table: rows(db, f"SELECT * FROM {table} ORDER BY appid, uid") for table in RECORD_TABLES}


def test_taking_over_records_gobelieves_keys_once_and_a_restore_gives_them_back(app, api, demo, db, r):
    gobelieve_keys(r, demo["id"])
    result = invoke(app, "take-over-redis")
    assert result.exit_code == 0, result.output
    assert "recorded" in result.output and "2 tokens" in result.output
    recorded = record(db)
    assert [(row["uid"], row["token"], row["user_name"]) for row in recorded["user_token"]] == [
        (1, "gb-token-1", "Old One"), (2, "gb-token-2", "Two")]
    assert [(row["uid"], row["forbidden"], row["mute"], row["notification_on"], row["store_id"], row["seller_id"])
            for row in recorded["user_setting"]] == [(1, 1, None, 0, None, None), (3, None, 1, None, 4, 5)]
    assert [(row["kind"], row["target"], row["do_not_disturb"]) for row in recorded["user_do_not_disturb"]] == [
        ("group", 9, 1), ("peer", 2, 1)]
    assert [(row["kind"], row["device_token"], row["timestamp"]) for row in recorded["user_device"]] == [
        ("apns", "apns-1", 1600000000)]
    assert invoke(app, "take-over-redis").exit_code == 0  # twice: the same record
    assert {table: [{k: v for k, v in row.items() if k not in ("created_at", "updated_at")} for row in found]
            for table, found in record(db).items()} == \
        {table: [{k: v for k, v in row.items() if k not in ("created_at", "updated_at")} for row in found]
         for table, found in recorded.items()}

    before = router_keys(r)
    r.flushdb()
    restored(app)
    after = router_keys(r)
    expected = dict(before)
    expected[f"users_{demo['id']}_1"] = {k: v for k, v in before[f"users_{demo['id']}_1"].items()
                                         if k not in ("unread", "sync_key")}  # the router's own
    expected[f"users_{demo['id']}_3"] = {"mute": "1", "store_id": "4", "seller_id": "5"}  # the dead token is not
    expected[f"users_{demo['id']}_1_group_do_not_disturb"] = {"9"}  # the set follows its field
    assert after == expected
    assert Api(api.client, bearer("gb-token-1")).get("/groups")[0] == 200

