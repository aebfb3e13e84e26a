"""Friends and blacklists: the rows the router reads, the relationship events with their own
action_id chain, who may do what, bad input refused with nothing written, paging, concurrency,
and a user's deletion ending its relationships."""
import pytest
import redis
from helpers import Api, assert_error, assert_ok, assert_refused, bearer, make_app, queue, rows, token_for
from test_groups import assert_chain, assert_now_ms, assert_now_s, run_together

from models import outbox, unit_of_work
from models import relationship as relationships

EVENTS = "relationship_event_queue"
SELF, INVALID, BATCH, FORBIDDEN, NOT_FOUND, INVALID_JSON, NO_USER = 3003, 1001, 1002, 2007, 1003, 1000, 3001
VISITOR = 2**53  # CUSTOMER_ID_BASE's default: customer-service visitors' ids
# The stock router's checks, when its enable_friendship / enable_blacklist are on.
ROUTER_CHECK = "SELECT uid, friend_uid FROM `{}` WHERE appid=%s AND uid=%s AND friend_uid=%s"


# --- helpers -------------------------------------------------------------------------------

def events(r) -> list[dict]:
    return queue(r, EVENTS)


def brief(items: list[dict]) -> list[tuple]:
    """(name, uid, friend_uid, flag) of each event."""
    return [(e["name"], e["uid"], e["friend_uid"], e[e["name"]]) for e in items]


def pairs(db, table: str, appid: int) -> set[tuple[int, int]]:
    return {(row["uid"], row["friend_uid"]) for row in rows(db, f"SELECT uid, friend_uid FROM `{table}` WHERE appid=%s",
                                                            appid)}


def router_sees(db, table: str, appid: int, uid: int, other: int) -> bool:
    return bool(rows(db, ROUTER_CHECK.format(table), (appid, uid, other)))


def counter(db, name: str) -> int:
    return rows(db, "SELECT value FROM sequence WHERE name = %s", name)[0]["value"]


def outbox_size(db) -> int:
    return rows(db, "SELECT COUNT(*) AS n FROM outbox")[0]["n"]


def befriend(api, uid, *friends):
    assert_ok(*api.post(f"/users/{uid}/friends", list(friends)))


def block(api, uid, *blocked):
    assert_ok(*api.post(f"/users/{uid}/blacklist", list(blocked)))


@pytest.fixture
def alice(api):
    """A client of the demo app: user 1 with a token."""
    return Api(api.client, bearer(token_for(api, 1)))


# --- friends -------------------------------------------------------------------------------

def test_making_friends_writes_both_rows_and_one_event_per_direction(api, demo, db, r):
    before = counter(db, "relationship_action")
    assert assert_ok(*api.post("/users/1/friends", {"friend_uid": 2})) == {"success": True}

    found = rows(db, "SELECT appid, uid, friend_uid, timestamp FROM friend ORDER BY uid")
    assert [(f["appid"], f["uid"], f["friend_uid"]) for f in found] == [(demo["id"], 1, 2), (demo["id"], 2, 1)]
    for row in found:
        assert_now_s(row["timestamp"])
    assert router_sees(db, "friend", demo["id"], 1, 2) and router_sees(db, "friend", demo["id"], 2, 1)
    items = events(r)
    assert [{k: v for k, v in e.items() if k not in ("timestamp", "action_id", "previous_action_id")}
            for e in items] == [{"name": "friend", "appid": demo["id"], "uid": 1, "friend_uid": 2, "friend": 1},
                                {"name": "friend", "appid": demo["id"], "uid": 2, "friend_uid": 1, "friend": 1}]
    assert all(set(e) == {"action_id", "previous_action_id", "name", "appid", "uid", "friend_uid", "friend",
                          "timestamp"} for e in items)
    for item in items:
        assert_now_ms(item["timestamp"])
    assert_chain(items, after=before)
    assert counter(db, "relationship_action") == before + 2
    assert outbox_size(db) == 0 and rows(db, "SELECT * FROM blacklist") == []
    assert r.llen("group_event_queue") == 0


