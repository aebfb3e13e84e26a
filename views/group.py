"""/groups: groups and their members, for app servers (S) and for members' clients (C)."""
import flask
import marshmallow as ma
from flask import request
from flask.views import MethodView

from models import group as groups
from models import idempotency
from models import record as records
from models.db import get_db, transaction
from models.errors import (
    BatchTooLarge,
    CodeInUse,
    Forbidden,
    GroupIdInUse,
    GroupNotFound,
    InvalidField,
    MasterMustTransfer,
    MemberLimit,
    NotMaster,
    NotMember,
    RateLimited,
)
from models.ratelimit import forgive, retry_after
from models.redis_client import get_redis
from models.replicas import get_replica_db
from models.setting import group_quiet, set_group_quiet

from . import schemas
from .authentication import Caller, caller, requires
from .common import Blueprint, idempotency_scope, ok, page, units
from .docs import UID, listed, one_of, responds
from .fields import (
    Id,
    Integer,
    List,
    MemberField,
    MemberSchema,
    OneOrMoreSchema,
    PageSchema,
    Schema,
    Text,
    Uid,
    setting,
)

blp = Blueprint("group", __name__, description="Groups and members")


def route(path: str):
    """Serve a view at its path, /groups..., and at the original client API's alias /client/groups....

    The alias is added as a plain Flask rule, so the OpenAPI document shows each operation once."""

    def decorator(view):
        blp.route(path)(view)
        endpoint = "Client" + view.__name__
        flask.Blueprint.add_url_rule(blp, "/client" + path, endpoint, view.as_view(endpoint))
        return view

    return decorator


class InviterSchema(Schema):
    uid = Uid(required=True)
    name = Text(allow_none=True)


class MembersSchema(Schema):
    """A member list in any of the original's forms: [uid, ...], [{uid, name, avatar}, ...],
    {"members": [...], "inviter": {uid, name}} or one {uid, name, avatar}."""

    example = {"members": [1002, {"uid": 1003, "name": "Carol"}], "inviter": {"uid": 1001, "name": "Alice"}}

    members = List(MemberField(), required=True)
    inviter = ma.fields.Nested(InviterSchema, allow_none=True,
                               metadata={"description": "who invited them, for the group notification"})

    @ma.pre_load
    def wrap(self, data, **kwargs):
        if isinstance(data, list):
            return {"members": data}
        if isinstance(data, dict) and "members" not in data and "uid" in data:
            return {"members": [data]}
        return data


class GroupCreateSchema(Schema):
    example = {"master": 1001, "name": "Weekend hiking", "members": [1001, 1002, {"uid": 1003, "name": "Carol"}],
               "notice": "Saturday 9:00 at the north gate"}

    master = Uid(required=True)
    name = Text(required=True, metadata={"example": "Weekend hiking"})
    super = ma.fields.Boolean(load_default=False)
    members = List(MemberField(), load_default=list)
    # Chosen ids stay below 2**53 so the table's AUTO_INCREMENT always has room above them.
    group_id = Id(maximum=2**53 - 1, allow_none=True)
    notice = Text(load_default="")
    cover = Text(load_default="")
    code = Text(64, load_default=None, metadata={"description": "face-to-face join code; empty: none"})


class GroupUpdateSchema(OneOrMoreSchema):
    example = {"name": "Sunday hiking"}

    name = Text()
    notice = Text()
    cover = Text()
    master = Uid()


class MemberUpdateSchema(OneOrMoreSchema):
    example = {"nickname": "Ali"}

    do_not_disturb = ma.fields.Boolean()
    nickname = Text()
    mute = ma.fields.Boolean()


class QuietSchema(Schema):
    quiet = ma.fields.Boolean(required=True)


class GroupListSchema(PageSchema):
    fields = ma.fields.String(load_default="", metadata={"description": "client only: members,quiet"})


class GroupReadSchema(Schema):
    members = Integer(
        load_default=None, validate=ma.validate.Range(min=0),
        metadata={"description": "how many members to list, at most MEMBERS_INLINE (its default); 0: the group's "
                                 "header and member_count alone (members_next is then null), at the same cost "
                                 "whatever the group's size", "example": 20})


