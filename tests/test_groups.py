"""Server-auth groups: create, read, update, disband, upgrade, and what each change leaves in
MySQL, the outbox and the Redis queues (events with their action_id chain, notifications)."""
import json
import threading
import time

import pytest
from helpers import (
    TEST_CONFIG,
    Api,
    assert_chain,
    assert_error,
    assert_now_s,
    basic,
    create,
    events,
    flush_queues,
    free_port,
    member_rows,
    messages,
    notes,
    router_members,
    rows,
    run_together,
    snapshot,
    token_for,
)

from app import create_app
from models import outbox

# The stock GoBelieve router loads groups with this query (and their members with helpers.ROUTER_MEMBERS).
ROUTER_GROUP = "SELECT id, appid, super FROM `group` WHERE id=%s AND deleted=0"


# --- helpers -------------------------------------------------------------------------------

def ops(r) -> list[str]:
    return [op for note in notes(r) for op in note]


def group_row(db, gid) -> dict | None:
    found = rows(db, "SELECT appid, master, super, name, notice, cover, deleted FROM `group` WHERE id=%s", gid)
    return found[0] if found else None


def router_group(db, gid) -> list[dict]:
    return list(rows(db, ROUTER_GROUP, gid))


def action_counter(db) -> int:
    return rows(db, "SELECT value FROM sequence WHERE name = 'group_action'")[0]["value"]


def outbox_size(db) -> int:
    return rows(db, "SELECT COUNT(*) AS n FROM outbox")[0]["n"]


def assert_now_ms(value: int) -> None:
    assert abs(value - time.time() * 1000) < 10_000, value


# --- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dead_redis_app(app):
    """The same database, but Redis on a port nobody listens on."""
    return create_app(TEST_CONFIG | {"REDIS_PORT": free_port(), "REDIS_TIMEOUT": 1})


@pytest.fixture
def dead_api(dead_redis_app, demo):
    return Api(dead_redis_app.test_client(), demo["auth"])


# --- POST /groups ------------------------------------------------------------------------------

def test_create_stores_the_group_row(api, db, demo):
    gid = create(api, master=7, name="team", members=[7, 8], notice="read me", cover="https://x/c.png")
    assert group_row(db, gid) == {"appid": demo["id"], "master": 7, "super": 0, "name": "team",
                                  "notice": "read me", "cover": "https://x/c.png", "deleted": 0}
    assert router_group(db, gid) == [{"id": gid, "appid": demo["id"], "super": 0}]


def test_create_stores_exactly_the_members_given(api, db):
    before = int(time.time())
    gid = create(api, master=1, members=[3, {"uid": 1, "name": "one", "avatar": "a1"}, 2])
    after = int(time.time())
    members = member_rows(db, gid)
    assert sorted(members) == [1, 2, 3]
    for row in members.values():
        assert before <= row["timestamp"] <= after
        assert (row["nickname"], row["mute"], row["deleted"]) == ("", 0, 0)


def test_create_does_not_add_the_master_by_itself(api, db):
    gid = create(api, master=1, members=[2, 3])
    assert router_members(db, gid) == [2, 3]
    assert group_row(db, gid)["master"] == 1


@pytest.mark.parametrize("given, stored", [(False, 0), (True, 1), (0, 0), (1, 1)])
def test_create_queues_group_create_then_member_adds_in_the_order_given(api, db, r, demo, given, stored):
    before = action_counter(db)
    gid = create(api, members=[3, 1, 2], super=given)
    found = events(r)
    assert [e["name"] for e in found] == ["group_create", "group_member_add", "group_member_add", "group_member_add"]
    assert found[0]["super"] == stored
    assert [e.get("member_id") for e in found[1:]] == [3, 1, 2]
    assert all(e["appid"] == demo["id"] and e["group_id"] == gid for e in found)
    for e in found:
        assert_now_ms(e["timestamp"])
    assert_chain(found, after=before)
    assert group_row(db, gid)["super"] == stored


def test_create_queues_one_create_notification(api, r, demo):
    gid = create(api, master=1, name="team", members=[3, 1, 2], super=True)
    [item] = messages(r)
    assert item["kind"] == "group_notification"
    assert (item["appid"], item["receiver"], item["sender"]) == (demo["id"], gid, None)
    assert isinstance(item["id"], int) and isinstance(item["content"], str)
    assert_now_ms(item["timestamp"])
    [(op, body)] = json.loads(item["content"]).items()
    assert op == "create"
    assert (body["group_id"], body["master"], body["name"], body["super"]) == (gid, 1, "team", 1)
    assert sorted(body["members"]) == [1, 2, 3]
    assert_now_s(body["timestamp"])


def test_create_with_no_members(api, db, r):
    gid = create(api, members=[])
    assert group_row(db, gid)["deleted"] == 0 and router_members(db, gid) == []
    assert [e["name"] for e in events(r)] == ["group_create"]
    assert notes(r)[0]["create"]["members"] == []


