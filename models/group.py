"""Groups and members in MySQL (the tables the router loads), with the events each change queues.

Every change runs in the caller's transaction on a group that the unit of work
(models/unit_of_work.py) locked, so changes to one group commit one after another and queue in that order.
Functions take the cursor of that transaction (or of a plain read) first.
"""
import json
import time

import pymysql

from .db import defer, results, values
from .errors import CodeInUse, GroupIdInUse, GroupNotFound, MemberLimit, NotMember
from .queue_items import GROUP_CREATE, GROUP_DISBAND, GROUP_UPGRADE, MEMBER_MUTE, MEMBER_REMOVE, Changes

GROUP_COLUMNS = "id, appid, master, super, name, notice, cover, code, member_count"
# One group's columns as one JSON value: PyMySQL parses a description per column of a result
# (pure Python), and nine of them cost about as much as the query itself; every group change
# reads its group this way (tests/test_db.py checks it reads as the plain columns do).
GROUP_AS_JSON = "JSON_OBJECT(" + ", ".join(f"'{name}', {name}" for name in GROUP_COLUMNS.split(", ")) + ") AS json"
SELECT_GROUP = f"SELECT {GROUP_AS_JSON} FROM `group` WHERE id = %(gid)s AND appid = %(appid)s AND deleted = 0"
LOCK_GROUP = SELECT_GROUP + " FOR UPDATE"
INSERT_GROUP = """
INSERT INTO `group` (id, appid, master, super, name, notice, cover, code)
VALUES (%(id)s, %(appid)s, %(master)s, %(super)s, %(name)s, %(notice)s, %(cover)s, %(code)s)
"""
UPDATE_GROUP = """
UPDATE `group` SET name = COALESCE(%(name)s, name), notice = COALESCE(%(notice)s, notice),
  cover = COALESCE(%(cover)s, cover), master = COALESCE(%(master)s, master)
WHERE id = %(gid)s
"""
UPGRADE_GROUP = "UPDATE `group` SET super = 1 WHERE id = %(gid)s"
DISBAND_GROUP = "UPDATE `group` SET deleted = 1, member_count = 0 WHERE id = %(gid)s"
COUNT_MEMBERS_BY = "UPDATE `group` SET member_count = member_count + %(n)s WHERE id = %(gid)s"
DISBAND_MEMBERS = "UPDATE group_member SET deleted = 1 WHERE group_id = %(gid)s AND deleted = 0"