def test_a_list_makes_several_friendships_and_a_repeat_queues_nothing(api, demo, db, r):
    befriend(api, 1, 2, 3, 2)
    assert pairs(db, "friend", demo["id"]) == {(1, 2), (2, 1), (1, 3), (3, 1)}
    assert brief(events(r)) == [("friend", 1, 2, 1), ("friend", 2, 1, 1), ("friend", 1, 3, 1), ("friend", 3, 1, 1)]
    stamps = rows(db, "SELECT * FROM friend ORDER BY uid, friend_uid")

    befriend(api, 1, 3, 2)
    assert_ok(*api.post("/users/2/friends", {"friend_uid": 1}))  # the same friendship, from the other side
    assert len(events(r)) == 4 and outbox_size(db) == 0
    assert rows(db, "SELECT * FROM friend ORDER BY uid, friend_uid") == stamps  # since when: unchanged

    befriend(api, 1, 3, 4)  # only the new one changes something
    assert brief(events(r))[4:] == [("friend", 1, 4, 1), ("friend", 4, 1, 1)]
    assert_chain(events(r))


def test_ending_a_friendship_deletes_both_rows_once(api, demo, db, r):
    befriend(api, 1, 2, 3)
    assert_ok(*api.delete("/users/2/friends/1"))
    assert pairs(db, "friend", demo["id"]) == {(1, 3), (3, 1)}
    assert not router_sees(db, "friend", demo["id"], 1, 2)
    assert brief(events(r))[4:] == [("friend", 2, 1, 0), ("friend", 1, 2, 0)]
    assert_chain(events(r))

    assert_ok(*api.delete("/users/2/friends/1"))  # no friendship: not an error, nothing queued
    assert_ok(*api.delete("/users/1/friends/9"))
    assert len(events(r)) == 6 and outbox_size(db) == 0


def test_a_one_sided_row_left_by_hand_is_completed_and_ended_with_an_event_per_row(api, demo, db, r):
    with db.cursor() as cur:
        cur.execute("INSERT INTO friend (appid, uid, friend_uid) VALUES (%s, 2, 1)", (demo["id"],))
    befriend(api, 1, 2)
    assert brief(events(r)) == [("friend", 1, 2, 1)]
    with db.cursor() as cur:
        cur.execute("DELETE FROM friend WHERE uid = 2")
    assert_ok(*api.delete("/users/1/friends/2"))
    assert brief(events(r))[1:] == [("friend", 1, 2, 0)]
    assert pairs(db, "friend", demo["id"]) == set()


# --- blacklists ----------------------------------------------------------------------------

def test_blocking_is_one_direction(api, demo, db, r):
    before = counter(db, "relationship_action")
    assert_ok(*api.post("/users/1/blacklist", {"uid": 2}))
    assert pairs(db, "blacklist", demo["id"]) == {(1, 2)}
    assert router_sees(db, "blacklist", demo["id"], 1, 2) and not router_sees(db, "blacklist", demo["id"], 2, 1)
    [item] = events(r)
    assert set(item) == {"action_id", "previous_action_id", "name", "appid", "uid", "friend_uid", "blacklist",
                         "timestamp"}
    assert (item["name"], item["appid"], item["uid"], item["friend_uid"], item["blacklist"]) == (
        "blacklist", demo["id"], 1, 2, 1)
    assert item["previous_action_id"] == before and item["action_id"] == before + 1
    assert rows(db, "SELECT * FROM friend") == []
    assert_now_s(rows(db, "SELECT timestamp FROM blacklist")[0]["timestamp"])

    assert_ok(*api.post("/users/1/blacklist", [2]))  # a repeat
    block(api, 1, 3, 2, 4)
    assert brief(events(r)) == [("blacklist", 1, 2, 1), ("blacklist", 1, 3, 1), ("blacklist", 1, 4, 1)]

    assert_ok(*api.delete("/users/1/blacklist/3"))
    assert_ok(*api.delete("/users/1/blacklist/3"))
    assert_ok(*api.delete("/users/2/blacklist/1"))  # 2 never blocked 1
    assert brief(events(r))[3:] == [("blacklist", 1, 3, 0)]
    assert pairs(db, "blacklist", demo["id"]) == {(1, 2), (1, 4)}
    assert_chain(events(r), after=before)
    assert outbox_size(db) == 0


