"""Users: the `user` table, and the user hashes the router reads (profile, settings, devices; tokens: token.py)."""
from . import keys
from .db import defer
from .queue_items import USER_FORBIDDEN, dumps, user_event
from .redis_io import in_order, run_script

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

# Delete each (field, value, timestamp field) triple whose field still holds value.
UNBIND = """
for i = 1, #ARGV, 3 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i], ARGV[i + 2])
  end
end
return 0
"""


def flag(on: bool) -> str:
    return "1" if on else "0"


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


def settings(r, appid: int, uid: int) -> dict:
    """The user's forbidden, mute and notification_on flags as booleans (notification_on: on unless "0")."""
    forbidden, mute, notification_on = r.hmget(keys.user(appid, uid), "forbidden", "mute", "notification_on")
    return {"forbidden": forbidden == "1", "mute": mute == "1", "notification_on": notification_on != "0"}


def save_settings(r, user_event_queue: str, appid: int, uid: int, settings: dict) -> None:
    """Write name / do_not_disturb / mute / notification_on / forbidden; queue user_forbidden.

    In order: the token hash and the quiet-peers set, then every user hash field at once (what
    GET /users answers from), then the event (the router, told, reads a hash that already holds
    the change). Each step repeats harmlessly on a retry."""
    key = keys.user(appid, uid)
    token = r.hget(key, "access_token") if "name" in settings else None
    steps = in_order(r)
    if token:  # the token's user_name too, as a grant with a new name would
        steps.hset(keys.token(token), "user_name", settings["name"])
    fields = {"name": settings["name"]} if "name" in settings else {}
    if "do_not_disturb" in settings:
        peer, on = settings["do_not_disturb"]["peer_uid"], settings["do_not_disturb"]["on"]
        (steps.sadd if on else steps.srem)(keys.quiet_peers(appid, uid), peer)
        fields[keys.peer_quiet_field(peer)] = flag(on)
    for name in ("mute", "notification_on"):
        if name in settings:
            fields[name] = flag(settings[name])
    if "forbidden" in settings:
        fields["forbidden"] = int(settings["forbidden"])
    if fields:
        steps.hset(key, mapping=fields)
    if "forbidden" in settings:
        event = user_event(USER_FORBIDDEN, appid, uid, forbidden=int(settings["forbidden"]))
        steps.lpush(user_event_queue, dumps(event))
    steps.execute()


def set_group_quiet(r, appid: int, uid: int, gid: int, quiet: bool) -> None:
    """The member's do-not-disturb flag for one group (the seeds' "quiet")."""
    steps = in_order(r)
    (steps.sadd if quiet else steps.srem)(keys.quiet_groups(appid, uid), gid)
    steps.hset(keys.user(appid, uid), keys.group_quiet_field(gid), flag(quiet))  # what GET /groups?fields=quiet reads
    steps.execute()


def group_quiet(r, appid: int, uid: int, gids: list[int]) -> dict[int, int]:
    """The user's quiet flag (0/1) for each group."""
    if not gids:
        return {}
    values = r.hmget(keys.user(appid, uid), [keys.group_quiet_field(gid) for gid in gids])
    return {gid: int(value == "1") for gid, value in zip(gids, values)}


def bind_devices(r, appid: int, uid: int, tokens: dict, now: int) -> None:
    """Store device tokens ({"apns_device_token": ...}) with their <kind>_timestamp (now)."""
    fields = {}
    for field, value in tokens.items():
        fields[field] = value
        fields[field.replace("_device_token", "_timestamp")] = now
    r.hset(keys.user(appid, uid), mapping=fields)


def unbind_devices(r, appid: int, uid: int, tokens: dict) -> None:
    """Remove each given device token, but only where it is still the bound one."""
    args = []
    for field, value in tokens.items():
        args += [field, value, field.replace("_device_token", "_timestamp")]
    run_script(r, UNBIND, [keys.user(appid, uid)], args)


def unread(r, appid: int, uid: int) -> int:
    """The router-owned unread badge count of the user."""
    return int(r.hget(keys.user(appid, uid), "unread") or 0)
