"""Server-auth group members: add (every body form), revive, remove, nickname, mute and
do-not-disturb, with the rows, Redis hashes, events and notifications each change leaves."""
import json
import time

import pytest
from helpers import (
    assert_chain,
    assert_error,
    assert_now_s,
    create,
    events,
    flush_queues,
    member_rows,
    messages,
    notes,
    router_members,
    run_together,
    snapshot,
)

OK = {"data": {"success": True}}


def add(api, gid, body) -> None:
    status, answer = api.post(f"/groups/{gid}/members", body)
    assert (status, answer) == (200, OK)


def remove(api, gid, uid) -> None:
    status, answer = api.delete(f"/groups/{gid}/members/{uid}")
    assert (status, answer) == (200, OK)


def op_bodies(r, op) -> list[dict]:
    """The bodies of the queued notifications of one operation, oldest first."""
    return [note[op] for note in notes(r) if op in note]


def without_timestamp(body: dict) -> dict:
    assert_now_s(body["timestamp"])
    return {key: value for key, value in body.items() if key != "timestamp"}


def user_hash(r, demo, uid) -> str:
    return f"users_{demo['id']}_{uid}"


@pytest.fixture
def gid(api, r) -> int:
    """A group "team" of members 1 (the master), 2 and 3, with the queues emptied after its creation."""
    created = create(api, master=1, name="team", members=[1, 2, 3])
    flush_queues(r)
    return created


# --- POST /groups/{gid}/members ----------------------------------------------------------------

ADD_FORMS = [
    pytest.param([5, 6], [{"member_id": 5}, {"member_id": 6}], id="uids"),
    pytest.param([{"uid": 5, "name": "five", "avatar": "https://x/5.png"}, {"uid": 6}],
                 [{"member_id": 5, "name": "five", "avatar": "https://x/5.png"}, {"member_id": 6}], id="objects"),
    pytest.param([5, {"uid": 6, "name": "six 😀"}], [{"member_id": 5}, {"member_id": 6, "name": "six 😀"}],
                 id="mixed"),
    pytest.param({"members": [5, {"uid": 6, "name": "six"}], "inviter": {"uid": 1, "name": "one"}},
                 [{"member_id": 5, "inviter": {"uid": 1, "name": "one"}},
                  {"member_id": 6, "name": "six", "inviter": {"uid": 1, "name": "one"}}], id="members-and-inviter"),
    pytest.param({"members": [6, 5]}, [{"member_id": 6}, {"member_id": 5}], id="members-without-inviter"),
    pytest.param({"uid": 5, "name": "five", "avatar": "a"}, [{"member_id": 5, "name": "five", "avatar": "a"}],
                 id="one-object"),
]


@pytest.mark.parametrize("body, announced", ADD_FORMS)
def test_add_members_in_every_body_form(api, db, r, demo, gid, body, announced):
    started = int(time.time())
    add(api, gid, body)
    added = [note["member_id"] for note in announced]
    assert router_members(db, gid) == sorted([1, 2, 3, *added])
    for uid in added:
        row = member_rows(db, gid)[uid]
        assert started <= row["timestamp"] <= time.time()
        assert (row["nickname"], row["mute"], row["deleted"]) == ("", 0, 0)
    found = events(r)
    assert [(e["name"], e["appid"], e["group_id"], e["member_id"]) for e in found] == [
        ("group_member_add", demo["id"], gid, uid) for uid in added]
    assert_chain(found)
    assert [item["receiver"] for item in messages(r)] == [gid] * len(added)
    assert [without_timestamp(body) for body in op_bodies(r, "add_member")] == [
        {"group_id": gid, "group_name": "team", **note} for note in announced]
    assert len(notes(r)) == len(added)


def test_add_records_the_inviter_without_a_name(api, r, gid):
    add(api, gid, {"members": [5], "inviter": {"uid": 2}})
    [body] = op_bodies(r, "add_member")
    assert body["inviter"]["uid"] == 2


@pytest.mark.parametrize("body", [[2], [{"uid": 3, "name": "again"}], {"uid": 1}, [1, 2, 3]])
def test_re_adding_live_members_is_200_and_changes_nothing(api, db, r, gid, body):
    with db.cursor() as cur:  # an old join time that a re-add must keep
        cur.execute("UPDATE group_member SET timestamp = 1000, nickname = 'kept' WHERE group_id = %s", (gid,))
    before = snapshot(db, r)
    add(api, gid, body)
    assert snapshot(db, r) == before


