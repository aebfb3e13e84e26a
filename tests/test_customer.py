"""Customer service (SPEC 6 "Customer service", 5.1): visitor tokens and their reserved client ids,
the per-address rate limit, stores and sellers, choosing a supporter, offline counts and the
per-user history lists that POST /messages/... fill and GET /messages reads."""
import json

import pytest
from helpers import TEST_CONFIG, Api, assert_error, bearer, insert_group, make_app, queue, rows, token_for

from app import create_app

BASE = 2**53  # CUSTOMER_ID_BASE's default
CUSTOMER = "/auth/customer"
MESSAGE_QUEUE = "im_message_queue"
GID = 4343
ELSEWHERE = "198.51.100.7"  # an untrusted peer (not 127.0.0.1 / ::1)




def assert_no_customer_token_or_user_hash(db, r):
    """No customer row and no token or user hash for anyone."""
    assert rows(db, "SELECT id FROM customer") == []
    assert r.keys("access_token_*") == [] and r.keys("users_*") == []


@pytest.fixture
def anon(client):
    """A caller without credentials (a visitor's browser)."""
    return Api(client, {})


def customer(anon, appid, customer_id="visitor-1", **kwargs) -> dict:
    """POST /auth/customer that must succeed; its data."""
    status, body = anon.post(CUSTOMER, {"appid": appid, "customer_id": customer_id}, **kwargs)
    assert status == 200, body
    return body["data"]


def create_store(api, name="shop") -> int:
    status, body = api.post("/stores", {"name": name})
    assert status == 200, body
    assert set(body["data"]) == {"store_id"}
    return body["data"]["store_id"]


def add_seller(api, store_id, name, avatar=None) -> int:
    status, body = api.post(f"/stores/{store_id}/sellers", {"name": name, **({"avatar": avatar} if avatar else {})})
    assert status == 200, body
    assert set(body["data"]) == {"seller_id"}
    return body["data"]["seller_id"]


def app_store_id(db, appid) -> int:
    return rows(db, "SELECT store_id FROM app WHERE id = %s", appid)[0]["store_id"]


@pytest.fixture
def store(api):
    """The demo app's store, which becomes its customer-service store."""
    return create_store(api)


@pytest.fixture
def visitor(anon, demo, store) -> dict:
    """A customer of the demo app: {token, store_id, client_id}."""
    return customer(anon, demo["id"])


# --- POST /auth/customer ---------------------------------------------------------------------

def test_customer_gets_a_token_the_app_store_and_a_reserved_client_id(anon, demo, store, db, r):
    status, body = anon.post(CUSTOMER, {"appid": demo["id"], "customer_id": "visitor-1", "name": "Vi 😀",
                                        "avatar": "http://a/v.png", "platform_id": 1, "device_id": "d1"})
    assert status == 200, body
    data = body["data"]
    assert set(data) == {"token", "store_id", "client_id"}
    assert data["store_id"] == store
    assert isinstance(data["client_id"], int) and data["client_id"] >= BASE
    assert isinstance(data["token"], str) and data["token"]
    [row] = rows(db, "SELECT appid, CONVERT(customer_id USING utf8mb4) AS customer_id, name, avatar FROM customer")
    assert row == {"appid": demo["id"], "customer_id": "visitor-1", "name": "Vi 😀", "avatar": "http://a/v.png"}


def test_customer_token_resolves_to_the_client_id_and_app(anon, demo, store, r):
    data = customer(anon, demo["id"])
    token_hash = r.hgetall(f"access_token_{data['token']}")
    assert token_hash["user_id"] == str(data["client_id"])
    assert token_hash["app_id"] == str(demo["id"])


def test_customer_token_works_as_client_auth(client, anon, demo, store):
    data = customer(anon, demo["id"])
    status, body = Api(client, bearer(data["token"])).get("/messages")
    assert (status, body) == (200, {"data": []})


def test_same_customer_id_gets_the_same_client_id_and_token_again(anon, demo, store, db):
    first = customer(anon, demo["id"], "visitor-1")
    again = customer(anon, demo["id"], "visitor-1")
    assert again == first
    assert len(rows(db, "SELECT id FROM customer")) == 1


@pytest.mark.parametrize("one,two", [("alice", "bob"), ("alice", "Alice"),
                                     ("alice", "alice "),
                                     ("e", "é"), ("42", "042")])
def test_different_customer_ids_get_different_client_ids_and_tokens(anon, demo, store, one, two):
    first, second = customer(anon, demo["id"], one), customer(anon, demo["id"], two)
    assert first["client_id"] != second["client_id"]
    assert first["token"] != second["token"]
    assert customer(anon, demo["id"], one) == first  # and each keeps its own


@pytest.mark.parametrize("long_id", ["x" * 128, "é" * 128, "😀" * 128], ids=["ascii", "2-byte", "4-byte"])
def test_a_customer_id_of_128_characters_is_kept_whole(anon, demo, store, db, long_id):
    first = customer(anon, demo["id"], long_id)
    assert customer(anon, demo["id"], long_id[:-1] + "z")["client_id"] != first["client_id"]
    assert customer(anon, demo["id"], long_id) == first
    stored = rows(db, "SELECT CONVERT(customer_id USING utf8mb4) AS c FROM customer WHERE id = %s",
                  first["client_id"] - BASE)
    assert stored == [{"c": long_id}]


