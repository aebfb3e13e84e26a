"""Access tokens: the router's token hashes and the user hash's access_token field, and the
scripts that keep the two in step (grant, adopt, forget, revoke, resolve)."""
import secrets

from redis.cluster import RedisCluster

from . import keys
from .queue_items import USER_TOKEN_REVOKED, dumps, user_event
from .redis_io import in_order, run_script

# Get the user's token, or make the candidate its token; count the user. Also answer whether
# the token is new and the name the user hash holds, so the caller knows if MySQL needs a write.
# One round trip, atomic, so two concurrent grants for a new user agree on one token.
# ARGV[4] is the token keys' prefix (models/keys.py).
GRANT = """
local token, created = redis.call('HGET', KEYS[1], 'access_token'), 0
if not token or redis.call('EXISTS', ARGV[4] .. token) == 0 then
  token, created = ARGV[1], 1
  redis.call('HSET', KEYS[1], 'access_token', token)
  redis.call('HSET', ARGV[4] .. token, 'user_id', ARGV[2], 'app_id', ARGV[3], 'user_name', '')
end
redis.call('PFADD', KEYS[2], ARGV[2])
return {token, created, redis.call('HGET', KEYS[1], 'name')}
"""

# Delete the user's token and tell the router; 0 when the user had none. ARGV[2]: the token keys' prefix.
REVOKE = """
local token = redis.call('HGET', KEYS[1], 'access_token')
if not token then return 0 end
redis.call('DEL', ARGV[2] .. token)
redis.call('HDEL', KEYS[1], 'access_token')
redis.call('LPUSH', KEYS[2], ARGV[1])
return 1
"""

# Redis Cluster (docs/SCALING.md): the router's keys lie in different slots, so the scripts
# above become steps, each on one key. These two act on the user hash alone (adopt_token and
# forget_token use them on a single Redis too).
# Set the token field to ARGV[2] if it still holds ARGV[1] ('' for none); answer the field's
# value after, and the name.
CLAIM_TOKEN = """
local token = redis.call('HGET', KEYS[1], 'access_token') or ''
if token == ARGV[1] then token = ARGV[2]; redis.call('HSET', KEYS[1], 'access_token', token) end
return {token, redis.call('HGET', KEYS[1], 'name')}
"""
# Delete the token field if it still holds ARGV[1].
DROP_TOKEN = """
if redis.call('HGET', KEYS[1], 'access_token') == ARGV[1] then return redis.call('HDEL', KEYS[1], 'access_token') end
return 0
"""


def grant_token(r, appid: int, uid: int) -> tuple[str, bool, str | None]:
    """(the user's permanent token, whether it was made just now, the name the user hash holds)."""
    if isinstance(r, RedisCluster):
        return _grant_in_steps(r, appid, uid)
    token, created, name = run_script(r, GRANT, [keys.user(appid, uid), keys.statistics_users(appid)],
                                      [secrets.token_urlsafe(32), uid, appid, keys.TOKEN_PREFIX])
    return token, created == 1, name


def _grant_in_steps(r, appid: int, uid: int) -> tuple[str, bool, str | None]:
    """GRANT for a cluster: a new token's hash is complete before the user hash names it (the
    commit point), so the router never meets a token without its user; a lost race drops ours."""
    user_key = keys.user(appid, uid)
    token, name = r.hmget(user_key, "access_token", "name")
    created = not token or not r.exists(keys.token(token))
    if created:
        candidate = secrets.token_urlsafe(32)
        r.hset(keys.token(candidate), mapping={"user_id": uid, "app_id": appid, "user_name": ""})
        token, name = run_script(r, CLAIM_TOKEN, [user_key], [token or "", candidate])
        created = token == candidate
        if not created:  # a concurrent grant won: its token is the user's
            r.delete(keys.token(candidate))
    r.pfadd(keys.statistics_users(appid), uid)
    return token, created, name


def save_name(r, appid: int, uid: int, token: str, name: str) -> None:
    """The user's name in its hash and in its token's hash (user_name), where the router reads them."""
    steps = in_order(r)
    steps.hset(keys.token(token), "user_name", name)
    steps.hset(keys.user(appid, uid), "name", name)  # last: while it holds the old name, a grant redoes both
    steps.execute()


def adopt_token(r, appid: int, uid: int, candidate: str, recorded: str) -> None:
    """Make the recorded token the user's again in place of the one just made (Redis had lost it)."""
    steps = in_order(r)
    # The token's hash before the user hash names it; save_name names the token next.
    steps.hset(keys.token(recorded), mapping={"user_id": uid, "app_id": appid, "user_name": ""})
    steps.eval(CLAIM_TOKEN, 1, keys.user(appid, uid), candidate, recorded)
    steps.delete(keys.token(candidate))
    steps.execute()


def forget_token(r, appid: int, uid: int, token: str) -> None:
    """Undo a token made moments ago that was never handed out."""
    steps = in_order(r)
    steps.eval(DROP_TOKEN, 1, keys.user(appid, uid), token)  # first: then no grant hands the token out
    steps.delete(keys.token(token))
    steps.execute()


def revoke_token(r, user_event_queue: str, appid: int, uid: int) -> bool:
    """Delete the user's token at once and queue user_token_revoked; False when it had none."""
    event = dumps(user_event(USER_TOKEN_REVOKED, appid, uid))
    if isinstance(r, RedisCluster):
        return _revoke_in_steps(r, user_event_queue, appid, uid, event)
    return run_script(r, REVOKE, [keys.user(appid, uid), user_event_queue], [event, keys.TOKEN_PREFIX]) == 1


def _revoke_in_steps(r, user_event_queue: str, appid: int, uid: int, event: str) -> bool:
    """REVOKE for a cluster: the token hash goes first (the router stops accepting the token),
    then the event (the router drops its connections), and the user hash's field last: while it
    is there a retried revoke does every step again, and a grant replaces the dead token."""
    user_key = keys.user(appid, uid)
    token = r.hget(user_key, "access_token")
    if not token:
        return False
    r.delete(keys.token(token))
    r.lpush(user_event_queue, event)
    run_script(r, DROP_TOKEN, [user_key], [token])
    return True


def resolve_token(r, token: str) -> tuple[int, int, str] | None:
    """(appid, uid, user_name) of a client access token, or None when it is unknown."""
    uid, appid, name = r.hmget(keys.token(token), "user_id", "app_id", "user_name")
    if uid is None or appid is None:
        return None
    return int(appid), int(uid), name or ""
