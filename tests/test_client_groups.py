"""Groups as app clients see them (Bearer auth), at /groups and at its alias /client/groups.

A client acts as its own uid: it may change only what SPEC section 6 lets it (master,
member or self). Every refused call answers the error envelope and changes nothing,
neither the MySQL rows the router loads nor anything in Redis (queues, hashes).
"""
import json
from contextlib import contextmanager

import pytest
from helpers import Api, assert_ok, assert_refused, bearer, queue, rows, snapshot, token_for

FORBIDDEN, NOT_MASTER, MUST_TRANSFER, CODE_IN_USE = 2007, 4003, 4007, 4006
INVALID_FIELD, GROUP_NOT_FOUND = 1001, 4001


@pytest.fixture(params=["/groups", "/client/groups"])
def prefix(request):
    """Every client path is served at /groups... and at the original client API's /client/groups..."""
    return request.param


@pytest.fixture
def user(api, client):
    """user(uid) -> an Api speaking as that user of the demo app (client auth)."""
    return lambda uid: Api(client, bearer(token_for(api, uid)))


@pytest.fixture
def group(api):
    """group(master, members, **fields) -> the id of a group the demo app's server created."""

    def make(master=1, members=(1, 2, 3), **fields):
        status, body = api.post("/groups", {"master": master, "name": "team", "members": list(members), **fields})
        assert status == 200, body
        return body["data"]["group_id"]

    return make


# --- state checks --------------------------------------------------------------------------------







@contextmanager
def new_items(r):
    """Collect what a block queues: {"events": [...], "notes": [(op, body), ...]}."""
    before = {name: len(queue(r, name)) for name in ("group_event_queue", "im_message_queue")}
    found = {}
    yield found
    found["events"] = queue(r, "group_event_queue")[before["group_event_queue"]:]
    found["notes"] = [next(iter(json.loads(m["content"]).items()))
                      for m in queue(r, "im_message_queue")[before["im_message_queue"]:]]


def live_members(db, gid) -> list[int]:
    """What the router's member query returns for the group."""
    return [row["uid"] for row in rows(db, "SELECT uid FROM group_member WHERE group_id = %s AND deleted = 0 "
                                           "ORDER BY uid", gid)]


def group_row(db, gid) -> dict:
    return rows(db, "SELECT * FROM `group` WHERE id = %s", gid)[0]


def events(found) -> list[tuple]:
    return [(e["name"], e.get("member_id")) for e in found["events"]]


# --- POST /groups --------------------------------------------------------------------------------

def test_client_creates_a_group_it_masters_and_is_a_member_of(user, prefix, db, r, demo):
    with new_items(r) as found:
        data = assert_ok(*user(1).post(prefix, {"master": 1, "name": "team", "members": [2, {"uid": 3}]}))
    gid = data["group_id"]
    assert group_row(db, gid) | {"appid": demo["id"], "master": 1, "name": "team", "deleted": 0} == group_row(db, gid)
    assert live_members(db, gid) == [1, 2, 3]
    assert events(found) == [("group_create", None), ("group_member_add", 1), ("group_member_add", 2),
                             ("group_member_add", 3)]
    assert [op for op, _ in found["notes"]] == ["create"]


def test_client_listed_among_the_members_is_added_once(user, prefix, db, r):
    with new_items(r) as found:
        gid = assert_ok(*user(1).post(prefix, {"master": 1, "name": "team", "members": [2, 1]}))["group_id"]
    assert live_members(db, gid) == [1, 2]
    assert events(found)[1:] == [("group_member_add", 2), ("group_member_add", 1)]


def test_client_alone_creates_a_group_with_only_itself(user, prefix, db):
    gid = assert_ok(*user(1).post(prefix, {"master": 1, "name": "solo"}))["group_id"]
    assert live_members(db, gid) == [1]


def test_client_cannot_create_a_group_for_another_master(user, prefix, db, r):
    ann = user(1)
    assert_refused(db, r, lambda: ann.post(prefix, {"master": 2, "name": "team", "members": [1, 2]}),
                   403, FORBIDDEN)