def test_two_apps_customers_with_the_same_customer_id_get_different_client_ids(anon, db, demo, store):
    second_app = make_app(db, name="second", store_id=99)
    mine, theirs = customer(anon, demo["id"], "same"), customer(anon, second_app["id"], "same")
    assert mine["client_id"] != theirs["client_id"]
    assert (mine["store_id"], theirs["store_id"]) == (store, 99)
    assert {mine["client_id"], theirs["client_id"]} == {r["id"] + BASE for r in rows(db, "SELECT id FROM customer")}


def test_client_ids_start_at_the_configured_base(app, db):
    demo = make_app(db, name="based", store_id=5)
    based = create_app({**TEST_CONFIG, "CUSTOMER_ID_BASE": 10**12}).test_client()
    data = customer(Api(based, {}), demo["id"])
    assert data["client_id"] >= 10**12
    status, body = Api(based, demo["auth"]).post("/auth/grant", {"uid": 10**12})
    assert_error(status, body, 400, "uid")
    status, body = Api(based, demo["auth"]).post("/auth/grant", {"uid": 10**12 - 1})
    assert status == 200, body


@pytest.mark.parametrize("case,status,code,field", [
    ("unknown-app", 400, 1001, "appid"),
    ("no-store", 400, 5001, None),
    ("disabled", 403, 2006, None),
    ("disabled-without-store", 403, 2006, None),
])
def test_customer_of_an_unusable_app_is_refused_and_nothing_is_written(anon, db, r, case, status, code, field):
    appid = {
        "unknown-app": lambda: make_app(db, name="gone", store_id=3)["id"] + 1000,
        "no-store": lambda: make_app(db, name="nostore", store_id=0)["id"],
        "disabled": lambda: make_app(db, name="off", store_id=3, disabled=1)["id"],
        "disabled-without-store": lambda: make_app(db, name="off0", store_id=0, disabled=1)["id"],
    }[case]()
    answer = anon.post(CUSTOMER, {"appid": appid, "customer_id": "visitor-1"})
    assert_error(*answer, status, field, code=code)
    assert_no_customer_token_or_user_hash(db, r)


def test_a_store_set_a_moment_ago_counts(anon, api, demo):
    status, body = anon.post(CUSTOMER, {"appid": demo["id"], "customer_id": "v"})
    assert_error(status, body, 400, code=5001)
    store_id = create_store(api)
    assert customer(anon, demo["id"], "v")["store_id"] == store_id


