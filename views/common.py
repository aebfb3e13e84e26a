"""What every blueprint shares: the JSON body parser, the Blueprint, the envelope and handles."""
import json
import re
from functools import wraps

import flask_smorest
import marshmallow as ma
from flask import current_app, request

from models.errors import BodyTooLarge, InvalidField, InvalidJson, UnsupportedMediaType
from models.queue import Queues
from models.unit_of_work import UnitOfWork

from .errors import field_error
from .fields import setting

# A \uD800-\uDFFF escape, in the body's bytes (UTF-8) or its decoded text (UTF-16 or -32).
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
SURROGATE_ESCAPE_TEXT = re.compile(r"\\u[dD][89a-fA-F]")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


# Made once: json.loads() with options builds a new decoder on every call.
_decode = json.JSONDecoder(parse_constant=_reject_constant).decode


def json_body():
    """The request body as JSON, {} when there is none. A Content-Type other than JSON is a
    415; none at all is taken as JSON (original clients often send none)."""
    req = request._get_current_object()
    body = req.get_data(cache=True) if req.environ.get("CONTENT_LENGTH") else _unsized_body(req)
    if not body:
        return {}
    if req.mimetype and not req.is_json:
        raise UnsupportedMediaType()
    encoding = json.detect_encoding(body)
    try:
        # Strict decoding (not json.loads' surrogatepass): raw surrogate bytes (UTF-8 ED A0 80,
        # an unpaired UTF-16 surrogate) are refused here, at no cost to the common case.
        text = body.decode(encoding)
    except UnicodeDecodeError:
        raise InvalidJson("The request body is not valid " + encoding.upper() + " (a lone surrogate or a bad byte).") \
            from None
    try:
        data = _decode(text)
        # Escapes are the one way left to a lone surrogate; only bodies with one pay for the check.
        if (SURROGATE_ESCAPE.search(body) if encoding == "utf-8" else SURROGATE_ESCAPE_TEXT.search(text)):
            json.dumps(data, ensure_ascii=False).encode()
        return data
    except UnicodeEncodeError:
        raise InvalidJson("The request body holds a lone surrogate (\\uD800-\\uDFFF unpaired), not Unicode text.") \
            from None
    except (ValueError, RecursionError):  # bad JSON, NaN, a 5000-digit number, deep nesting
        raise InvalidJson() from None


def _unsized_body(req) -> bytes:
    """A body without Content-Length (chunked), whole, or BodyTooLarge: never a part of it.

    werkzeug stops reading such a body at max_content_length and hands on what it read as if
    it were all. Read at most the limit and one byte more from the server's (de-chunked) input."""
    if "wsgi.input_terminated" not in req.environ:
        return req.get_data(cache=True)  # werkzeug's safe fallback: an empty body
    limit = setting("MAX_CONTENT_LENGTH")
    body = read_at_most(req.environ["wsgi.input"], limit + 1)
    if len(body) > limit:
        raise BodyTooLarge()
    req._cached_data = body
    return body


def read_at_most(stream, most: int, chunk_size: int = 64 * 1024) -> bytes:
    """What stream holds, up to `most` bytes (a caller passes its limit + 1 to tell an excess)."""
    chunks, size = [], 0
    while size < most and (chunk := stream.read(min(chunk_size, most - size))):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


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


def ok(data=None):
    """The success envelope; action endpoints answer {"success": true}."""
    return {"data": {"success": True} if data is None else data}


def page(total: int, start: int, name: str, items: list, key: str = "id", asked: int | None = None) -> dict:
    """The data of a paged listing: {total, start, count, <name>: items, next}; next is the `after=`
    of the following page, or null on the last page (when fewer than `asked` items came)."""
    more = items and asked is not None and len(items) == asked
    return {"total": total, "start": start, "count": len(items), name: items, "next": items[-1][key] if more else None}


def queues() -> Queues:
    """The app's queues (models/queue.py), made once in create_app."""
    return current_app._get_current_object().extensions["queues"]


def units() -> UnitOfWork:
    """The app's unit of work (models/unit_of_work.py), made once in create_app."""
    return current_app._get_current_object().extensions["units"]


def idempotency_scope(who, msgid: str | None = None) -> tuple[int, str, str] | None:
    """(appid, caller, key) of the request's Idempotency-Key header (or msgid body field), or None.

    The caller ("server" or "client:<uid>") keeps each caller's keys apart from the others'."""
    key = request._get_current_object().environ.get("HTTP_IDEMPOTENCY_KEY", msgid)
    if key is None:
        return None
    if not 0 < len(key) <= 128:
        raise InvalidField("Idempotency-Key: must be 1 to 128 characters.")
    return who.appid, "server" if who.is_server else f"client:{who.uid}", key