def test_friend_and_blacklist_events_share_the_relationship_chain_and_leave_the_group_chain_alone(api, db, r):
    groups_before, before = counter(db, "group_action"), counter(db, "relationship_action")
    befriend(api, 1, 2)
    assert_ok(*api.post("/groups", {"master": 1, "name": "team", "members": [1, 2]}))
    block(api, 1, 3)
    assert [e["name"] for e in events(r)] == ["friend", "friend", "blacklist"]
    assert_chain(events(r), after=before)
    assert_chain(queue(r, "group_event_queue"), after=groups_before)
    assert counter(db, "group_action") == groups_before + 3


def test_a_relationship_change_stands_when_redis_fails_after_the_commit(api, app, db, r, monkeypatch):
    def down(conn, client, **kwargs):
        raise redis.ConnectionError("down")

    monkeypatch.setattr(unit_of_work.outbox, "relay", down)
    befriend(api, 1, 2)
    assert events(r) == [] and outbox_size(db) == 2
    monkeypatch.undo()
    with app.app_context():
        assert outbox.relay(db, r) == 2
    assert brief(events(r)) == [("friend", 1, 2, 1), ("friend", 2, 1, 1)]
    assert_chain(events(r))


# --- listings ------------------------------------------------------------------------------

@pytest.mark.parametrize("path, key", [("friends", "friends"), ("blacklist", "blacklist")])
def test_lists_are_paged_by_uid_with_after_or_start(api, path, key):
    (befriend if path == "friends" else block)(api, 1, *range(11, 1, -1))
    def listed(query):
        data = assert_ok(*api.get(f"/users/1/{path}?{query}"))
        return data["total"], data["start"], data["count"], [item["uid"] for item in data[key]]

    assert listed("count=3") == (10, 0, 3, [2, 3, 4])
    assert listed("after=4&count=3") == (10, 0, 3, [5, 6, 7])
    assert listed("after=9") == (10, 0, 2, [10, 11])
    assert listed("after=11") == (10, 0, 0, [])
    assert listed("start=8") == (10, 8, 2, [10, 11])
    assert listed("after=3&start=2&count=2") == (10, 2, 2, [6, 7])
    data = assert_ok(*api.get(f"/users/1/{path}"))
    assert set(data) == {"total", "start", "count", key, "next"} and data["count"] == 10
    assert all(set(item) == {"uid", "timestamp"} for item in data[key])
    assert assert_ok(*api.get(f"/users/2/{path}"))["total"] == (1 if path == "friends" else 0)


@pytest.mark.parametrize("query", ["count=0", "count=501", "after=-1", "after=x", "start=-1", f"after={2**63}"])
def test_bad_paging_is_a_400_naming_the_parameter(api, query):
    for path in ("friends", "blacklist"):
        assert_error(*api.get(f"/users/1/{path}?{query}"), 400, field=query.split("=")[0], code=INVALID)


# --- who may do what -----------------------------------------------------------------------

