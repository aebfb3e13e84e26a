"""The router's Redis inputs: group and relationship events to its streams, user events to pub/sub."""
from models import keys
from models.queue_items import GROUP_EVENTS, RELATIONSHIP_EVENTS
from models.router import Malformed

# For each event in turn, XADD it and SET the chain position, unless the chain is already at or
# past its action_id: an event the router has been given is never written twice. One atomic step
# for a run of events. Per event: 1 written, 0 skipped (a repeat), 2 written over a malformed
# chain value. KEYS: stream, actions key. ARGV: maxlen, then per event: action_id,
# previous_action_id, the number of field/value strings, those strings.
APPEND_EVENTS = """
local results, i = {}, 2
while i <= #ARGV do
  local action, previous, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local written = 1
  local current = redis.call('GET', KEYS[2])
  if current then
    local last = string.match(current, '^%-?%d+:(%-?%d+)$')
    if last == nil then written = 2
    elseif tonumber(action) <= tonumber(last) then written = 0 end
  end
  if written ~= 0 then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, i + 3, i + 2 + n))
    redis.call('SET', KEYS[2], previous .. ':' .. action)
  end
  results[#results + 1] = written
  i = i + 3 + n
end
return results
"""

GROUP_FIELDS = ("group_id", "member_id", "super", "mute")
RELATIONSHIP_FIELDS = ("uid", "friend_uid", "friend", "blacklist")


def _int(item: dict, field: str, default: int | None = None) -> int:
    value = item.get(field, default)
    if isinstance(value, bool):
        value = int(value)
    if type(value) is not int:
        raise Malformed(f"{field} is not an integer: {value!r}")
    return value


def stream_entry(item: dict, names: tuple, fields: tuple) -> list[str]:
    """The XADD field/value list of an event, decimal strings, `app_id` as the router spells it."""
    if item.get("name") not in names:
        raise Malformed(f"unknown event {item.get('name')!r}")
    entry = ["action_id", str(_int(item, "action_id")), "previous_action_id", str(_int(item, "previous_action_id")),
             "name", item["name"], "app_id", str(_int(item, "appid"))]
    required = fields[0]  # group_id / uid; the rest are 0 where an event has none
    for field in fields:
        entry += [field, str(_int(item, field, None if field == required else 0))]
    return entry


# The queue roles whose events go to a stream: (stream, chain position key, event names, fields).
STREAMS = {"group_events": (keys.GROUP_STREAM, keys.GROUPS_ACTIONS, GROUP_EVENTS, GROUP_FIELDS),
           "relationship_events": (keys.RELATIONSHIP_STREAM, keys.FRIENDS_ACTIONS, RELATIONSHIP_EVENTS,
                                   RELATIONSHIP_FIELDS)}


def event_args(item: dict, role: str) -> list:
    """An event's part of APPEND_EVENTS's ARGV; Malformed if it cannot go to the stream."""
    if not isinstance(item, dict):
        raise Malformed("not a JSON object")
    _, _, names, fields = STREAMS[role]
    entry = stream_entry(item, names, fields)
    return [_int(item, "action_id"), _int(item, "previous_action_id"), len(entry), *entry]


def appendable(item, role: str) -> bool:
    """Whether an event can go to its stream with others in one step (else it goes alone, and a
    malformed one is dead-lettered)."""
    try:
        event_args(item, role)
    except Malformed:
        return False
    return True


def forbidden_message(item: dict) -> str:
    """The speak_forbidden payload of a user_forbidden event: "<appid>,<uid>,<0|1>"."""
    forbidden = _int(item, "forbidden")
    if forbidden not in (0, 1):
        raise Malformed(f"forbidden is not 0 or 1: {forbidden!r}")
    return f"{_int(item, 'appid')},{_int(item, 'uid')},{forbidden}"