class JoinSchema(Schema):
    code = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64),
                            metadata={"description": "the group's face-to-face code"})


# The forms of a member list body, for the document (MembersSchema.wrap takes each).
MEMBER_FORMS = one_of(MembersSchema, {"type": "array", "items": {"oneOf": [UID, MemberSchema]},
                                      "example": [1002, {"uid": 1003, "name": "Carol"}]}, MemberSchema)


def unique_members(members: list[dict]) -> list[dict]:
    """The list without repeated uids (the first one wins), at most MAX_BATCH long."""
    if len(members) > setting("MAX_BATCH"):
        raise BatchTooLarge(f"members: at most {setting('MAX_BATCH')} per request.")
    seen = {}
    for member in members:
        seen.setdefault(member["uid"], member)
    return list(seen.values())


def member_limit(group: dict) -> int:
    return setting("MAX_SUPER_GROUP_MEMBERS" if group["super"] else "MAX_GROUP_MEMBERS")


def asking(who: Caller, uids: list[int] = ()) -> list[int]:
    """The uids whose membership a change checks, the client's own among them: read with the group's lock."""
    return list(uids) if who.is_server else [*uids, who.uid]


def require_master(cur, group: dict, who: Caller) -> None:
    """A client must be the group's master and a live member (a master the app server removed
    has no master rights left); an app server may act on any group of its app."""
    if not who.is_server and (group["master"] != who.uid or not groups.live_members_among(cur, group, [who.uid])):
        raise NotMaster()


def require_caller_member(cur, group: dict, who: Caller) -> None:
    """A client must be a member of the group; an app server may act on any group of its app."""
    if not who.is_server and not groups.live_members_among(cur, group, [who.uid]):
        raise Forbidden("Only members of the group may do this.")


@blp.before_request
def no_visitors():
    """Customer-service visitors (client ids from CUSTOMER_ID_BASE up) get 403 on every group path."""
    if request.method == "OPTIONS":  # a browser's preflight carries no credentials (views/cors.py answers it)
        return
    who = caller()
    if not who.is_server and who.uid >= setting("CUSTOMER_ID_BASE"):
        raise Forbidden("Customer-service visitors cannot use groups.")


@route("/groups")
class GroupList(MethodView):
    @responds("groups_list", one_of(schemas.GroupPageSchema, listed(schemas.ClientGroupSchema)))
    @requires("any")
    @blp.arguments(GroupListSchema, location="query")
    def get(self, args):
        """Server: the app's groups, paged. Client: the caller's groups (?fields=members,quiet).

        An app server gets `{total, start, count, groups, next}` (page with `?after=` or `?start=`;
        a read replica may answer). A client gets the list of the groups it is a live member of;
        `?fields=members` adds each group's members, `?fields=quiet` the caller's quiet setting."""
        who = caller()
        if who.is_server:  # a paged listing: a replica may answer it (docs/SCALING.md)
            with get_replica_db().cursor() as cur:
                total, found = groups.app_groups(cur, who.appid, args["start"], args["count"], args["after"])
            return ok(page(total, args["start"], "groups", found, "id", args["count"]))
        with get_db().cursor() as cur:
            found = [groups.public(g) for g in groups.user_groups(cur, who.appid, who.uid)]
            fields = set(args["fields"].split(","))
            if "members" in fields:
                members = groups.members_of_groups(cur, who.appid, [g["id"] for g in found])
                for group in found:
                    group["members"] = members[group["id"]]
        if "quiet" in fields:
            quiet = group_quiet(get_redis(), who.appid, who.uid, [g["id"] for g in found])
            for group in found:
                group["quiet"] = quiet[group["id"]]
        return ok(found)

    @responds("groups_create", schemas.GroupIdSchema,
              errors=(BatchTooLarge, MemberLimit, GroupIdInUse, CodeInUse), idempotent=True)
    @requires("any")
    @blp.arguments(GroupCreateSchema)
    def post(self, args):
        """Create a group. A client must be its master and is always a member.

        With server auth the members are exactly those given (include the master yourself), and
        the app may choose the id (`group_id`, below 2^53; 409 if taken). Members are uids or
        `{uid, name, avatar}` objects, at most MAX_BATCH, and at most MAX_GROUP_MEMBERS (2000) or, for
        a super group, MAX_SUPER_GROUP_MEMBERS. The group and member rows and a group-created event
        are one transaction. An `Idempotency-Key` makes a retry answer the first group's id."""
        who, members = caller(), unique_members(args.pop("members"))
        if not who.is_server:
            if args.get("group_id") is not None:
                raise Forbidden("group_id: only app servers choose group ids.")
            if args["master"] != who.uid:
                raise Forbidden("master: a client can only create groups it is the master of.")
            if who.uid not in {m["uid"] for m in members}:
                members.insert(0, {"uid": who.uid})
        gid = args.pop("group_id", None)
        group = {**args, "id": gid, "appid": who.appid, "super": int(args["super"]), "code": args["code"] or None}
        scope = idempotency_scope(who)
        with units().group_change(who.appid) as (cur, _, changes):
            first = scope and idempotency.claim(cur, *scope)
            if first:
                return ok(first)
            result = {"group_id": groups.create_group(cur, changes, group, members, member_limit(group))}
            if scope:
                idempotency.record(cur, *scope, result)
        return ok(result)


