"""The API's blueprints, one per resource, as the original gobelieve_api laid them out."""
from . import auth, group, message, ops, user

BLUEPRINTS = [auth.blp, user.blp, group.blp, message.blp, ops.blp]
