"""Users: the `user` table, and the profile (name, avatar) in the user hashes the router reads
(settings and devices: setting.py; tokens: token.py)."""
from . import keys
from .db import defer

UPSERT_USER = """
INSERT INTO user (appid, uid, name) VALUES (%(appid)s, %(uid)s, %(name)s)
ON DUPLICATE KEY UPDATE name = IF(%(rename)s, VALUES(name), name)
"""

USER_COLUMNS = "uid, name, avatar, UNIX_TIMESTAMP(created_at) AS created_at, UNIX_TIMESTAMP(updated_at) AS updated_at"
SELECT_USER = f"SELECT {USER_COLUMNS} FROM user WHERE appid = %(appid)s AND uid = %(uid)s"
EXISTING_USERS = "SELECT uid FROM user WHERE appid = %(appid)s AND uid IN %(uids)s"
INSERT_USER = "INSERT IGNORE INTO user (appid, uid, name, avatar) VALUES (%(appid)s, %(uid)s, %(name)s, %(avatar)s)"
COUNT_USERS = "SELECT COUNT(*) AS n FROM user WHERE appid = %(appid)s"
PAGE_USERS = """
SELECT uid, name, avatar FROM user WHERE appid = %(appid)s AND uid > %(after)s
ORDER BY uid LIMIT %(count)s OFFSET %(start)s
"""
UPDATE_USER = """
UPDATE user SET name = COALESCE(%(name)s, name), avatar = COALESCE(%(avatar)s, avatar)
WHERE appid = %(appid)s AND uid = %(uid)s
"""
DELETE_USER = "DELETE FROM user WHERE appid = %(appid)s AND uid = %(uid)s"


def record_user(cur, appid: int, uid: int, name: str | None) -> None:
    """Make sure the user has a `user` row; set its name when one is given."""
    defer(cur, UPSERT_USER, {"appid": appid, "uid": uid, "name": name or "", "rename": name is not None})


def find_user(cur, appid: int, uid: int) -> dict | None:
    cur.execute(SELECT_USER, {"appid": appid, "uid": uid})
    return cur.fetchone()


def register_users(cur, appid: int, users: list[dict]) -> list[dict]:
    """Insert the users that do not exist yet; return which uids were new, in request order."""
    if not users:
        return []
    cur.execute(EXISTING_USERS, {"appid": appid, "uids": [u["uid"] for u in users]})
    taken = {row["uid"] for row in cur.fetchall()}
    results, created = [], []
    for user in users:
        results.append({"uid": user["uid"], "created": user["uid"] not in taken})
        if user["uid"] not in taken:
            taken.add(user["uid"])
            created.append({"appid": appid, "uid": user["uid"], "name": user.get("name") or "",
                            "avatar": user.get("avatar") or ""})
    if created:
        cur.executemany(INSERT_USER, created)
    return results


def users_page(cur, appid: int, start: int, count: int, after: int | None = None) -> tuple[int, list[dict]]:
    """(total, one page of the app's users by uid: `count` after uid `after`, skipping `start`)."""
    cur.execute(COUNT_USERS, {"appid": appid})
    total = cur.fetchone()["n"]
    cur.execute(PAGE_USERS, {"appid": appid, "start": start, "count": count, "after": -1 if after is None else after})
    return total, cur.fetchall()


def update_user(cur, appid: int, uid: int, fields: dict) -> bool:
    """Set the given profile fields (name, avatar); False when there is no such user."""
    return cur.execute(UPDATE_USER, {"appid": appid, "uid": uid, "name": None, "avatar": None, **fields}) > 0


def delete_user(cur, appid: int, uid: int) -> bool:
    return cur.execute(DELETE_USER, {"appid": appid, "uid": uid}) > 0


def forget_user(r, appid: int, uid: int) -> None:
    """Drop the deleted user's hash and do-not-disturb sets (the token went with revoke_token)."""
    r.delete(keys.user(appid, uid), keys.quiet_groups(appid, uid), keys.quiet_peers(appid, uid))


def save_profiles(r, appid: int, users: list[dict]) -> None:
    """Copy each {uid, name?, avatar?} into the user hash, where the router reads names for pushes."""
    pipe = r.pipeline(transaction=False)
    for user in users:
        profile = {key: user[key] for key in ("name", "avatar") if user.get(key) is not None}
        if profile:
            pipe.hset(keys.user(appid, user["uid"]), mapping=profile)
    pipe.execute()