@route("/groups/<id:gid>")
class Group(MethodView):
    @responds("group_get", one_of(schemas.GroupDetailSchema, schemas.GroupSummarySchema), errors=(GroupNotFound,))
    @requires("any")
    @blp.arguments(GroupReadSchema, location="query")
    def get(self, args, gid):
        """The group with its first members; a client that is not a member sees only its public fields.

        Members are listed by uid, the first `?members=` of them (at most MEMBERS_INLINE, its
        default); `members_next` pages on with GET /groups/{gid}/members?after=. A client that is
        not a member gets only id, name, cover, super and member_count. 404 for a group of another
        app or a disbanded one."""
        who = caller()
        inline = setting("MEMBERS_INLINE")
        if args["members"] is not None:
            inline = min(args["members"], inline)
        with get_db().cursor() as cur:
            group = groups.find_group(cur, who.appid, gid)
            if not who.is_server and not groups.live_members_among(cur, group, [who.uid]):
                return ok({key: group[key] for key in ("id", "name", "cover", "super", "member_count")})
            members = groups.members_page(cur, group, 0, inline) if inline else []
        more = len(members) == inline and group["member_count"] > inline
        return ok(groups.public(group) | {"member_count": group["member_count"], "members": members,
                                          "members_next": members[-1]["uid"] if more and members else None})

    @responds("group_update", errors=(GroupNotFound, NotMaster, InvalidField))
    @requires("any")
    @blp.arguments(GroupUpdateSchema)
    def patch(self, args, gid):
        """Rename, change the notice or cover, or transfer to another member (master only).

        Give one field or several. `master` transfers ownership to a live member (400 otherwise).
        A client must be the master; each change queues a group event (the router and clients see
        the new name, notice or master)."""
        who, new_master = caller(), [args["master"]] if "master" in args else []
        with units().group_change(who.appid, gid, asking=asking(who, new_master)) as (cur, group, changes):
            require_master(cur, group, who)
            if new_master and not groups.live_members_among(cur, group, new_master):
                raise InvalidField("master: the new master must be a member of the group.")
            groups.update_group(cur, changes, group, args)
        return ok()

    @responds("group_disband", errors=(GroupNotFound, NotMaster))
    @requires("any")
    def delete(self, gid):
        """Disband the group (master only).

        The group and its members are marked deleted (the router stops loading it) and a
        group-disbanded event is queued, in one transaction."""
        who = caller()
        with units().group_change(who.appid, gid, asking=asking(who)) as (cur, group, changes):
            require_master(cur, group, who)
            groups.disband_group(cur, changes, group)
        return ok()