def test_re_adding_among_new_members_queues_only_the_new_ones(api, db, r, gid):
    add(api, gid, [2, 7, 3, 8])
    assert [e["member_id"] for e in events(r)] == [7, 8]
    assert [body["member_id"] for body in op_bodies(r, "add_member")] == [7, 8]
    assert router_members(db, gid) == [1, 2, 3, 7, 8]


def test_duplicates_in_an_add_count_once(api, db, r, gid):
    add(api, gid, [7, 7, {"uid": 7, "name": "seven"}])
    assert [e["member_id"] for e in events(r)] == [7]
    assert len(op_bodies(r, "add_member")) == 1


def test_re_adding_a_removed_member_revives_its_row(api, db, r, demo, gid):
    assert api.patch(f"/groups/{gid}/members/2", {"nickname": "old nick"})[0] == 200
    assert api.patch(f"/groups/{gid}/members/2", {"mute": True})[0] == 200
    remove(api, gid, 2)
    with db.cursor() as cur:
        cur.execute("UPDATE group_member SET timestamp = 1000 WHERE group_id = %s AND uid = 2", (gid,))
    flush_queues(r)
    started = int(time.time())
    add(api, gid, [{"uid": 2, "name": "back"}])
    row = member_rows(db, gid)[2]
    assert (row["deleted"], row["nickname"], row["mute"]) == (0, "", 0)
    assert started <= row["timestamp"] <= time.time()
    assert router_members(db, gid) == [1, 2, 3]
    assert [(e["name"], e["member_id"]) for e in events(r)] == [("group_member_add", 2)]
    assert [without_timestamp(body) for body in op_bodies(r, "add_member")] == [
        {"group_id": gid, "group_name": "team", "member_id": 2, "name": "back"}]


@pytest.mark.parametrize("removed_first", [True, False], ids=["rejoin", "first-join"])
def test_joining_clears_the_members_group_sync_key_only(api, r, demo, gid, removed_first):
    uid = 2 if removed_first else 9
    if removed_first:
        remove(api, gid, uid)
    key = user_hash(r, demo, uid)
    r.hset(key, mapping={f"group_sync_key_{gid}": "77", f"group_sync_key_{gid + 1}": "88", "sync_key": "5"})
    r.hset(user_hash(r, demo, 3), f"group_sync_key_{gid}", "66")
    add(api, gid, [uid, 3])
    assert r.hgetall(key) == {f"group_sync_key_{gid + 1}": "88", "sync_key": "5"}
    assert r.hget(user_hash(r, demo, 3), f"group_sync_key_{gid}") == "66"  # 3 was a live member already


def test_concurrent_adds_of_one_member_queue_it_once(app, api, db, r, demo, gid):
    statuses = run_together(app, demo["auth"], [("POST", f"/groups/{gid}/members", [7])] * 6)
    assert statuses == [200] * 6
    assert [(e["name"], e["member_id"]) for e in events(r)] == [("group_member_add", 7)]
    assert [body["member_id"] for body in op_bodies(r, "add_member")] == [7]
    assert router_members(db, gid) == [1, 2, 3, 7]


def test_concurrent_adds_cannot_overfill_a_group(small_app, small_api, db, r, demo):
    gid = create(small_api, members=[1, 2])
    statuses = run_together(small_app, demo["auth"], [("POST", f"/groups/{gid}/members", [uid]) for uid in (5, 6, 7)])
    assert sorted(statuses) == [200, 409, 409]
    assert len(router_members(db, gid)) == 3
    assert [e["name"] for e in events(r)][-1:] == ["group_member_add"] and len(events(r)) == 3 + 1


def test_add_over_the_member_limit_is_409_and_changes_nothing(small_api, db, r):
    gid = create(small_api, members=[1, 2])
    before = snapshot(db, r)
    assert_error(*small_api.post(f"/groups/{gid}/members", [3, 4]), 409)
    assert snapshot(db, r) == before
    add(small_api, gid, [3])
    assert router_members(db, gid) == [1, 2, 3]


def test_re_adding_live_members_of_a_full_group_is_not_over_the_limit(small_api, db, r):
    gid = create(small_api, members=[1, 2, 3])
    add(small_api, gid, [1, 2, 3])
    remove(small_api, gid, 2)
    add(small_api, gid, [2])
    assert router_members(db, gid) == [1, 2, 3]