def test_create_with_an_explicit_group_id(api, db, r):
    gid = create(api, members=[1, 2], group_id=424242)
    assert gid == 424242
    assert group_row(db, 424242)["name"] == "team"
    assert router_members(db, 424242) == [1, 2]
    assert {e["group_id"] for e in events(r)} == {424242}
    assert notes(r)[0]["create"]["group_id"] == 424242


@pytest.mark.parametrize("disband_first", [False, True], ids=["live", "disbanded"])
def test_create_with_a_taken_group_id_is_409_and_changes_nothing(api, db, r, disband_first):
    gid = create(api, members=[1, 2])
    if disband_first:
        assert api.delete(f"/groups/{gid}")[0] == 200
    before = snapshot(db, r)
    status, body = api.post("/groups", {"master": 5, "name": "thief", "members": [5, 6], "group_id": gid})
    assert_error(status, body, 409)
    assert snapshot(db, r) == before


def test_concurrent_creates_with_one_group_id_let_one_win(app, api, demo, db, r):
    body = {"master": 1, "name": "race", "members": [1, 2], "group_id": 313131}
    statuses = run_together(app, demo["auth"], [("POST", "/groups", body)] * 6)
    assert sorted(statuses) == [200] + [409] * 5
    assert [(e["name"], e["group_id"]) for e in events(r)] == [
        ("group_create", 313131), ("group_member_add", 313131), ("group_member_add", 313131)]
    assert_chain(events(r))
    assert ops(r) == ["create"] and outbox_size(db) == 0


@pytest.fixture
def restore_group_auto_increment(db):
    yield
    with db.cursor() as cur:
        cur.execute("DELETE FROM group_member WHERE group_id >= %s", (2**62,))
        cur.execute("DELETE FROM `group` WHERE id >= %s", (2**62,))
        cur.execute("ALTER TABLE `group` AUTO_INCREMENT = 1")  # back to max(id) + 1


def test_a_group_id_at_the_top_of_the_range_does_not_break_later_creates(api, restore_group_auto_increment):
    status, body = api.post("/groups", {"master": 1, "name": "top", "members": [1], "group_id": 2**63 - 1})
    assert status in (200, 400), body  # taking it, or refusing ids the auto-increment needs, are both fine
    status, body = api.post("/groups", {"master": 1, "name": "next", "members": [1]})
    assert status == 200, body


def test_emoji_round_trips(api, db, r):
    name, notice = "家族 👨‍👩‍👧 🎉", "通知 😀"
    gid = create(api, name=name, notice=notice, cover="https://x/🖼.png")
    assert group_row(db, gid)["name"] == name
    assert group_row(db, gid)["notice"] == notice
    status, body = api.get(f"/groups/{gid}")
    assert status == 200 and (body["data"]["name"], body["data"]["notice"]) == (name, notice)
    assert body["data"]["cover"] == "https://x/🖼.png"
    assert notes(r)[0]["create"]["name"] == name


def test_a_name_of_255_emoji_is_accepted(api, db):
    gid = create(api, name="😀" * 255)
    assert group_row(db, gid)["name"] == "😀" * 255


def test_duplicate_members_count_once(api, db, r):
    gid = create(api, members=[1, 2, 2, {"uid": 1, "name": "again"}, 3])
    assert router_members(db, gid) == [1, 2, 3]
    assert [e.get("member_id") for e in events(r)] == [None, 1, 2, 3]


def test_create_over_the_member_limit_is_409_and_changes_nothing(small_api, db, r):
    before = snapshot(db, r)
    status, body = small_api.post("/groups", {"master": 1, "name": "big", "members": [1, 2, 3, 4]})
    assert_error(status, body, 409)
    assert snapshot(db, r) == before


def test_create_at_the_member_limit_counts_duplicates_once(small_api, db):
    gid = create(small_api, members=[1, 2, 3, 3, 1])
    assert router_members(db, gid) == [1, 2, 3]


def test_create_with_500_members_is_accepted(api, db, r):
    gid = create(api, members=range(1, 501))
    assert len(router_members(db, gid)) == 500
    assert len(events(r)) == 501


def test_create_with_more_than_500_members_is_400_and_changes_nothing(api, db, r):
    before = snapshot(db, r)
    status, body = api.post("/groups", {"master": 1, "name": "big", "members": list(range(1, 502))})
    assert_error(status, body, 400, "members")
    assert snapshot(db, r) == before


