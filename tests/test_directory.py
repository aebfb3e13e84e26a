"""The app server's directory: users (POST/GET/PUT/DELETE /users...), group listings, token revocation,
and the indexes the listing queries rely on."""
import json

import pytest
from helpers import Api, assert_ok, assert_refused, bearer, queue, rows, snapshot, token_for

from models import group as group_sql
from models import user as user_sql

USER_EXISTS, USER_NOT_FOUND, BATCH_TOO_LARGE, INVALID_FIELD, BAD_TOKEN = 3002, 3001, 1002, 1001, 2004








def user_rows(db, appid) -> list[dict]:
    return list(rows(db, "SELECT uid, name, avatar FROM user WHERE appid = %s ORDER BY uid", appid))


def make_group(api, master, members, name="team") -> int:
    return assert_ok(*api.post("/groups", {"master": master, "name": name, "members": members}))["group_id"]


def walk(api, path, key, count) -> list:
    """Every item of a paged listing, fetched `count` at a time by ?start= and again by ?after= (keyset,
    following `next`); checks total/start/count on the way and that both walks agree."""
    found, start = [], 0
    while True:
        page = assert_ok(*api.get(path, query_string={"start": start, "count": count}))
        assert set(page) == {"total", "start", "count", key, "next"}
        assert page["start"] == start and page["count"] == len(page[key]) <= count
        found += page[key]
        if start + count >= page["total"]:
            assert len(found) == page["total"]
            break
        assert page["count"] == count
        start += count
    by_key, after, id_key = [], None, "uid" if key in ("users", "members") else "id"
    while True:
        page = assert_ok(*api.get(path, query_string={"count": count} | ({} if after is None else {"after": after})))
        by_key += page[key]
        assert page["next"] == (page[key][-1][id_key] if page["count"] == count else None)
        after = page["next"]
        if after is None:
            break
    assert by_key == found
    return found


# --- POST /users ---------------------------------------------------------------------------------

def test_register_answers_per_item_in_request_order(api, demo, db, r):
    token_for(api, 2, "Bob")
    batch = [{"uid": 1, "name": "Ann 😀", "avatar": "http://x/a.png"}, {"uid": 2, "name": "Bobby"}, {"uid": 3},
             {"uid": 1, "name": "Ann again"}]
    data = assert_ok(*api.post("/users", batch))
    assert [item["uid"] for item in data] == [1, 2, 3, 1]
    assert data[0] == {"uid": 1} and data[2] == {"uid": 3}
    for item in (data[1], data[3]):
        assert set(item) == {"uid", "error"} and item["error"]["code"] == USER_EXISTS
        assert isinstance(item["error"]["message"], str) and item["error"]["message"]
    assert user_rows(db, demo["id"]) == [{"uid": 1, "name": "Ann 😀", "avatar": "http://x/a.png"},
                                         {"uid": 2, "name": "Bob", "avatar": ""},
                                         {"uid": 3, "name": "", "avatar": ""}]


def test_register_copies_name_and_avatar_into_the_user_hash(api, demo, r):
    token_for(api, 2, "Bob")
    assert_ok(*api.post("/users", [{"uid": 1, "name": "Ann", "avatar": "http://x/a.png"}, {"uid": 2, "name": "Bobby"},
                                   {"uid": 1, "name": "Ann again"}]))
    assert r.hmget(f"users_{demo['id']}_1", "name", "avatar") == ["Ann", "http://x/a.png"]
    assert r.hget(f"users_{demo['id']}_2", "name") == "Bob"


def test_register_accepts_a_uid_that_another_app_has(api, other_api, demo, other, db):
    assert_ok(*other_api.post("/users", [{"uid": 1, "name": "Theirs"}]))
    assert assert_ok(*api.post("/users", [{"uid": 1, "name": "Mine"}])) == [{"uid": 1}]
    assert user_rows(db, demo["id"]) == [{"uid": 1, "name": "Mine", "avatar": ""}]
    assert user_rows(db, other["id"]) == [{"uid": 1, "name": "Theirs", "avatar": ""}]


def test_register_takes_500_users_at_once(api, demo, db):
    data = assert_ok(*api.post("/users", [{"uid": uid} for uid in range(500)]))
    assert data == [{"uid": uid} for uid in range(500)]
    assert len(user_rows(db, demo["id"])) == 500


def test_register_501_users_is_400_and_writes_nothing(api, db, r):
    assert_refused(db, r, lambda: api.post("/users", [{"uid": uid} for uid in range(501)]), 400, BATCH_TOO_LARGE)