# --- GET /groups/{gid} ---------------------------------------------------------------------------

def test_a_member_sees_the_whole_group(user, group, prefix):
    gid = group(notice="hello", cover="http://x/c.png")
    data = assert_ok(*user(2).get(f"{prefix}/{gid}"))
    assert {key: data[key] for key in ("id", "master", "name", "notice", "cover", "super")} == {
        "id": gid, "master": 1, "name": "team", "notice": "hello", "cover": "http://x/c.png", "super": 0}
    assert [m["uid"] for m in data["members"]] == [1, 2, 3]
    assert set(data["members"][0]) >= {"uid", "name", "nickname", "mute", "timestamp"}


def test_a_non_member_of_the_app_sees_only_the_public_fields(user, group, prefix):
    gid = group(notice="secret notice", cover="http://x/c.png")
    data = assert_ok(*user(9).get(f"{prefix}/{gid}"))
    assert data == {"id": gid, "name": "team", "cover": "http://x/c.png", "super": 0, "member_count": 3}


def test_a_token_of_another_app_does_not_find_the_group(group, prefix, client, other, db, r):
    gid = group()
    stranger = Api(client, bearer(token_for(Api(client, other["auth"]), 1)))  # uid 1 of the other app
    assert_refused(db, r, lambda: stranger.get(f"{prefix}/{gid}"), 404, GROUP_NOT_FOUND)


def test_a_disbanded_group_is_404_for_its_former_members(user, group, prefix, api, db, r):
    gid = group()
    bob = user(2)
    assert_ok(*api.delete(f"/groups/{gid}"))
    assert_refused(db, r, lambda: bob.get(f"{prefix}/{gid}"), 404, GROUP_NOT_FOUND)


@pytest.mark.parametrize("method, path, body", [
    ("patch", "{prefix}/{gid}", {"name": "taken"}),
    ("delete", "{prefix}/{gid}", None),
    ("get", "{prefix}/{gid}/members", None),
    ("post", "{prefix}/{gid}/members", [1, 9]),
    ("delete", "{prefix}/{gid}/members/1", None),
    ("delete", "{prefix}/{gid}/members/2", None),
    ("delete", "{prefix}/{gid}/members", [2]),
    ("patch", "{prefix}/{gid}/members/1", {"nickname": "x"}),
    ("post", "{prefix}/{gid}/members/1", {"quiet": 1}),
    ("post", "/notification/groups/{gid}", {"quiet": 1}),
])
def test_another_apps_user_with_the_masters_uid_finds_nothing(group, prefix, client, other, db, r, method, path, body):
    gid = group()  # master 1, members 1, 2, 3 in the demo app
    stranger = Api(client, bearer(token_for(Api(client, other["auth"]), 1)))
    url = path.format(prefix=prefix, gid=gid)
    assert_refused(db, r, lambda: stranger.call(method.upper(), url, body), 404, GROUP_NOT_FOUND)


def test_a_bad_token_is_401(group, prefix, client, db, r):
    gid = group()
    assert_refused(db, r, lambda: Api(client, bearer("no-such-token")).get(f"{prefix}/{gid}"), 401, 2004)


# --- GET /groups (client) ------------------------------------------------------------------------

@pytest.fixture
def three_groups(api, client, other, group):
    """Uid 1 is in `mine` and `also_mine`; not in `theirs`; was in a disbanded one and a left one."""
    mine, theirs, also_mine = group(1, [1, 2]), group(2, [2, 3]), group(3, [3, 1])
    gone, left = group(1, [1, 3]), group(3, [3, 1])
    assert_ok(*api.delete(f"/groups/{gone}"))
    assert_ok(*api.delete(f"/groups/{left}/members/1"))
    Api(client, other["auth"]).post("/groups", {"master": 1, "name": "elsewhere", "members": [1]})
    return {"mine": mine, "theirs": theirs, "also_mine": also_mine}


def test_client_lists_only_its_own_live_groups(user, prefix, three_groups):
    data = assert_ok(*user(1).get(prefix))
    assert [g["id"] for g in data] == [three_groups["mine"], three_groups["also_mine"]]
    assert all("members" not in g and "quiet" not in g for g in data)
    assert data[0]["master"] == 1 and data[0]["name"] == "team"


