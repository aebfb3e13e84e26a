"""Request schemas and field types, with the short cut that loads plainly valid bodies without marshmallow.

tests/test_hostile.py checks that the short cut and marshmallow agree at every edge.
"""
import re
from functools import cached_property

import marshmallow as ma
from flask import current_app

from models.errors import BatchTooLarge

MAX_ID = 2**63 - 1


def setting(name: str):
    """A setting of the app handling the request (parsed when the app was made, config.py)."""
    # _get_current_object(): on the paths every request takes, each attribute read through
    # Flask's context proxies (werkzeug's LocalProxy) costs about 2 us, ten times this.
    return current_app._get_current_object().config[name]


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


# An integer as text, the one way it is spelled: ASCII digits, no sign, space, "_" or leading zero,
# at most 19 digits (2**63 has 19). int() would also take "٧", "７", "1_000", " +7\n" and "007".
ID_TEXT = re.compile(r"0|[1-9][0-9]{0,18}")


def parse_id(text: str) -> int:
    """int(text) for an integer spelled as ID_TEXT; ValueError for any other spelling."""
    if not ID_TEXT.fullmatch(text):
        raise ValueError(f"not an id: {text!r}")
    return int(text)


class Integer(ma.fields.Integer):
    """An integer given as a JSON integer or as a string of ASCII digits (ID_TEXT: the original's
    clients send some ids as strings); never a float (7.0, 1e3), a boolean or another spelling."""

    default_error_messages = {"invalid": "Must be an integer (a JSON number, or a string of ASCII digits)."}

    def _deserialize(self, value, attr, data, **kwargs):
        if type(value) is int:
            return value
        if type(value) is str and ID_TEXT.fullmatch(value):
            return int(value)
        raise self.make_error("invalid")


class Id(Integer):
    """A uid, group, app, store or seller id: 0 <= id < 2**63, an integer or a string of ASCII digits."""

    def __init__(self, maximum: int = MAX_ID, **kwargs):
        super().__init__(validate=ma.validate.Range(0, maximum, error=f"Must be an id from 0 to {maximum}."), **kwargs)
        self.maximum = maximum

    def quick(self, value):
        return value if type(value) is int and 0 <= value <= self.maximum else SLOW


class Uid(Id):
    """An app user's id: below CUSTOMER_ID_BASE (2**53), the range of customer-service visitors."""

    def _deserialize(self, value, attr, data, **kwargs):
        uid = super()._deserialize(value, attr, data, **kwargs)
        if not 0 <= uid < setting("CUSTOMER_ID_BASE"):  # the message names this bound, not 2**63
            raise ma.ValidationError(f"Must be a uid from 0 to {setting('CUSTOMER_ID_BASE') - 1} "
                                     "(higher ids are customers').")
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


class List(ma.fields.List):
    """A list of at most setting(limit) items: a longer one is a BatchTooLarge before any item is
    validated (marshmallow would validate each of 400,000 uids first, for a second and more)."""

    def __init__(self, inner, limit: str = "MAX_BATCH", **kwargs):
        super().__init__(inner, **kwargs)
        self.limit = limit

    def _deserialize(self, value, attr, data, **kwargs):
        if type(value) is list and len(value) > setting(self.limit):
            raise BatchTooLarge(f"{self.name}: at most {setting(self.limit)} per request.")
        return super()._deserialize(value, attr, data, **kwargs)


class MemberSchema(Schema):
    uid = Uid(required=True)
    name = Text(allow_none=True)
    avatar = Text(allow_none=True)


class MemberField(ma.fields.Field):
    """A member given as a uid or as {uid, name?, avatar?}; loads as a dict."""

    schema = MemberSchema()
    forms = (Uid(metadata={"example": 1002}), ma.fields.Nested(MemberSchema))  # the OpenAPI document's oneOf

    def _deserialize(self, value, attr, data, **kwargs):
        return self.schema.load(value if isinstance(value, dict) else {"uid": value})


class PageSchema(Schema):
    """?after=&count= (keyset: the items after that id, the same cost on every page) or the original's
    ?start=&count= (an offset) of a paged listing."""

    start = Integer(load_default=0, validate=ma.validate.Range(min=0, max=MAX_ID))
    count = Integer(load_default=100, validate=ma.validate.Range(min=1, max=500), metadata={"example": 20})
    after = Integer(load_default=None, validate=ma.validate.Range(min=0, max=MAX_ID),
                    metadata={"description": "the last id of the previous page (its `next`)", "example": 1001})