def test_a_client_reads_its_own_lists_and_manages_its_own_blacklist(api, alice, db, demo, r):
    befriend(api, 1, 2)
    assert [f["uid"] for f in assert_ok(*alice.get("/users/1/friends"))["friends"]] == [2]
    assert_ok(*alice.post("/users/1/blacklist", {"uid": 3}))
    assert [b["uid"] for b in assert_ok(*alice.get("/users/1/blacklist"))["blacklist"]] == [3]
    assert_ok(*alice.delete("/users/1/blacklist/3"))
    assert pairs(db, "blacklist", demo["id"]) == set()
    assert brief(events(r))[2:] == [("blacklist", 1, 3, 1), ("blacklist", 1, 3, 0)]


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/users/1/friends", {"friend_uid": 3}),  # friendships are the app server's
    ("DELETE", "/users/1/friends/2", None),
    ("GET", "/users/2/friends", None),  # another user's lists
    ("GET", "/users/2/blacklist", None),
    ("POST", "/users/2/blacklist", {"uid": 1}),
    ("DELETE", "/users/2/blacklist/3", None),
    ("POST", "/users/2/friends", {"friend_uid": 1}),
    ("DELETE", "/users/2/friends/1", None),
])
def test_a_client_may_not_do_the_rest(api, alice, db, r, method, path, body):
    befriend(api, 1, 2)
    block(api, 2, 3)
    assert_refused(db, r, lambda: alice.call(method, path, body), 403, FORBIDDEN)


def test_a_client_is_refused_before_its_body_is_read(api, alice, db, r):
    assert_refused(db, r, lambda: alice.post("/users/2/blacklist", {"uid": "x"}), 403, FORBIDDEN)
    assert_refused(db, r, lambda: alice.post("/users/1/friends", {"friend_uid": "x"}), 403, FORBIDDEN)


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/users/1/friends", None), ("POST", "/users/1/friends", [2]), ("DELETE", "/users/1/friends/2", None),
    ("GET", "/users/1/blacklist", None), ("POST", "/users/1/blacklist", [2]), ("DELETE", "/users/1/blacklist/2", None),
])
def test_no_or_bad_credentials_are_a_401(client, db, r, method, path, body):
    for caller in (Api(client, {}), Api(client, bearer("no-such-token"))):
        assert_refused(db, r, lambda: caller.call(method, path, body), 401, None)  # noqa: B023 (called at once)


def test_apps_see_only_their_own_relationships(api, client, db, demo, r):
    befriend(api, 1, 2)
    block(api, 1, 3)
    other = make_app(db, name="other")
    them = Api(client, other["auth"])
    for path, key in (("friends", "friends"), ("blacklist", "blacklist")):
        assert assert_ok(*them.get(f"/users/1/{path}")) == {"total": 0, "start": 0, "count": 0, key: [], "next": None}
    them_client = Api(client, bearer(token_for(them, 1)))  # user 1 of the other app
    assert assert_ok(*them_client.get("/users/1/friends"))["total"] == 0
    assert_ok(*them.delete("/users/1/friends/2"))
    assert_ok(*them_client.delete("/users/1/blacklist/3"))
    assert pairs(db, "friend", demo["id"]) == {(1, 2), (2, 1)} and pairs(db, "blacklist", demo["id"]) == {(1, 3)}
    assert len(events(r)) == 3

    befriend(them, 1, 2)
    assert pairs(db, "friend", other["id"]) == {(1, 2), (2, 1)}
    assert [e["appid"] for e in events(r)[3:]] == [other["id"]] * 2
    assert_chain(events(r))


# --- bad input -----------------------------------------------------------------------------