LOCK_GROUP_BY_CODE = f"""
SELECT {GROUP_AS_JSON} FROM `group` WHERE appid = %(appid)s AND live_code = %(code)s FOR UPDATE
"""
COUNT_APP_GROUPS = "SELECT COUNT(*) AS n FROM `group` WHERE appid = %(appid)s AND deleted = 0"
PAGE_APP_GROUPS = f"""
SELECT {GROUP_COLUMNS} FROM `group` WHERE appid = %(appid)s AND deleted = 0 AND id > %(after)s
ORDER BY id LIMIT %(count)s OFFSET %(start)s
"""
USER_GROUPS = """
SELECT g.id, g.appid, g.master, g.super, g.name, g.notice, g.cover, g.code, g.member_count
FROM group_member m JOIN `group` g ON g.id = m.group_id
WHERE m.uid = %(uid)s AND m.deleted = 0 AND g.appid = %(appid)s AND g.deleted = 0
ORDER BY g.id
"""
PAGE_MEMBERS = """
SELECT m.uid, COALESCE(u.name, '') AS name, m.nickname, m.mute, m.timestamp
FROM group_member m LEFT JOIN user u ON u.appid = %(appid)s AND u.uid = m.uid
WHERE m.group_id = %(gid)s AND m.deleted = 0 AND m.uid > %(after)s ORDER BY m.uid LIMIT %(count)s OFFSET %(start)s
"""
MEMBERS_OF_GROUPS = """
SELECT m.group_id, m.uid, COALESCE(u.name, '') AS name, m.nickname, m.mute, m.timestamp
FROM group_member m LEFT JOIN user u ON u.appid = %(appid)s AND u.uid = m.uid
WHERE m.group_id IN %(gids)s AND m.deleted = 0 ORDER BY m.group_id, m.uid
"""
LIVE_UIDS = "SELECT uid FROM group_member WHERE group_id = %(gid)s AND deleted = 0 ORDER BY uid"
# The same as one string: 100,000 rows parsed by PyMySQL cost 0.6 s under the group's lock, this 0.17 s.
LIVE_UIDS_JOINED = """
SELECT GROUP_CONCAT(uid ORDER BY uid) AS uids, SUM(LENGTH(uid)) + COUNT(*) - 1 AS length FROM group_member
WHERE group_id = %(gid)s AND deleted = 0
"""
LIVE_MEMBERS_AMONG = """
SELECT uid FROM group_member WHERE group_id = %(gid)s AND deleted = 0 AND uid IN %(uids)s
"""
# Two statements in one round trip: the second runs once the first holds the row lock.
LOCK_GROUP_ASKING = LOCK_GROUP + ";\n" + LIVE_MEMBERS_AMONG
# A removed member's row is revived, so the router's query sees exactly the live members.
UPSERT_MEMBERS = """
INSERT INTO group_member (group_id, uid, timestamp) VALUES {values}
ON DUPLICATE KEY UPDATE timestamp = VALUES(timestamp), nickname = '', mute = 0, deleted = 0
"""
MEMBER_ROW = "(%(gid)s, %(uid)s, %(timestamp)s)"
REMOVE_MEMBER = "UPDATE group_member SET deleted = 1 WHERE group_id = %(gid)s AND uid = %(uid)s"
SET_NICKNAME = "UPDATE group_member SET nickname = %(nickname)s WHERE group_id = %(gid)s AND uid = %(uid)s"
SET_MUTE = "UPDATE group_member SET mute = %(mute)s WHERE group_id = %(gid)s AND uid = %(uid)s"


def find_group(cur, appid: int, gid: int) -> dict:
    """The app's live group, or GroupNotFound."""
    cur.execute(SELECT_GROUP, {"gid": gid, "appid": appid})
    return _found(cur.fetchone())


def lock_group(cur, appid: int, gid: int, asking: list[int] = ()) -> dict:
    """The app's live group, row-locked until the transaction ends, or GroupNotFound.

    asking: uids whose membership the change will check (live_members_among). They are read
    under the lock in the same round trip, so a hot group's lock is held for one round trip less."""
    if not asking:
        cur.execute(LOCK_GROUP, {"gid": gid, "appid": appid})
        return _found(cur.fetchone())
    found, live = results(cur, LOCK_GROUP_ASKING, {"gid": gid, "appid": appid, "uids": list(asking)})
    group = _found(found[0] if found else None)
    group["live"] = dict.fromkeys(asking, False) | {row["uid"]: True for row in live}
    return group


def _key(after: int | None) -> int:
    """The keyset bound of a page: ids above it (-1: from the first)."""
    return -1 if after is None else after


def _found(row: dict | None, message: str | None = None) -> dict:
    """The group of a GROUP_AS_JSON row, or GroupNotFound."""
    if row is None:
        raise GroupNotFound(message)
    return json.loads(row["json"])


def public(group: dict) -> dict:
    """The group's own fields as the API shows them."""
    return {key: group[key] for key in ("id", "master", "name", "notice", "cover", "super", "code")}


def lock_group_by_code(cur, appid: int, code: str) -> dict:
    """The app's live group with that face-to-face code, row-locked, or GroupNotFound."""
    cur.execute(LOCK_GROUP_BY_CODE, {"appid": appid, "code": code})
    return _found(cur.fetchone(), "No group has that code.")