def test_client_listing_with_members_and_quiet(user, prefix, three_groups, r, demo):
    mine, also_mine = three_groups["mine"], three_groups["also_mine"]
    ann = user(1)
    r.hset(f"users_{demo['id']}_1", f"group_{also_mine}", "1")
    r.hset(f"users_{demo['id']}_2", f"group_{mine}", "1")  # someone else's quiet is not the caller's
    data = assert_ok(*ann.get(prefix, query_string={"fields": "members,quiet"}))
    assert [(g["id"], [m["uid"] for m in g["members"]], g["quiet"]) for g in data] == [
        (mine, [1, 2], 0), (also_mine, [1, 3], 1)]


def test_client_listing_with_members_only(user, prefix, three_groups):
    data = assert_ok(*user(1).get(prefix, query_string={"fields": "members"}))
    assert all("members" in g and "quiet" not in g for g in data)


def test_client_without_groups_gets_an_empty_list(user, prefix, group):
    group()
    assert assert_ok(*user(9).get(prefix)) == []


# --- PATCH /groups/{gid} -------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, note", [
    ("name", "new name 😀", "update_name"), ("notice", "read me", "update_notice"), ("cover", "http://x/n.png", None)])
def test_the_master_changes_the_group(user, group, prefix, db, r, field, value, note):
    gid = group()
    with new_items(r) as found:
        assert_ok(*user(1).patch(f"{prefix}/{gid}", {field: value}))
    assert group_row(db, gid)[field] == value
    assert found["events"] == []
    assert [op for op, _ in found["notes"]] == ([note] if note else [])


@pytest.mark.parametrize("body", [{"name": "mine now"}, {"notice": "x"}, {"cover": "http://x"}, {"master": 2}])
@pytest.mark.parametrize("uid", [2, 9], ids=["member", "non-member"])
def test_only_the_master_changes_the_group(user, group, prefix, db, r, body, uid):
    gid = group()
    caller = user(uid)
    assert_refused(db, r, lambda: caller.patch(f"{prefix}/{gid}", body), 403, NOT_MASTER)


def test_transfer_to_a_non_member_is_400(user, group, prefix, db, r):
    gid = group()
    master = user(1)
    assert_refused(db, r, lambda: master.patch(f"{prefix}/{gid}", {"master": 9}), 400, INVALID_FIELD)


def test_transfer_hands_the_masters_rights_over(user, group, prefix, db, r):
    gid = group()
    old, new = user(1), user(2)
    assert_ok(*old.patch(f"{prefix}/{gid}", {"master": 2}))
    assert group_row(db, gid)["master"] == 2
    assert_refused(db, r, lambda: old.patch(f"{prefix}/{gid}", {"name": "x"}), 403, NOT_MASTER)
    assert_ok(*new.patch(f"{prefix}/{gid}", {"name": "x"}))


# --- DELETE /groups/{gid} ------------------------------------------------------------------------

def test_the_master_disbands_the_group(user, group, prefix, db, r):
    gid = group()
    with new_items(r) as found:
        assert_ok(*user(1).delete(f"{prefix}/{gid}"))
    assert group_row(db, gid)["deleted"] == 1 and live_members(db, gid) == []
    assert events(found) == [("group_disband", None)]
    assert [op for op, _ in found["notes"]] == ["disband"]


@pytest.mark.parametrize("uid", [2, 9], ids=["member", "non-member"])
def test_only_the_master_disbands(user, group, prefix, db, r, uid):
    gid = group()
    caller = user(uid)
    assert_refused(db, r, lambda: caller.delete(f"{prefix}/{gid}"), 403, NOT_MASTER)


# --- POST /groups/{gid}/members ------------------------------------------------------------------

