"""POST /messages/...: every accepted message becomes one im_message_queue item (SPEC 5.2)."""
import json
import os
import time

import pytest
from helpers import TEST_CONFIG, Api, assert_error, insert_group, queue

from app import create_app

MESSAGE_QUEUE = "im_message_queue"
GID = 4242
ITEM_KEYS = {"id", "kind", "appid", "sender", "receiver", "content", "timestamp"}
CUSTOMER_ID_BASE = 2**53  # SPEC 6: ids at or above it are customer-service clients, never app uids

# (path, body, kind, sender the item carries, receiver the item carries)
ENDPOINTS = [
    ("/messages/peers", {"sender": 1, "receiver": 2, "content": "hi"}, "peer", 1, 2),
    ("/messages/groups", {"sender": 1, "receiver": GID, "content": "hi"}, "group", 1, GID),
    ("/messages/systems", {"receiver": 2, "content": "hi"}, "system", None, 2),
    ("/messages/notifications", {"receiver": 2, "content": "hi"}, "notification", None, 2),
    ("/messages/groups/notifications", {"group_id": GID, "content": "hi"}, "group_notification", None, GID),
    ("/messages/rooms", {"sender": 0, "receiver": 77, "content": "hi"}, "room", 0, 77),
]
PATHS = [path for path, *_ in ENDPOINTS]
BODIES = dict((path, body) for path, body, *_ in ENDPOINTS)




@pytest.fixture
def group(db, demo):
    return insert_group(db, demo["id"], GID)


def post_ok(api, path, body) -> int:
    status, answer = api.post(path, body)
    assert status == 200, answer
    assert set(answer) == {"data"} and set(answer["data"]) == {"id"}
    assert isinstance(answer["data"]["id"], int)
    return answer["data"]["id"]


@pytest.mark.parametrize("path,body,kind,sender,receiver", ENDPOINTS, ids=[e[2] for e in ENDPOINTS])
def test_post_queues_one_item_of_the_spec_shape(api, demo, group, r, path, body, kind, sender, receiver):
    before = int(time.time() * 1000)
    msg_id = post_ok(api, path, body)
    after = int(time.time() * 1000)
    [item] = queue(r, MESSAGE_QUEUE)
    assert item == {"id": msg_id, "kind": kind, "appid": demo["id"], "sender": sender, "receiver": receiver,
                    "content": "hi", "timestamp": item["timestamp"]}
    assert before <= item["timestamp"] <= after


def test_group_notification_to_some_members_carries_them(api, group, r):
    msg_id = post_ok(api, "/messages/groups/notifications", {"group_id": GID, "content": "hi", "members": [1, 2]})
    [item] = queue(r, MESSAGE_QUEUE)
    assert set(item) == ITEM_KEYS | {"members"}
    assert (item["id"], item["kind"], item["members"], item["sender"]) == (msg_id, "group_notification", [1, 2], None)


@pytest.mark.parametrize("path", ["/messages/systems", "/messages/notifications", "/messages/groups/notifications"])
def test_a_sender_given_to_a_senderless_kind_is_not_used(api, group, r, path):
    post_ok(api, path, {**BODIES[path], "sender": 5})
    [item] = queue(r, MESSAGE_QUEUE)
    assert item["sender"] is None


@pytest.mark.parametrize("path", ["/messages/peers", "/messages/rooms"])
def test_sender_zero_is_the_system(api, r, path):
    post_ok(api, path, {"sender": 0, "receiver": 2, "content": "hi"})
    assert queue(r, MESSAGE_QUEUE)[0]["sender"] == 0


@pytest.mark.parametrize("path", PATHS)
def test_a_json_object_as_content_is_serialized_to_a_string(api, group, r, path):
    content = {"text": "héllo 😀", "n": [1, 2, {"deep": True}]}
    post_ok(api, path, {**BODIES[path], "content": content})
    [item] = queue(r, MESSAGE_QUEUE)
    assert isinstance(item["content"], str)
    assert json.loads(item["content"]) == content


def test_content_is_kept_byte_for_byte(api, r):
    content = '{"text": "emoji 😀 and\\nnewline", "raw": "<b>&amp;</b>"}'
    post_ok(api, "/messages/peers", {"sender": 1, "receiver": 2, "content": content})
    assert queue(r, MESSAGE_QUEUE)[0]["content"] == content
    # the queue item itself is UTF-8 JSON, not ASCII escapes
    assert "😀" in r.lindex(MESSAGE_QUEUE, 0)


def test_content_of_exactly_64_kib_is_accepted(api, r):
    post_ok(api, "/messages/peers", {"sender": 1, "receiver": 2, "content": "x" * 65536})
    assert len(queue(r, MESSAGE_QUEUE)[0]["content"]) == 65536


