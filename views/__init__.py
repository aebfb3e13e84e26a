"""The API's blueprints, one per resource, as the original gobelieve_api laid them out."""
from . import customer, group, media, message, ops, relationship, tokens, user

BLUEPRINTS = [tokens.blp, user.blp, relationship.blp, group.blp, message.blp, customer.blp, media.blp, ops.blp]
