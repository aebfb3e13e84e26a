"""The Redis-touching promises, kept on a single Redis and on a 3-master Redis Cluster alike.

In a cluster no script or MULTI spans two slots (docs/SCALING.md): grant, revoke, message posts
and settings run as per-slot steps there. Each test runs on both; the cluster is started by
conftest's redis_cluster fixture.
"""
import json
import threading
from types import SimpleNamespace

import pytest
from helpers import TEST_CONFIG, Api, all_keys, assert_error, bearer, insert_group, queue, rows, token_for

from app import create_app
from models import outbox
from models import queue as queues_module
from models import token as tokens
from models.redis_io import run_script

MESSAGES, USER_EVENTS, GROUP_EVENTS = "im_message_queue", "user_event_queue", "group_event_queue"


@pytest.fixture(params=["single", "cluster"])
def backend(request, demo):
    """(app, its Redis client, api as the demo app, make(overrides) -> api of a variant app)."""
    if request.param == "single":
        app, r, extra = request.getfixturevalue("app"), request.getfixturevalue("r"), {}
    else:
        app, r = request.getfixturevalue("cluster_app"), request.getfixturevalue("cluster_r")
        extra = {"REDIS_CLUSTER_NODES": request.getfixturevalue("redis_cluster")}

    def make(**overrides):
        return Api(create_app(TEST_CONFIG | extra | overrides).test_client(), demo["auth"])

    return SimpleNamespace(app=app, r=r, api=Api(app.test_client(), demo["auth"]), make=make,
                           cluster=request.param == "cluster")


def test_the_cluster_client_is_a_cluster_client(backend):
    assert backend.app.extensions["queues"].cluster is backend.cluster
    assert backend.api.get("/readyz")[0] == 200


def test_the_fused_scripts_span_slots_a_cluster_refuses(cluster_app, cluster_r, demo):
    """Why the cluster path exists: the single-Redis scripts touch keys of several slots."""
    fused = [(tokens.GRANT, [f"users_{demo['id']}_7", f"statistics_users_{demo['id']}"], ["t", 7, demo["id"], "x"]),
             (queues_module.PUSH_MESSAGES, [MESSAGES, "{im_message_queue}:posted:1", "history_1_1"],
              [10, 10, 60, "{}", "{}", 1])]
    for script, keys, args in fused:
        with pytest.raises(Exception, match="(?i)slot"):
            run_script(cluster_r, script, keys, args)


# --- grant and revoke ----------------------------------------------------------------------------

def test_a_grant_writes_the_token_hash_as_the_router_reads_it(backend, demo):
    token = token_for(backend.api, 7, "Ann")
    r = backend.r
    assert r.hgetall(f"access_token_{token}") == {"user_id": "7", "app_id": str(demo["id"]), "user_name": "Ann"}
    assert r.hget(f"users_{demo['id']}_7", "access_token") == token
    assert r.hget(f"users_{demo['id']}_7", "name") == "Ann"
    assert r.pfcount(f"statistics_users_{demo['id']}") == 1
    assert token_for(backend.api, 7) == token  # permanent
    assert all_keys(r, "access_token_*") == [f"access_token_{token}"]