BAD_CREATE = [
    pytest.param({"name": "g", "members": [1]}, "master", id="master-missing"),
    pytest.param({"master": 1, "members": [1]}, "name", id="name-missing"),
    pytest.param({"master": 1, "name": "x" * 256, "members": [1]}, "name", id="name-256"),
    pytest.param({"master": 1, "name": "😀" * 256, "members": [1]}, "name", id="name-256-emoji"),
    pytest.param({"master": 1, "name": None, "members": [1]}, "name", id="name-null"),
    pytest.param({"master": -1, "name": "g", "members": [1]}, "master", id="master-negative"),
    pytest.param({"master": 2**63, "name": "g", "members": [1]}, "master", id="master-2**63"),
    pytest.param({"master": "boss", "name": "g", "members": [1]}, "master", id="master-string"),
    pytest.param({"master": 1, "name": "g", "members": [1, -2]}, "members", id="uid-negative"),
    pytest.param({"master": 1, "name": "g", "members": [1, {"uid": -2}]}, "members", id="object-uid-negative"),
    pytest.param({"master": 1, "name": "g", "members": [1, "two"]}, "members", id="uid-string"),
    pytest.param({"master": 1, "name": "g", "members": [1, {"uid": "two"}]}, "members", id="object-uid-string"),
    pytest.param({"master": 1, "name": "g", "members": [1, {"name": "x"}]}, "members", id="object-without-uid"),
    pytest.param({"master": 1, "name": "g", "members": [1, None]}, "members", id="uid-null"),
    pytest.param({"master": 1, "name": "g", "members": [1, 2**63]}, "members", id="uid-2**63"),
    pytest.param({"master": 2**53, "name": "g", "members": [1]}, "master", id="master-customer-range"),
    pytest.param({"master": 1, "name": "g", "members": [1, 2**53]}, "members", id="uid-customer-range"),
    pytest.param({"master": 1, "name": "g", "members": [{"uid": 1, "name": "n" * 256}]}, "members",
                 id="member-name-256"),
    pytest.param({"master": 1, "name": "g", "members": 5}, "members", id="members-int"),
    pytest.param({"master": 1, "name": "g", "members": "1,2"}, "members", id="members-string"),
    pytest.param({"master": 1, "name": "g", "members": {"uid": 1}}, "members", id="members-object"),
    pytest.param({"master": 1, "name": "g", "members": [1], "notice": "n" * 256}, "notice", id="notice-256"),
    pytest.param({"master": 1, "name": "g", "members": [1], "cover": "c" * 256}, "cover", id="cover-256"),
    pytest.param({"master": 1, "name": "g", "members": [1], "group_id": -5}, "group_id", id="group_id-negative"),
    pytest.param({"master": 1, "name": "g", "members": [1], "group_id": "x"}, "group_id", id="group_id-string"),
    pytest.param({"master": 1.5, "name": "g", "members": [1]}, "master", id="master-fraction"),
    pytest.param({"master": 1, "name": "g", "members": [1, 2.5]}, "members", id="uid-fraction"),
    pytest.param({"master": 1, "name": "g", "members": [1], "group_id": 7.5}, "group_id", id="group_id-fraction"),
]


@pytest.mark.parametrize("body, field", BAD_CREATE)
def test_create_with_bad_input_is_400_naming_the_field_and_changes_nothing(api, db, r, body, field):
    before = snapshot(db, r)
    status, answer = api.post("/groups", body)
    assert_error(status, answer, 400, field)
    assert snapshot(db, r) == before


@pytest.mark.parametrize("data", [b"{", b"[1, 2]", b'"team"', b"", b"null"])
def test_create_with_a_body_that_is_not_an_object_is_400(client, demo, db, r, data):
    before = snapshot(db, r)
    response = client.post("/groups", data=data, headers={"Content-Type": "application/json", **demo["auth"]})
    assert_error(response.status_code, response.get_json(), 400)
    assert snapshot(db, r) == before


def test_create_with_a_wrong_secret_is_401_and_changes_nothing(client, demo, db, r):
    before = snapshot(db, r)
    wrong = Api(client, basic(demo["id"], "not-the-secret"))
    status, body = wrong.post("/groups", {"master": 1, "name": "g", "members": [1]})
    assert_error(status, body, 401)
    assert snapshot(db, r) == before


def test_create_clears_the_members_group_sync_keys(api, db, r, demo):
    gid = 515151
    r.hset(f"users_{demo['id']}_2", mapping={f"group_sync_key_{gid}": "99", "name": "bob"})
    create(api, members=[1, 2], group_id=gid)
    assert r.hgetall(f"users_{demo['id']}_2") == {"name": "bob"}


# --- GET /groups/{gid} ---------------------------------------------------------------------------

def test_get_shows_the_group_and_its_members(api, db):
    token_for(api, 2, "Bob 😀")
    gid = create(api, master=1, name="team", members=[2, 1], notice="n", cover="https://x/c.png")
    stamps = {uid: row["timestamp"] for uid, row in member_rows(db, gid).items()}
    status, body = api.get(f"/groups/{gid}")
    assert status == 200, body
    data = body["data"]
    assert {key: data[key] for key in ("id", "master", "name", "notice", "cover", "super")} == {
        "id": gid, "master": 1, "name": "team", "notice": "n", "cover": "https://x/c.png", "super": 0}
    assert sorted(data["members"], key=lambda m: m["uid"]) == [
        {"uid": 1, "name": "", "nickname": "", "mute": 0, "timestamp": stamps[1]},
        {"uid": 2, "name": "Bob 😀", "nickname": "", "mute": 0, "timestamp": stamps[2]},
    ]


