"""Users: the `user` table, and the Redis hashes the router reads (tokens, settings, devices)."""
import secrets
import time

from .queue import dumps, run_script, user_event

UPSERT_USER = """
INSERT INTO user (appid, uid, name) VALUES (%(appid)s, %(uid)s, %(name)s)
ON DUPLICATE KEY UPDATE name = IF(%(rename)s, VALUES(name), name)
"""

# Get the user's token, or make the candidate its token; keep user_name up to date.
# One round trip, atomic, so two concurrent grants for a new user agree on one token.
GRANT = """
local token = redis.call('HGET', KEYS[1], 'access_token')
if not token or redis.call('EXISTS', 'access_token_' .. token) == 0 then
  token = ARGV[1]
  redis.call('HSET', KEYS[1], 'access_token', token)
  redis.call('HSET', 'access_token_' .. token, 'user_id', ARGV[2], 'app_id', ARGV[3], 'user_name', ARGV[4])
elseif ARGV[5] == '1' then
  redis.call('HSET', 'access_token_' .. token, 'user_name', ARGV[4])
end
if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'name', ARGV[4]) end
redis.call('PFADD', KEYS[2], ARGV[2])
return token
"""

# Delete each (field, value, timestamp field) triple whose field still holds value.
UNBIND = """
for i = 1, #ARGV, 3 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i], ARGV[i + 2])
  end
end
return 0
"""


def user_key(appid: int, uid: int) -> str:
    return f"users_{appid}_{uid}"


def flag(on: bool) -> str:
    return "1" if on else "0"


def record_user(cur, appid: int, uid: int, name: str | None) -> None:
    """Make sure the user has a `user` row; set its name when one is given."""
    cur.execute(UPSERT_USER, {"appid": appid, "uid": uid, "name": name or "", "rename": name is not None})


def grant_token(r, appid: int, uid: int, name: str | None) -> str:
    """The user's permanent access token, created on first use."""
    keys = [user_key(appid, uid), f"statistics_users_{appid}"]
    args = [secrets.token_urlsafe(32), uid, appid, name or "", flag(name is not None)]
    return run_script(r, GRANT, keys, args)


def resolve_token(r, token: str) -> tuple[int, int] | None:
    """(appid, uid) of a client access token, or None when it is unknown."""
    uid, appid = r.hmget(f"access_token_{token}", "user_id", "app_id")
    if uid is None or appid is None:
        return None
    return int(appid), int(uid)


def save_settings(r, appid: int, uid: int, settings: dict, user_event_queue: str) -> None:
    """Write name / do_not_disturb / mute / forbidden in one MULTI; queue user_forbidden."""
    key = user_key(appid, uid)
    pipe = r.pipeline(transaction=True)
    if "name" in settings:
        pipe.hset(key, "name", settings["name"])
    if "do_not_disturb" in settings:
        peer, on = settings["do_not_disturb"]["peer_uid"], settings["do_not_disturb"]["on"]
        pipe.hset(key, f"peer_{peer}", flag(on))
        if on:
            pipe.sadd(f"{key}_peer_do_not_disturb", peer)
        else:
            pipe.srem(f"{key}_peer_do_not_disturb", peer)
    if "mute" in settings:
        pipe.hset(key, "mute", flag(settings["mute"]))
    if "forbidden" in settings:
        forbidden = int(settings["forbidden"])
        pipe.hset(key, "forbidden", forbidden)
        pipe.lpush(user_event_queue, dumps(user_event("user_forbidden", appid, uid, forbidden=forbidden)))
    pipe.execute()


def set_group_quiet(r, appid: int, uid: int, gid: int, quiet: bool) -> None:
    """The member's do-not-disturb flag for one group (the seeds' "quiet")."""
    key = user_key(appid, uid)
    pipe = r.pipeline(transaction=True)
    pipe.hset(key, f"group_{gid}", flag(quiet))
    if quiet:
        pipe.sadd(f"{key}_group_do_not_disturb", gid)
    else:
        pipe.srem(f"{key}_group_do_not_disturb", gid)
    pipe.execute()


def clear_group_sync_keys(r, joined: list[tuple[int, int, int]]) -> None:
    """Forget the router's sync position in a group for members who (re)joined it."""
    if joined:
        pipe = r.pipeline(transaction=False)
        for appid, gid, uid in joined:
            pipe.hdel(user_key(appid, uid), f"group_sync_key_{gid}")
        pipe.execute()


def bind_devices(r, appid: int, uid: int, tokens: dict) -> None:
    """Store device tokens ({"apns_device_token": ...}) with their <kind>_timestamp."""
    now = int(time.time())
    fields = {}
    for field, value in tokens.items():
        fields[field] = value
        fields[field.replace("_device_token", "_timestamp")] = now
    r.hset(user_key(appid, uid), mapping=fields)


def unbind_devices(r, appid: int, uid: int, tokens: dict) -> None:
    """Remove each given device token, but only where it is still the bound one."""
    args = []
    for field, value in tokens.items():
        args += [field, value, field.replace("_device_token", "_timestamp")]
    run_script(r, UNBIND, [user_key(appid, uid)], args)