BAD_ADDS = [
    pytest.param([5, -6], "members", id="negative-uid"),
    pytest.param([5, "six"], "members", id="string-uid"),
    pytest.param([5, {"name": "no uid"}], "members", id="object-without-uid"),
    pytest.param([5, {"uid": 6, "avatar": "a" * 256}], "members", id="avatar-256"),
    pytest.param({"members": 5}, "members", id="members-not-a-list"),
    pytest.param({"members": [5], "inviter": {"name": "nobody"}}, "inviter", id="inviter-without-uid"),
    pytest.param({"members": [5], "inviter": 1}, "inviter", id="inviter-not-an-object"),
    pytest.param(list(range(100, 601)), "members", id="501-members"),
    pytest.param({"name": "no members"}, "members", id="no-members"),
]


@pytest.mark.parametrize("body, field", BAD_ADDS)
def test_add_with_bad_input_is_400_naming_the_field_and_adds_nobody(api, db, r, gid, body, field):
    before = snapshot(db, r)
    assert_error(*api.post(f"/groups/{gid}/members", body), 400, field)
    assert snapshot(db, r) == before


def test_add_to_another_apps_group_is_404_and_changes_nothing(api, other_api, db, r):
    gid = create(other_api)
    before = snapshot(db, r)
    assert_error(*api.post(f"/groups/{gid}/members", [9]), 404)
    assert snapshot(db, r) == before


@pytest.mark.parametrize("disbanded", [False, True], ids=["unknown", "disbanded"])
def test_add_to_a_missing_group_is_404_and_changes_nothing(api, db, r, gid, disbanded):
    target = gid if disbanded else 999999999
    if disbanded:
        assert api.delete(f"/groups/{gid}")[0] == 200
    before = snapshot(db, r)
    assert_error(*api.post(f"/groups/{target}/members", [9]), 404)
    assert snapshot(db, r) == before


# --- DELETE /groups/{gid}/members/{mid} and DELETE /groups/{gid}/members -----------------------------

def test_remove_one_member_soft_deletes_its_row(api, db, r, demo, gid):
    remove(api, gid, 2)
    assert router_members(db, gid) == [1, 3]
    assert member_rows(db, gid)[2]["deleted"] == 1
    [event] = events(r)
    assert (event["name"], event["appid"], event["group_id"], event["member_id"]) == (
        "group_member_remove", demo["id"], gid, 2)
    assert_chain([event])
    assert [without_timestamp(body) for body in op_bodies(r, "quit_group")] == [
        {"group_id": gid, "group_name": "team", "member_id": 2}]
    assert len(notes(r)) == 1


REMOVE_FORMS = [
    pytest.param([3, 2], [{"member_id": 3}, {"member_id": 2}], id="uids"),
    pytest.param([{"uid": 2, "name": "two", "avatar": "https://x/2.png"}, {"uid": 3}],
                 [{"member_id": 2, "name": "two", "avatar": "https://x/2.png"}, {"member_id": 3}], id="objects"),
    pytest.param([2, {"uid": 3, "name": "three 😀"}], [{"member_id": 2}, {"member_id": 3, "name": "three 😀"}],
                 id="mixed"),
    pytest.param({"members": [2, 3]}, [{"member_id": 2}, {"member_id": 3}], id="members-object"),
]


@pytest.mark.parametrize("body, announced", REMOVE_FORMS)
def test_remove_a_list_of_members(api, db, r, gid, body, announced):
    status, answer = api.delete(f"/groups/{gid}/members", body)
    assert (status, answer) == (200, OK)
    removed = [note["member_id"] for note in announced]
    assert router_members(db, gid) == [1]
    assert all(member_rows(db, gid)[uid]["deleted"] == 1 for uid in removed)
    found = events(r)
    assert [(e["name"], e["member_id"]) for e in found] == [("group_member_remove", uid) for uid in removed]
    assert_chain(found)
    assert [without_timestamp(body) for body in op_bodies(r, "quit_group")] == [
        {"group_id": gid, "group_name": "team", **note} for note in announced]


@pytest.mark.parametrize("how", ["one", "list"])
@pytest.mark.parametrize("uid", [9, 2], ids=["never-member", "already-removed"])
def test_removing_a_non_member_is_200_and_changes_nothing(api, db, r, gid, how, uid):
    if uid == 2:
        remove(api, gid, 2)
    before = snapshot(db, r)
    path, body = (f"/groups/{gid}/members/{uid}", None) if how == "one" else (f"/groups/{gid}/members", [uid])
    assert api.delete(path, body) == (200, OK)
    assert snapshot(db, r) == before


def test_concurrent_removes_of_one_member_queue_it_once(app, db, r, demo, gid):
    calls = [("DELETE", f"/groups/{gid}/members/2", None), ("DELETE", f"/groups/{gid}/members", [2])] * 3
    assert run_together(app, demo["auth"], calls) == [200] * 6
    assert [(e["name"], e["member_id"]) for e in events(r)] == [("group_member_remove", 2)]
    assert [body["member_id"] for body in op_bodies(r, "quit_group")] == [2]
    assert router_members(db, gid) == [1, 3]