@pytest.mark.parametrize("batch", [[{"name": "no uid"}], [{"uid": -1}], [{"uid": 2**63}],
                                   [{"uid": 1, "name": "x" * 256}],
                                   {"uid": 1}, "users"])
def test_register_bad_items_are_400_and_write_nothing(api, db, r, batch):
    assert_refused(db, r, lambda: api.post("/users", batch), 400, INVALID_FIELD)


def test_register_an_empty_batch_is_not_a_500(api, db, r):
    before = snapshot(db, r)
    status, body = api.post("/users", [])
    assert (status, body) == (200, {"data": []}) or (status == 400 and set(body) == {"meta"})
    assert snapshot(db, r) == before


# --- GET /users ----------------------------------------------------------------------------------

def test_users_page_shape(api):
    assert_ok(*api.post("/users", [{"uid": 2, "name": "Bob", "avatar": "b.png"}, {"uid": 1, "name": "Ann"}]))
    assert assert_ok(*api.get("/users", query_string={"start": 0, "count": 10})) == {
        "total": 2, "start": 0, "count": 2, "next": None,
        "users": [{"uid": 1, "name": "Ann", "avatar": ""}, {"uid": 2, "name": "Bob", "avatar": "b.png"}]}


def test_walking_the_users_pages_gives_each_user_once_in_uid_order(api, other_api):
    uids = [17, 3, 2**53 - 1, 0, 99, 5, 8, 1000, 42, 7, 11]
    assert_ok(*api.post("/users", [{"uid": uid, "name": f"u{uid}"} for uid in uids]))
    assert_ok(*other_api.post("/users", [{"uid": uid} for uid in (1, 4, 6, 2**40)]))
    found = walk(api, "/users", "users", 3)
    assert [u["uid"] for u in found] == sorted(uids)
    assert all(u["name"] == f"u{u['uid']}" for u in found)


def test_a_page_past_the_end_is_empty(api):
    assert_ok(*api.post("/users", [{"uid": 1}]))
    assert assert_ok(*api.get("/users", query_string={"start": 5, "count": 2})) == {
        "total": 1, "start": 5, "count": 0, "users": [], "next": None}


@pytest.mark.parametrize("path", ["/users", "/groups"])
@pytest.mark.parametrize("query", [{"start": -1}, {"count": 0}, {"count": 501}, {"start": "x"}, {"count": "ten"},
                                   {"count": 1.5}])
def test_bad_paging_is_400_naming_the_field(api, path, query):
    status, body = api.get(path, query_string=query)
    assert status == 400, body
    assert body["meta"]["code"] == INVALID_FIELD and next(iter(query)) in body["meta"]["message"]


# --- GET / PUT /users/{uid} ----------------------------------------------------------------------

def test_profile_of_a_user(api):
    assert_ok(*api.post("/users", [{"uid": 7, "name": "Ann", "avatar": "a.png"}]))
    assert_ok(*api.post("/users/7", {"forbidden": True}))
    data = assert_ok(*api.get("/users/7"))
    assert set(data) == {"uid", "name", "avatar", "created_at", "updated_at", "forbidden", "mute", "notification_on"}
    assert {k: data[k] for k in ("uid", "name", "avatar", "forbidden", "mute")} == {
        "uid": 7, "name": "Ann", "avatar": "a.png", "forbidden": True, "mute": False}
    assert isinstance(data["created_at"], int) and data["created_at"] <= data["updated_at"]


def test_profile_of_an_unknown_user_is_404(api, other_api, db, r):
    assert_ok(*other_api.post("/users", [{"uid": 7}]))
    assert_refused(db, r, lambda: api.get("/users/7"), 404, USER_NOT_FOUND)


@pytest.mark.parametrize("body, expected", [
    ({"name": "New", "avatar": "n.png"}, ("New", "n.png")),
    ({"name": "New"}, ("New", "a.png")),
    ({"avatar": "n.png"}, ("Ann", "n.png")),
    ({"name": "Ann", "avatar": "a.png"}, ("Ann", "a.png")),
])
def test_put_sets_name_and_avatar(api, demo, db, r, body, expected):
    assert_ok(*api.post("/users", [{"uid": 7, "name": "Ann", "avatar": "a.png"}]))
    assert_ok(*api.put("/users/7", body))
    assert user_rows(db, demo["id"]) == [{"uid": 7, "name": expected[0], "avatar": expected[1]}]
    profile = assert_ok(*api.get("/users/7"))
    assert (profile["name"], profile["avatar"]) == expected
    assert r.hmget(f"users_{demo['id']}_7", "name", "avatar") == list(expected)


