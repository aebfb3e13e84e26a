"""/users/{uid}/friends and /users/{uid}/blacklist: the relationships the router enforces.

App servers make and end friendships (mutual) and manage any user's blacklist (one direction);
a client reads its own lists and manages its own blacklist.
"""
from functools import wraps

import marshmallow as ma
from flask.views import MethodView

from models import relationship as relationships
from models.db import get_db
from models.errors import BatchTooLarge, Forbidden, InvalidField, SelfRelationship

from . import schemas
from .authentication import caller, requires
from .common import Blueprint, ok, page, units
from .docs import UIDS, one_of, responds
from .fields import PageSchema, Schema, Uid, setting

blp = Blueprint("relationship", __name__, description="Friends and blacklists, enforced by the router")


class UidList(ma.fields.Field):
    """One uid or a list of uids; loads as a list."""

    one, many = Uid(), ma.fields.List(Uid())
    forms = (Uid(metadata={"example": 1002}),
             ma.fields.List(Uid(metadata={"example": 1002}), metadata={"example": [1002, 1003]}))

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, list):
            return self.many.deserialize(value, attr, data)
        return [self.one.deserialize(value, attr, data)]


class FriendsSchema(Schema):
    """{"friend_uid": uid} or [uid, ...]."""

    friend_uid = UidList(required=True)

    @ma.pre_load
    def wrap(self, data, **kwargs):
        return {"friend_uid": data} if isinstance(data, list) else data


class BlockSchema(Schema):
    """{"uid": uid} (the user to block) or [uid, ...]."""

    uid = UidList(required=True)

    @ma.pre_load
    def wrap(self, data, **kwargs):
        return {"uid": data} if isinstance(data, list) else data


def own_or_server(view):
    """A client may act only on its own lists (uid == the caller); an app server on any user's."""

    @wraps(view)
    def checked(*args, **kwargs):
        who = caller()
        if not who.is_server and kwargs["uid"] != who.uid:
            raise Forbidden("A client can only read or change its own friends and blacklist.")
        return view(*args, **kwargs)

    return checked


def targets(uid: int, given: list[int], field: str) -> list[int]:
    """The uids to befriend or block, once each: at least one, at most MAX_BATCH, never uid itself."""
    if not given:
        raise InvalidField(f"{field}: give at least one uid.")
    if len(given) > setting("MAX_BATCH"):
        raise BatchTooLarge(f"{field}: at most {setting('MAX_BATCH')} per request.")
    if uid in given:
        raise SelfRelationship(f"{field}: a user cannot be its own friend or block itself.")
    return list(dict.fromkeys(given))


def not_self(uid: int, other: int, field: str) -> None:
    if uid == other:
        raise SelfRelationship(f"{field}: a user cannot be its own friend or block itself.")


def change(write, *args) -> None:
    """A relationship write (models/relationship.py) in the unit of work, for the caller's app."""
    units().relationship_change(write, caller().appid, *args)


def listing(table: str, uid: int, args: dict, name: str):
    with get_db().cursor() as cur:
        total, found = relationships.page(cur, table, caller().appid, uid, args["after"], args["start"], args["count"])
    return ok(page(total, args["start"], name, found, "uid", args["count"]))


@blp.route("/users/<uid:uid>/friends")
class Friends(MethodView):
    @responds("user_friends_list", schemas.FriendPageSchema)
    @requires("any")
    @own_or_server
    @blp.arguments(PageSchema, location="query")
    def get(self, args, uid):
        """The user's friends by uid, paged: {total, start, count, friends: [{uid, timestamp}]}.

        `timestamp` is when the friendship began (seconds). A client may read its own list only
        (403 for another uid). Page with `?after=` (the previous page's `next`) or `?start=`."""
        return listing(relationships.FRIEND, uid, args, "friends")

    @responds("user_friends_add", errors=(SelfRelationship, BatchTooLarge), body=one_of(FriendsSchema, UIDS))
    @requires("server")
    @blp.arguments(FriendsSchema)
    def post(self, args, uid):
        """Make the user friends with each given uid (both directions); existing friendships stay as they are.

        The body is `{"friend_uid": 1002}`, `{"friend_uid": [1002, 1003]}` or the bare array
        `[1002, 1003]`, at most MAX_BATCH uids, never the user itself (400, code 3003). The `friend` table
        (which the router reads with `enable_friendship`) gets both rows, and one relationship
        event per direction made is queued in the same transaction."""
        friends = targets(uid, args["friend_uid"], "friend_uid")
        change(relationships.befriend, uid, friends)
        return ok()


@blp.route("/users/<uid:uid>/friends/<uid:fid>")
class Friend(MethodView):
    @responds("user_friend_remove", errors=(SelfRelationship,))
    @requires("server")
    def delete(self, uid, fid):
        """End the friendship of the user and fid (both directions); no friendship is not an error.

        Both `friend` rows go, with one relationship event per direction removed."""
        not_self(uid, fid, "fid")
        change(relationships.unfriend, uid, fid)
        return ok()


@blp.route("/users/<uid:uid>/blacklist")
class Blacklist(MethodView):
    @responds("user_blacklist_list", schemas.BlacklistPageSchema)
    @requires("any")
    @own_or_server
    @blp.arguments(PageSchema, location="query")
    def get(self, args, uid):
        """The users the user blocks, by uid, paged: {total, start, count, blacklist: [{uid, timestamp}]}.

        `timestamp` is when the block began (seconds). A client may read its own list only."""
        return listing(relationships.BLACKLIST, uid, args, "blacklist")

    @responds("user_blacklist_add", errors=(SelfRelationship, BatchTooLarge), body=one_of(BlockSchema, UIDS))
    @requires("any")
    @own_or_server
    @blp.arguments(BlockSchema)
    def post(self, args, uid):
        """The user blocks each given uid (one direction); a client blocks for itself only.

        The body is `{"uid": 1002}` (the one to block), `{"uid": [1002, 1003]}` or the bare array
        `[1002, 1003]`. The router, with `enable_blacklist`, then refuses their messages to the
        user. Blocking again is not an error; a relationship event is queued per new block."""
        blocked = targets(uid, args["uid"], "uid")
        change(relationships.block, uid, blocked)
        return ok()


@blp.route("/users/<uid:uid>/blacklist/<uid:bid>")
class Blocked(MethodView):
    @responds("user_blacklist_remove", errors=(SelfRelationship,))
    @requires("any")
    @own_or_server
    def delete(self, uid, bid):
        """The user unblocks bid; a client unblocks for itself only; not blocked is not an error.

        The `blacklist` row goes, with one relationship event."""
        not_self(uid, bid, "bid")
        change(relationships.unblock, uid, bid)
        return ok()