def test_a_member_invites_and_is_the_inviter(user, group, prefix, db, r):
    gid = group()
    with new_items(r) as found:
        assert_ok(*user(2).post(f"{prefix}/{gid}/members", [4, {"uid": 5, "name": "Eve"}]))
    assert live_members(db, gid) == [1, 2, 3, 4, 5]
    assert events(found) == [("group_member_add", 4), ("group_member_add", 5)]
    assert [(op, body["member_id"], body["inviter"]["uid"]) for op, body in found["notes"]] == [
        ("add_member", 4, 2), ("add_member", 5, 2)]


def test_a_client_cannot_name_someone_else_as_the_inviter(user, group, prefix, r):
    gid = group()
    with new_items(r) as found:
        assert_ok(*user(2).post(f"{prefix}/{gid}/members", {"members": [4], "inviter": {"uid": 3, "name": "Cy"}}))
    assert [body["inviter"]["uid"] for _, body in found["notes"]] == [2]


def test_a_non_member_cannot_invite(user, group, prefix, db, r):
    gid = group()
    stranger = user(9)
    assert_refused(db, r, lambda: stranger.post(f"{prefix}/{gid}/members", [9, 4]), 403, FORBIDDEN)


def test_a_member_reinviting_a_member_queues_nothing(user, group, prefix, db, r):
    gid = group()
    bob = user(2)
    before = snapshot(db, r)
    assert_ok(*bob.post(f"{prefix}/{gid}/members", [3]))
    assert snapshot(db, r) == before


# --- DELETE /groups/{gid}/members/{mid} ----------------------------------------------------------

def test_a_member_leaves(user, group, prefix, db, r):
    gid = group()
    with new_items(r) as found:
        assert_ok(*user(2).delete(f"{prefix}/{gid}/members/2"))
    assert live_members(db, gid) == [1, 3]
    assert events(found) == [("group_member_remove", 2)]
    assert [(op, body["member_id"]) for op, body in found["notes"]] == [("quit_group", 2)]


def test_the_master_kicks_a_member(user, group, prefix, db, r):
    gid = group()
    with new_items(r) as found:
        assert_ok(*user(1).delete(f"{prefix}/{gid}/members/3"))
    assert live_members(db, gid) == [1, 2]
    assert events(found) == [("group_member_remove", 3)]


@pytest.mark.parametrize("uid, mid", [(2, 3), (2, 1), (9, 3)], ids=["member-kicks-member", "member-kicks-master",
                                                                  "stranger-kicks"])
def test_only_the_master_kicks_others(user, group, prefix, db, r, uid, mid):
    gid = group()
    caller = user(uid)
    assert_refused(db, r, lambda: caller.delete(f"{prefix}/{gid}/members/{mid}"), 403, NOT_MASTER)


def test_the_master_leaves_only_after_a_transfer(user, group, prefix, db, r):
    gid = group()
    master = user(1)
    assert_refused(db, r, lambda: master.delete(f"{prefix}/{gid}/members/1"), 409, MUST_TRANSFER)
    assert_ok(*master.patch(f"{prefix}/{gid}", {"master": 2}))
    assert_ok(*master.delete(f"{prefix}/{gid}/members/1"))
    assert live_members(db, gid) == [2, 3]
    assert group_row(db, gid)["master"] == 2


# --- DELETE /groups/{gid}/members ----------------------------------------------------------------

def test_the_master_removes_several_members(user, group, prefix, db, r):
    gid = group(members=[1, 2, 3, 4])
    with new_items(r) as found:
        assert_ok(*user(1).delete(f"{prefix}/{gid}/members", [2, {"uid": 4}]))
    assert live_members(db, gid) == [1, 3]
    assert events(found) == [("group_member_remove", 2), ("group_member_remove", 4)]


@pytest.mark.parametrize("uid, body", [(2, [3]), (2, [2]), (9, [3])], ids=["member", "member-self", "stranger"])
def test_only_the_master_removes_in_batch(user, group, prefix, db, r, uid, body):
    gid = group()
    caller = user(uid)
    assert_refused(db, r, lambda: caller.delete(f"{prefix}/{gid}/members", body), 403, NOT_MASTER)