def test_get_shows_only_live_members_with_nickname_and_mute(api):
    gid = create(api, members=[1, 2, 3])
    assert api.patch(f"/groups/{gid}/members/2", {"nickname": "Bobby"})[0] == 200
    assert api.patch(f"/groups/{gid}/members/2", {"mute": True})[0] == 200
    assert api.delete(f"/groups/{gid}/members/3")[0] == 200
    members = {m["uid"]: m for m in api.get(f"/groups/{gid}")[1]["data"]["members"]}
    assert sorted(members) == [1, 2]
    assert (members[2]["nickname"], members[2]["mute"]) == ("Bobby", 1)


def test_get_another_apps_group_is_404(api, other_api):
    gid = create(other_api)
    status, body = api.get(f"/groups/{gid}")
    assert_error(status, body, 404)
    assert "team" not in json.dumps(body)


@pytest.mark.parametrize("path", ["/groups/999999999", f"/groups/{2**63}", f"/groups/{2**64}", "/groups/-1",
                                  "/groups/abc", "/groups/1.5"])
def test_get_an_unknown_or_impossible_group_id_is_404(api, path):
    assert_error(*api.get(path), 404)


def test_get_a_disbanded_group_is_404(api):
    gid = create(api)
    assert api.delete(f"/groups/{gid}")[0] == 200
    assert_error(*api.get(f"/groups/{gid}"), 404)


# --- PATCH /groups/{gid} -----------------------------------------------------------------------

@pytest.mark.parametrize("field, op", [("name", "update_name"), ("notice", "update_notice")])
def test_patch_name_or_notice_updates_the_row_and_notifies(api, db, r, demo, field, op):
    gid = create(api)
    flush_queues(r)
    status, body = api.patch(f"/groups/{gid}", {field: "new 😀"})
    assert (status, body) == (200, {"data": {"success": True}})
    assert group_row(db, gid)[field] == "new 😀"
    [item] = messages(r)
    assert (item["appid"], item["receiver"]) == (demo["id"], gid)
    [(found_op, note)] = json.loads(item["content"]).items()
    assert (found_op, note["group_id"], note[field]) == (op, gid, "new 😀")
    assert_now_s(note["timestamp"])
    assert events(r) == []


def test_patch_cover_updates_the_row_without_an_event(api, db, r):
    gid = create(api)
    flush_queues(r)
    assert api.patch(f"/groups/{gid}", {"cover": "https://x/new.png"})[0] == 200
    assert group_row(db, gid)["cover"] == "https://x/new.png"
    assert events(r) == []


def test_patch_leaves_the_other_fields_alone(api, db):
    gid = create(api, name="team", notice="n", cover="c")
    assert api.patch(f"/groups/{gid}", {"notice": "n2"})[0] == 200
    row = group_row(db, gid)
    assert (row["name"], row["notice"], row["cover"], row["master"]) == ("team", "n2", "c", 1)


def test_patch_master_transfers_to_a_member(api, db, r):
    gid = create(api, master=1, members=[1, 2])
    flush_queues(r)
    assert api.patch(f"/groups/{gid}", {"master": 2})[0] == 200
    assert group_row(db, gid)["master"] == 2
    assert api.get(f"/groups/{gid}")[1]["data"]["master"] == 2
    assert events(r) == []


@pytest.mark.parametrize("new_master", [9, 3], ids=["never-member", "removed-member"])
def test_patch_master_to_a_non_member_is_400_and_changes_nothing(api, db, r, new_master):
    gid = create(api, master=1, members=[1, 2, 3])
    assert api.delete(f"/groups/{gid}/members/3")[0] == 200
    before = snapshot(db, r)
    status, body = api.patch(f"/groups/{gid}", {"master": new_master, "name": "renamed"})
    assert_error(status, body, 400, "master")
    assert snapshot(db, r) == before


@pytest.mark.parametrize("body, field", [({}, None), ({"unknown": 1}, None), ({"name": "x" * 256}, "name"),
                                         ({"notice": "x" * 256}, "notice"), ({"cover": None}, "cover"),
                                         ({"master": -1}, "master")])
def test_patch_with_an_empty_or_bad_body_is_400_and_changes_nothing(api, db, r, body, field):
    gid = create(api)
    before = snapshot(db, r)
    assert_error(*api.patch(f"/groups/{gid}", body), 400, field)
    assert snapshot(db, r) == before


def test_patch_another_apps_group_is_404_and_changes_nothing(api, other_api, db, r):
    gid = create(other_api, name="theirs")
    before = snapshot(db, r)
    assert_error(*api.patch(f"/groups/{gid}", {"name": "mine"}), 404)
    assert snapshot(db, r) == before