def test_removing_members_and_non_members_queues_only_the_members(api, db, r, gid):
    assert api.delete(f"/groups/{gid}/members", [9, 3, 3, 8])[0] == 200
    assert [e["member_id"] for e in events(r)] == [3]
    assert [body["member_id"] for body in op_bodies(r, "quit_group")] == [3]
    assert router_members(db, gid) == [1, 2]


@pytest.mark.parametrize("body", [[], {"members": []}, None, [2, -3], [2, "x"]], ids=[
    "empty-list", "empty-members", "no-body", "negative-uid", "string-uid"])
def test_remove_with_an_empty_or_bad_list_is_400_and_removes_nobody(api, db, r, gid, body):
    before = snapshot(db, r)
    assert_error(*api.delete(f"/groups/{gid}/members", body), 400, "members")
    assert snapshot(db, r) == before


@pytest.mark.parametrize("how", ["one", "list"])
def test_the_server_may_remove_the_master(api, db, r, gid, how):
    path, body = (f"/groups/{gid}/members/1", None) if how == "one" else (f"/groups/{gid}/members", [1])
    assert api.delete(path, body) == (200, OK)
    assert router_members(db, gid) == [2, 3]
    assert api.get(f"/groups/{gid}")[1]["data"]["master"] == 1
    assert [(e["name"], e["member_id"]) for e in events(r)] == [("group_member_remove", 1)]


@pytest.mark.parametrize("how", ["one", "list"])
def test_remove_from_another_apps_group_is_404_and_changes_nothing(api, other_api, db, r, how):
    gid = create(other_api, members=[1, 2])
    before = snapshot(db, r)
    path, body = (f"/groups/{gid}/members/2", None) if how == "one" else (f"/groups/{gid}/members", [2])
    assert_error(*api.delete(path, body), 404)
    assert snapshot(db, r) == before


@pytest.mark.parametrize("path", ["/groups/{gid}/members/-1", f"/groups/{{gid}}/members/{2**63}",
                                  f"/groups/{{gid}}/members/{2**53}", "/groups/{gid}/members/x"])
def test_remove_an_impossible_member_id_is_404(api, db, r, gid, path):
    before = snapshot(db, r)
    assert_error(*api.delete(path.format(gid=gid)), 404)
    assert snapshot(db, r) == before


# --- PATCH /groups/{gid}/members/{mid} and POST /groups/{gid}/members/{mid} -------------------------

def test_set_a_members_nickname(api, db, r, gid):
    assert api.patch(f"/groups/{gid}/members/2", {"nickname": "Bobby 😀"}) == (200, OK)
    assert member_rows(db, gid)[2]["nickname"] == "Bobby 😀"
    assert [without_timestamp(body) for body in op_bodies(r, "update_member_nickname")] == [
        {"group_id": gid, "member_id": 2, "nickname": "Bobby 😀"}]
    assert len(notes(r)) == 1 and events(r) == []
    members = {m["uid"]: m for m in api.get(f"/groups/{gid}")[1]["data"]["members"]}
    assert members[2]["nickname"] == "Bobby 😀" and members[3]["nickname"] == ""


@pytest.mark.parametrize("mute, stored", [(True, 1), (1, 1), (False, 0), (0, 0)])
def test_mute_or_unmute_a_member(api, db, r, demo, gid, mute, stored):
    if not stored:
        assert api.patch(f"/groups/{gid}/members/2", {"mute": True})[0] == 200
        flush_queues(r)
    assert api.patch(f"/groups/{gid}/members/2", {"mute": mute}) == (200, OK)
    assert {uid: row["mute"] for uid, row in member_rows(db, gid).items()} == {1: 0, 2: stored, 3: 0}
    [event] = events(r)
    assert (event["name"], event["appid"], event["group_id"], event["member_id"], event["mute"]) == (
        "group_member_mute", demo["id"], gid, 2, stored)
    assert_chain([event])