def test_the_master_cannot_remove_itself_in_batch(user, group, prefix, db, r):
    gid = group()
    master = user(1)
    assert_refused(db, r, lambda: master.delete(f"{prefix}/{gid}/members", [2, 1]), 409, MUST_TRANSFER)


def test_removing_an_empty_list_is_400(user, group, prefix, db, r):
    gid = group()
    master = user(1)
    assert_refused(db, r, lambda: master.delete(f"{prefix}/{gid}/members", []), 400, INVALID_FIELD)


# --- PATCH /groups/{gid}/members/{mid} -----------------------------------------------------------

@pytest.mark.parametrize("on, flag", [(True, "1"), (False, "0")])
def test_a_member_sets_its_own_do_not_disturb(user, group, prefix, r, demo, on, flag):
    gid = group()
    key = f"users_{demo['id']}_2"
    r.sadd(f"{key}_group_do_not_disturb", 12345)  # another group's setting stays
    assert_ok(*user(2).patch(f"{prefix}/{gid}/members/2", {"do_not_disturb": on}))
    assert r.hget(key, f"group_{gid}") == flag
    assert r.smembers(f"{key}_group_do_not_disturb") == ({str(gid), "12345"} if on else {"12345"})


def test_a_member_sets_its_own_nickname(user, group, prefix, db, r):
    gid = group()
    with new_items(r) as found:
        assert_ok(*user(2).patch(f"{prefix}/{gid}/members/2", {"nickname": "Bobby 😀"}))
    assert rows(db, "SELECT nickname FROM group_member WHERE group_id = %s AND uid = 2", gid) == [
        {"nickname": "Bobby 😀"}]
    assert found["events"] == []
    assert [(op, body["member_id"], body["nickname"]) for op, body in found["notes"]] == [
        ("update_member_nickname", 2, "Bobby 😀")]


@pytest.mark.parametrize("mute", [True, False])
def test_the_master_mutes_a_member(user, group, prefix, db, r, mute):
    gid = group()
    with new_items(r) as found:
        assert_ok(*user(1).patch(f"{prefix}/{gid}/members/3", {"mute": mute}))
    assert rows(db, "SELECT mute FROM group_member WHERE group_id = %s AND uid = 3", gid) == [{"mute": int(mute)}]
    assert [(e["name"], e["member_id"], e["mute"]) for e in found["events"]] == [
        ("group_member_mute", 3, int(mute))]


@pytest.mark.parametrize("uid, mid, body, code", [
    (2, 3, {"mute": True}, NOT_MASTER),
    (2, 2, {"mute": True}, NOT_MASTER),
    (2, 2, {"nickname": "x", "mute": True}, NOT_MASTER),
    (2, 3, {"nickname": "x"}, FORBIDDEN),
    (2, 3, {"do_not_disturb": True}, FORBIDDEN),
    (1, 3, {"nickname": "x"}, FORBIDDEN),
    (1, 3, {"do_not_disturb": True}, FORBIDDEN),
], ids=["member-mutes-other", "member-mutes-self", "member-nickname-and-mute", "member-nicknames-other",
        "member-quiets-other", "master-nicknames-other", "master-quiets-other"])
def test_member_settings_refused(user, group, prefix, db, r, uid, mid, body, code):
    gid = group()
    caller = user(uid)
    assert_refused(db, r, lambda: caller.patch(f"{prefix}/{gid}/members/{mid}", body), 403, code)


# --- POST /groups/{gid}/members/{mid} and POST /notification/groups/{gid} ------------------------

def quiet_state(r, demo, uid, gid):
    key = f"users_{demo['id']}_{uid}"
    return r.hget(key, f"group_{gid}"), r.sismember(f"{key}_group_do_not_disturb", gid)


@pytest.mark.parametrize("path", ["{prefix}/{gid}/members/2", "/notification/groups/{gid}"])
def test_a_member_sets_its_own_quiet(user, group, prefix, r, demo, path):
    gid = group()
    bob, url = user(2), path.format(prefix=prefix, gid=gid)
    assert_ok(*bob.post(url, {"quiet": 1}))
    assert quiet_state(r, demo, 2, gid) == ("1", True)
    assert_ok(*bob.post(url, {"quiet": 0}))
    assert quiet_state(r, demo, 2, gid) == ("0", False)
    assert quiet_state(r, demo, 1, gid) == (None, False)