BAD_BODIES = [  # (body, status, code, what the message names); {field} is friend_uid or uid
    ({"{field}": 1}, 400, SELF, "{field}"),
    ([2, 1], 400, SELF, "{field}"),
    ({"{field}": VISITOR}, 400, INVALID, "{field}"),
    ([2, VISITOR], 400, INVALID, "{field}.1"),
    (list(range(2, 503)), 400, BATCH, "{field}"),
    ({"{field}": "x"}, 400, INVALID, "{field}"),
    ({"{field}": 2.5}, 400, INVALID, "{field}"),
    ({"{field}": None}, 400, INVALID, "{field}"),
    ({"{field}": True}, 400, INVALID, "{field}"),
    ({"{field}": {"uid": 2}}, 400, INVALID, "{field}"),
    ({"{field}": -1}, 400, INVALID, "{field}"),
    ({"{field}": 2**63}, 400, INVALID, "{field}"),
    ([2, "x"], 400, INVALID, "{field}.1"),
    ([[2]], 400, INVALID, "{field}.0"),
    ([], 400, INVALID, "{field}"),
    ({}, 400, INVALID, "{field}"),
    ({"{field}": []}, 400, INVALID, "{field}"),
    ("2", 400, INVALID, None),
]


def fill(value, field):
    if isinstance(value, dict):
        return {key.format(field=field): item for key, item in value.items()}
    return value


@pytest.mark.parametrize("path, field", [("friends", "friend_uid"), ("blacklist", "uid")])
@pytest.mark.parametrize("body, status, code, names", BAD_BODIES)
def test_bad_bodies_are_refused_naming_the_field_with_nothing_written(api, db, r, path, field, body, status, code,
                                                                     names):
    befriend(api, 1, 5)
    block(api, 1, 6)

    def call():
        got = api.post(f"/users/1/{path}", fill(body, field))
        if names:
            assert_error(*got, status, field=names.format(field=field))
        return got

    assert_refused(db, r, call, status, code)


@pytest.mark.parametrize("path", ["friends", "blacklist"])
def test_a_body_that_is_not_json_is_refused(api, db, r, path):
    def call():
        response = api.client.post(f"/users/1/{path}", data=b"{friend", headers=api.headers,
                                   content_type="application/json")
        return response.status_code, response.get_json()

    assert_refused(db, r, call, 400, INVALID_JSON)


@pytest.mark.parametrize("path", ["friends", "blacklist"])
def test_the_batch_limit_is_max_batch(api, db, path, demo):
    assert_ok(*api.post(f"/users/1/{path}", list(range(2, 502))))  # 500
    assert len(pairs(db, "friend" if path == "friends" else "blacklist", demo["id"])) == (1000 if path == "friends"
                                                                                          else 500)


@pytest.mark.parametrize("method, path, status, code, field", [
    ("DELETE", "/users/1/friends/1", 400, SELF, "fid"),
    ("DELETE", "/users/1/blacklist/1", 400, SELF, "bid"),
    ("DELETE", f"/users/1/friends/{VISITOR}", 404, NOT_FOUND, None),
    ("DELETE", f"/users/1/blacklist/{VISITOR}", 404, NOT_FOUND, None),
    ("DELETE", "/users/1/friends/-2", 404, NOT_FOUND, None),
    ("DELETE", "/users/1/friends/x", 404, NOT_FOUND, None),
    ("POST", f"/users/{VISITOR}/friends", 404, NOT_FOUND, None),
    ("POST", f"/users/{VISITOR}/blacklist", 404, NOT_FOUND, None),
    ("GET", f"/users/{VISITOR}/friends", 404, NOT_FOUND, None),
    ("GET", f"/users/{VISITOR}/blacklist", 404, NOT_FOUND, None),
    ("POST", f"/users/{2**63}/friends", 404, NOT_FOUND, None),
    ("PUT", "/users/1/friends", 405, 1004, None),
])
def test_bad_paths_are_refused_with_nothing_written(api, db, r, method, path, status, code, field):
    befriend(api, 1, 2)
    block(api, 1, 2)

    def call():
        got = api.call(method, path, [3] if method == "POST" else None)
        if field:
            assert_error(*got, status, field=field)
        return got

    assert_refused(db, r, call, status, code)


# --- concurrency ---------------------------------------------------------------------------

@pytest.fixture
def no_retry(monkeypatch):
    """Deadlocks are not retried: the lock order alone must prevent them."""
    monkeypatch.setattr(unit_of_work, "DEADLOCK_ATTEMPTS", 1)


