"""What every blueprint shares: the JSON body parser, base schemas and field types."""
import json
import logging
import re
from contextlib import contextmanager

import flask_smorest
import marshmallow as ma
import pymysql
import redis
from flask import current_app, request
from webargs import core
from webargs.flaskparser import FlaskParser

from models import outbox
from models.db import get_db, get_redis, transaction
from models.errors import InvalidField, InvalidJson, UnsupportedMediaType
from models.outbox import Changes
from models.queue import group_notification

log = logging.getLogger(__name__)

MAX_ID = 2**63 - 1
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


# Made once: json.loads() with options builds a new decoder on every call.
_decode = json.JSONDecoder(parse_constant=_reject_constant).decode


class Parser(FlaskParser):
    """Reads bodies as JSON when the Content-Type says so or says nothing (original clients
    often send none); another Content-Type is a 415. Validation failures are 400s."""

    DEFAULT_VALIDATION_STATUS = 400

    def _raw_load_json(self, req):
        body = req.get_data(cache=True)
        if not body:
            return core.missing
        if req.mimetype and not core.is_json(req.mimetype):
            raise UnsupportedMediaType()
        try:
            data = _decode(body.decode(json.detect_encoding(body), "surrogatepass"))
            if SURROGATE_ESCAPE.search(body):  # rare: make sure no lone surrogate got through
                json.dumps(data, ensure_ascii=False).encode()
            return data
        except (ValueError, RecursionError):  # bad UTF-8 or JSON, NaN, a 5000-digit number, deep nesting
            raise InvalidJson() from None


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = Parser()

    def arguments(self, schema, *args, **kwargs):
        # One schema instance per view, not one per request (webargs builds a class anew each time).
        return super().arguments(schema() if isinstance(schema, type) else schema, *args, **kwargs)


class Schema(ma.Schema):
    """Request schemas ignore unknown fields, as the original API did."""

    class Meta:
        unknown = ma.EXCLUDE


class OneOrMoreSchema(Schema):
    """A body of optional fields, at least one of which must be given."""

    @ma.validates_schema
    def not_empty(self, data, **kwargs):
        if not data:
            raise ma.ValidationError(f"Give at least one of {', '.join(self.fields)}.")


class Id(ma.fields.Integer):
    """A uid, group, app, store or seller id: 0 <= id < 2**63 (a numeric string will do, 7.5 will not)."""

    def __init__(self, maximum: int = MAX_ID, **kwargs):
        super().__init__(validate=ma.validate.Range(0, maximum), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, float) and not value.is_integer():
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class Uid(Id):
    """An app user's id: below CUSTOMER_ID_BASE (2**53), the range of customer-service visitors."""

    def _deserialize(self, value, attr, data, **kwargs):
        uid = super()._deserialize(value, attr, data, **kwargs)
        if uid >= setting("CUSTOMER_ID_BASE"):
            raise ma.ValidationError(f"Must be less than {setting('CUSTOMER_ID_BASE')} (higher ids are customers').")
        return uid


class Text(ma.fields.String):
    """A string of at most `length` characters (255 by default)."""

    def __init__(self, length: int = 255, **kwargs):
        super().__init__(validate=ma.validate.Length(max=length), **kwargs)


class MemberSchema(Schema):
    uid = Uid(required=True)
    name = Text(allow_none=True)
    avatar = Text(allow_none=True)


class MemberField(ma.fields.Field):
    """A member given as a uid or as {uid, name?, avatar?}; loads as a dict."""

    schema = MemberSchema()

    def _deserialize(self, value, attr, data, **kwargs):
        return self.schema.load(value if isinstance(value, dict) else {"uid": value})


def ok(data=None):
    """The success envelope; action endpoints answer {"success": true}."""
    return {"data": {"success": True} if data is None else data}


def idempotency_key(who, msgid: str | None = None) -> str | None:
    """The request's Idempotency-Key header (or msgid body field); a client's is scoped to its user."""
    key = request.headers.get("Idempotency-Key", msgid)
    if key is None:
        return None
    if not 0 < len(key) <= 128:
        raise InvalidField("Idempotency-Key: must be 1 to 128 characters.")
    return key if who.is_server else f"{who.uid}:{key}"


def setting(name: str):
    return current_app.config[name]


@contextmanager
def group_change():
    """A transaction whose group events and notifications are queued when it commits.

    Yields (cursor, changes). After the commit the outbox is relayed before the
    response; if Redis or MySQL fails just then, the change still stands and the
    background relay delivers its items, in order, once the service is back.
    """
    changes = Changes()
    with transaction() as cur:
        yield cur, changes
        ids = current_app.extensions["message_ids"]
        notes = [group_notification(ids.next(), *note) for note in changes.notes]
        outbox.append(cur, setting("GROUP_EVENT_QUEUE"), changes.events, setting("IM_MESSAGE_QUEUE"), notes,
                      changes.cleared)
    if changes.events or changes.notes:
        try:
            outbox.relay(get_db(), get_redis())
        except (redis.RedisError, pymysql.Error) as exc:
            log.warning("relay after commit failed, left to the background relay: %s", exc)


class PageSchema(Schema):
    """?start=&count= of a paged listing."""

    start = ma.fields.Integer(load_default=0, validate=ma.validate.Range(min=0, max=MAX_ID))
    count = ma.fields.Integer(load_default=100, validate=ma.validate.Range(min=1, max=500))


def page(total: int, start: int, name: str, items: list) -> dict:
    """The data of a paged listing: {total, start, count, <name>: items}."""
    return {"total": total, "start": start, "count": len(items), name: items}