@pytest.mark.parametrize("uid", [1, 3], ids=["master", "member"])
def test_quiet_of_another_member_is_refused(user, group, prefix, db, r, uid):
    gid = group()
    caller = user(uid)
    assert_refused(db, r, lambda: caller.post(f"{prefix}/{gid}/members/2", {"quiet": 1}), 403, FORBIDDEN)


def test_quiet_through_the_notification_path_needs_client_auth(api, group, db, r):
    gid = group()
    assert_refused(db, r, lambda: api.post(f"/notification/groups/{gid}", {"quiet": 1}), 403, FORBIDDEN)


def test_quiet_of_a_group_of_another_app_is_404(group, client, other, db, r):
    gid = group()
    stranger = Api(client, bearer(token_for(Api(client, other["auth"]), 2)))
    assert_refused(db, r, lambda: stranger.post(f"/notification/groups/{gid}", {"quiet": 1}), 404, GROUP_NOT_FOUND)


# --- GET /groups/{gid}/members -------------------------------------------------------------------

def test_a_member_pages_through_the_members(user, group, prefix, api):
    gid = group(members=[1, 2, 3, 4, 5])
    api.post("/auth/grant", {"uid": 4, "user_name": "Dee"})
    bob = user(2)
    first = assert_ok(*bob.get(f"{prefix}/{gid}/members", query_string={"start": 0, "count": 2}))
    second = assert_ok(*bob.get(f"{prefix}/{gid}/members", query_string={"start": 2, "count": 2}))
    last = assert_ok(*bob.get(f"{prefix}/{gid}/members", query_string={"start": 4, "count": 2}))
    assert [(p["total"], p["start"], p["count"]) for p in (first, second, last)] == [(5, 0, 2), (5, 2, 2), (5, 4, 1)]
    members = first["members"] + second["members"] + last["members"]
    assert [m["uid"] for m in members] == [1, 2, 3, 4, 5]
    assert all(set(m) == {"uid", "name", "nickname", "mute", "timestamp"} for m in members)
    assert members[3]["name"] == "Dee"
    assert all(isinstance(m["timestamp"], int) and m["timestamp"] > 1_600_000_000 for m in members)


def test_a_non_member_cannot_list_the_members(user, group, prefix, db, r):
    gid = group()
    stranger = user(9)
    assert_refused(db, r, lambda: stranger.get(f"{prefix}/{gid}/members"), 403, FORBIDDEN)


def test_a_former_member_cannot_list_the_members(user, group, prefix, db, r):
    gid = group()
    bob = user(2)
    assert_ok(*bob.delete(f"{prefix}/{gid}/members/2"))
    assert_refused(db, r, lambda: bob.get(f"{prefix}/{gid}/members"), 403, FORBIDDEN)


# --- face-to-face codes: POST /groups {code}, POST /groups/join ----------------------------------

def test_a_group_keeps_its_code(user, prefix, db):
    gid = assert_ok(*user(1).post(prefix, {"master": 1, "name": "f2f", "code": "4711"}))["group_id"]
    assert group_row(db, gid)["code"] == "4711"


def test_a_code_in_use_by_a_live_group_of_the_app_is_409(user, prefix, db, r):
    assert_ok(*user(1).post(prefix, {"master": 1, "name": "f2f", "code": "4711"}))
    bob = user(2)
    assert_refused(db, r, lambda: bob.post(prefix, {"master": 2, "name": "again", "members": [3], "code": "4711"}),
                   409, CODE_IN_USE)


def test_another_app_may_use_the_same_code(user, prefix, client, other, db):
    assert_ok(*user(1).post(prefix, {"master": 1, "name": "f2f", "code": "4711"}))
    theirs = Api(client, bearer(token_for(Api(client, other["auth"]), 1)))
    gid = assert_ok(*theirs.post(prefix, {"master": 1, "name": "f2f", "code": "4711"}))["group_id"]
    assert group_row(db, gid)["appid"] == other["id"]