def test_making_friends_from_both_sides_at_once_makes_one_friendship_and_one_event_per_direction(app, demo, db, r,
                                                                                                no_retry):
    before = counter(db, "relationship_action")
    for round_ in range(5):
        a, b = 10 * round_ + 1, 10 * round_ + 2
        statuses = run_together(app, demo["auth"], [("POST", f"/users/{a}/friends", {"friend_uid": b}),
                                                    ("POST", f"/users/{b}/friends", [a]),
                                                    ("POST", f"/users/{a}/friends", [b]),
                                                    ("POST", f"/users/{b}/friends", {"friend_uid": a})])
        assert statuses == [200] * 4
        assert {tuple(sorted(p)) for p in pairs(db, "friend", demo["id"])} == {
            (10 * i + 1, 10 * i + 2) for i in range(round_ + 1)}
    items = events(r)
    assert sorted((e["uid"], e["friend_uid"]) for e in items) == sorted(pairs(db, "friend", demo["id"]))
    assert len(items) == 10
    assert_chain(items, after=before)
    assert outbox_size(db) == 0


def test_many_overlapping_changes_at_once_queue_exactly_one_event_per_row_changed(app, demo, db, r, no_retry):
    before = counter(db, "relationship_action")
    calls = [("POST", f"/users/{uid}/friends", [f for f in range(1, 9) if f != uid]) for uid in range(1, 9)]
    calls += [("POST", f"/users/{uid}/blacklist", [9, 10, uid + 20]) for uid in range(1, 5)]
    assert run_together(app, demo["auth"], calls) == [200] * len(calls)
    everyone = {(a, b) for a in range(1, 9) for b in range(1, 9) if a != b}
    assert pairs(db, "friend", demo["id"]) == everyone
    blocked = {(u, b) for u in range(1, 5) for b in (9, 10, u + 20)}
    assert pairs(db, "blacklist", demo["id"]) == blocked
    items = events(r)
    assert sorted((e["name"], e["uid"], e["friend_uid"]) for e in items) == sorted(
        [("friend", *p) for p in everyone] + [("blacklist", *p) for p in blocked])
    assert all(e[e["name"]] == 1 for e in items)
    assert_chain(items, after=before)
    assert counter(db, "relationship_action") == before + len(items)


def test_ending_and_making_at_once_leaves_rows_and_events_that_agree(app, api, demo, db, r):
    befriend(api, 1, 2)
    for _ in range(4):  # InnoDB deadlocks some of these (two inserts waiting on a delete): retried
        calls = [("DELETE", "/users/1/friends/2", None), ("POST", "/users/2/friends", [1]),
                 ("POST", "/users/1/friends", [2])] * 2
        assert run_together(app, demo["auth"], calls) == [200] * 6
    state = {}
    for item in events(r):  # the router's view after applying every event in order
        state[(item["uid"], item["friend_uid"])] = item["friend"]
    assert {p for p, on in state.items() if on} == pairs(db, "friend", demo["id"])
    assert pairs(db, "friend", demo["id"]) in (set(), {(1, 2), (2, 1)})
    assert_chain(events(r))


# --- deleting a user -----------------------------------------------------------------------

