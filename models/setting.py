"""A user's settings in the router's user hash `users_<appid>_<uid>`: the forbidden, mute and
notification_on flags, peer and group do-not-disturb, device tokens, and the router's unread badge.

Their MySQL record is models/record.py's; a view writes the record first and these after.
"""
from . import keys
from .queue_items import USER_FORBIDDEN, dumps, user_event
from .redis_io import in_order, run_script

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


def flags(r, appid: int, uid: int) -> dict:
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