def test_a_disbanded_groups_code_is_free_again(user, prefix, db):
    ann = user(1)
    first = assert_ok(*ann.post(prefix, {"master": 1, "name": "f2f", "code": "4711"}))["group_id"]
    assert_ok(*ann.delete(f"{prefix}/{first}"))
    second = assert_ok(*ann.post(prefix, {"master": 1, "name": "f2f", "code": "4711"}))["group_id"]
    assert second != first and group_row(db, second)["code"] == "4711"


def test_joining_by_code_adds_the_caller(user, prefix, db, r):
    gid = assert_ok(*user(1).post(prefix, {"master": 1, "name": "f2f", "code": "4711"}))["group_id"]
    with new_items(r) as found:
        data = assert_ok(*user(7).post(f"{prefix}/join", {"code": "4711"}))
    assert data == {"group_id": gid}
    assert live_members(db, gid) == [1, 7]
    assert events(found) == [("group_member_add", 7)]
    assert [(op, body["member_id"], body["group_id"]) for op, body in found["notes"]] == [("add_member", 7, gid)]


def test_joining_again_is_not_an_error_and_queues_nothing(user, prefix, db, r):
    gid = assert_ok(*user(1).post(prefix, {"master": 1, "name": "f2f", "code": "4711"}))["group_id"]
    ann = user(1)
    before = snapshot(db, r)
    assert assert_ok(*ann.post(f"{prefix}/join", {"code": "4711"})) == {"group_id": gid}
    assert snapshot(db, r) == before


def test_joining_with_an_unknown_code_is_404(user, prefix, db, r):
    assert_ok(*user(1).post(prefix, {"master": 1, "name": "f2f", "code": "4711"}))
    bob = user(2)
    assert_refused(db, r, lambda: bob.post(f"{prefix}/join", {"code": "0000"}), 404, GROUP_NOT_FOUND)


def test_joining_a_disbanded_groups_code_is_404(user, prefix, db, r):
    ann = user(1)
    gid = assert_ok(*ann.post(prefix, {"master": 1, "name": "f2f", "code": "4711"}))["group_id"]
    assert_ok(*ann.delete(f"{prefix}/{gid}"))
    bob = user(2)
    assert_refused(db, r, lambda: bob.post(f"{prefix}/join", {"code": "4711"}), 404, GROUP_NOT_FOUND)


def test_joining_another_apps_code_is_404(user, prefix, client, other, db, r):
    theirs = Api(client, bearer(token_for(Api(client, other["auth"]), 1)))
    assert_ok(*theirs.post(prefix, {"master": 1, "name": "f2f", "code": "4711"}))
    bob = user(2)
    assert_refused(db, r, lambda: bob.post(f"{prefix}/join", {"code": "4711"}), 404, GROUP_NOT_FOUND)


def test_a_server_key_spelled_like_a_clients_stored_key_does_not_collide(api, client, db):
    client_api = Api(client, bearer(token_for(api, 5)))
    status, body = client_api.post("/groups", {"master": 5, "name": "mine", "members": [5]},
                                   headers={"Idempotency-Key": "k1"})
    assert status == 200, body
    mine = body["data"]["group_id"]
    for forged in ("5:k1", "client:5:k1", "client_5_k1"):
        status, body = api.post("/groups", {"master": 1, "name": "server's", "members": [1]},
                                headers={"Idempotency-Key": forged})
        assert status == 200 and body["data"]["group_id"] != mine, (forged, body)
    status, body = client_api.post("/groups", {"master": 5, "name": "mine", "members": [5]},
                                   headers={"Idempotency-Key": "k1"})
    assert body["data"]["group_id"] == mine
    assert rows(db, "SELECT COUNT(*) AS n FROM `group`")[0]["n"] == 4


def visitor_api(api, client, demo) -> tuple[Api, int]:
    api.post("/stores", {"name": "shop"})
    status, body = Api(client, {}).post("/auth/customer", {"appid": demo["id"], "customer_id": "v-1"})
    assert status == 200, body
    return Api(client, bearer(body["data"]["token"])), body["data"]["client_id"]


