"""Router-backed reads (SPEC 6): the offline count, stored messages and online status come from a
stock router's RPC when IM_RPC_URL / IMR_RPC_URL are set; 503 when it is down, 501 / a fallback
when it is not configured."""
import pytest
from helpers import TEST_CONFIG, Api, assert_error, assert_ok, bearer, token_for

from app import create_app


@pytest.fixture
def routed(router, demo):
    """The API with both RPC addresses pointing at the stand-in."""
    app = create_app(TEST_CONFIG | {"IM_RPC_URL": router.url, "IMR_RPC_URL": router.url, "ROUTER_RPC_TIMEOUT": 1})
    return Api(app.test_client(), demo["auth"])


def test_the_offline_count_is_the_routers_not_the_unread_badge(routed, router, demo, r):
    router.offline[(demo["id"], 7)] = 3
    r.hset(f"users_{demo['id']}_7", "unread", 9)  # a badge a client reported: not what is pending
    assert assert_ok(*routed.get("/messages/offline?uid=7")) == {"count": 3, "new": 1}
    assert [(q.path, q.query) for q in router.taken()] == [
        ("/get_offline_count", {"appid": str(demo["id"]), "uid": "7"})]
    client = Api(routed.client, bearer(token_for(routed, 7)))
    assert assert_ok(*client.get("/messages/offline")) == {"count": 3, "new": 1}


def test_without_the_router_the_offline_count_falls_back_to_unread(api, demo, r):
    r.hset(f"users_{demo['id']}_7", "unread", 2)
    assert assert_ok(*api.get("/messages/offline?uid=7")) == {"count": 2, "new": 1}


def test_stored_messages_come_from_the_routers_store(routed, router, demo):
    stored = [{"id": n, "command": 3, "sender": 1, "receiver": 7, "content": f"m{n}", "timestamp": n}
              for n in range(1, 6)]
    router.stored[(demo["id"], 7)] = stored
    latest = assert_ok(*routed.get("/users/7/messages?limit=2"))
    assert [m["id"] for m in latest] == [5, 4]
    after = assert_ok(*routed.get("/users/7/messages?last_id=3"))
    assert [m["id"] for m in after] == [4, 5] and after[0] == stored[3]
    assert [(q.path, q.query["limit" if q.path == "/load_latest_message" else "last_id"]) for q in router.taken()] \
        == [("/load_latest_message", "2"), ("/load_history_message", "3")]


def test_online_status_comes_from_the_route_server(routed, router, demo):
    router.online.add((demo["id"], 7))
    assert assert_ok(*routed.get("/users/7/online")) == {"uid": 7, "online": True}
    assert assert_ok(*routed.get("/users/online?uids=8,7,8")) == [{"uid": 8, "online": False},
                                                                   {"uid": 7, "online": True}]


@pytest.mark.parametrize("query", ["uids=", "uids=a,1", f"uids={2**53}", "uids=" + ",".join(map(str, range(501)))])
def test_bad_uid_lists_are_400_naming_uids(routed, query):
    assert_error(*routed.get(f"/users/online?{query}"), 400, "uids", code=1001)


@pytest.mark.parametrize("path", ["/messages/offline?uid=7", "/users/7/messages", "/users/7/online",
                                  "/users/online?uids=7"])
def test_a_router_that_is_down_or_too_slow_is_a_503(routed, router, path):
    router.down()
    status, body = routed.get(path)
    assert_error(status, body, 503, code=7003)
    router.up()
    router.delay(3)  # past ROUTER_RPC_TIMEOUT
    assert_error(*routed.get(path), 503, code=7003)
    router.clear()
    router.answer(500)
    assert_error(*routed.get(path), 503, code=7003)


@pytest.mark.parametrize("path", ["/users/7/messages", "/users/7/online", "/users/online?uids=7"])
def test_without_the_router_the_other_reads_are_a_documented_501(api, path):
    assert_error(*api.get(path), 501, code=7004)
