"""Causal order through the bridge (SPEC 7): no message reaches the router before the change it follows.

The router stand-in applies stream entries the way stock im does: in a thread of its own,
APPLY_DELAY after each was added; `group_create` makes an empty group and each member add adds
one member; a group message goes to the members it holds when the RPC arrives. Changes and
messages go in through the API, at once, as an app server makes them, with the bridge running.
"""
import time

import pytest
from bridge_process import drained, redis_kwargs_of, starter
from helpers import assert_ok, rows, wait_for
from router_standin import ForbiddenListener, StreamReader

from models.connection import mysql_connect_args

APPLY_DELAY = 0.02  # seconds from a stream entry's XADD to its effect in the stand-in
GROUPS = 1000  # created and messaged at once
CHANGED = 300  # groups changed, pairs befriended, then messaged at once


@pytest.fixture
def im(app, r, db, router):
    """The stand-in's group cache, relationship cache and ban list, attached to its RPC, with friendship
    and ban checks on; both chains start where MySQL's counters are (a router that saw every event)."""
    counters = {row["name"]: row["value"] for row in rows(db, "SELECT name, value FROM sequence")}
    r.set("groups_actions", f"{counters['group_action'] - 1}:{counters['group_action']}")
    r.set("friends_actions", f"{counters['relationship_action'] - 1}:{counters['relationship_action']}")
    redis_kwargs, mysql_kwargs = redis_kwargs_of(app), mysql_connect_args(app.config)
    groups = StreamReader(redis_kwargs, mysql_kwargs, apply_delay=APPLY_DELAY)
    relationships = StreamReader(redis_kwargs, mysql_kwargs, stream="relationship_stream",
                                 actions="friends_actions", apply_delay=APPLY_DELAY)
    banned = ForbiddenListener(redis_kwargs, apply_delay=APPLY_DELAY)
    router.attach(groups, relationships, banned, friend_checks=True, forbidden_checks=True)
    yield router
    for part in (groups, relationships, banned):
        part.close()
    lags = sorted(groups.lags + relationships.lags)
    if lags:
        print(f"figure: stand-in apply lag median {lags[len(lags) // 2] * 1000:.1f} ms, max {lags[-1] * 1000:.1f} ms")
    assert groups.gaps == [] and relationships.gaps == []  # no reload from MySQL covered a race up


@pytest.fixture
def bridge(app, r, im, tmp_path):
    with starter(app, im.url, tmp_path) as start:
        yield start(BRIDGE_RPC_TIMEOUT=10).wait_active()  # the stand-in's checks read MySQL: no retry meanwhile


def members_of(n: int) -> list[int]:
    return [3 * n + 1, 3 * n + 2, 3 * n + 3]


def settled(r, router) -> None:
    """Wait until the bridge delivered everything and the stand-in applied every stream entry."""
    names = ("im_message_queue", "group_event_queue", "relationship_event_queue", "user_event_queue")
    try:
        wait_for(lambda: drained(r, *names), 60, "the queues to drain")
    except BaseException:
        print({n: (r.llen(n), r.llen(f"{{{n}}}:processing"), r.llen(f"{{{n}}}:dead")) for n in names})
        raise
    last = int(r.get("groups_actions").split(":")[1]) if r.get("groups_actions") else 0
    assert router.groups.wait_for(last, 30)
    time.sleep(APPLY_DELAY * 3)


def missing(router, appid: int, expected: dict) -> dict:
    """Per uid, the expected contents it did not receive."""
    gaps = {}
    for uid, contents in expected.items():
        got = set(router.received(appid, uid))
        lost = [c for c in contents if c not in got]
        if lost:
            gaps[uid] = lost
    return gaps


def test_groups_created_and_messaged_at_once_reach_every_member(api, demo, r, im, bridge):
    im.delay(0.005, when=lambda q: q.path == "/post_group_message")  # so that deliveries can overlap
    expected = {}
    for n in range(GROUPS):
        gid = assert_ok(*api.post("/groups", {"master": members_of(n)[0], "name": f"g{n}",
                                              "members": members_of(n)}))["group_id"]
        assert_ok(*api.post("/messages/groups", {"sender": members_of(n)[0], "receiver": gid,
                                                 "content": f"welcome {gid}"}))
        for uid in members_of(n):
            expected[uid] = [f"welcome {gid}"]
    wait_for(lambda: len(im.taken("/post_group_message")) == GROUPS, 120, "every group message")
    settled(r, im)
    lost = missing(im, demo["id"], expected)
    print(f"figure: {len(lost)} of {3 * GROUPS} members missed their group's first message")
    assert lost == {}
    assert im.max_in_flight > 1, "messages of different groups did not overlap"


def make_groups(api, count: int) -> list[int]:
    return [assert_ok(*api.post("/groups", {"master": members_of(n)[0], "name": f"g{n}",
                                            "members": members_of(n)}))["group_id"] for n in range(count)]


