"""Ids are ASCII decimal integers: JSON integers, or strings of ASCII digits (the original's clients
send some ids as strings); in paths and query strings ASCII digits. Every other spelling is a 400
naming the field (a 404 in a path), and the messages name the real bounds."""
import base64
import hashlib

import pytest
from helpers import Api, assert_error, bearer, create, messages, rows, token_for

from views.fields import parse_id

# Spellings int() and marshmallow's Integer take as 7 (or 1000, 0): none is an id.
BAD_TEXT = ["٧", "７", "1_000", " 7 ", "+7", "007", "7\n", "-0", "٠", "7.0", "0x7", "", "१"]
BAD_JSON = BAD_TEXT + [7.0, 1e3, True, None, [7], {"uid": 7}]
UID_BASE = 2**53


def raw_post(api, path, text):
    """POST a JSON text as it is (json.dumps would spell 1e3 as 1000.0)."""
    response = api.client.post(path, data=text.encode(), headers={"Content-Type": "application/json", **api.headers})
    return response.status_code, response.get_json()


@pytest.mark.parametrize("spelling", BAD_TEXT)
def test_parse_id_takes_only_ascii_digits_without_sign_space_or_leading_zero(spelling):
    with pytest.raises(ValueError):
        parse_id(spelling)


def test_parse_id_takes_the_plain_spelling():
    assert [parse_id(text) for text in ("0", "7", "1000", str(2**63 - 1))] == [0, 7, 1000, 2**63 - 1]
    with pytest.raises(ValueError):
        parse_id("1" * 20)  # 20 digits: past any id, and never handed to int()


@pytest.mark.parametrize("spelling", BAD_JSON, ids=repr)
def test_a_uid_in_another_spelling_is_a_400_naming_it_and_grants_nothing(api, r, spelling):
    status, body = api.post("/auth/grant", {"uid": spelling})
    assert_error(status, body, 400, field="uid", code=1001)
    assert r.keys("access_token_*") == []


@pytest.mark.parametrize("text", ['{"uid": 1e3}', '{"uid": 7.0}', '{"uid": 7e0}', '{"uid": 1E3}'])
def test_json_numbers_with_a_fraction_or_exponent_are_not_ids(api, r, text):
    status, body = raw_post(api, "/auth/grant", text)
    assert_error(status, body, 400, field="uid", code=1001)
    assert r.keys("access_token_*") == []


@pytest.mark.parametrize("uid", [7, "7", 0, "0", UID_BASE - 1, str(UID_BASE - 1)])
def test_json_integers_and_strings_of_ascii_digits_are_ids(api, r, uid):
    status, body = api.post("/auth/grant", {"uid": uid})
    assert status == 200, body
    assert r.hget(f"access_token_{body['data']['token']}", "user_id") == str(int(uid))


def test_member_lists_friends_and_group_ids_take_the_same_spellings(api, db, r):
    gid = create(api, members=(1, 2))
    queued = messages(r)  # the group's creation notice
    for path, payload, field in (
            ("/groups", {"master": 1, "name": "g", "members": [1, "٢"]}, "members.1.uid"),
            (f"/groups/{gid}/members", ["３"], "members.0.uid"),
            (f"/groups/{gid}/members", [{"uid": "1_000"}], "members.0.uid"),
            ("/users/1/friends", {"friend_uid": "+2"}, "friend_uid"),
            ("/users/1/friends", ["02"], "friend_uid.0"),
            ("/users/1/blacklist", {"uid": " 2"}, "uid"),
            ("/messages/groups", {"sender": 1, "receiver": f"{gid}\n", "content": "x"}, "receiver"),
            ("/messages/peers", {"sender": 1.0, "receiver": 2, "content": "x"}, "sender")):
        status, body = api.post(path, payload)
        assert_error(status, body, 400, field=field, code=1001)
    assert rows(db, "SELECT uid FROM group_member WHERE group_id = %s ORDER BY uid", gid) == [{"uid": 1}, {"uid": 2}]
    assert rows(db, "SELECT uid FROM friend") == rows(db, "SELECT uid FROM blacklist") == []
    assert messages(r) == queued
    # The original's documented form: uids as strings of digits.
    assert api.delete(f"/groups/{gid}/members", ["2"]) == (200, {"data": {"success": True}})


@pytest.mark.parametrize("query, field", [("after=%D9%A1", "after"), ("count=%EF%BC%95", "count"),
                                          ("start=+1", "start"), ("count=05", "count"), ("after=1_0", "after")])
def test_query_ids_and_numbers_are_ascii_digits(api, query, field):
    status, body = api.get(f"/users?{query}")
    assert_error(status, body, 400, field=field, code=1001)


def test_query_ids_of_client_calls_too(api, client):
    token = token_for(api, 1)
    status, body = Api(client, bearer(token)).get("/supporters?store_id=%D9%A1")
    assert_error(status, body, 400, field="store_id", code=1001)
    status, body = api.get("/users/online?uids=1,%D9%A2")
    assert_error(status, body, 400, field="uids", code=1001)


@pytest.mark.parametrize("segment", ["%D9%A1", "%EF%BC%91", "01", "+1", "1_0", "%201", "1%0A"])
def test_a_path_id_in_another_spelling_is_a_404_not_the_object(api, segment):
    gid = create(api, members=(1, 2), group_id=1)
    assert gid == 1 and api.get("/groups/1")[0] == 200
    for path in (f"/groups/{segment}", f"/groups/{segment}/members", f"/users/{segment}/groups"):
        status, body = api.get(path)
        assert_error(status, body, 404, code=1003)


def test_a_basic_header_whose_appid_is_spelled_otherwise_is_malformed(client, demo):
    digest = hashlib.md5(demo["secret"].encode()).hexdigest()
    for appid in (f"0{demo['id']}", f"+{demo['id']}", "".join(chr(0xFF10 + int(d)) for d in str(demo["id"]))):
        header = "Basic " + base64.b64encode(f"{appid}:{digest}".encode()).decode()
        response = client.get("/users", headers={"Authorization": header})
        assert_error(response.status_code, response.get_json(), 401, code=2001)
    header = "Basic " + base64.b64encode(f"{demo['id']}:{digest}".encode()).decode()
    assert client.get("/users", headers={"Authorization": header}).status_code == 200


def test_a_negative_or_too_high_uid_names_the_real_bound(api):
    for value in (-1, UID_BASE):
        status, body = api.post("/messages/peers", {"sender": value, "receiver": 2, "content": "x"})
        assert_error(status, body, 400, field="sender", code=1001)
        assert str(UID_BASE - 1) in body["meta"]["message"] and str(2**63 - 1) not in body["meta"]["message"]
    status, body = api.get(f"/users/online?uids=1,{UID_BASE}")
    assert_error(status, body, 400, field="uids", code=1001)
    assert str(UID_BASE - 1) in body["meta"]["message"]
    status, body = api.post("/messages/groups", {"sender": 1, "receiver": -1, "content": "x"})
    assert_error(status, body, 400, field="receiver", code=1001)
    assert str(2**63 - 1) in body["meta"]["message"]


def test_the_document_says_ids_may_be_strings_of_ascii_digits(client):
    intro = client.get("/openapi.json").get_json()["info"]["description"]
    assert "strings of ASCII digits" in intro and "1e3" in intro