def test_put_for_an_unknown_user_is_404(api, other_api, db, r):
    assert_ok(*other_api.post("/users", [{"uid": 7}]))
    assert_refused(db, r, lambda: api.put("/users/7", {"name": "Ghost"}), 404, USER_NOT_FOUND)


# --- DELETE /users/{uid} -------------------------------------------------------------------------

def test_deleting_a_user_removes_it_everywhere(api, other_api, client, demo, other, db, r):
    token = token_for(api, 5, "Eve")
    kept, mastered, gone = make_group(api, 1, [1, 5, 2]), make_group(api, 5, [5, 3]), make_group(api, 5, [5, 4])
    assert_ok(*api.delete(f"/groups/{gone}"))
    theirs = make_group(other_api, 5, [5, 1])
    token_for(other_api, 5)
    events_before, notes_before = len(queue(r, "group_event_queue")), len(queue(r, "im_message_queue"))

    assert_ok(*api.delete("/users/5"))

    assert user_rows(db, demo["id"]) == [] and len(user_rows(db, other["id"])) == 1
    assert not r.exists(f"access_token_{token}")
    status, body = Api(client, bearer(token)).get("/groups")
    assert status == 401 and body["meta"]["code"] == BAD_TOKEN
    revoked = queue(r, "user_event_queue")
    assert [(e["name"], e["appid"], e["uid"]) for e in revoked] == [("user_token_revoked", demo["id"], 5)]
    events = queue(r, "group_event_queue")[events_before:]
    assert [(e["name"], e["group_id"], e["member_id"]) for e in events] == [
        ("group_member_remove", kept, 5), ("group_member_remove", mastered, 5)]
    notes = [(m["receiver"], json.loads(m["content"])) for m in queue(r, "im_message_queue")[notes_before:]]
    assert [(gid, next(iter(c)), c["quit_group"]["member_id"]) for gid, c in notes] == [
        (kept, "quit_group", 5), (mastered, "quit_group", 5)]
    live = rows(db, "SELECT group_id FROM group_member WHERE uid = 5 AND deleted = 0 ORDER BY group_id")
    assert [row["group_id"] for row in live] == [theirs]


def test_deleting_a_user_removes_its_profile_from_the_user_hash(api, demo, r):
    assert_ok(*api.post("/users", [{"uid": 5, "name": "Eve", "avatar": "e.png"}]))
    assert_ok(*api.delete("/users/5"))
    assert r.hmget(f"users_{demo['id']}_5", "name", "avatar") == [None, None]


def test_deleting_a_user_with_a_row_but_no_token_or_groups(api, demo, db, r):
    assert_ok(*api.post("/users", [{"uid": 5}]))
    assert_ok(*api.delete("/users/5"))
    assert user_rows(db, demo["id"]) == []
    assert queue(r, "user_event_queue") == [] and queue(r, "group_event_queue") == []


def test_deleting_an_unknown_user_is_404(api, other_api, db, r):
    token_for(other_api, 5)
    make_group(api, 1, [1, 2])
    assert_refused(db, r, lambda: api.delete("/users/5"), 404, USER_NOT_FOUND)


# --- GET /users/{uid}/groups ---------------------------------------------------------------------

def test_a_users_groups_are_its_live_groups_in_the_app(api, other_api):
    mine = make_group(api, 1, [1, 2], name="a")
    also_mine = make_group(api, 3, [3, 1], name="b")
    make_group(api, 2, [2, 3])
    disbanded, left = make_group(api, 1, [1]), make_group(api, 2, [2, 1])
    assert_ok(*api.delete(f"/groups/{disbanded}"))
    assert_ok(*api.delete(f"/groups/{left}/members/1"))
    make_group(other_api, 1, [1])
    data = assert_ok(*api.get("/users/1/groups"))
    assert [(g["id"], g["name"], g["master"]) for g in data] == [(mine, "a", 1), (also_mine, "b", 3)]


def test_a_user_in_no_group_gets_an_empty_list(api):
    make_group(api, 1, [1, 2])
    assert assert_ok(*api.get("/users/9/groups")) == []


# --- GET /groups (server) ------------------------------------------------------------------------