def test_a_member_added_then_messaged_at_once_gets_the_message(api, demo, r, im, bridge):
    gids = make_groups(api, CHANGED)
    for gid, n in zip(gids, range(CHANGED)):  # each group is in the router's cache, as after any message
        assert_ok(*api.post("/messages/groups", {"sender": members_of(n)[0], "receiver": gid, "content": "before"}))
    settled(r, im)
    for gid, n in zip(gids, range(CHANGED)):
        newcomer = 10_000 + n
        assert_ok(*api.post(f"/groups/{gid}/members", [newcomer]))
        assert_ok(*api.post("/messages/groups", {"sender": members_of(n)[0], "receiver": gid,
                                                 "content": f"hi newcomer {gid}"}))
    settled(r, im)
    expected = {10_000 + n: [f"hi newcomer {gid}"] for gid, n in zip(gids, range(CHANGED))}
    lost = missing(im, demo["id"], expected)
    print(f"figure: {len(lost)} of {CHANGED} members added then messaged at once missed the message")
    assert lost == {}


def test_a_member_removed_then_messaged_at_once_gets_nothing(api, demo, r, im, bridge):
    gids = make_groups(api, CHANGED)
    for gid, n in zip(gids, range(CHANGED)):
        assert_ok(*api.post("/messages/groups", {"sender": members_of(n)[0], "receiver": gid, "content": "before"}))
    settled(r, im)
    for gid, n in zip(gids, range(CHANGED)):
        assert_ok(*api.delete(f"/groups/{gid}/members/{members_of(n)[2]}"))
        assert_ok(*api.post("/messages/groups", {"sender": members_of(n)[0], "receiver": gid,
                                                 "content": f"after {gid}"}))
    settled(r, im)
    leaked = [n for gid, n in zip(gids, range(CHANGED)) if f"after {gid}" in im.received(demo["id"], members_of(n)[2])]
    print(f"figure: {len(leaked)} of {CHANGED} removed members got the message sent right after their removal")
    assert leaked == []
    stayed = {uid: [f"after {gid}"] for gid, n in zip(gids, range(CHANGED)) for uid in members_of(n)[:2]}
    assert missing(im, demo["id"], stayed) == {}


def test_a_peer_message_right_after_a_friend_add_is_delivered(api, demo, r, im, bridge):
    pairs = [(2 * n + 1, 2 * n + 2) for n in range(CHANGED)]
    for a, b in pairs:  # strangers: refused, and the router now holds each pair as strangers
        assert_ok(*api.post("/messages/peers", {"sender": a, "receiver": b, "content": f"stranger {a}"}))
    wait_for(lambda: len({q.text for q in im.refused}) == len(pairs), 60, "the strangers' messages to be refused")
    settled(r, im)
    for a, b in pairs:
        assert_ok(*api.post(f"/users/{a}/friends", {"friend_uid": [b]}))
        assert_ok(*api.post("/messages/peers", {"sender": a, "receiver": b, "content": f"friend {a}"}))
    settled(r, im)
    lost = missing(im, demo["id"], {b: [f"friend {a}"] for a, b in pairs})
    print(f"figure: {len(lost)} of {len(pairs)} messages right after a friend add refused")
    assert lost == {}
    assert {q.text for q in im.refused} == {f"stranger {a}" for a, _ in pairs}


def test_the_next_message_after_a_ban_is_lifted_is_delivered(api, demo, r, im, bridge):
    im.friend_checks = False  # strangers may talk here: only the ban is checked
    users = range(1, 201)
    for uid in users:
        assert_ok(*api.post(f"/users/{uid}", {"forbidden": True}))
    wait_for(lambda: len(im.forbidden.messages) == len(users), 30, "the bans")
    for uid in users:
        assert_ok(*api.post(f"/users/{uid}", {"forbidden": False}))
        assert_ok(*api.post("/messages/peers", {"sender": uid, "receiver": 1000, "content": f"free {uid}"}))
    settled(r, im)
    wait_for(lambda: len(im.forbidden.messages) == 2 * len(users), 30, "the lifts")
    got = set(im.received(demo["id"], 1000))
    lost = [uid for uid in users if f"free {uid}" not in got]
    print(f"figure: {len(lost)} of {len(users)} first messages after a lifted ban refused")
    assert lost == []



def test_messages_of_groups_waiting_for_their_events_still_go_concurrently(app, api, demo, r, im, tmp_path):
    im.delay(0.2, when=lambda q: q.path == "/post_group_message")
    gids = make_groups(api, 100)  # queued before the bridge starts: all fresh at once
    for gid, n in zip(gids, range(100)):
        assert_ok(*api.post("/messages/groups", {"sender": members_of(n)[0], "receiver": gid, "content": f"m {gid}"}))
    with starter(app, im.url, tmp_path) as start:
        start().wait_active()
        wait_for(lambda: len(im.taken("/post_group_message")) == 100, 60, "the 100 messages")
        settled(r, im)
    print(f"figure: {im.max_in_flight} group messages in flight at once")
    assert im.max_in_flight >= 10  # 100 RPCs of 0.2 s each, released as their events are written: they overlap
    expected = {uid: [f"m {gid}"] for gid, n in zip(gids, range(100)) for uid in members_of(n)}
    assert missing(im, demo["id"], expected) == {}
