"""The router's Redis inputs: group and relationship events to its streams, user events to pub/sub."""
from models import keys

from .router_rpc import Malformed

# XADD the event and SET the chain position in one atomic step, unless the chain is already
# at or past this action_id: an event the router has been given is never written twice.
# Returns 1 written, 0 skipped (a repeat), 2 written over a malformed chain value.
# KEYS: stream, actions key. ARGV: maxlen, action_id, previous_action_id, field, value, ...
APPEND_EVENT = """
local written = 1
local current = redis.call('GET', KEYS[2])
if current then
  local last = string.match(current, '^%-?%d+:(%-?%d+)$')
  if last == nil then written = 2
  elseif tonumber(ARGV[2]) <= tonumber(last) then return 0 end
end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 4))
redis.call('SET', KEYS[2], ARGV[3] .. ':' .. ARGV[2])
return written
"""

GROUP_FIELDS = ("group_id", "member_id", "super", "mute")
RELATIONSHIP_FIELDS = ("uid", "friend_uid", "friend", "blacklist")
GROUP_EVENTS = {"group_create", "group_disband", "group_upgrade", "group_member_add", "group_member_remove",
                "group_member_mute"}
RELATIONSHIP_EVENTS = {"friend", "blacklist"}


def _int(item: dict, field: str, default: int | None = None) -> int:
    value = item.get(field, default)
    if isinstance(value, bool):
        value = int(value)
    if type(value) is not int:
        raise Malformed(f"{field} is not an integer: {value!r}")
    return value


def stream_entry(item: dict, names: set, fields: tuple) -> list[str]:
    """The XADD field/value list of an event, decimal strings, `app_id` as the router spells it."""
    if item.get("name") not in names:
        raise Malformed(f"unknown event {item.get('name')!r}")
    entry = ["action_id", str(_int(item, "action_id")), "previous_action_id", str(_int(item, "previous_action_id")),
             "name", item["name"], "app_id", str(_int(item, "appid"))]
    required = fields[0]  # group_id / uid; the rest are 0 where an event has none
    for field in fields:
        entry += [field, str(_int(item, field, None if field == required else 0))]
    return entry


def append_args(item: dict, names: set, fields: tuple) -> list:
    """ARGV of APPEND_EVENT for an event."""
    return [keys.STREAM_MAXLEN, _int(item, "action_id"), _int(item, "previous_action_id"),
            *stream_entry(item, names, fields)]


def forbidden_message(item: dict) -> str:
    """The speak_forbidden payload of a user_forbidden event: "<appid>,<uid>,<0|1>"."""
    forbidden = _int(item, "forbidden")
    if forbidden not in (0, 1):
        raise Malformed(f"forbidden is not 0 or 1: {forbidden!r}")
    return f"{_int(item, 'appid')},{_int(item, 'uid')},{forbidden}"