@pytest.mark.parametrize("content", ["x" * 65537, "é" * 32769, {"text": "x" * 65536}],
                         ids=["ascii", "multibyte-counted-in-bytes", "object"])
@pytest.mark.parametrize("path", PATHS)
def test_content_over_64_kib_is_400(api, group, r, path, content):
    status, body = api.post(path, {**BODIES[path], "content": content})
    assert_error(status, body, 400, "content", code=1001)
    assert r.keys("*") == []  # no queue item, no history


@pytest.mark.parametrize("path,field", [("/messages/groups", "receiver"),
                                        ("/messages/groups/notifications", "group_id")])
@pytest.mark.parametrize("whose", ["other-app", "disbanded", "missing"])
def test_message_to_a_group_not_live_in_the_app_is_404(api, db, demo, other, r, path, field, whose):
    if whose != "missing":
        insert_group(db, other["id"] if whose == "other-app" else demo["id"], GID, deleted=int(whose == "disbanded"))
    status, body = api.post(path, {**BODIES[path], field: GID})
    assert_error(status, body, 404, code=4001)
    assert r.keys("*") == []  # no queue item, no history


def test_ids_are_unique_over_many_posts(api, group, r):
    ids = [post_ok(api, path, BODIES[path]) for _ in range(20) for path in PATHS]
    assert len(set(ids)) == len(ids) == 120
    assert [item["id"] for item in queue(r, MESSAGE_QUEUE)] == ids


def test_ids_are_unique_across_processes(api):
    # A second app object stands for another process: it has its own id block.
    second = Api(create_app(TEST_CONFIG).test_client(), api.headers)
    ids = []
    for _ in range(30):
        ids += [post_ok(api, "/messages/peers", BODIES["/messages/peers"]),
                post_ok(second, "/messages/peers", BODIES["/messages/peers"])]
    assert len(set(ids)) == len(ids)


def test_a_forked_worker_takes_ids_of_its_own(app):
    ids = app.extensions["queues"].ids
    first = ids.next()
    read, write = os.pipe()
    if (pid := os.fork()) == 0:  # as gunicorn forks workers from a preloaded app
        try:
            os.write(write, str(ids.next()).encode())
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert int(os.read(read, 100)) != first + 1 and ids.next() == first + 1


def test_ids_do_not_repeat_after_a_redis_flush(api, r):
    first = {post_ok(api, "/messages/peers", BODIES["/messages/peers"]) for _ in range(5)}
    r.flushdb()
    fresh = Api(create_app(TEST_CONFIG).test_client(), api.headers)
    second = {post_ok(fresh, "/messages/peers", BODIES["/messages/peers"]) for _ in range(5)}
    assert not first & second


def test_posts_go_on_after_redis_forgets_its_scripts(api, r):
    post_ok(api, "/messages/peers", BODIES["/messages/peers"])
    r.script_flush()  # as after a restart of Redis: the next post must send the script's text again
    post_ok(api, "/messages/peers", BODIES["/messages/peers"])
    assert len(queue(r, "im_message_queue")) == 2


def test_messages_of_two_apps_carry_their_own_appid(api, client, demo, other, r):
    post_ok(api, "/messages/peers", BODIES["/messages/peers"])
    post_ok(Api(client, other["auth"]), "/messages/peers", BODIES["/messages/peers"])
    assert [item["appid"] for item in queue(r, MESSAGE_QUEUE)] == [demo["id"], other["id"]]


# --- backpressure ---------------------------------------------------------------------------------

@pytest.fixture
def small_queue(demo):
    """The API as a process whose QUEUE_MAX_LENGTH is 3."""
    return Api(create_app({**TEST_CONFIG, "QUEUE_MAX_LENGTH": 3}).test_client(), demo["auth"])


@pytest.mark.parametrize("path", PATHS)
def test_a_full_queue_refuses_posts_with_503_and_retry_after(small_queue, group, r, path):
    for _ in range(3):
        post_ok(small_queue, path, BODIES[path])
    response = small_queue.client.post(path, json=BODIES[path], headers=small_queue.headers)
    assert_error(response.status_code, response.get_json(), 503, code=7002)
    assert int(response.headers["Retry-After"]) > 0
    assert r.llen(MESSAGE_QUEUE) == 3


def test_posts_are_accepted_again_once_the_router_catches_up(small_queue, r):
    for _ in range(3):
        post_ok(small_queue, "/messages/peers", BODIES["/messages/peers"])
    assert small_queue.post("/messages/peers", BODIES["/messages/peers"])[0] == 503
    r.rpop(MESSAGE_QUEUE)  # the router takes one
    msg_id = post_ok(small_queue, "/messages/peers", BODIES["/messages/peers"])
    assert queue(r, MESSAGE_QUEUE)[-1]["id"] == msg_id
    assert r.llen(MESSAGE_QUEUE) == 3