def test_patch_an_unknown_group_is_404(api):
    assert_error(*api.patch("/groups/999999999", {"name": "x"}), 404)


# --- DELETE /groups/{gid} ----------------------------------------------------------------------

def test_disband_soft_deletes_the_group_and_every_member(api, db):
    gid = create(api, members=[1, 2, 3])
    status, body = api.delete(f"/groups/{gid}")
    assert (status, body) == (200, {"data": {"success": True}})
    assert router_group(db, gid) == []
    assert router_members(db, gid) == []
    assert group_row(db, gid)["deleted"] == 1
    assert {uid: row["deleted"] for uid, row in member_rows(db, gid).items()} == {1: 1, 2: 1, 3: 1}


def test_disband_queues_one_disband_event_and_one_notification(api, db, r, demo):
    gid = create(api, name="team", members=[1, 2, 3])
    flush_queues(r)
    assert api.delete(f"/groups/{gid}")[0] == 200
    [event] = events(r)
    assert (event["name"], event["appid"], event["group_id"]) == ("group_disband", demo["id"], gid)
    assert_now_ms(event["timestamp"])
    [note] = notes(r)
    assert list(note) == ["disband"] and note["disband"]["group_id"] == gid
    assert_now_s(note["disband"]["timestamp"])


def test_the_disband_notification_names_the_live_members_in_uid_order(api, db, r):
    gid = create(api, name="team", members=[1, 22, 333, 4444, 987654321])
    assert api.post(f"/groups/{gid}/members", [55])[0] == 200
    assert api.delete(f"/groups/{gid}/members/22")[0] == 200
    flush_queues(r)
    assert api.delete(f"/groups/{gid}")[0] == 200
    [item] = [json.loads(raw) for raw in r.lrange("im_message_queue", 0, -1)]
    assert item["members"] == [1, 55, 333, 4444, 987654321]


def test_a_member_list_longer_than_group_concat_max_len_is_read_row_by_row(api, db):
    from models import group as groups
    gid = create(api, name="team", members=[1, 22, 333, 4444, 987654321])
    with db.cursor() as cur:
        cur.execute("SET SESSION group_concat_max_len = 8")  # "1,22,333" fits, the rest is cut
        assert groups._live_uids(cur, gid) == [1, 22, 333, 4444, 987654321]
        cur.execute("SET SESSION group_concat_max_len = 1024")
        assert groups._live_uids(cur, gid) == [1, 22, 333, 4444, 987654321]
        assert groups._live_uids(cur, gid + 1000) == []


def test_disband_leaves_other_groups_alone(api, db):
    gid, kept = create(api, members=[1, 2]), create(api, members=[1, 2])
    assert api.delete(f"/groups/{gid}")[0] == 200
    assert router_group(db, kept) != [] and router_members(db, kept) == [1, 2]


def test_disbanding_twice_is_404_the_second_time(api, db, r):
    gid = create(api)
    assert api.delete(f"/groups/{gid}")[0] == 200
    before = snapshot(db, r)
    assert_error(*api.delete(f"/groups/{gid}"), 404)
    assert snapshot(db, r) == before


def test_a_group_without_live_members_can_be_disbanded(api, db, r):
    gid = create(api, members=[1, 2])
    status, _ = api.delete(f"/groups/{gid}/members", [1, 2])
    assert status == 200 and router_members(db, gid) == []
    flush_queues(r)
    assert api.delete(f"/groups/{gid}")[0] == 200
    assert [e["name"] for e in events(r)] == ["group_disband"]
    assert group_row(db, gid)["deleted"] == 1


def test_disband_another_apps_group_is_404_and_changes_nothing(api, other_api, db, r):
    gid = create(other_api)
    before = snapshot(db, r)
    assert_error(*api.delete(f"/groups/{gid}"), 404)
    assert snapshot(db, r) == before


# --- POST /groups/{gid}/upgrade ------------------------------------------------------------------

def test_upgrade_makes_a_super_group(api, db, r, demo):
    gid = create(api)
    flush_queues(r)
    status, body = api.post(f"/groups/{gid}/upgrade")
    assert (status, body) == (200, {"data": {"success": True}})
    assert group_row(db, gid)["super"] == 1
    assert router_group(db, gid) == [{"id": gid, "appid": demo["id"], "super": 1}]
    [event] = events(r)
    assert (event["name"], event["group_id"], event["super"]) == ("group_upgrade", gid, 1)
    [note] = notes(r)
    assert list(note) == ["upgrade"] and note["upgrade"]["group_id"] == gid
    assert api.get(f"/groups/{gid}")[1]["data"]["super"] == 1


@pytest.mark.parametrize("how", ["upgraded", "created-super"])
def test_upgrading_a_super_group_queues_nothing(api, db, r, how):
    gid = create(api, super=how == "created-super")
    if how == "upgraded":
        assert api.post(f"/groups/{gid}/upgrade")[0] == 200
    before = snapshot(db, r)
    assert api.post(f"/groups/{gid}/upgrade")[0] == 200
    assert snapshot(db, r) == before