def test_a_visitor_gets_403_on_every_group_path(api, client, demo, db, r):
    gid = api.post("/groups", {"master": 1, "name": "team", "members": [1, 2], "code": "4711"})[1]["data"]["group_id"]
    visitor, cid = visitor_api(api, client, demo)
    calls = [("GET", f"/groups/{gid}", None), ("GET", f"/client/groups/{gid}", None), ("GET", "/groups", None),
             ("GET", f"/groups/{gid}/members", None), ("POST", "/groups", {"master": cid, "name": "x"}),
             ("POST", f"/groups/{gid}/members", [cid]), ("POST", "/groups/join", {"code": "4711"}),
             ("PATCH", f"/groups/{gid}", {"name": "y"}), ("DELETE", f"/groups/{gid}", None),
             ("POST", f"/notification/groups/{gid}", {"quiet": 1}), ("DELETE", f"/groups/{gid}/members/2", None)]
    for method, path, body in calls:
        assert_refused(db, r, lambda m=method, p=path, b=body: visitor.call(m, p, b), 403, 2007)


def test_a_master_the_server_removed_has_no_master_rights_left(api, client, db, r):
    gid = api.post("/groups", {"master": 1, "name": "team", "members": [1, 2, 3]})[1]["data"]["group_id"]
    master = Api(client, bearer(token_for(api, 1)))
    status, body = api.delete(f"/groups/{gid}/members/1")
    assert status == 200, body
    for method, path, body in [("PATCH", f"/groups/{gid}", {"name": "mine again"}),
                               ("DELETE", f"/groups/{gid}/members/2", None),
                               ("DELETE", f"/groups/{gid}/members", [3]),
                               ("PATCH", f"/groups/{gid}/members/2", {"mute": True}),
                               ("DELETE", f"/groups/{gid}", None)]:
        assert_refused(db, r, lambda m=method, p=path, b=body: master.call(m, p, b), 403, 4003)


def test_a_live_master_keeps_its_rights(api, client):
    gid = api.post("/groups", {"master": 1, "name": "team", "members": [1, 2]})[1]["data"]["group_id"]
    master = Api(client, bearer(token_for(api, 1)))
    assert master.patch(f"/groups/{gid}", {"name": "renamed"})[0] == 200
    assert master.delete(f"/groups/{gid}")[0] == 200


@pytest.fixture(scope="module")
def join_app():
    from helpers import TEST_CONFIG

    from app import create_app
    return create_app(TEST_CONFIG | {"JOIN_RATE_LIMIT": "3/minute"})


def test_wrong_codes_are_limited_per_user_with_retry_after(join_app, demo, db, r):
    client = join_app.test_client()
    server = Api(client, demo["auth"])
    gid = server.post("/groups", {"master": 1, "name": "f2f", "members": [1], "code": "4711"})[1]["data"]["group_id"]
    guesser, other = Api(client, bearer(token_for(server, 7))), Api(client, bearer(token_for(server, 8)))
    assert guesser.post("/groups/join", {"code": "4711"})[0] == 200  # a right code does not count
    for code in ("0001", "0002", "0003"):
        assert guesser.post("/groups/join", {"code": code})[0] == 404
    response = client.post("/groups/join", json={"code": "4711"}, headers=guesser.headers)
    assert response.status_code == 429 and response.get_json()["meta"]["code"] == 6001
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert other.post("/groups/join", {"code": "4711"}) == (200, {"data": {"group_id": gid}})  # same address
    assert rows(db, "SELECT uid FROM group_member WHERE group_id = %s AND deleted = 0 ORDER BY uid", gid) == \
        [{"uid": 1}, {"uid": 7}, {"uid": 8}]


def test_the_join_rate_limit_is_a_setting_parsed_at_start():
    import config
    assert config.load({})["JOIN_RATE_LIMIT"] == (10, 60)
    with pytest.raises(config.SettingError, match="JOIN_RATE_LIMIT"):
        config.load({"JOIN_RATE_LIMIT": "often"})
