"""Request bodies the JSON parser must refuse cleanly: lone surrogates in any encoding, deep
nesting, and lists longer than MAX_BATCH (checked before any item is validated)."""
import json

import pytest
from helpers import Api, assert_refused, queue

LONE = "\ud800"  # an unpaired high surrogate: not a Unicode scalar value, never storable as UTF-8


def raw_json(body: dict, encoding: str = "utf-8") -> bytes:
    """The body as JSON text with lone surrogates written raw (not as \\u escapes)."""
    return json.dumps(body, ensure_ascii=False).encode(encoding, "surrogatepass")


# Each endpoint that stores or queues a string, with a body holding a lone surrogate in `field`.
STRING_WRITES = [
    ("POST", "/messages/peers", {"sender": 1, "receiver": 2, "content": "a" + LONE}, "content"),
    ("POST", "/groups", {"master": 1, "name": "g" + LONE, "members": [1]}, "name"),
    ("POST", "/auth/grant", {"uid": 1, "user_name": "n" + LONE}, "user_name"),
    ("POST", "/users", [{"uid": 1, "name": "n" + LONE}], "name"),
    ("POST", "/users/1/bind", {"apns": "t" + LONE}, "apns"),
]


def post_raw(api, method, path, data: bytes, headers=None):
    response = api.client.open(path, method=method, data=data,
                               headers={**api.headers, "Content-Type": "application/json", **(headers or {})})
    return response.status_code, response.get_json()


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-le", "utf-32-be"])
@pytest.mark.parametrize("method,path,body,field", STRING_WRITES)
def test_a_raw_lone_surrogate_is_400_and_writes_nothing(api, db, r, method, path, body, field, encoding):
    assert_refused(db, r, lambda: post_raw(api, method, path, raw_json(body, encoding)), 400, 1000)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32-le"])
def test_an_escaped_lone_surrogate_in_a_utf16_or_utf32_body_is_400(api, db, r, encoding):
    data = '{"sender": 1, "receiver": 2, "content": "a\\ud800"}'.encode(encoding)
    assert_refused(db, r, lambda: post_raw(api, "POST", "/messages/peers", data), 400, 1000)


def test_the_utf8_bytes_ed_a0_80_are_400_on_the_customer_and_group_update_paths(api, client, db, r, demo):
    api.post("/stores", {"name": "shop"})
    anon = Api(client, {})
    data = b'{"appid": %d, "customer_id": "v\xed\xa0\x80"}' % demo["id"]
    assert_refused(db, r, lambda: post_raw(anon, "POST", "/auth/customer", data), 400, 1000)
    gid = api.post("/groups", {"master": 1, "name": "g", "members": [1]})[1]["data"]["group_id"]
    assert_refused(db, r, lambda: post_raw(api, "PATCH", f"/groups/{gid}", b'{"name": "\xed\xa0\x80"}'), 400, 1000)


def test_a_message_in_utf16_without_surrogates_is_still_accepted(api, r):
    data = json.dumps({"sender": 1, "receiver": 2, "content": "h\u00e9 \U0001f600"}, ensure_ascii=False)
    status, body = post_raw(api, "POST", "/messages/peers", data.encode("utf-16"))
    assert status == 200, body
    assert queue(r, "im_message_queue")[0]["content"] == "h\u00e9 \U0001f600"


@pytest.mark.parametrize("depth", range(900, 1000))
def test_deeply_nested_content_is_400_never_500(api, db, r, depth):
    content = "[" * depth + "]" * depth
    data = ('{"sender": 1, "receiver": 2, "content": ' + content + "}").encode()
    status, body = post_raw(api, "POST", "/messages/peers", data)
    assert status in (200, 400), body
    if status == 400:
        assert body["meta"]["code"] in (1000, 1001)
        assert r.llen("im_message_queue") == 0


@pytest.mark.parametrize("depth", range(880, 1000, 2))
def test_deeply_nested_content_in_a_batch_or_group_notification_is_400(api, db, r, depth):
    content = "{\"a\":" * depth + "1" + "}" * depth
    for path, data in [("/messages/peers/batch", '[{"sender": 1, "receiver": 2, "content": ' + content + "}]"),
                       ("/messages/systems", '{"receiver": 2, "content": ' + content + "}")]:
        status, body = post_raw(api, "POST", path, data.encode())
        assert status in (200, 400), (path, body)


HUGE = [1] * 400_000  # within the body limit when written compactly


@pytest.mark.parametrize("method,path,body,field", [
    ("POST", "/groups/{gid}/members", HUGE, "members"),
    ("DELETE", "/groups/{gid}/members", HUGE, "members"),
    ("POST", "/groups", {"master": 1, "name": "big", "members": HUGE}, "members"),
    ("POST", "/users", [{"uid": 1}] * 60_000, "users"),
    ("POST", "/messages/peers/batch", [{"sender": 1, "receiver": 2, "content": ""}] * 20_000, "messages"),
    ("POST", "/messages/groups/notifications", {"group_id": 1, "content": "x", "members": HUGE}, "members"),
])
def test_a_huge_list_is_refused_before_any_item_is_validated(api, db, r, monkeypatch, method, path, body, field):
    import marshmallow as ma

    from views import fields
    gid = api.post("/groups", {"master": 1, "name": "team", "members": [1]})[1]["data"]["group_id"]
    for cls in (fields.MemberField, ma.fields.Nested):  # the item kinds of these lists
        monkeypatch.setattr(cls, "_deserialize", lambda *a, **k: pytest.fail("an item was validated"))
    if path == "/messages/groups/notifications":  # its items are Uids (and no other field is one)
        monkeypatch.setattr(fields.Uid, "_deserialize", lambda *a, **k: pytest.fail("an item was validated"))
    data = json.dumps(body, separators=(",", ":")).encode()
    status, answer = post_raw(api, method, path.format(gid=gid), data)
    assert status == 400 and answer["meta"]["code"] == 1002 and field in answer["meta"]["message"], answer
