"""Every Redis key the bridge reads or writes, one function or constant each.

The bridge's own keys carry the queue's name as a hash tag, so a Redis Cluster keeps
each of them in the queue's slot and a script may touch the queue and them at once.
The router's keys are fixed by the router and cannot take hash tags.
"""

# The router's keys (GoBelieve im_service).
GROUP_STREAM = "group_manager_stream"
GROUPS_ACTIONS = "groups_actions"
RELATIONSHIP_STREAM = "relationship_stream"
FRIENDS_ACTIONS = "friends_actions"
SPEAK_FORBIDDEN = "speak_forbidden"  # a pub/sub channel
STREAM_MAXLEN = 100_000


def processing(queue: str) -> str:
    """Items taken from the queue and not yet acknowledged by the router."""
    return f"{{{queue}}}:processing"


def dead(queue: str) -> str:
    """Items the router refused for good, newest first."""
    return f"{{{queue}}}:dead"


def lease(message_queue: str) -> str:
    """Who may drain the queues now: one lease for all four, in the message queue's slot."""
    return f"{{{message_queue}}}:bridge_lease"
