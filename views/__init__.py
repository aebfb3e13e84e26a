"""The API's blueprints, one per resource, as the original gobelieve_api laid them out."""
from . import auth, customer, group, media, message, ops, relationship, user

BLUEPRINTS = [auth.blp, user.blp, relationship.blp, group.blp, message.blp, customer.blp, media.blp, ops.blp]
