"""What every blueprint shares: the JSON body parser, base schemas and field types."""
import json
import logging
import re
from contextlib import contextmanager
from functools import cached_property, wraps

import flask_smorest
import marshmallow as ma
import pymysql
import redis
from flask import current_app, request

from models import outbox
from models.db import get_db, get_redis, transaction
from models.errors import InvalidField, InvalidJson, UnsupportedMediaType
from models.outbox import Changes
from models.queue import group_notification
from .errors import field_error

log = logging.getLogger(__name__)

MAX_ID = 2**63 - 1
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


# Made once: json.loads() with options builds a new decoder on every call.
_decode = json.JSONDecoder(parse_constant=_reject_constant).decode


def json_body():
    """The request body as JSON, {} when there is none. A Content-Type other than JSON is a
    415; none at all is taken as JSON (original clients often send none)."""
    req = request._get_current_object()
    body = req.get_data(cache=True)
    if not body:
        return {}
    if req.mimetype and not req.is_json:
        raise UnsupportedMediaType()
    try:
        data = _decode(body.decode(json.detect_encoding(body), "surrogatepass"))
        if SURROGATE_ESCAPE.search(body):  # rare: make sure no lone surrogate got through
            json.dumps(data, ensure_ascii=False).encode()
        return data
    except (ValueError, RecursionError):  # bad UTF-8 or JSON, NaN, a 5000-digit number, deep nesting
        raise InvalidJson() from None


LOCATIONS = {"json": json_body, "query": lambda: request.args}


class Blueprint(flask_smorest.Blueprint):
    def arguments(self, schema, *, location: str = "json", **kwargs):
        """flask-smorest's decorator, for the OpenAPI document it writes; the parsing is ours:
        one schema instance per view and one load per request, without webargs' layers.
        A failure is a 400 naming the field."""
        schema = schema() if isinstance(schema, type) else schema
        document = super().arguments(schema, location=location, error_status_code=400, **kwargs)
        read = LOCATIONS[location]

        def decorator(view):
            @wraps(view)
            def parsed(*args, **kw):
                try:
                    loaded = schema.load(read())
                except ma.ValidationError as exc:
                    raise field_error(exc.messages) from None
                return view(*args, loaded, **kw)

            parsed._apidoc = document(view)._apidoc  # how flask-smorest's decorators pass on what they document
            return parsed

        return decorator


SLOW = object()  # what Field.quick() answers for a value it leaves to marshmallow


class Schema(ma.Schema):
    """Request schemas ignore unknown fields, as the original API did.

    load() tries a short cut first, for a schema without hooks whose fields all have a
    quick(value) method: a JSON object whose fields are all plainly valid (an int id in
    range, a string within its length) is taken as it is, at a fifth of marshmallow's cost.
    Anything else, a field missing, of another type or out of range, goes through
    marshmallow, which names the field. tests/test_hostile.py checks that both agree.
    """

    class Meta:
        unknown = ma.EXCLUDE

    def load(self, data, **kwargs):
        if type(data) is dict and not kwargs and self.quick_fields:
            loaded = {}
            for name, field in self.quick_fields:
                if name in data:
                    loaded[name] = value = field.quick(data[name])
                    if value is SLOW:
                        break
                elif field.required or field.load_default is not ma.missing:
                    break
            else:
                return loaded
        return super().load(data, **kwargs)

    @cached_property
    def quick_fields(self) -> tuple:
        """The (name, field) pairs of the short cut; () where a hook or a field rules it out."""
        fields = tuple(self.load_fields.items())
        if any(self._hooks.values()) or not all(hasattr(f, "quick") and f.data_key is None and f.attribute is None
                                                  for _, f in fields):
            return ()
        return fields


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
        self.maximum = maximum

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, float) and not value.is_integer():
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)

    def quick(self, value):
        return value if type(value) is int and 0 <= value <= self.maximum else SLOW


class Uid(Id):
    """An app user's id: below CUSTOMER_ID_BASE (2**53), the range of customer-service visitors."""

    def _deserialize(self, value, attr, data, **kwargs):
        uid = super()._deserialize(value, attr, data, **kwargs)
        if uid >= setting("CUSTOMER_ID_BASE"):
            raise ma.ValidationError(f"Must be less than {setting('CUSTOMER_ID_BASE')} (higher ids are customers').")
        return uid

    def quick(self, value):
        return value if type(value) is int and 0 <= value <= self.maximum and value < setting("CUSTOMER_ID_BASE") \
            else SLOW


class Text(ma.fields.String):
    """A string of `shortest` to `length` characters (0 to 255 by default)."""

    def __init__(self, length: int = 255, shortest: int = 0, **kwargs):
        super().__init__(validate=ma.validate.Length(min=shortest or None, max=length), **kwargs)
        self.shortest, self.length = shortest, length

    def quick(self, value):
        return value if type(value) is str and self.shortest <= len(value) <= self.length else SLOW


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
    key = request._get_current_object().environ.get("HTTP_IDEMPOTENCY_KEY", msgid)
    if key is None:
        return None
    if not 0 < len(key) <= 128:
        raise InvalidField("Idempotency-Key: must be 1 to 128 characters.")
    return key if who.is_server else f"{who.uid}:{key}"


def setting(name: str):
    # _get_current_object(): on the paths every request takes, each attribute read through
    # Flask's context proxies (werkzeug's LocalProxy) costs about 2 us, ten times this.
    return current_app._get_current_object().config[name]


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