@blp.route("/groups/<id:gid>/upgrade")  # server only: no /client/groups alias
class Upgrade(MethodView):
    @responds("group_upgrade", errors=(GroupNotFound,))
    @requires("server")
    def post(self, gid):
        """Turn a normal group into a super group.

        A super group takes up to MAX_SUPER_GROUP_MEMBERS members and the router delivers its
        messages differently; the change is one event on `group_event_queue`. Server only."""
        with units().group_change(caller().appid, gid) as (cur, group, changes):
            groups.upgrade_group(cur, changes, group)
        return ok()


@route("/groups/<id:gid>/members")
class Members(MethodView):
    @responds("group_members_list", schemas.MemberPageSchema, errors=(GroupNotFound,))
    @requires("any")
    @blp.arguments(PageSchema, location="query")
    def get(self, args, gid):
        """The group's members with their join time (seconds), paged by uid. A client must be a member.

        Page with `?after=` (the previous page's `next`, a uid) or `?start=`; each member has its
        uid, name, group nickname, mute flag and join timestamp."""
        who = caller()
        with get_db().cursor() as cur:
            group = groups.find_group(cur, who.appid, gid)
            require_caller_member(cur, group, who)
        with get_replica_db().cursor() as cur:  # the page itself may come from a replica
            members = groups.members_page(cur, group, args["start"], args["count"], args["after"])
        return ok(page(group["member_count"], args["start"], "members", members, "uid", args["count"]))

    @responds("group_members_add", errors=(GroupNotFound, BatchTooLarge, MemberLimit), body=MEMBER_FORMS)
    @requires("any")
    @blp.arguments(MembersSchema)
    def post(self, args, gid):
        """Add members; re-adding a member is not an error. A client must be a member.

        The body is `{"members": [...], "inviter": {uid, name}}`, a bare array of uids or
        `{uid, name, avatar}` objects, or one such object. New members join with the time of the
        call (a removed member comes back); one member-added event each, in one transaction. 409
        (code 4004) when the group would pass its member limit."""
        who, members = caller(), unique_members(args["members"])
        # A client invites as itself, whatever the body says.
        inviter = args.get("inviter") if who.is_server else {"uid": who.uid, "name": who.name}
        uids = [m["uid"] for m in members]
        with units().group_change(who.appid, gid, asking=asking(who, uids)) as (cur, group, changes):
            require_caller_member(cur, group, who)
            groups.add_members(cur, changes, group, members, inviter, member_limit(group))
        return ok()

    @responds("group_members_remove", errors=(GroupNotFound, NotMaster, BatchTooLarge, MasterMustTransfer),
              body=MEMBER_FORMS)
    @requires("any")
    @blp.arguments(MembersSchema)
    def delete(self, args, gid):
        """Remove members (master only).

        The same body forms as adding; an empty list is a 400. An app server may remove anyone,
        the master too; a client master must transfer ownership before it leaves (409). The rows
        are marked deleted, with one member-removed event each, in one transaction."""
        who, members = caller(), unique_members(args["members"])
        if not members:
            raise InvalidField("members: give at least one member to remove.")
        uids = [m["uid"] for m in members]
        with units().group_change(who.appid, gid, asking=asking(who, uids)) as (cur, group, changes):
            require_master(cur, group, who)
            if not who.is_server and who.uid in {m["uid"] for m in members}:
                raise MasterMustTransfer()
            groups.remove_members(cur, changes, group, members)
        return ok()


@route("/groups/join")
class Join(MethodView):
    @responds("groups_join", schemas.GroupIdSchema, errors=(GroupNotFound, MemberLimit, RateLimited))
    @requires("client")
    @blp.arguments(JoinSchema)
    def post(self, args):
        """Join the app's group that has this face-to-face code.

        The code is the one set with the group (`code`). A wrong code is a 404 and counts
        against the caller's JOIN_RATE_LIMIT: past it, 429 with Retry-After, so short codes cannot
        be guessed. A right code joins the caller (already a member: no change)."""
        who, r = caller(), get_redis()
        # Wrong tries are limited per user (many users share an address behind a NAT), so a
        # short code cannot be guessed by trying; every try counts at once, a right one is given back.
        name, limit = f"join_{who.appid}_{who.uid}", setting("JOIN_RATE_LIMIT")
        wait = retry_after(r, name, limit)
        if wait is not None:
            raise RateLimited("Too many wrong face-to-face codes; retry later.", headers={"Retry-After": str(wait)})
        wrong = False
        try:
            with units().group_change(who.appid, code=args["code"]) as (cur, group, changes):
                groups.add_members(cur, changes, group, [{"uid": who.uid}], None, member_limit(group))
        except GroupNotFound:
            wrong = True
            raise
        finally:
            if not wrong:
                forgive(r, name, limit)
        return ok({"group_id": group["id"]})