def test_posts_get_503_while_redis_is_down(demo):
    down = Api(create_app({**TEST_CONFIG, "REDIS_PORT": 1}).test_client(), demo["auth"])
    response = down.client.post("/messages/peers", json=BODIES["/messages/peers"], headers=down.headers)
    assert_error(response.status_code, response.get_json(), 503, code=7001)
    assert response.headers.get("Retry-After")


# --- bad input ------------------------------------------------------------------------------------

BAD_IDS = [-1, 2**63, "abc", [1], True, {"id": 1}]
BAD_CONTENTS = [5, 1.5, True]  # an object or an array is accepted and serialized


def is_uid(path, field):
    """Senders and a peer's, system's or notification's receiver are users; other receivers are groups or rooms."""
    return field == "sender" or field == "receiver" and path in ("/messages/peers", "/messages/systems",
                                                                   "/messages/notifications")


def bad_cases():
    """(path, body, field) for every required field missing, null, mistyped, negative or too big."""
    for path, body, *_ in ENDPOINTS:
        for field in body:
            yield path, {k: v for k, v in body.items() if k != field}, field
            bad = BAD_CONTENTS if field == "content" else BAD_IDS + ([CUSTOMER_ID_BASE] if is_uid(path, field) else [])
            for value in [None] + bad:
                yield path, {**body, field: value}, field
    gn = "/messages/groups/notifications"
    for members in (5, "1,2", [1, -2], [1, "x"], [2**63], [CUSTOMER_ID_BASE], {"uid": 1}):
        yield gn, {**BODIES[gn], "members": members}, "members"


BAD = list(bad_cases())


@pytest.mark.parametrize("path,body,field", BAD,
                         ids=[f"{p.split('/', 2)[2]}-{f}-{i}" for i, (p, b, f) in enumerate(BAD)])
def test_bad_input_is_400_naming_the_field_and_queues_nothing(api, group, r, path, body, field):
    status, answer = api.post(path, body)
    assert_error(status, answer, 400, field, code=1001)
    assert r.keys("*") == []  # no queue item, no history


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("body", [None, [], "hi", 5])
def test_a_body_that_is_not_an_object_is_400(api, group, r, path, body):
    status, answer = api.post(path, body)
    assert_error(status, answer, 400)
    assert r.keys("*") == []  # no queue item, no history


def test_a_fractional_id_is_400(api, r):
    status, answer = api.post("/messages/peers", {"sender": 1.5, "receiver": 2, "content": "hi"})
    assert_error(status, answer, 400, "sender")
    assert r.llen(MESSAGE_QUEUE) == 0


# --- SPEC 5.1 / 6 promises around posting ---------------------------------------------------------

def post_keyed(api, key, how):
    """Post a peer message carrying an idempotency key in the header or as the msgid body field."""
    body = BODIES["/messages/peers"]
    if how == "msgid":
        return post_ok(api, "/messages/peers", {**body, "msgid": key})
    return post_ok(Api(api.client, {**api.headers, "Idempotency-Key": key}), "/messages/peers", body)


@pytest.mark.parametrize("how", ["header", "msgid"])
def test_a_retry_with_the_same_key_returns_the_first_id_and_queues_once(api, demo, r, how):
    first = post_keyed(api, "abc-123", how)
    assert post_keyed(api, "abc-123", how) == first
    assert [item["id"] for item in queue(r, MESSAGE_QUEUE)] == [first]
    assert r.llen(f"history_{demo['id']}_1") == r.llen(f"history_{demo['id']}_2") == 1


@pytest.mark.parametrize("how", ["header", "msgid"])
def test_different_keys_are_different_messages(api, r, how):
    ids = {post_keyed(api, "one", how), post_keyed(api, "two", how)}
    assert len(ids) == 2 and r.llen(MESSAGE_QUEUE) == 2


def test_the_same_key_in_two_apps_is_two_messages(api, client, other, r):
    ids = {post_keyed(api, "shared", "header"), post_keyed(Api(client, other["auth"]), "shared", "header")}
    assert len(ids) == 2 and r.llen(MESSAGE_QUEUE) == 2


@pytest.mark.parametrize("key", ["", "k" * 129])
def test_an_idempotency_key_of_a_bad_length_is_400(api, r, key):
    status, body = api.post("/messages/peers", BODIES["/messages/peers"], headers={"Idempotency-Key": key})
    assert_error(status, body, 400, "Idempotency-Key", code=1001)
    assert r.llen(MESSAGE_QUEUE) == 0