def test_upgrade_another_apps_group_is_404_and_changes_nothing(api, other_api, db, r):
    gid = create(other_api)
    before = snapshot(db, r)
    assert_error(*api.post(f"/groups/{gid}/upgrade"), 404)
    assert snapshot(db, r) == before


def test_a_super_group_takes_members_past_the_normal_limit(small_api, db):
    gid = create(small_api, members=[1, 2, 3])
    assert_error(*small_api.post(f"/groups/{gid}/members", [4]), 409)
    assert small_api.post(f"/groups/{gid}/upgrade")[0] == 200
    assert small_api.post(f"/groups/{gid}/members", [4, 5])[0] == 200
    assert router_members(db, gid) == [1, 2, 3, 4, 5]


# --- the action_id chain, ordering ---------------------------------------------------------------

def mixed_operations(api) -> tuple[int, int]:
    """Many kinds of change on two groups; return the groups' ids."""
    first = create(api, members=[1, 2])
    second = create(api, members=[5])
    calls = [
        ("post", f"/groups/{first}/members", [3, 4]),
        ("patch", f"/groups/{first}", {"name": "renamed"}),
        ("post", f"/groups/{second}/members", {"uid": 6}),
        ("patch", f"/groups/{first}/members/3", {"mute": True}),
        ("delete", f"/groups/{first}/members/2", None),
        ("post", f"/groups/{first}/upgrade", None),
        ("delete", f"/groups/{first}/members", [3, 4]),
        ("patch", f"/groups/{first}/members/1", {"nickname": "boss"}),
        ("delete", f"/groups/{second}", None),
        ("post", f"/groups/{first}/members", [2]),
    ]
    for method, path, body in calls:
        status, answer = api.call(method.upper(), path, body)
        assert status == 200, (path, answer)
    return first, second


def test_action_ids_form_an_unbroken_chain_across_mixed_operations(api, db, r):
    before = action_counter(db)
    mixed_operations(api)
    found = events(r)
    assert [e["name"] for e in found] == (
        ["group_create"] + ["group_member_add"] * 2 + ["group_create", "group_member_add"]
        + ["group_member_add"] * 2 + ["group_member_add", "group_member_mute", "group_member_remove",
                                      "group_upgrade"] + ["group_member_remove"] * 2
        + ["group_disband", "group_member_add"])
    assert_chain(found, after=before)
    assert action_counter(db) == found[-1]["action_id"]


def test_the_chain_continues_from_one_call_to_the_next(api, r):
    create(api)
    first = events(r)
    flush_queues(r)
    create(api)
    assert events(r)[0]["previous_action_id"] == first[-1]["action_id"]


def test_events_and_notifications_of_a_group_follow_the_order_of_the_calls(api, r):
    first, second = mixed_operations(api)
    mine = [n for n in notes(r) if next(iter(n.values()))["group_id"] == first]
    assert [op for note in mine for op in note] == [
        "create", "add_member", "add_member", "update_name", "quit_group", "upgrade", "quit_group", "quit_group",
        "update_member_nickname", "add_member"]
    assert [(n.get("add_member") or n.get("quit_group") or {}).get("member_id") for n in mine] == [
        None, 3, 4, None, 2, None, 3, 4, None, 2]
    ids = [item["id"] for item in messages(r)]
    assert len(set(ids)) == len(ids) == 13
    theirs = [(e["name"], e.get("member_id")) for e in events(r) if e["group_id"] == second]
    assert theirs == [("group_create", None), ("group_member_add", 5), ("group_member_add", 6),
                      ("group_disband", None)]


def test_concurrent_changes_keep_the_chain_and_each_groups_order(app, api, demo, db, r):
    gids = [create(api, members=[1]) for _ in range(3)]
    flush_queues(r)
    before = action_counter(db)
    statuses = []

    def work(worker: int) -> None:
        client = Api(app.test_client(), demo["auth"])
        for n in range(5):
            statuses.append(client.post(f"/groups/{gids[worker % 3]}/members", [1000 + 100 * worker + n])[0])

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 30
    found = events(r)
    assert len(found) == 30
    assert_chain(found, after=before)
    for gid in gids:
        added = [e["member_id"] for e in found if e["group_id"] == gid]
        announced = [n["add_member"]["member_id"] for n in notes(r) if n["add_member"]["group_id"] == gid]
        assert added == announced and len(added) == 10
    assert outbox_size(db) == 0


# --- the outbox --------------------------------------------------------------------------------

