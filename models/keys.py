"""Every Redis key name, one function each: the router's (SPEC 5.1) and the service's own.

The router's names are fixed by GoBelieve and take no hash tags. The service's own keys
carry the queue's name as a hash tag ({im_message_queue}:...), so that in a Redis Cluster
they share the slot of the queue they are written with, atomically.
"""

# The router's keys and hash fields.
TOKEN_PREFIX = "access_token_"  # the GRANT and REVOKE scripts build token keys from it


def token(access_token: str) -> str:
    """Hash: user_id, app_id, user_name of a client access token."""
    return TOKEN_PREFIX + access_token


def user(appid: int, uid: int) -> str:
    """Hash: the user's token, name, avatar, flags, do-not-disturb fields and device tokens."""
    return f"users_{appid}_{uid}"


def group_quiet_field(gid: int) -> str:
    return f"group_{gid}"


def peer_quiet_field(peer_uid: int) -> str:
    return f"peer_{peer_uid}"


def group_sync_field(gid: int) -> str:
    """The router's sync position of the user in a group (cleared when the user (re)joins)."""
    return f"group_sync_key_{gid}"


def quiet_groups(appid: int, uid: int) -> str:
    """Set: gids the user set do-not-disturb for."""
    return f"users_{appid}_{uid}_group_do_not_disturb"


def quiet_peers(appid: int, uid: int) -> str:
    """Set: peer uids the user set do-not-disturb for."""
    return f"users_{appid}_{uid}_peer_do_not_disturb"


def statistics_users(appid: int) -> str:
    """HyperLogLog of the app's users ever granted a token."""
    return f"statistics_users_{appid}"


def history(appid: int, uid: int) -> str:
    """List: the user's recent messages, newest first."""
    return f"history_{appid}_{uid}"


# The router's streams and channel, written by the bridge (bridge/).
GROUP_STREAM = "group_manager_stream"
GROUPS_ACTIONS = "groups_actions"
RELATIONSHIP_STREAM = "relationship_stream"
FRIENDS_ACTIONS = "friends_actions"
SPEAK_FORBIDDEN = "speak_forbidden"  # a pub/sub channel
STREAM_MAXLEN = 100_000


def supporter(seller_id: int) -> str:
    """Hash: a customer-service seller's status (online / offline)."""
    return f"supporters_{seller_id}"


# The service's own keys.
def idempotency(queue: str, appid: int, caller: str, key: str) -> str:
    """String: the first answer to a message post with this Idempotency-Key.

    caller is "server" or "client:<uid>": one namespace per caller, which a key cannot forge
    (the parts before the key have a fixed form)."""
    return f"{{{queue}}}:idempotency:{appid}:{caller}:{key}"


def rate_limit(name: str) -> str:
    """String: hits in the current window of a rate limit."""
    return f"rate_limit_{name}"


def relayed(queue: str) -> str:
    """String: the highest outbox seq pushed to the queue (models/outbox.py)."""
    return f"{{{queue}}}:relayed"


def posted(queue: str, message_id: int) -> str:
    """String: a message post's answer, kept a minute under its first message's id, so that a push
    redis-py resends after a timeout (its first copy having run) is not queued twice."""
    return f"{{{queue}}}:posted:{message_id}"


def redis_marker(tag: str = "im_api") -> str:
    """String: present while Redis holds what MySQL recorded (models/marker.py). In a cluster there
    is one in every slot, each with a hash tag of that slot."""
    return f"{{{tag}}}:redis_marker"


# The bridge's own keys, in the slot of the queue they belong to.
def processing(queue: str) -> str:
    """List: items the bridge took from the queue and the router has not acknowledged yet."""
    return f"{{{queue}}}:processing"


def taken(queue: str) -> str:
    """String: how many items the bridge has ever taken from the queue (a message's place among the events)."""
    return f"{{{queue}}}:taken"


def dead(queue: str) -> str:
    """List: items the router refused for good, newest first."""
    return f"{{{queue}}}:dead"


def lease(message_queue: str) -> str:
    """String: which bridge may drain the queues now (one lease for all four, in the message queue's slot)."""
    return f"{{{message_queue}}}:bridge_lease"