@pytest.mark.parametrize("body,field", [
    ({"customer_id": "v"}, "appid"),
    ({"appid": "x", "customer_id": "v"}, "appid"),
    ({"appid": -1, "customer_id": "v"}, "appid"),
    ({"appid": 2**63, "customer_id": "v"}, "appid"),
    ({"appid": 1.5, "customer_id": "v"}, "appid"),
    ({"appid": None, "customer_id": "v"}, "appid"),
    ({"appid": "APPID"}, "customer_id"),
    ({"appid": "APPID", "customer_id": ""}, "customer_id"),
    ({"appid": "APPID", "customer_id": "x" * 129}, "customer_id"),
    ({"appid": "APPID", "customer_id": None}, "customer_id"),
    ({"appid": "APPID", "customer_id": ["v"]}, "customer_id"),
    ({"appid": "APPID", "customer_id": "v", "name": "n" * 256}, "name"),
    ({"appid": "APPID", "customer_id": "v", "avatar": "a" * 256}, "avatar"),
    ({"appid": "APPID", "customer_id": "v", "platform_id": "web"}, "platform_id"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_customer_input_is_400_naming_the_field_and_writes_nothing(anon, demo, store, db, r, body, field):
    body = {key: demo["id"] if value == "APPID" else value for key, value in body.items()}
    status, answer = anon.post(CUSTOMER, body)
    assert_error(status, answer, 400, field, code=1001)
    assert_no_customer_token_or_user_hash(db, r)


@pytest.mark.parametrize("raw", ["[1, 2]", "not json", '"text"'])
def test_a_customer_body_that_is_not_an_object_is_400(client, demo, store, db, r, raw):
    response = client.post(CUSTOMER, data=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.get_json()
    assert set(response.get_json()) == {"meta"}
    assert_no_customer_token_or_user_hash(db, r)


# --- client ids are not app uids --------------------------------------------------------------

REFUSED = [
    ("POST", "/auth/grant", {"uid": "CID"}, "uid"),
    ("POST", "/auth/revoke", {"uid": "CID"}, "uid"),
    ("POST", "/messages/peers", {"sender": 1, "receiver": "CID", "content": "hi"}, "receiver"),
    ("POST", "/messages/peers", {"sender": "CID", "receiver": 1, "content": "hi"}, "sender"),
    ("POST", "/messages/systems", {"receiver": "CID", "content": "hi"}, "receiver"),
    ("POST", "/groups", {"master": 1, "name": "g", "members": [1, "CID"]}, "members"),
    ("POST", "/groups", {"master": 1, "name": "g", "members": [1, {"uid": "CID"}]}, "members"),
    ("POST", "/groups", {"master": "CID", "name": "g", "members": ["CID"]}, "master"),
]


@pytest.mark.parametrize("method,path,body,field", REFUSED, ids=[f"{p}:{f}" for _, p, b, f in REFUSED])
def test_a_client_id_is_refused_as_an_app_uid(api, visitor, db, r, method, path, body, field):
    cid = visitor["client_id"]
    body = json.loads(json.dumps(body).replace('"CID"', str(cid)))
    before = set(r.keys())
    status, answer = api.call(method, path, body)
    assert_error(status, answer, 400, field, code=1001)
    assert set(r.keys()) == before  # no token, no queue item, no event
    assert rows(db, "SELECT uid FROM user") == [] and rows(db, "SELECT id FROM `group`") == []
    assert r.hgetall(f"access_token_{visitor['token']}")["user_id"] == str(cid)  # still the visitor's


def test_a_customer_cannot_join_a_group_by_code(client, api, visitor, db):
    status, body = api.post("/groups", {"master": 1, "name": "g", "members": [1], "code": "c0de"})
    assert status == 200, body
    status, body = Api(client, bearer(visitor["token"])).post("/groups/join", {"code": "c0de"})
    assert status != 200, body
    assert rows(db, "SELECT uid FROM group_member WHERE uid = %s", visitor["client_id"]) == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "POST"])
def test_a_client_id_is_not_a_user_path(api, visitor, method):
    status, body = api.call(method, f"/users/{visitor['client_id']}", {"name": "x"} if method != "GET" else None)
    assert_error(status, body, 404)


def test_the_largest_app_uid_is_still_accepted(api, r):
    status, body = api.post("/auth/grant", {"uid": BASE - 1})
    assert status == 200, body
    assert r.hget(f"access_token_{body['data']['token']}", "user_id") == str(BASE - 1)


# --- the rate limit ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def limited_app(app):
    """The API as a process whose CUSTOMER_RATE_LIMIT is 3/minute."""
    return create_app({**TEST_CONFIG, "CUSTOMER_RATE_LIMIT": "3/minute"})


@pytest.fixture
def limited(limited_app, r):
    return Api(limited_app.test_client(), {})


def visit(limited, appid, customer_id, peer, headers=None):
    return limited.post(CUSTOMER, {"appid": appid, "customer_id": customer_id}, headers=headers,
                        environ_base={"REMOTE_ADDR": peer})


def use_up(limited, appid, peer, headers=None):
    for n in range(3):
        status, body = visit(limited, appid, f"burst-{peer}-{n}", peer, headers)
        assert status == 200, body


def test_the_fourth_call_from_one_address_is_429_with_retry_after(limited_app, limited, demo, store, db):
    use_up(limited, demo["id"], ELSEWHERE)
    response = limited_app.test_client().post(CUSTOMER, json={"appid": demo["id"], "customer_id": "fourth"},
                                              environ_base={"REMOTE_ADDR": ELSEWHERE})
    assert_error(response.status_code, response.get_json(), 429, code=6001)
    retry = response.headers.get("Retry-After", "")
    assert retry.isdigit() and 1 <= int(retry) <= 60, retry
    assert [r["customer_id"] for r in rows(db, "SELECT customer_id FROM customer WHERE customer_id = 'fourth'")] == []


def test_a_rate_limited_visitor_gets_no_token(limited, demo, store, db, r):
    use_up(limited, demo["id"], ELSEWHERE)
    before = r.keys("access_token_*")
    status, body = visit(limited, demo["id"], "late", ELSEWHERE)
    assert status == 429, body
    assert r.keys("access_token_*") == before and len(before) == 3
    assert rows(db, "SELECT id FROM customer WHERE customer_id = 'late'") == []


def test_another_address_is_still_allowed(limited, demo, store):
    use_up(limited, demo["id"], ELSEWHERE)
    assert visit(limited, demo["id"], "v", ELSEWHERE)[0] == 429
    status, body = visit(limited, demo["id"], "v", "198.51.100.8")
    assert status == 200, body


def test_a_spoofed_forwarded_for_from_an_untrusted_peer_does_not_escape_the_limit(limited, demo, store):
    use_up(limited, demo["id"], ELSEWHERE)
    for spoof in ({"X-Forwarded-For": "203.0.113.9"}, {"X-Real-IP": "203.0.113.9"},
                  {"X-Forwarded-For": "203.0.113.9, 127.0.0.1"}):
        status, body = visit(limited, demo["id"], "v", ELSEWHERE, spoof)
        assert status == 429, (spoof, body)


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(limited, demo, store):
    use_up(limited, demo["id"], "127.0.0.1", {"X-Forwarded-For": "203.0.113.1"})
    assert visit(limited, demo["id"], "v", "127.0.0.1", {"X-Forwarded-For": "203.0.113.1"})[0] == 429
    # the same client reached directly shares the count; another forwarded client does not
    assert visit(limited, demo["id"], "v", "203.0.113.1")[0] == 429
    assert visit(limited, demo["id"], "v", "127.0.0.1", {"X-Forwarded-For": "203.0.113.2"})[0] == 200
    # a client-made left part of the chain is not believed
    assert visit(limited, demo["id"], "v", "127.0.0.1", {"X-Forwarded-For": "10.1.1.1, 203.0.113.1"})[0] == 429


# --- stores and sellers -----------------------------------------------------------------------

def test_the_first_store_becomes_the_app_store(api, demo, db):
    assert app_store_id(db, demo["id"]) == 0
    store_id = create_store(api)
    assert app_store_id(db, demo["id"]) == store_id
    assert rows(db, "SELECT appid, name FROM store WHERE id = %s", store_id) == [{"appid": demo["id"], "name": "shop"}]


def test_a_later_store_does_not_replace_the_app_store(api, demo, db):
    first = create_store(api, "first")
    second = create_store(api, "second")
    assert second != first
    assert app_store_id(db, demo["id"]) == first


def test_a_store_does_not_replace_a_store_set_by_hand(client, db):
    shop = make_app(db, name="shop", store_id=777)
    create_store(Api(client, shop["auth"]))
    assert app_store_id(db, shop["id"]) == 777


def test_sellers_are_added_and_listed_in_id_order(api, store):
    ana = add_seller(api, store, "Ana 😀", "http://a/ana.png")
    bo = add_seller(api, store, "Bo")
    status, body = api.get(f"/stores/{store}")
    assert status == 200, body
    assert body["data"] == {"id": store, "name": "shop", "sellers": [
        {"seller_id": ana, "name": "Ana 😀", "avatar": "http://a/ana.png"},
        {"seller_id": bo, "name": "Bo", "avatar": ""}]}


def test_a_removed_seller_is_soft_deleted_and_no_longer_listed(api, store, db):
    ana, bo = add_seller(api, store, "Ana"), add_seller(api, store, "Bo")
    status, body = api.delete(f"/stores/{store}/sellers/{ana}")
    assert (status, body) == (200, {"data": {"success": True}})
    assert rows(db, "SELECT deleted FROM seller WHERE id = %s", ana) == [{"deleted": 1}]
    assert rows(db, "SELECT deleted FROM seller WHERE id = %s", bo) == [{"deleted": 0}]
    assert [s["seller_id"] for s in api.get(f"/stores/{store}")[1]["data"]["sellers"]] == [bo]


def test_removing_a_seller_of_another_store_is_404(api, store, db):
    elsewhere = create_store(api, "elsewhere")
    ana = add_seller(api, elsewhere, "Ana")
    assert_error(*api.delete(f"/stores/{store}/sellers/{ana}"), 404)
    assert_error(*api.delete(f"/stores/{store}/sellers/{ana + 1000}"), 404)
    assert rows(db, "SELECT deleted FROM seller WHERE id = %s", ana) == [{"deleted": 0}]


@pytest.mark.parametrize("method,path,body", [
    ("GET", "/stores/{store}", None),
    ("POST", "/stores/{store}/sellers", {"name": "intruder"}),
    ("DELETE", "/stores/{store}/sellers/{seller}", None),
], ids=["get", "add-seller", "remove-seller"])
def test_another_apps_store_is_404(client, api, other, db, method, path, body):
    theirs = Api(client, other["auth"])
    store = create_store(theirs)
    seller = add_seller(theirs, store, "Theirs")
    status, answer = api.call(method, path.format(store=store, seller=seller), body)
    assert_error(status, answer, 404, code=5002)
    assert rows(db, "SELECT id, deleted FROM seller WHERE store_id = %s", store) == [{"id": seller, "deleted": 0}]


def test_an_unknown_store_is_404(api):
    assert_error(*api.get("/stores/123456789"), 404, code=5002)


@pytest.mark.parametrize("path,body,field", [
    ("/stores", {}, "name"),
    ("/stores", {"name": "s" * 256}, "name"),
    ("/stores/{store}/sellers", {}, "name"),
    ("/stores/{store}/sellers", {"name": 5}, "name"),
    ("/stores/{store}/sellers", {"name": "n", "avatar": "a" * 256}, "avatar"),
])
def test_bad_store_or_seller_input_is_400_naming_the_field(api, store, db, path, body, field):
    status, answer = api.post(path.format(store=store), body)
    assert_error(status, answer, 400, field, code=1001)
    assert len(rows(db, "SELECT id FROM store")) == 1 and rows(db, "SELECT id FROM seller") == []


def test_store_management_needs_server_auth(client, api, store, visitor, db):
    as_visitor = Api(client, bearer(visitor["token"]))
    assert_error(*as_visitor.post("/stores", {"name": "mine"}), 403)
    assert_error(*as_visitor.post(f"/stores/{store}/sellers", {"name": "me"}), 403)
    assert_error(*Api(client, {}).get(f"/stores/{store}"), 401)
    assert len(rows(db, "SELECT id FROM store")) == 1 and rows(db, "SELECT id FROM seller") == []


# --- GET /supporters --------------------------------------------------------------------------

def set_status(r, seller_id, status="online"):
    r.hset(f"supporters_{seller_id}", "status", status)


@pytest.fixture
def sellers(api, store) -> list[int]:
    """Four sellers of the demo store, by id (all offline: no supporters_ hash)."""
    return [add_seller(api, store, name, f"http://a/{name}.png") for name in ("Ana", "Bo", "Cy", "Di")]


@pytest.fixture
def ask(client, visitor, store):
    """GET /supporters for the demo visitor; returns (status, body)."""
    as_visitor = Api(client, bearer(visitor["token"]))
    return lambda store_id=store: as_visitor.get(f"/supporters?store_id={store_id}")


def chosen(ask, store_id=None) -> dict:
    status, body = ask() if store_id is None else ask(store_id)
    assert status == 200, body
    return body["data"]


def forget(r, demo, visitor):
    """Drop what the visitor's hash remembers of its last seller."""
    r.hdel(f"users_{demo['id']}_{visitor['client_id']}", "store_id", "seller_id")


def test_supporter_answer_has_the_seller_and_its_status(ask, sellers, r):
    set_status(r, sellers[2])
    assert chosen(ask) == {"seller_id": sellers[2], "name": "Cy", "avatar": "http://a/Cy.png", "status": "online"}


def test_with_nobody_online_the_first_seller_is_chosen(ask, sellers, r, demo, visitor):
    set_status(r, sellers[0], "offline")  # an explicit offline counts as offline, like a missing hash
    for _ in range(10):
        assert chosen(ask) == {"seller_id": sellers[0], "name": "Ana", "avatar": "http://a/Ana.png",
                               "status": "offline"}
        forget(r, demo, visitor)


def test_without_a_last_seller_only_an_online_one_is_chosen(ask, sellers, r, demo, visitor):
    set_status(r, sellers[2])
    set_status(r, sellers[1], "away")
    for _ in range(30):
        assert chosen(ask)["seller_id"] == sellers[2]
        forget(r, demo, visitor)


def test_the_online_choice_is_random_among_online_sellers(ask, sellers, r, demo, visitor):
    set_status(r, sellers[1])
    set_status(r, sellers[3])
    seen = set()
    for _ in range(60):  # both are seen unless the choice is not random (chance 2**-59)
        seen.add(chosen(ask)["seller_id"])
        forget(r, demo, visitor)
    assert seen == {sellers[1], sellers[3]}


def test_the_choice_is_remembered_in_the_visitor_hash(ask, sellers, r, demo, visitor, store):
    set_status(r, sellers[1])
    chosen(ask)
    remembered = r.hmget(f"users_{demo['id']}_{visitor['client_id']}", "store_id", "seller_id")
    assert remembered == [str(store), str(sellers[1])]


def test_the_last_seller_is_kept_even_offline_while_others_are_online(ask, sellers, r):
    set_status(r, sellers[1])
    assert chosen(ask)["seller_id"] == sellers[1]
    set_status(r, sellers[1], "offline")
    set_status(r, sellers[0])
    set_status(r, sellers[3])
    for _ in range(10):
        assert chosen(ask) == {"seller_id": sellers[1], "name": "Bo", "avatar": "http://a/Bo.png",
                               "status": "offline"}


def test_a_last_seller_remembered_in_redis_is_honoured(ask, sellers, r, demo, visitor, store):
    r.hset(f"users_{demo['id']}_{visitor['client_id']}", mapping={"store_id": store, "seller_id": sellers[3]})
    set_status(r, sellers[0])
    assert chosen(ask)["seller_id"] == sellers[3]


def test_a_removed_last_seller_gives_way_to_an_online_one(api, ask, sellers, r, demo, visitor, store):
    assert chosen(ask)["seller_id"] == sellers[0]  # nobody online: the first, now remembered
    assert api.delete(f"/stores/{store}/sellers/{sellers[0]}")[0] == 200
    set_status(r, sellers[2])
    assert chosen(ask)["seller_id"] == sellers[2]
    assert r.hget(f"users_{demo['id']}_{visitor['client_id']}", "seller_id") == str(sellers[2])


def test_with_the_first_seller_removed_and_nobody_online_the_next_is_first(api, ask, sellers, store):
    assert api.delete(f"/stores/{store}/sellers/{sellers[0]}")[0] == 200
    assert chosen(ask)["seller_id"] == sellers[1]


def test_an_app_user_may_ask_too(client, api, sellers, store, r):
    set_status(r, sellers[3])
    status, body = Api(client, bearer(token_for(api, 7))).get(f"/supporters?store_id={store}")
    assert status == 200 and body["data"]["seller_id"] == sellers[3], body


def test_a_store_without_sellers_is_404(api, ask, store):
    assert_error(*ask(), 404)
    seller = add_seller(api, store, "Only")
    assert api.delete(f"/stores/{store}/sellers/{seller}")[0] == 200
    assert_error(*ask(), 404)


def test_another_apps_store_has_no_supporters_for_us(client, ask, other, r):
    theirs = Api(client, other["auth"])
    their_store = create_store(theirs)
    set_status(r, add_seller(theirs, their_store, "Theirs"))
    assert_error(*ask(their_store), 404, code=5002)
    assert_error(*ask(987654321), 404, code=5002)


@pytest.mark.parametrize("query", ["", "?store_id=", "?store_id=abc", "?store_id=-1"])
def test_a_bad_store_id_is_400_naming_it(client, visitor, sellers, query):
    status, body = Api(client, bearer(visitor["token"])).get("/supporters" + query)
    assert_error(status, body, 400, "store_id", code=1001)


def test_supporters_need_client_auth(client, api, store, sellers):
    assert_error(*api.get(f"/supporters?store_id={store}"), 403)
    assert_error(*Api(client, {}).get(f"/supporters?store_id={store}"), 401)


# --- GET /messages/offline --------------------------------------------------------------------

OFFLINE = "/messages/offline"


@pytest.mark.parametrize("unread,expected", [(None, {"count": 0, "new": 0}), ("0", {"count": 0, "new": 0}),
                                             ("5", {"count": 5, "new": 1})])
def test_server_reads_a_users_unread_count(api, demo, r, unread, expected):
    if unread is not None:
        r.hset(f"users_{demo['id']}_7", "unread", unread)
    r.hset(f"users_{demo['id']}_8", "unread", "9")  # someone else's
    assert api.get(f"{OFFLINE}?uid=7") == (200, {"data": expected})


@pytest.mark.parametrize("unread,expected", [(None, {"count": 0, "new": 0}), ("5", {"count": 5, "new": 1})])
def test_server_reads_a_customers_unread_count_by_customer_id(api, demo, visitor, r, unread, expected):
    if unread is not None:
        r.hset(f"users_{demo['id']}_{visitor['client_id']}", "unread", unread)
    assert api.get(f"{OFFLINE}?customer_id=visitor-1") == (200, {"data": expected})


def test_a_customer_reads_its_own_unread_count(client, demo, visitor, r):
    r.hset(f"users_{demo['id']}_{visitor['client_id']}", "unread", "5")
    r.hset(f"users_{demo['id']}_7", "unread", "2")
    as_visitor = Api(client, bearer(visitor["token"]))
    assert as_visitor.get(OFFLINE) == (200, {"data": {"count": 5, "new": 1}})
    # a client asks only for itself, whatever it passes
    assert as_visitor.get(f"{OFFLINE}?uid=7") == (200, {"data": {"count": 5, "new": 1}})


def test_an_app_user_reads_its_own_unread_count(client, api, demo, r):
    r.hset(f"users_{demo['id']}_7", "unread", "3")
    assert Api(client, bearer(token_for(api, 7))).get(OFFLINE) == (200, {"data": {"count": 3, "new": 1}})


def test_an_unknown_customer_id_is_404(client, api, other, db):
    theirs = make_app(db, name="theirs", store_id=1)
    customer(Api(client, {}), theirs["id"], "only-theirs")
    assert_error(*api.get(f"{OFFLINE}?customer_id=nobody"), 404)
    assert_error(*api.get(f"{OFFLINE}?customer_id=only-theirs"), 404)


def test_a_server_asking_about_nobody_is_400(api):
    assert_error(*api.get(OFFLINE), 400, "uid", code=1001)


@pytest.mark.parametrize("query,field", [("?uid=abc", "uid"), ("?uid=-1", "uid"),
                                         ("?customer_id=" + "x" * 129, "customer_id")])
def test_a_bad_offline_query_is_400_naming_the_field(api, query, field):
    assert_error(*api.get(OFFLINE + query), 400, field, code=1001)


# --- history lists ----------------------------------------------------------------------------

def post(api, path, body) -> int:
    status, answer = api.post(path, body)
    assert status == 200, answer
    return answer["data"]["id"]


def history(r, appid, uid) -> list[dict]:
    """history_<appid>_<uid>, newest first."""
    return [json.loads(item) for item in r.lrange(f"history_{appid}_{uid}", 0, -1)]


@pytest.fixture
def group(db, demo):
    return insert_group(db, demo["id"], GID)


def test_a_peer_message_goes_on_both_lists_as_the_queue_item(api, demo, r):
    post(api, "/messages/peers", {"sender": 1, "receiver": 2, "content": "hi"})
    [raw] = r.lrange(MESSAGE_QUEUE, 0, -1)
    assert r.lrange(f"history_{demo['id']}_1", 0, -1) == [raw]
    assert r.lrange(f"history_{demo['id']}_2", 0, -1) == [raw]
    assert sorted(r.keys("history_*")) == sorted([f"history_{demo['id']}_1", f"history_{demo['id']}_2"])


def test_peer_histories_are_newest_first(api, demo, r):
    a = post(api, "/messages/peers", {"sender": 1, "receiver": 2, "content": "a"})
    b = post(api, "/messages/peers", {"sender": 2, "receiver": 1, "content": "b"})
    c = post(api, "/messages/peers", {"sender": 1, "receiver": 3, "content": "c"})
    assert [m["id"] for m in history(r, demo["id"], 1)] == [c, b, a]
    assert [m["id"] for m in history(r, demo["id"], 2)] == [b, a]
    assert [m["id"] for m in history(r, demo["id"], 3)] == [c]
    assert history(r, demo["id"], 1) == list(reversed(queue(r, MESSAGE_QUEUE)))


@pytest.mark.parametrize("path", ["/messages/systems", "/messages/notifications"])
def test_system_messages_and_notifications_go_on_the_receivers_list_only(api, demo, r, path):
    msg_id = post(api, path, {"receiver": 2, "content": "hi"})
    assert r.keys("history_*") == [f"history_{demo['id']}_2"]
    assert history(r, demo["id"], 2) == queue(r, MESSAGE_QUEUE) and history(r, demo["id"], 2)[0]["id"] == msg_id


def test_a_group_message_goes_on_the_senders_list_only(api, demo, group, r):
    post(api, "/messages/groups", {"sender": 1, "receiver": GID, "content": "hi"})
    assert r.keys("history_*") == [f"history_{demo['id']}_1"]
    assert history(r, demo["id"], 1) == queue(r, MESSAGE_QUEUE)


def test_a_group_notification_goes_on_no_list(api, group, r):
    post(api, "/messages/groups/notifications", {"group_id": GID, "content": "hi", "members": [1, 2]})
    assert r.keys("history_*") == []


def test_a_room_message_goes_on_the_senders_list_only_and_none_from_the_system(api, demo, r):
    post(api, "/messages/rooms", {"sender": 0, "receiver": 77, "content": "from the system"})
    assert r.keys("history_*") == []
    post(api, "/messages/rooms", {"sender": 5, "receiver": 77, "content": "hi"})
    assert r.keys("history_*") == [f"history_{demo['id']}_5"]


def test_a_peer_message_from_the_system_goes_on_the_receivers_list_only(api, demo, r):
    post(api, "/messages/peers", {"sender": 0, "receiver": 2, "content": "hi"})
    assert r.keys("history_*") == [f"history_{demo['id']}_2"]


def test_histories_are_per_app(client, api, demo, other, r):
    post(api, "/messages/peers", {"sender": 1, "receiver": 2, "content": "demo"})
    post(Api(client, other["auth"]), "/messages/peers", {"sender": 1, "receiver": 2, "content": "other"})
    assert [m["content"] for m in history(r, demo["id"], 2)] == ["demo"]
    assert [m["content"] for m in history(r, other["id"], 2)] == ["other"]


def test_history_lists_are_bounded_by_history_length(demo, r):
    short = Api(create_app({**TEST_CONFIG, "HISTORY_LENGTH": 5}).test_client(), demo["auth"])
    ids = [post(short, "/messages/peers", {"sender": 1, "receiver": 2, "content": f"m{n}"}) for n in range(8)]
    for uid in (1, 2):
        assert [m["id"] for m in history(r, demo["id"], uid)] == ids[:2:-1]  # the newest 5, newest first
    assert r.llen(MESSAGE_QUEUE) == 8  # the queue itself is not trimmed


def test_a_refused_post_writes_no_history(demo, r):
    tiny = Api(create_app({**TEST_CONFIG, "QUEUE_MAX_LENGTH": 1}).test_client(), demo["auth"])
    first = post(tiny, "/messages/peers", {"sender": 1, "receiver": 2, "content": "first"})
    for path, body in [("/messages/peers", {"sender": 1, "receiver": 3, "content": "refused"}),
                       ("/messages/systems", {"receiver": 4, "content": "refused"})]:
        status, answer = tiny.post(path, body)
        assert_error(status, answer, 503, code=7002)
    assert sorted(r.keys("history_*")) == sorted([f"history_{demo['id']}_1", f"history_{demo['id']}_2"])
    assert [m["id"] for m in history(r, demo["id"], 1)] == [first]
    assert r.llen(MESSAGE_QUEUE) == 1


def test_a_post_refused_for_bad_input_writes_no_history(api, r):
    assert api.post("/messages/peers", {"sender": 1, "receiver": 2})[0] == 400
    assert r.keys("history_*") == []


# --- GET /messages ----------------------------------------------------------------------------

def test_get_messages_returns_the_callers_list_newest_first(client, api, demo, r):
    a = post(api, "/messages/peers", {"sender": 1, "receiver": 2, "content": "to me"})
    b = post(api, "/messages/peers", {"sender": 3, "receiver": 2, "content": "to me too"})
    post(api, "/messages/peers", {"sender": 1, "receiver": 3, "content": "not mine"})
    d = post(api, "/messages/peers", {"sender": 2, "receiver": 4, "content": "from me"})
    status, body = Api(client, bearer(token_for(api, 2))).get("/messages")
    assert status == 200, body
    assert [m["id"] for m in body["data"]] == [d, b, a]
    assert body["data"] == history(r, demo["id"], 2)
    assert all({"id", "content", "timestamp"} <= set(m) for m in body["data"])


def test_get_messages_with_no_history_is_an_empty_list(client, api):
    assert Api(client, bearer(token_for(api, 9))).get("/messages") == (200, {"data": []})


def customer_item(msg_id, appid, client_id, store_id, content="hello") -> str:
    return json.dumps({"id": msg_id, "kind": "customer", "appid": appid, "sender": client_id, "receiver": 501,
                       "store_id": store_id, "content": content, "timestamp": 1700000000000 + msg_id})


def test_store_filter_keeps_only_that_stores_customer_messages(client, demo, visitor, r):
    key = f"history_{demo['id']}_{visitor['client_id']}"
    cid = visitor["client_id"]
    r.lpush(key, customer_item(1, demo["id"], cid, 11), customer_item(2, demo["id"], cid, 12),
            json.dumps({"id": 3, "kind": "peer", "appid": demo["id"], "sender": 1, "receiver": cid,
                        "store_id": 11, "content": "peer", "timestamp": 1}),
            customer_item(4, demo["id"], cid, 11))
    as_visitor = Api(client, bearer(visitor["token"]))
    status, body = as_visitor.get("/messages?store=11")
    assert status == 200, body
    assert [m["id"] for m in body["data"]] == [4, 1]
    assert body["data"][0] == json.loads(customer_item(4, demo["id"], cid, 11))
    assert [m["id"] for m in as_visitor.get("/messages?store=12")[1]["data"]] == [2]
    assert as_visitor.get("/messages?store=13") == (200, {"data": []})
    assert [m["id"] for m in as_visitor.get("/messages")[1]["data"]] == [4, 3, 2, 1]


@pytest.mark.parametrize("query", ["?store=abc", "?store=-1"])
def test_a_bad_store_filter_is_400_naming_it(client, visitor, query):
    assert_error(*Api(client, bearer(visitor["token"])).get("/messages" + query), 400, "store", code=1001)


def test_get_messages_needs_client_auth(client, api):
    assert_error(*api.get("/messages"), 403)
    assert_error(*Api(client, {}).get("/messages"), 401)


# --- POST /customer/register (the original API's widget form) ------------------------------

def widget_auth(appid, key) -> dict:
    import base64
    return {"Authorization": "Basic " + base64.b64encode(f"{appid}:{key}".encode()).decode()}


def test_customer_register_answers_like_auth_customer_with_the_app_key(client, demo, store, r):
    widget = Api(client, widget_auth(demo["id"], demo["key"]))
    status, body = widget.post("/customer/register", {"appid": demo["id"], "customer_id": "w-1", "name": "Wi"})
    assert status == 200, body
    assert set(body["data"]) == {"token", "store_id", "client_id"} and body["data"]["store_id"] == store
    again = Api(client, {}).post(CUSTOMER, {"appid": demo["id"], "customer_id": "w-1"})[1]["data"]
    assert again == body["data"]  # the same visitor, whichever form asked
    assert r.hget(f"access_token_{again['token']}", "user_id") == str(again["client_id"])


@pytest.mark.parametrize("headers", ["none", "wrong key", "other appid", "secret instead of key", "bearer"])
def test_customer_register_without_the_app_key_is_401_and_makes_nothing(client, demo, other, store, db, r, headers):
    auth = {"none": {}, "wrong key": widget_auth(demo["id"], "nope"),
            "other appid": widget_auth(other["id"], other["key"]),
            "secret instead of key": widget_auth(demo["id"], demo["secret"]),
            "bearer": {"Authorization": "Bearer " + demo["key"]}}[headers]
    status, body = Api(client, auth).post("/customer/register", {"appid": demo["id"], "customer_id": "w-2"})
    assert_error(status, body, 401)
    assert_no_customer_token_or_user_hash(db, r)


# --- POST /messages/customers ------------------------------------------------------------------

def test_a_seller_messages_a_visitor_as_a_customer_item(api, demo, store, visitor, r):
    seller = add_seller(api, store, "Sam")
    for who in ({"customer_id": "visitor-1"}, {"client_id": visitor["client_id"]}):
        status, body = api.post("/messages/customers", {"store_id": store, "seller_id": seller, **who,
                                                        "content": "hello"})
        assert status == 200, body
    items = queue(r, MESSAGE_QUEUE)
    assert [i["id"] for i in items] == [i["id"] for i in items if i["kind"] == "customer"] and len(items) == 2
    assert {k: v for k, v in items[0].items() if k not in ("id", "timestamp")} == {
        "kind": "customer", "appid": demo["id"], "sender": seller, "receiver": visitor["client_id"],
        "content": "hello", "store_id": store, "seller_id": seller}
    mine = Api(api.client, bearer(visitor["token"])).get(f"/messages?store={store}")[1]["data"]
    assert [m["id"] for m in mine] == [items[1]["id"], items[0]["id"]]  # the visitor's history shows them


@pytest.mark.parametrize("change, status, code", [
    ({"store_id": 999999}, 404, 5002),
    ({"seller_id": 999999}, 404, 5003),
    ({"customer_id": "nobody"}, 404, 3001),
    ({"client_id": 12, "customer_id": None}, 404, 3001),
    ({"client_id": BASE + 999999, "customer_id": None}, 404, 3001),
    ({"customer_id": None}, 400, 1001),
    ({"content": None}, 400, 1001),
])
def test_a_customer_message_to_no_one_is_refused_and_queues_nothing(api, store, visitor, r, change, status, code):
    seller = add_seller(api, store, "Sam")
    body = {"store_id": store, "seller_id": seller, "customer_id": "visitor-1", "content": "x", **change}
    body = {k: v for k, v in body.items() if v is not None}
    assert_error(*api.post("/messages/customers", body), status, code=code)
    assert queue(r, MESSAGE_QUEUE) == []


def test_another_apps_store_is_not_found_for_customer_messages(client, other, store, visitor, api, r):
    seller = add_seller(api, store, "Sam")
    status, body = Api(client, other["auth"]).post("/messages/customers", {
        "store_id": store, "seller_id": seller, "client_id": visitor["client_id"], "content": "x"})
    assert_error(status, body, 404)
    assert queue(r, MESSAGE_QUEUE) == []