def app_groups(cur, appid: int, start: int, count: int, after: int | None = None) -> tuple[int, list[dict]]:
    """(total, one page of the app's live groups by id: the count after id `after`, skipping `start`)."""
    cur.execute(COUNT_APP_GROUPS, {"appid": appid})
    total = cur.fetchone()["n"]
    cur.execute(PAGE_APP_GROUPS, {"appid": appid, "start": start, "count": count, "after": _key(after)})
    return total, [public(g) for g in cur.fetchall()]


def user_groups(cur, appid: int, uid: int) -> list[dict]:
    """The app's live groups the user is a live member of, by id."""
    cur.execute(USER_GROUPS, {"appid": appid, "uid": uid})
    return cur.fetchall()


def members_page(cur, group: dict, start: int, count: int, after: int | None = None) -> list[dict]:
    """One page of the group's live members by uid: `count` after uid `after`, skipping `start`.

    Keyset paging (after=) costs the same on any page; start= is kept for the original's clients."""
    cur.execute(PAGE_MEMBERS, {"gid": group["id"], "appid": group["appid"], "start": start, "count": count,
                               "after": _key(after)})
    return cur.fetchall()


def members_of_groups(cur, appid: int, gids: list[int]) -> dict[int, list[dict]]:
    """Live members of several groups in one query: {gid: [member, ...]}."""
    found = {gid: [] for gid in gids}
    if gids:
        cur.execute(MEMBERS_OF_GROUPS, {"appid": appid, "gids": gids})
        for row in cur.fetchall():
            found[row.pop("group_id")].append(row)
    return found


def live_members_among(cur, group: dict, uids: list[int]) -> set[int]:
    """Those of uids who are live members of the group: as its lock read them (lock_group's
    asking), or read now."""
    asked = group.get("live", {})
    if all(uid in asked for uid in uids):
        return {uid for uid in uids if asked[uid]}
    cur.execute(LIVE_MEMBERS_AMONG, {"gid": group["id"], "uids": uids})
    return {row["uid"] for row in cur.fetchall()}


def _members_changed(group: dict) -> None:
    group.pop("live", None)  # what the lock read is out of date


def create_group(cur, changes: Changes, group: dict, new_members: list[dict], limit: int) -> int:
    """Insert the group and its members; queue group_create, member adds and a create notification."""
    if len(new_members) > limit:
        raise MemberLimit()
    try:
        cur.execute(INSERT_GROUP, group)
    except pymysql.IntegrityError as exc:
        raise CodeInUse() if "live_code" in str(exc) else GroupIdInUse() from exc
    group = {**group, "id": group["id"] or cur.lastrowid}
    changes.event(GROUP_CREATE, group, super=group["super"])
    _insert_members(cur, changes, group, new_members)
    changes.notify(group, "create", to=[m["uid"] for m in new_members], master=group["master"], name=group["name"],
                   super=group["super"],
                   members=[m["uid"] for m in new_members])
    return group["id"]


def add_members(cur, changes: Changes, group: dict, new_members: list[dict], inviter: dict | None,
                limit: int) -> None:
    """Add the members who are not live members yet."""
    live = live_members_among(cur, group, [m["uid"] for m in new_members])
    joining = [m for m in new_members if m["uid"] not in live]
    if not joining:
        return
    if group["member_count"] + len(joining) > limit:
        raise MemberLimit()
    _insert_members(cur, changes, group, joining)
    for member in joining:
        changes.notify(group, "add_member", to=[member["uid"]], group_name=group["name"], member_id=member["uid"],
                       **_profile(member), **({"inviter": inviter} if inviter else {}))


def _insert_members(cur, changes: Changes, group: dict, new_members: list[dict]) -> None:
    _members_changed(group)
    now = int(time.time())
    rows = [{"gid": group["id"], "uid": m["uid"], "timestamp": now} for m in new_members]
    if rows:
        defer(cur, UPSERT_MEMBERS.format(values=values(cur, MEMBER_ROW, rows)))
        defer(cur, COUNT_MEMBERS_BY, {"gid": group["id"], "n": len(rows)})
    for member in new_members:
        changes.join(group, member["uid"])