@route("/groups/<id:gid>/members/<uid:mid>")
class Member(MethodView):
    @responds("group_member_remove", errors=(GroupNotFound, NotMaster, MasterMustTransfer))
    @requires("any")
    def delete(self, gid, mid):
        """Leave the group (a client for itself) or remove a member (the master).

        A client master must transfer ownership before it leaves (409). An app server may remove
        any member. One member-removed event."""
        who = caller()
        with units().group_change(who.appid, gid, asking=asking(who, [mid])) as (cur, group, changes):
            if not who.is_server:
                if mid != who.uid:
                    require_master(cur, group, who)
                elif group["master"] == who.uid:
                    raise MasterMustTransfer()
            groups.remove_members(cur, changes, group, [{"uid": mid}])
        return ok()

    @responds("group_member_update", errors=(GroupNotFound, NotMember, NotMaster))
    @requires("any")
    @blp.arguments(MemberUpdateSchema)
    def patch(self, args, gid, mid):
        """Set the member's do_not_disturb or nickname (the member itself) or mute (the master).

        `nickname` is the member's name in this group; `mute` (the master's call) stops the member
        from posting; `do_not_disturb` silences the group's pushes for the member. 404 (code 4002)
        when mid is not a member."""
        who = caller()
        if not who.is_server and mid != who.uid and set(args) != {"mute"}:
            raise Forbidden("A client can only change its own do_not_disturb and nickname.")
        with units().group_change(who.appid, gid, asking=asking(who, [mid])) as (cur, group, changes):
            groups.require_member(cur, group, mid)
            if "mute" in args:
                require_master(cur, group, who)
                groups.set_mute(cur, changes, group, mid, args["mute"])
            if "nickname" in args:
                groups.set_nickname(cur, changes, group, mid, args["nickname"])
            if "do_not_disturb" in args:  # Redis inside: if it refuses, the record rolls back with the rest
                records.record_quiet(cur, who.appid, mid, "group", gid, args["do_not_disturb"])
                set_group_quiet(get_redis(), who.appid, mid, gid, args["do_not_disturb"])
        return ok()

    @responds("group_member_quiet", errors=(GroupNotFound, NotMember))
    @requires("any")
    @blp.arguments(QuietSchema)
    def post(self, args, gid, mid):
        """Set the member's quiet (do-not-disturb) setting for the group.

        `quiet` 1 (or true): no pushes from this group for the member; it is kept in the router's
        Redis user hash. A client sets its own only."""
        who = caller()
        if not who.is_server and mid != who.uid:
            raise Forbidden("A client can only change its own quiet setting.")
        return set_quiet(who, gid, mid, args["quiet"])


@blp.route("/notification/groups/<id:gid>")
class GroupQuiet(MethodView):
    @responds("group_quiet", errors=(GroupNotFound, NotMember))
    @requires("client")
    @blp.arguments(QuietSchema)
    def post(self, args, gid):
        """Set the caller's quiet (do-not-disturb) setting for the group.

        The original client API's path for the same setting as POST /groups/{gid}/members/{mid}
        with mid the caller."""
        return set_quiet(caller(), gid, caller().uid, args["quiet"])


def set_quiet(who: Caller, gid: int, uid: int, quiet: bool):
    with transaction() as cur:
        group = groups.find_group(cur, who.appid, gid)
        groups.require_member(cur, group, uid)
        records.record_quiet(cur, who.appid, uid, "group", gid, quiet)
        set_group_quiet(get_redis(), who.appid, uid, gid, quiet)  # inside: a refusal rolls the record back
    return ok()