def test_concurrent_grants_of_a_new_user_agree_on_one_token(backend, demo):
    results, start = [], threading.Barrier(8)

    def grant():
        start.wait()
        with backend.app.app_context():
            results.append(tokens.grant_token(backend.app.extensions["redis"], demo["id"], 42))

    threads = [threading.Thread(target=grant) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({token for token, _, _ in results}) == 1
    assert sum(created for _, created, _ in results) == 1
    [token] = {token for token, _, _ in results}
    assert all_keys(backend.r, "access_token_*") == [f"access_token_{token}"]  # the losers' dropped
    assert backend.r.hget(f"access_token_{token}", "user_id") == "42"


def test_a_token_whose_hash_is_gone_comes_back_from_the_record(backend, demo):
    token = token_for(backend.api, 7)
    backend.r.delete(f"access_token_{token}")
    assert token_for(backend.api, 7) == token
    assert backend.r.hget(f"access_token_{token}", "user_id") == "7"
    assert all_keys(backend.r, "access_token_*") == [f"access_token_{token}"]  # the one made meanwhile dropped


def test_a_token_whose_hash_and_record_are_gone_is_replaced(backend, demo, db):
    token = token_for(backend.api, 7)
    backend.r.delete(f"access_token_{token}")
    with db.cursor() as cur:
        cur.execute("DELETE FROM user_token")
    again = token_for(backend.api, 7)
    assert again != token and backend.r.hget(f"access_token_{again}", "user_id") == "7"
    assert backend.r.hget(f"users_{demo['id']}_7", "access_token") == again


def test_revoke_deletes_the_token_and_tells_the_router(backend, demo):
    token = token_for(backend.api, 7)
    assert backend.api.post("/auth/revoke", {"uid": 7})[0] == 200
    r = backend.r
    assert not r.exists(f"access_token_{token}") and r.hget(f"users_{demo['id']}_7", "access_token") is None
    [event] = queue(r, USER_EVENTS)
    assert (event["name"], event["appid"], event["uid"]) == ("user_token_revoked", demo["id"], 7)
    assert backend.api.get("/messages", headers=bearer(token))[0] == 401
    assert token_for(backend.api, 7) != token
    assert backend.api.post("/auth/revoke", {"uid": 8})[0] == 200  # no token: nothing to tell
    assert len(queue(r, USER_EVENTS)) == 1


def test_a_revoke_cut_short_after_its_first_step_is_finished_by_a_retry(backend, demo):
    token = token_for(backend.api, 7)
    backend.r.delete(f"access_token_{token}")  # what a revoke that died after its first step leaves
    assert backend.api.get("/messages", headers=bearer(token))[0] == 401
    assert backend.api.post("/auth/revoke", {"uid": 7})[0] == 200
    assert [e["name"] for e in queue(backend.r, USER_EVENTS)] == ["user_token_revoked"]
    assert backend.r.hget(f"users_{demo['id']}_7", "access_token") is None


def test_a_customer_gets_a_token_under_the_rate_limit(backend, demo, db):
    with db.cursor() as cur:
        cur.execute("UPDATE app SET store_id = 5 WHERE id = %s", (demo["id"],))
    anon = backend.make(CUSTOMER_RATE_LIMIT="2/minute")
    anon.headers = {}
    for _ in range(2):
        status, body = anon.post("/auth/customer", {"appid": demo["id"], "customer_id": "v1"})
        assert status == 200, body
    token = body["data"]["token"]
    assert backend.r.hget(f"access_token_{token}", "app_id") == str(demo["id"])
    assert anon.post("/auth/customer", {"appid": demo["id"], "customer_id": "v1"})[0] == 429


# --- message posts -------------------------------------------------------------------------------

GID = 4242
POSTS = [  # (path, body, whose history lists get it)
    ("/messages/peers", {"sender": 1, "receiver": 2, "content": "hi"}, [1, 2]),
    ("/messages/groups", {"sender": 1, "receiver": GID, "content": "hi"}, [1]),
    ("/messages/systems", {"receiver": 2, "content": "hi"}, [2]),
    ("/messages/notifications", {"receiver": 2, "content": "hi"}, [2]),
    ("/messages/groups/notifications", {"group_id": GID, "content": "hi"}, []),
    ("/messages/rooms", {"sender": 3, "receiver": 77, "content": "hi"}, [3]),
]


@pytest.fixture
def group(db, demo):
    return insert_group(db, demo["id"], GID)


def histories(r, appid) -> dict:
    return {int(key.rsplit("_", 1)[1]): r.lrange(key, 0, -1) for key in all_keys(r, f"history_{appid}_*")}


@pytest.mark.parametrize("path,body,owners", POSTS, ids=[p for p, _, _ in POSTS])
def test_every_kind_of_post_is_queued_once_with_its_histories(backend, demo, group, path, body, owners):
    key = {"Idempotency-Key": "k-" + path}
    first = backend.api.post(path, body, headers=key)
    assert first[0] == 200, first
    assert backend.api.post(path, body, headers=key) == first  # a retry: the first answer, nothing queued
    [raw] = backend.r.lrange(MESSAGES, 0, -1)
    assert json.loads(raw)["id"] == first[1]["data"]["id"]
    assert histories(backend.r, demo["id"]) == {uid: [raw] for uid in owners}


def test_a_batch_is_queued_in_order_once(backend, demo):
    batch = [{"sender": 1, "receiver": 100 + i, "content": f"m{i}"} for i in range(3)]
    key = {"Idempotency-Key": "b"}
    first = backend.api.post("/messages/peers/batch", batch, headers=key)
    assert first[0] == 200 and backend.api.post("/messages/peers/batch", batch, headers=key) == first
    assert [m["id"] for m in queue(backend.r, MESSAGES)] == first[1]["data"]["ids"]
    assert len(backend.r.lrange(f"history_{demo['id']}_1", 0, -1)) == 3


def test_a_post_resent_without_a_key_is_queued_once(backend, demo):
    queues = backend.app.extensions["queues"]
    items = [{"id": 991, "kind": "peer", "appid": demo["id"], "sender": 1, "receiver": 2, "content": "x",
              "timestamp": 1}]
    assert queues.push_messages(items, {"id": 991}) == {"id": 991}
    assert queues.push_messages(items, {"id": 991}) == {"id": 991}  # what redis-py's retry sends again
    assert backend.r.llen(MESSAGES) == 1 and backend.r.llen(f"history_{demo['id']}_2") == 1


def test_a_full_queue_refuses_posts_with_503_and_adds_no_history(backend, demo):
    small = backend.make(QUEUE_MAX_LENGTH=2)
    body = {"sender": 1, "receiver": 2, "content": "hi"}
    for _ in range(2):
        assert small.post("/messages/peers", body)[0] == 200
    status, answer = small.post("/messages/peers", body)
    assert_error(status, answer, 503, code=7002)
    assert small.post("/messages/peers/batch", [body])[0] == 503
    assert backend.r.llen(MESSAGES) == 2
    assert backend.r.llen(f"history_{demo['id']}_1") == backend.r.llen(f"history_{demo['id']}_2") == 2
    backend.r.rpop(MESSAGES)  # the router takes one
    assert small.post("/messages/peers", body)[0] == 200


def test_histories_stay_bounded(backend, demo):
    bounded = backend.make(HISTORY_LENGTH=2)
    ids = [bounded.post("/messages/peers", {"sender": 1, "receiver": 2, "content": str(n)})[1]["data"]["id"]
           for n in range(4)]
    assert [json.loads(m)["id"] for m in backend.r.lrange(f"history_{demo['id']}_2", 0, -1)] == ids[:1:-1]


# --- settings ------------------------------------------------------------------------------------

def test_settings_reach_the_user_hash_the_token_hash_and_the_router(backend, demo, db):
    token = token_for(backend.api, 7, "Ann")
    body = {"name": "Bea", "do_not_disturb": {"peer_uid": 9, "on": True}, "mute": True, "forbidden": True}
    assert backend.api.post("/users/7", body)[0] == 200
    r, user = backend.r, f"users_{demo['id']}_7"
    assert r.hmget(user, "name", "peer_9", "mute", "forbidden") == ["Bea", "1", "1", "1"]
    assert r.hget(f"access_token_{token}", "user_name") == "Bea"
    assert r.smembers(f"users_{demo['id']}_7_peer_do_not_disturb") == {"9"}
    [event] = queue(r, USER_EVENTS)
    assert (event["name"], event["uid"], event["forbidden"]) == ("user_forbidden", 7, 1)
    assert rows(db, "SELECT name FROM user WHERE uid = 7") == [{"name": "Bea"}]
    status, got = backend.api.get("/users/7")
    assert status == 200 and (got["data"]["forbidden"], got["data"]["mute"]) == (True, True)
    assert backend.api.post("/users/7", {"do_not_disturb": {"peer_uid": 9, "on": False}})[0] == 200
    assert r.hget(user, "peer_9") == "0" and r.smembers(f"users_{demo['id']}_7_peer_do_not_disturb") == set()


def test_a_new_name_at_grant_reaches_both_hashes(backend, demo):
    token = token_for(backend.api, 7, "Ann")
    assert token_for(backend.api, 7, "Bea") == token
    assert backend.r.hget(f"access_token_{token}", "user_name") == "Bea"
    assert backend.r.hget(f"users_{demo['id']}_7", "name") == "Bea"


def test_group_quiet_is_kept_in_the_hash_and_the_set(backend, demo):
    gid = backend.api.post("/groups", {"master": 1, "name": "g", "members": [1, 2]})[1]["data"]["group_id"]
    token = token_for(backend.api, 2)
    client = Api(backend.api.client, bearer(token))
    assert client.patch(f"/client/groups/{gid}/members/2", {"do_not_disturb": True})[0] == 200
    assert backend.r.hget(f"users_{demo['id']}_2", f"group_{gid}") == "1"
    assert backend.r.smembers(f"users_{demo['id']}_2_group_do_not_disturb") == {str(gid)}
    status, body = client.get("/client/groups?fields=quiet")
    assert status == 200 and body["data"][0]["quiet"] == 1


# --- the outbox relay ----------------------------------------------------------------------------

def test_group_events_are_relayed_exactly_once(backend, db):
    gid = backend.api.post("/groups", {"master": 1, "name": "g", "members": [1, 2]})[1]["data"]["group_id"]
    assert backend.api.post(f"/groups/{gid}/members", [3])[0] == 200
    events = queue(backend.r, GROUP_EVENTS)
    assert [e["name"] for e in events] == ["group_create", "group_member_add", "group_member_add",
                                           "group_member_add"]
    assert all(b["previous_action_id"] == a["action_id"] == b["action_id"] - 1 for a, b in zip(events, events[1:]))
    # A relay whose reply was lost is run again: the queue's mark skips what it already pushed.
    rows_again = [{"id": 0, "seq": 10**9, "command": "LPUSH", "redis_key": GROUP_EVENTS, "item": "{}"}]
    outbox._push(backend.r, rows_again)
    outbox._push(backend.r, rows_again)
    assert backend.r.llen(GROUP_EVENTS) == len(events) + 1
    assert outbox.relay(db, backend.r) == 0