def remove_members(cur, changes: Changes, group: dict, leaving: list[dict]) -> None:
    """Soft-delete the given members who are live."""
    live = live_members_among(cur, group, [m["uid"] for m in leaving])
    removed = []
    _members_changed(group)
    for member in leaving:
        if member["uid"] in live and member["uid"] not in removed:
            defer(cur, REMOVE_MEMBER, {"gid": group["id"], "uid": member["uid"]})
            changes.event(MEMBER_REMOVE, group, member_id=member["uid"])
            changes.notify(group, "quit_group", to=[member["uid"]], group_name=group["name"],
                           member_id=member["uid"],
                           **_profile(member))
            removed.append(member["uid"])
    if removed:
        defer(cur, COUNT_MEMBERS_BY, {"gid": group["id"], "n": -len(removed)})


def leave_all_groups(cur, changes: Changes, appid: int, uid: int) -> None:
    """Remove the user from every group of the app, locking each group in id order as every change does."""
    for found in user_groups(cur, appid, uid):
        remove_members(cur, changes, lock_group(cur, appid, found["id"], [uid]), [{"uid": uid}])


def _profile(member: dict) -> dict:
    return {key: member[key] for key in ("name", "avatar") if member.get(key) is not None}


def update_group(cur, changes: Changes, group: dict, fields: dict) -> None:
    """Change name / notice / cover / master; members hear of a new name or notice."""
    defer(cur, UPDATE_GROUP, {"gid": group["id"], "name": None, "notice": None, "cover": None,
                               "master": None, **fields})
    if "name" in fields:
        changes.notify(group, "update_name", name=fields["name"])
    if "notice" in fields:
        changes.notify(group, "update_notice", notice=fields["notice"])


def disband_group(cur, changes: Changes, group: dict) -> None:
    """Soft-delete the group and its member rows: one group_disband, no per-member removes; the
    notification names the members, who see it even after the router dropped the group."""
    live_uids = _live_uids(cur, group["id"])
    _members_changed(group)
    defer(cur, DISBAND_GROUP, {"gid": group["id"]})
    defer(cur, DISBAND_MEMBERS, {"gid": group["id"]})
    changes.event(GROUP_DISBAND, group)
    changes.notify(group, "disband", to=live_uids, name=group["name"])


def _live_uids(cur, gid: int) -> list[int]:
    """Every live member's uid, ascending."""
    cur.execute(LIVE_UIDS_JOINED, {"gid": gid})
    joined = cur.fetchone()
    if joined["uids"] is None:
        return []
    if len(joined["uids"]) == joined["length"]:  # not cut at group_concat_max_len
        return [int(uid) for uid in joined["uids"].split(",")]
    cur.execute(LIVE_UIDS, {"gid": gid})
    return [row["uid"] for row in cur.fetchall()]


def upgrade_group(cur, changes: Changes, group: dict) -> None:
    """Make a normal group a super group (a super group stays as it is)."""
    if group["super"]:
        return
    defer(cur, UPGRADE_GROUP, {"gid": group["id"]})
    changes.event(GROUP_UPGRADE, group, super=1)
    changes.notify(group, "upgrade", super=1)


def require_member(cur, group: dict, uid: int) -> None:
    """NotMember unless uid is a live member of the group."""
    if not live_members_among(cur, group, [uid]):
        raise NotMember()


def set_nickname(cur, changes: Changes, group: dict, uid: int, nickname: str) -> None:
    defer(cur, SET_NICKNAME, {"gid": group["id"], "uid": uid, "nickname": nickname})
    changes.notify(group, "update_member_nickname", member_id=uid, nickname=nickname)


def set_mute(cur, changes: Changes, group: dict, uid: int, mute: bool) -> None:
    defer(cur, SET_MUTE, {"gid": group["id"], "uid": uid, "mute": int(mute)})
    changes.event(MEMBER_MUTE, group, member_id=uid, mute=int(mute))