@pytest.mark.parametrize("on, flag", [(True, "1"), (1, "1"), (False, "0"), (0, "0")])
def test_set_a_members_do_not_disturb(api, db, r, demo, gid, on, flag):
    if flag == "0":
        assert api.patch(f"/groups/{gid}/members/2", {"do_not_disturb": True})[0] == 200
    before = snapshot(db, r)
    assert api.patch(f"/groups/{gid}/members/2", {"do_not_disturb": on}) == (200, OK)
    key = user_hash(r, demo, 2)
    assert r.hget(key, f"group_{gid}") == flag
    assert r.sismember(f"{key}_group_do_not_disturb", str(gid)) == (flag == "1")
    after = snapshot(db, r)
    recorded = after.pop("user_do_not_disturb")  # the record of the flag (SPEC 5.3), and nothing else
    assert [(row["uid"], row["kind"], row["target"], row["do_not_disturb"]) for row in recorded] == [
        (2, "group", gid, int(flag))]
    assert {k: v for k, v in after.items() if k != "redis"} == {
        k: v for k, v in before.items() if k not in ("redis", "user_do_not_disturb")}
    assert events(r) == [] and messages(r) == []


@pytest.mark.parametrize("quiet, flag", [(1, "1"), (0, "0"), (True, "1")])
def test_set_a_members_quiet_setting(api, r, demo, gid, quiet, flag):
    if flag == "0":
        assert api.post(f"/groups/{gid}/members/2", {"quiet": 1})[0] == 200
    assert api.post(f"/groups/{gid}/members/2", {"quiet": quiet}) == (200, OK)
    key = user_hash(r, demo, 2)
    assert r.hget(key, f"group_{gid}") == flag
    assert r.sismember(f"{key}_group_do_not_disturb", str(gid)) == (flag == "1")
    assert r.hget(user_hash(r, demo, 3), f"group_{gid}") is None
    assert events(r) == [] and messages(r) == []


MEMBER_SETTINGS = [
    pytest.param("PATCH", {"nickname": "x"}, id="nickname"),
    pytest.param("PATCH", {"mute": True}, id="mute"),
    pytest.param("PATCH", {"do_not_disturb": True}, id="do_not_disturb"),
    pytest.param("POST", {"quiet": 1}, id="quiet"),
]


@pytest.mark.parametrize("method, body", MEMBER_SETTINGS)
@pytest.mark.parametrize("uid", [9, 2], ids=["never-member", "removed-member"])
def test_a_setting_of_a_non_member_is_404_and_changes_nothing(api, db, r, gid, method, body, uid):
    if uid == 2:
        remove(api, gid, 2)
    before = snapshot(db, r)
    assert_error(*api.call(method, f"/groups/{gid}/members/{uid}", body), 404)
    assert snapshot(db, r) == before


@pytest.mark.parametrize("method, body", MEMBER_SETTINGS)
def test_a_setting_in_another_apps_group_is_404_and_changes_nothing(api, other_api, db, r, method, body):
    gid = create(other_api, members=[1, 2])
    before = snapshot(db, r)
    assert_error(*api.call(method, f"/groups/{gid}/members/2", body), 404)
    assert snapshot(db, r) == before


@pytest.mark.parametrize("method, body, field", [
    pytest.param("PATCH", {}, None, id="patch-empty"),
    pytest.param("PATCH", {"nickname": "n" * 256}, "nickname", id="nickname-256"),
    pytest.param("PATCH", {"nickname": None}, "nickname", id="nickname-null"),
    pytest.param("PATCH", {"mute": "maybe"}, "mute", id="mute-not-bool"),
    pytest.param("PATCH", {"do_not_disturb": "maybe"}, "do_not_disturb", id="dnd-not-bool"),
    pytest.param("POST", {}, "quiet", id="quiet-missing"),
    pytest.param("POST", {"quiet": 2}, "quiet", id="quiet-2"),
])
def test_a_bad_member_setting_is_400_and_changes_nothing(api, db, r, gid, method, body, field):
    before = snapshot(db, r)
    assert_error(*api.call(method, f"/groups/{gid}/members/2", body), 400, field)
    assert snapshot(db, r) == before


# --- a member's life, end to end -------------------------------------------------------------------

def test_a_members_joins_and_leaves_queue_in_order(api, db, r, gid):
    add(api, gid, [5])
    remove(api, gid, 5)
    add(api, gid, {"uid": 5, "name": "again"})
    assert api.delete(f"/groups/{gid}/members", [5, 2]) == (200, OK)
    found = events(r)
    assert [(e["name"], e["member_id"]) for e in found] == [
        ("group_member_add", 5), ("group_member_remove", 5), ("group_member_add", 5),
        ("group_member_remove", 5), ("group_member_remove", 2)]
    assert_chain(found)
    assert [(op, body["member_id"]) for note in notes(r) for op, body in note.items()] == [
        ("add_member", 5), ("quit_group", 5), ("add_member", 5), ("quit_group", 5), ("quit_group", 2)]
    assert router_members(db, gid) == [1, 3]
    assert json.loads(messages(r)[2]["content"])["add_member"]["name"] == "again"