def test_the_outbox_is_empty_after_every_successful_call(api, db, r):
    gid = create(api, members=[1, 2])
    assert outbox_size(db) == 0
    for method, path, body in [("POST", f"/groups/{gid}/members", [3]), ("PATCH", f"/groups/{gid}", {"name": "n"}),
                               ("PATCH", f"/groups/{gid}/members/3", {"mute": True}),
                               ("PATCH", f"/groups/{gid}/members/3", {"nickname": "x"}),
                               ("DELETE", f"/groups/{gid}/members/3", None), ("POST", f"/groups/{gid}/upgrade", None),
                               ("DELETE", f"/groups/{gid}", None)]:
        status, answer = api.call(method, path, body)
        assert status == 200, answer
        assert outbox_size(db) == 0, (method, path)
    assert len(events(r)) == 8 and len(notes(r)) == 7


FAILING_CHANGES = [
    pytest.param("POST", "/groups", {"master": 1, "name": "dup", "members": [1], "group_id": "{gid}"}, 409,
                 id="taken-group-id"),
    pytest.param("POST", "/groups", {"master": 1, "name": "big", "members": [1, 2, 3, 4]}, 409, id="create-over-limit"),
    pytest.param("POST", "/groups/{gid}/members", [4, 5], 409, id="add-over-limit"),
    pytest.param("PATCH", "/groups/{gid}", {"master": 99}, 400, id="transfer-to-non-member"),
    pytest.param("PATCH", "/groups/{gid}/members/99", {"mute": True}, 404, id="mute-non-member"),
    pytest.param("POST", "/groups/{gid}/members", [4, -5], 400, id="add-bad-uid"),
]


def fill(template, gid):
    """The template with {gid} replaced, in strings and nested values."""
    return json.loads(json.dumps(template).replace('"{gid}"', str(gid)).replace("{gid}", str(gid)))


@pytest.mark.parametrize("method, path, body, expected", FAILING_CHANGES)
def test_a_failed_change_leaves_no_outbox_row_and_does_not_move_the_action_counter(
        small_api, db, r, method, path, body, expected):
    gid = create(small_api, members=[1, 2, 3])
    before = snapshot(db, r)
    status, answer = small_api.call(method, fill(path, gid), fill(body, gid))
    assert_error(status, answer, expected)
    assert snapshot(db, r) == before


# --- recovery: Redis down during a change ------------------------------------------------------------

def test_changes_made_while_redis_is_down_are_committed_and_relayed_in_order(dead_api, db, r):
    before = action_counter(db)
    gid = create(dead_api, members=[1, 2])
    assert dead_api.post(f"/groups/{gid}/members", [3])[0] == 200
    assert dead_api.delete(f"/groups/{gid}/members/2")[0] == 200
    assert dead_api.patch(f"/groups/{gid}", {"name": "renamed"})[0] == 200
    assert dead_api.patch(f"/groups/{gid}/members/3", {"mute": True})[0] == 200
    # Committed, with every item waiting in MySQL.
    assert router_members(db, gid) == [1, 3] and group_row(db, gid)["name"] == "renamed"
    assert events(r) == [] and messages(r) == []
    pending = outbox_size(db)
    assert pending >= 6 + 4

    assert outbox.relay(db, r) == pending
    assert outbox_size(db) == 0
    found = events(r)
    assert [(e["name"], e.get("member_id")) for e in found] == [
        ("group_create", None), ("group_member_add", 1), ("group_member_add", 2), ("group_member_add", 3),
        ("group_member_remove", 2), ("group_member_mute", 3)]
    assert all(e["group_id"] == gid for e in found)
    assert_chain(found, after=before)
    assert ops(r) == ["create", "add_member", "quit_group", "update_name"]
    assert outbox.relay(db, r) == 0
    assert len(events(r)) == 6


def test_the_relay_outbox_command_delivers_what_redis_missed(app, dead_api, db, r):
    before = action_counter(db)
    gid = create(dead_api, members=[1, 2])
    pending = outbox_size(db)
    assert pending >= 4 and events(r) == []
    with app.app_context():  # `flask` pushes one for every command; the test runner does not
        result = app.test_cli_runner().invoke(args=["relay-outbox"])
    assert result.exit_code == 0, result.output
    assert f"relayed {pending} items" in result.output
    assert outbox_size(db) == 0
    assert [(e["name"], e["group_id"], e.get("member_id")) for e in events(r)] == [
        ("group_create", gid, None), ("group_member_add", gid, 1), ("group_member_add", gid, 2)]
    assert_chain(events(r), after=before)
    assert ops(r) == ["create"]


def test_the_next_change_with_redis_up_delivers_the_waiting_items_first(api, dead_api, db, r):
    before = action_counter(db)
    gid = create(dead_api, members=[1, 2])
    assert outbox_size(db) >= 4 and events(r) == []
    assert api.post(f"/groups/{gid}/members", [3])[0] == 200
    assert outbox_size(db) == 0
    found = events(r)
    assert [e.get("member_id") for e in found] == [None, 1, 2, 3]
    assert_chain(found, after=before)
    assert ops(r) == ["create", "add_member"]