@pytest.mark.parametrize("path,body,owners", [
    ("/messages/peers", {"sender": 1, "receiver": 2, "content": "hi"}, [1, 2]),
    ("/messages/peers", {"sender": 0, "receiver": 2, "content": "hi"}, [2]),
    ("/messages/systems", {"receiver": 2, "content": "hi"}, [2]),
    ("/messages/notifications", {"receiver": 2, "content": "hi"}, [2]),
    ("/messages/groups", {"sender": 1, "receiver": GID, "content": "hi"}, [1]),
    ("/messages/groups/notifications", {"group_id": GID, "content": "hi"}, []),
    ("/messages/rooms", {"sender": 3, "receiver": 77, "content": "hi"}, [3]),
    ("/messages/rooms", {"sender": 0, "receiver": 77, "content": "hi"}, []),
], ids=["peer", "peer-from-system", "system", "notification", "group", "group-notification", "room", "room-system"])
def test_a_message_is_recorded_in_its_sender_and_receiving_users_histories(api, demo, group, r, path, body, owners):
    post_ok(api, path, body)
    [item] = r.lrange(MESSAGE_QUEUE, 0, -1)
    histories = {int(key.rsplit("_", 1)[1]): r.lrange(key, 0, -1) for key in r.keys(f"history_{demo['id']}_*")}
    assert histories == {uid: [item] for uid in owners}


def test_histories_are_newest_first_and_bounded(demo, r):
    bounded = Api(create_app({**TEST_CONFIG, "HISTORY_LENGTH": 3}).test_client(), demo["auth"])
    ids = [post_ok(bounded, "/messages/peers", {"sender": 1, "receiver": 2, "content": str(n)}) for n in range(5)]
    for uid in (1, 2):
        assert [json.loads(item)["id"] for item in r.lrange(f"history_{demo['id']}_{uid}", 0, -1)] == ids[:1:-1]
    assert r.llen(MESSAGE_QUEUE) == 5


def test_a_refused_post_adds_nothing_to_the_histories(small_queue, demo, r):
    for _ in range(3):
        post_ok(small_queue, "/messages/peers", BODIES["/messages/peers"])
    assert small_queue.post("/messages/peers", BODIES["/messages/peers"])[0] == 503
    assert r.llen(f"history_{demo['id']}_1") == r.llen(f"history_{demo['id']}_2") == 3


# --- POST /messages/peers/batch ------------------------------------------------------------------

BATCH = "/messages/peers/batch"


def batch_of(n):
    return [{"sender": 1, "receiver": 100 + i, "content": f"m{i}"} for i in range(n)]


def test_a_batch_queues_every_message_in_order_and_answers_their_ids(api, demo, r):
    status, body = api.post(BATCH, batch_of(3))
    assert status == 200, body
    items = queue(r, "im_message_queue")
    assert [i["id"] for i in items] == body["data"]["ids"] and len(set(body["data"]["ids"])) == 3
    assert [(i["kind"], i["sender"], i["receiver"], i["content"]) for i in items] == [
        ("peer", 1, 100 + n, f"m{n}") for n in range(3)]
    assert r.llen(f"history_{demo['id']}_1") == 3 and r.llen(f"history_{demo['id']}_102") == 1


@pytest.mark.parametrize("body, field", [
    ([], "messages"), (batch_of(501), "messages"),
    (batch_of(2) + [{"sender": 1, "receiver": -1, "content": "x"}], "messages.2.receiver"),
    ({"messages": "x"}, "messages"),
])
def test_a_bad_batch_is_400_naming_the_field_and_queues_nothing(api, r, body, field):
    status, answer = api.post(BATCH, body)
    assert_error(status, answer, 400, field)
    assert r.keys("*") == []


def test_a_retried_batch_queues_nothing_more(api, r):
    first = api.post(BATCH, batch_of(2), headers={"Idempotency-Key": "b-1"})
    assert api.post(BATCH, batch_of(2), headers={"Idempotency-Key": "b-1"}) == first
    assert len(queue(r, "im_message_queue")) == 2


def test_a_batch_to_a_full_queue_is_503_and_queues_nothing(small_queue, r):
    r.lpush("im_message_queue", *["x"] * 3)
    status, body = small_queue.post(BATCH, batch_of(2))
    assert_error(status, body, 503, code=7002)
    assert r.llen("im_message_queue") == 3


def test_a_batch_that_would_take_the_queue_past_its_bound_is_refused_whole(small_queue, r):
    r.lpush("im_message_queue", *["x"] * 2)
    status, body = small_queue.post(BATCH, batch_of(2))
    assert_error(status, body, 503, code=7002)
    assert r.lrange("im_message_queue", 0, -1) == ["x", "x"] and r.keys("history_*") == []
    status, body = small_queue.post(BATCH, batch_of(1))  # the last place is taken
    assert status == 200 and r.llen("im_message_queue") == 3 and len(r.keys("history_*")) == 2
