from helpers import queue, rows


def test_create_group_queues_events(api, db, r):
    status, body = api.post("/groups", {"master": 1, "name": "g", "members": [1, 2, {"uid": 3, "name": "x"}]})
    assert status == 200, body
    gid = body["data"]["group_id"]
    events = queue(r, "group_event_queue")
    assert [e["name"] for e in events] == ["group_create"] + ["group_member_add"] * 3
    assert rows(db, "SELECT uid FROM group_member WHERE group_id=%s AND deleted=0 ORDER BY uid", gid) == [
        {"uid": 1}, {"uid": 2}, {"uid": 3}]