def test_a_failed_change_while_redis_is_down_leaves_nothing_in_the_outbox(api, dead_api, db, r):
    gid = create(api)
    before = snapshot(db, r)
    status, body = dead_api.post("/groups", {"master": 1, "name": "dup", "members": [1], "group_id": gid})
    assert_error(status, body, 409)
    assert snapshot(db, r) == before


@pytest.mark.parametrize("method, body", [("PATCH", {"do_not_disturb": True}), ("POST", {"quiet": 1})])
def test_a_quiet_setting_while_redis_is_down_is_503_and_changes_nothing(dead_api, api, db, r, method, body):
    gid = create(api, members=[1, 2])
    before = snapshot(db, r)
    status, answer = dead_api.call(method, f"/groups/{gid}/members/2", body)
    assert_error(status, answer, 503)
    assert snapshot(db, r) == before


def test_a_rejoin_while_redis_is_down_clears_the_sync_key_once_relayed(api, dead_api, db, r, demo):
    gid = create(api, members=[1, 2])
    assert api.delete(f"/groups/{gid}/members/2")[0] == 200
    key = f"users_{demo['id']}_2"
    r.hset(key, mapping={f"group_sync_key_{gid}": "42", "name": "bob"})
    assert dead_api.post(f"/groups/{gid}/members", [2])[0] == 200
    assert r.hget(key, f"group_sync_key_{gid}") == "42"
    outbox.relay(db, r)
    assert r.hgetall(key) == {"name": "bob"}


def test_every_group_notification_names_who_must_see_it_besides_the_routers_members(api, r):
    """SPEC 5.2: create: the initial members; add_member and quit_group: the member; disband: the
    members just before it; the others: []. A leaver so sees its own quit_group, and a disband
    reaches members even after the router dropped the group."""
    gid = create(api, members=(1, 2, 3))
    assert api.post(f"/groups/{gid}/members", [4])[0] == 200
    assert api.delete(f"/groups/{gid}/members/2")[0] == 200
    assert api.patch(f"/groups/{gid}", {"name": "renamed"})[0] == 200
    assert api.delete(f"/groups/{gid}")[0] == 200
    found = [(next(iter(json.loads(m["content"]))), m["members"]) for m in messages(r)]
    assert found == [("create", [1, 2, 3]), ("add_member", [4]), ("quit_group", [2]), ("update_name", []),
                     ("disband", [1, 3, 4])]


def test_the_member_count_on_the_group_row_follows_every_change(api, db):
    gid = create(api, members=(1, 2, 3))
    count = lambda: rows(db, "SELECT member_count FROM `group` WHERE id = %s", gid)[0]["member_count"]  # noqa: E731
    assert count() == 3
    api.post(f"/groups/{gid}/members", [3, 4, 5])  # 3 is a member already
    assert count() == 5
    api.delete(f"/groups/{gid}/members", [1, 9])  # 9 never was
    assert count() == 4 == api.get(f"/groups/{gid}")[1]["data"]["member_count"]
    api.post(f"/groups/{gid}/members", [1])
    assert count() == 5 == len(rows(db, "SELECT uid FROM group_member WHERE group_id = %s AND deleted = 0", gid))
    api.delete(f"/groups/{gid}")
    assert count() == 0


def test_get_group_lists_a_bounded_number_of_members_and_pages_on(app, demo, db):
    bounded = Api(create_app(TEST_CONFIG | {"MEMBERS_INLINE": 3}).test_client(), demo["auth"])
    gid = create(bounded, members=range(1, 9))
    data = bounded.get(f"/groups/{gid}")[1]["data"]
    assert [m["uid"] for m in data["members"]] == [1, 2, 3]
    assert (data["member_count"], data["members_next"]) == (8, 3)
    rest = bounded.get(f"/groups/{gid}/members", query_string={"after": data["members_next"], "count": 10})[1]["data"]
    assert [m["uid"] for m in rest["members"]] == [4, 5, 6, 7, 8] and rest["next"] is None
    assert rest["total"] == 8
    small = create(bounded, members=(1, 2, 3))
    assert bounded.get(f"/groups/{small}")[1]["data"]["members_next"] is None


def test_get_group_with_members_0_is_the_header_and_the_count_alone(api, db):
    gid = create(api, members=range(1, 9))
    data = api.get(f"/groups/{gid}", query_string={"members": 0})[1]["data"]
    assert (data["id"], data["name"], data["member_count"], data["members"], data["members_next"]) == (
        gid, "team", 8, [], None)  # no cursor: none before uid 0 exists; the first page takes no ?after=
    two = api.get(f"/groups/{gid}", query_string={"members": 2})[1]["data"]
    assert ([m["uid"] for m in two["members"]], two["members_next"]) == ([1, 2], 2)
    assert api.get(f"/groups/{gid}", query_string={"members": 50})[1]["data"]["members_next"] is None
    status, body = api.get(f"/groups/{gid}", query_string={"members": -1})
    assert_error(status, body, 400, field="members")