def test_deleting_a_user_ends_its_friendships_and_blacklists_both_ways_with_events(api, db, demo, r):
    befriend(api, 1, 2, 3)
    befriend(api, 2, 3)
    block(api, 1, 4)
    block(api, 5, 1, 6)
    with db.cursor() as cur:  # a one-sided row, as a GoBelieve app server may have left
        cur.execute("INSERT INTO friend (appid, uid, friend_uid) VALUES (%s, 7, 1)", (demo["id"],))
    other = make_app(db, name="other")
    them = Api(api.client, other["auth"])
    befriend(them, 1, 2)
    block(them, 5, 1)
    token_for(api, 1)
    assert_ok(*api.post("/groups", {"master": 2, "name": "team", "members": [1, 2]}))
    r.delete(EVENTS)
    before = counter(db, "relationship_action")

    assert_ok(*api.delete("/users/1"))
    assert pairs(db, "friend", demo["id"]) == {(2, 3), (3, 2)}
    assert pairs(db, "blacklist", demo["id"]) == {(5, 6)}
    assert pairs(db, "friend", other["id"]) == {(1, 2), (2, 1)} and pairs(db, "blacklist", other["id"]) == {(5, 1)}
    assert sorted(brief(events(r))) == sorted([
        ("friend", 1, 2, 0), ("friend", 2, 1, 0), ("friend", 1, 3, 0), ("friend", 3, 1, 0), ("friend", 7, 1, 0),
        ("blacklist", 1, 4, 0), ("blacklist", 5, 1, 0)])
    assert {e["appid"] for e in events(r)} == {demo["id"]}
    assert_chain(events(r), after=before)
    assert [e["name"] for e in queue(r, "group_event_queue")][-1] == "group_member_remove"
    assert outbox_size(db) == 0

    assert_refused(db, r, lambda: api.delete("/users/1"), 404, NO_USER)  # nothing left to delete


def test_deleting_a_user_known_only_by_its_relationships_is_not_a_404(api, db, demo, r):
    block(api, 2, 1)
    assert_ok(*api.delete("/users/1"))
    assert pairs(db, "blacklist", demo["id"]) == set()
    assert brief(events(r))[1:] == [("blacklist", 2, 1, 0)]


def test_a_failed_user_deletion_keeps_its_relationships_and_queues_nothing(api, db, demo, r, monkeypatch):
    befriend(api, 1, 2)
    block(api, 1, 3)
    before = rows(db, "SELECT * FROM user"), counter(db, "relationship_action")

    def broken(*args):
        raise RuntimeError("boom")

    # Fails after the user row, its groups and its friend rows are deleted, before its blacklist rows.
    monkeypatch.setattr(relationships, "relationship_event", broken)
    status, body = api.delete("/users/1")
    assert status == 500, body
    assert pairs(db, "friend", demo["id"]) == {(1, 2), (2, 1)} and pairs(db, "blacklist", demo["id"]) == {(1, 3)}
    assert (rows(db, "SELECT * FROM user"), counter(db, "relationship_action")) == before
    assert len(events(r)) == 3 and outbox_size(db) == 0


# --- the OpenAPI document ------------------------------------------------------------------

def test_the_endpoints_are_documented(client):
    spec = client.get("/openapi.json").get_json()
    documented = {"/users/{uid}/friends": ("get", "post"), "/users/{uid}/friends/{fid}": ("delete",),
                  "/users/{uid}/blacklist": ("get", "post"), "/users/{uid}/blacklist/{bid}": ("delete",)}
    for path, methods in documented.items():
        for method in methods:
            assert spec["paths"][path][method]["summary"], (path, method)
    assert spec["paths"]["/users/{uid}/friends"]["post"]["security"] == [{"server": []}]
    assert {"server": []} in spec["paths"]["/users/{uid}/blacklist"]["post"]["security"]


def test_the_rows_naming_a_user_are_found_through_an_index(db):
    for table in ("friend", "blacklist"):
        index = rows(db, f"SHOW INDEX FROM `{table}` WHERE Key_name = %s", f"idx_{table}_friend_uid")
        assert [(i["Column_name"], i["Seq_in_index"]) for i in index] == [("appid", 1), ("friend_uid", 2)]
        plan = rows(db, f"EXPLAIN SELECT uid FROM `{table}` FORCE INDEX (idx_{table}_friend_uid) "
                        "WHERE appid = 1 AND friend_uid = 2")
        assert plan[0]["key"] == f"idx_{table}_friend_uid"