def test_walking_the_apps_groups(api, other_api):
    gids = [make_group(api, uid, [uid], name=f"g{uid}") for uid in range(1, 9)]
    for gid in gids[2], gids[5]:
        assert_ok(*api.delete(f"/groups/{gid}"))
    for uid in range(3):
        make_group(other_api, uid, [uid])
    live = [gid for gid in gids if gid not in (gids[2], gids[5])]
    found = walk(api, "/groups", "groups", 4)
    assert [g["id"] for g in found] == live
    assert walk(api, "/groups", "groups", 1) == found
    assert {"id", "name", "master", "super"} <= set(found[0])
    assert (found[0]["name"], found[0]["master"], found[0]["super"]) == ("g1", 1, 0)


def test_an_app_without_groups_gets_an_empty_page(api, other_api):
    make_group(other_api, 1, [1])
    assert assert_ok(*api.get("/groups")) == {"total": 0, "start": 0, "count": 0, "groups": [], "next": None}


# --- POST /auth/revoke ---------------------------------------------------------------------------

def test_revoke_stops_the_token_at_once_and_a_new_grant_gives_a_new_one(api, client, demo, r):
    old = token_for(api, 7, "Ann")
    assert_ok(*Api(client, bearer(old)).get("/groups"))
    assert_ok(*api.post("/auth/revoke", {"uid": 7}))

    status, body = Api(client, bearer(old)).get("/groups")
    assert status == 401 and body["meta"]["code"] == BAD_TOKEN
    assert not r.exists(f"access_token_{old}")
    [event] = queue(r, "user_event_queue")
    assert set(event) == {"name", "appid", "uid", "timestamp"}
    assert (event["name"], event["appid"], event["uid"]) == ("user_token_revoked", demo["id"], 7)
    assert isinstance(event["timestamp"], int) and event["timestamp"] > 10**12  # milliseconds

    new = token_for(api, 7)
    assert new != old
    assert_ok(*Api(client, bearer(new)).get("/groups"))
    assert r.hget(f"users_{demo['id']}_7", "access_token") == new


def test_revoke_in_one_app_keeps_the_same_uid_in_another(api, other_api, client):
    mine, theirs = token_for(api, 7), token_for(other_api, 7)
    assert_ok(*other_api.post("/auth/revoke", {"uid": 7}))
    assert_ok(*Api(client, bearer(mine)).get("/groups"))
    assert Api(client, bearer(theirs)).get("/groups")[0] == 401


def test_revoke_needs_server_auth(api, client, db, r):
    ann = Api(client, bearer(token_for(api, 7)))
    assert_refused(db, r, lambda: ann.post("/auth/revoke", {"uid": 7}), 403, 2007)


# --- indexes behind the listings -----------------------------------------------------------------

@pytest.fixture
def populated(db):
    """Enough rows in several apps that the optimizer's choice means something."""
    with db.cursor() as cur:
        for appid in (1, 2, 3):
            cur.executemany("INSERT INTO user (appid, uid, name) VALUES (%s, %s, 'u')",
                            [(appid, uid) for uid in range(300)])
            cur.executemany("INSERT INTO `group` (appid, master, name, deleted) VALUES (%s, %s, 'g', %s)",
                            [(appid, n, int(n % 7 == 0)) for n in range(200)])
        cur.execute("INSERT INTO group_member (group_id, uid, timestamp) "
                    "SELECT g.id, u.uid, 1 FROM `group` g JOIN user u ON u.appid = g.appid AND u.uid % 20 = g.id % 20")
        cur.execute("ANALYZE TABLE user, `group`, group_member")
        cur.fetchall()
        cur.execute("SELECT MIN(id) AS gid FROM `group` WHERE appid = 2 AND deleted = 0")
        return {"appid": 2, "gid": cur.fetchone()["gid"], "uid": 42}


@pytest.mark.parametrize("sql, params, tables", [
    (group_sql.PAGE_APP_GROUPS, {"appid": 2, "start": 0, "count": 10, "after": 200}, {"group"}),
    (group_sql.USER_GROUPS, {"appid": 2, "uid": 42}, {"m", "g"}),
    (group_sql.PAGE_MEMBERS, {"appid": 2, "gid": None, "start": 0, "count": 10, "after": 5}, {"m", "u"}),
    (user_sql.PAGE_USERS, {"appid": 2, "start": 0, "count": 50, "after": 100}, {"user"}),
], ids=["PAGE_APP_GROUPS", "USER_GROUPS", "PAGE_MEMBERS", "PAGE_USERS"])
def test_listing_queries_use_an_index(db, populated, sql, params, tables):
    params = {key: populated["gid"] if key == "gid" else value for key, value in params.items()}
    plan = rows(db, "EXPLAIN " + sql, params)
    assert {row["table"] for row in plan} == tables, plan
    for row in plan:
        assert row["key"] is not None and row["type"] != "ALL", plan

