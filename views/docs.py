"""The OpenAPI document: each operation's answer, errors and headers; and the pages that show it.

A view says what it answers with `@responds(operation_id, data schema, errors=...)`; the
rest is the same for every operation and is added here from what the operation already
declares (DocsPlugin): the auth errors of its security, the body errors of a request body,
the route error of a path id, 503 with Retry-After, X-Request-ID on every response. Neither
wraps the view: documenting an operation costs its requests nothing.
"""
import importlib.util
from copy import deepcopy
from pathlib import Path

import flask
from apispec import BasePlugin
from flask_smorest import Api as SmorestApi

from models import errors as e

from . import schemas
from .fields import Uid

INTRODUCTION = """\
The REST API beside a GoBelieve-style IM router: app servers register users, get their access
tokens, manage groups and post messages; app clients (phones, browsers) manage their own groups
and settings. The router reads what this service writes: MySQL tables, Redis hashes and queues.

## Authentication

**Server auth** (an app server, with the app's secret): `Authorization: Basic
base64(<appid>:<md5hex(secret)>)`. For app `7` with secret `5bd0f8c1e3a94f0b`:

1. md5hex(`5bd0f8c1e3a94f0b`) = `9871c72f1bd32a5825ce2d55aca91e44` (the hex digest, either case);
2. base64(`7:9871c72f1bd32a5825ce2d55aca91e44`) = `Nzo5ODcxYzcyZjFiZDMyYTU4MjVjZTJkNTVhY2E5MWU0NA==`;
3. send `Authorization: Basic Nzo5ODcxYzcyZjFiZDMyYTU4MjVjZTJkNTVhY2E5MWU0NA==`.

```
curl -X POST https://im.example.com/auth/grant \\
  -H 'Authorization: Basic Nzo5ODcxYzcyZjFiZDMyYTU4MjVjZTJkNTVhY2E5MWU0NA==' \\
  -H 'Content-Type: application/json' -d '{"uid": 1001, "user_name": "Alice"}'
```

**Client auth** (an app's user): `Authorization: Bearer <token>`, the token the app server got
for the user from `POST /auth/grant` and handed to its client. A customer-service visitor gets
one from `POST /auth/customer`. The scheme word is case-insensitive. Missing or wrong
credentials: 401 with `WWW-Authenticate`; an app that is disabled, or server auth from an
address outside the app's allow-list: 403. Each operation lists the schemes it takes; where it
takes both, the scheme decides the role (an app server acts for the app, a client as its user).

## Answers and errors

Success is always HTTP 200 with `{"data": ...}`; an action with nothing to return answers
`{"data": {"success": true}}`. A failure is `{"meta": {"code": <int>, "message": "<English
sentence>"}}` with 400 (bad JSON or a bad field: the message names the field), 401, 403, 404,
405, 409, 413 (a body over its limit), 415 (a Content-Type the operation does not take), 416 (a
byte range outside a media object), 429, 501 or 503. Each operation lists, for each status, the
business codes it can answer (`x-codes`). 429 and 503 carry `Retry-After` (seconds): 503 when
MySQL, Redis or a queue is unavailable; retry then (with the same `Idempotency-Key` where one is
read, so a retried post is never doubled). Every answer carries `X-Request-ID` (yours, if you
sent a valid one).

## Ids

Ids are JSON integers, or strings of ASCII digits (`"1001"`, as the original's clients send some);
no other spelling is an id (`7.0`, `1e3`, `"+7"`, `" 7"`, `"007"`, `"1_000"`, non-ASCII digits
such as `"٧"`): 400 naming the field. In paths and query strings an id is ASCII digits without a
leading zero. A uid is `0 <= uid < 2^53` (9007199254740992, `CUSTOMER_ID_BASE`): exact as a
JavaScript number; visitors' client ids start at 2^53 and are refused as app uids. Group, app,
store, seller and message ids are int64 (`0 <= id < 2^63`): keep them as 64-bit integers (or
strings of digits) in JavaScript.

## Lists, paging, limits

Paged listings take `?count=` (1 to 500, default 100) and either `?after=<the last id of the
previous page>` (keyset: every page costs the same) or the original's `?start=` (an offset), and
answer `{total, start, count, <items>, next}`; `next` is the `after=` of the following page, null
on the last. A batch holds at most 500 items; names, notices, nicknames and covers at most 255
characters; message content at most 64 KiB.

## Retries and idempotency

Message posts and `POST /groups` read an `Idempotency-Key` header (1 to 128 characters; message
posts also a body field `msgid`): a retry with the same key answers the first answer and queues
or creates nothing more. Other writes are idempotent by their nature (granting, binding, adding
an existing member) or answer the conflict (409).

## Rate limits

Failed authentications (an unknown appid, a wrong secret or token) are limited per client
address (`AUTH_FAIL_RATE_LIMIT`, default 20 a minute) and per appid; an address past the limit
gets 429 for a while, right credentials included, while other addresses pass. `POST
/auth/customer` and `POST /customer/register` are limited per client address
(`CUSTOMER_RATE_LIMIT`, default 60 a minute), wrong face-to-face codes at `POST /groups/join`
per user. Past a limit: 429 with `Retry-After`, the seconds to wait.

## What reaches the router

Each message post queues one item on the Redis list `im_message_queue` and answers its id; group
changes queue group events (`group_event_queue`), token revocations user events
(`user_event_queue`), friend and blacklist changes relationship events
(`relationship_event_queue`). Group and relationship events are written in the same MySQL
transaction as the change and pushed after it commits (an outbox), so a change the API answered
200 reaches its queue, once and in order, even if Redis was down at the time. A full queue is a
503 (`QUEUE_MAX_LENGTH`).

## Paths

Every path also answers under `/v2` (`/v2/auth/grant`, `/v2/device/bind`, ...), the same
operation with the same answers, as GoBelieve's SDKs call it; the group paths also under
`/client/groups...`, the original client API's names. Both are listed here once.
"""
# Examples by field name, where a name means the same thing in every schema; a field's own
# metadata={"example": ...} wins. An example is used only on a field of its JSON type.
EXAMPLES = {
    "uid": 1001, "gid": 120045, "mid": 1002, "fid": 1002, "bid": 1003,
    "sender": 1001, "receiver": 1002, "peer_uid": 1002, "master": 1001, "friend_uid": 1002,
    "appid": 7, "id": 120045, "group_id": 120045, "store_id": 3, "store": 3, "seller_id": 12,
    "client_id": 2**53, "platform_id": 1, "member_count": 3, "total": 1, "start": 0, "count": 1,
    "created_at": 1765100000, "updated_at": 1765100000, "timestamp": 1765100000,
    "name": "Alice", "user_name": "Alice", "nickname": "Ali", "avatar": "https://cdn.example.com/a/1001.png",
    "notice": "Saturday 9:00 at the north gate", "cover": "https://cdn.example.com/g/120045.jpg",
    "code": "K7Q2XM", "device_id": "5E3C1D8A-7F2B-4C11-9A3E-2B6D0F4A9C17", "customer_id": "visitor-8c1f",
    "token": "vHq3nZ0r8Xb1Tq7LkW2yPj5sD9fA4uEc", "content": '{"text": "See you at nine?"}',
    "msgid": "order-5512-shipped", "status": "online", "message": "A field is invalid.",
    "apns_device_token": "740f4707bebcf74f9b7c25d48e3358945f6aa01da5ddb387462c7eaf61bb78ad",
    "pushkit_device_token": "9a1b0c4d7e2f6a8b3c5d0e9f1a2b4c6d8e0f2a4b6c8d0e2f4a6b8c0d2e4f6a8b",
    "xg_device_token": "0a8f1c2b3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f80", "xm_device_token": "d//igwEhgBGCI2TG6lWqlK",
    "hw_device_token": "0863596033021934300003210900CN01", "jp_device_token": "1a0018970aa3d4c6f1e",
    "ng_device_token": "ng-5f0c2a9e41",
    "gcm_device_token": "fcm:APA91bH6Yx0Q2rWm3kEo7Z", "fields": "members,quiet", "uids": "1001,1002",
    "mute": False, "forbidden": False, "notification_on": True, "on": True, "online": True, "quiet": True,
    "do_not_disturb": True, "super": False, "success": True, "command": 4, "limit": 20, "last_id": 58100,
}

JSON = "application/json"
ERROR_REF = "Error"  # Api.ERROR_SCHEMA, registered by flask-smorest; apispec makes it a $ref
REQUEST_ID = {"$ref": "#/components/headers/X-Request-ID"}
RETRY_AFTER = {"$ref": "#/components/headers/Retry-After"}
METHODS = ("get", "put", "post", "delete", "patch")

AUTH_ERRORS = {
    "server": (e.MissingCredentials, e.UnknownApp, e.BadSecret, e.IpNotAllowed, e.AppDisabled, e.Forbidden,
               e.RateLimited),
    "client": (e.MissingCredentials, e.BadToken, e.AppDisabled, e.Forbidden, e.RateLimited),
}
BODY_ERRORS = (e.InvalidJson, e.InvalidField, e.BodyTooLarge, e.UnsupportedMediaType)


def listed(schema) -> dict:
    """A JSON array of the schema's objects."""
    return {"type": "array", "items": schema}


def one_of(*choices) -> dict:
    return {"oneOf": list(choices)}


# Path parameters whose name alone says too little: the media names (a SHA-256, with the extension).
PATH_EXAMPLES = {
    "/images/<name>": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08.jpg",
    "/audios/<name>": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "/files/<name>": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08.pdf",
}
# A uid in a bare-array body ([1002, 1003]); the bound is the introduction's (below 2^53).
UID = {"type": "integer", "minimum": 0, "example": 1002}
UIDS = {"type": "array", "items": UID, "example": [1002, 1003]}


def envelope(data) -> dict:
    return {"type": "object", "required": ["data"], "properties": {"data": data}}


def responds(operation_id: str, data=schemas.SuccessSchema, *, errors: tuple = (), idempotent: bool = False,
             body=None):
    """Document a view: its operationId, the schema of its {"data": ...} and the business errors
    of its own (those of auth, bodies and paths are added by DocsPlugin); idempotent: it reads
    an Idempotency-Key header; body: the request body's forms where they are more than the schema
    that parses it (a bare array too). The view itself is returned as it is."""

    def decorator(view):
        view._apidoc = deepcopy(getattr(view, "_apidoc", {}))
        manual = view._apidoc.setdefault("manual_doc", {})
        manual["operationId"] = operation_id
        manual.setdefault("responses", {})["200"] = {
            "description": "OK", "content": {JSON: {"schema": envelope(data)}}}
        manual["x-errors"] = list(errors)
        if idempotent:
            manual["x-idempotent"] = True
        if body is not None:
            manual["requestBody"] = {"content": {JSON: {"schema": body}}}
        return view

    return decorator


class DocsPlugin(BasePlugin):
    """Completes every operation when flask-smorest adds it to the document: errors, headers, and
    an example of its request body and answer, made from its schemas' field examples."""

    def init_spec(self, spec) -> None:
        self.spec = spec
        spec.components.header("X-Request-ID", {
            "description": "the request's id: the X-Request-ID sent (1 to 128 of A-Z a-z 0-9 . _ : -) or a new one",
            "required": True, "schema": {"type": "string"}, "example": "4bf92f3577b34da6a3ce929d0e0e4736"})
        spec.components.header("Retry-After", {"description": "seconds to wait before retrying", "required": True,
                                               "schema": {"type": "integer", "minimum": 0}, "example": 1})
        spec.components.parameter("Idempotency-Key", "header", {
            "description": "a retry with the same key answers the first answer and does nothing more",
            "required": False, "schema": {"type": "string", "minLength": 1, "maxLength": 128},
            "example": "order-5512-shipped"})

    def schema_helper(self, name, definition, schema=None, **kwargs) -> dict:
        """A schema's own `example` (a class attribute), where one made from its fields would mislead."""
        example = getattr(schema, "example", None)
        return {"example": deepcopy(example)} if example is not None else {}

    def path_helper(self, path=None, operations=None, parameters=(), rule=None, **kwargs) -> None:
        """Path parameters get the example of their rule (PATH_EXAMPLES) or of their name (EXAMPLES)."""
        for parameter in parameters:
            if not isinstance(parameter, dict) or parameter.get("in") != "path":
                continue
            example = PATH_EXAMPLES.get(getattr(rule, "rule", None), EXAMPLES.get(parameter["name"]))
            if type(example) in JSON_TYPES.get(parameter.get("schema", {}).get("type"), ()):
                parameter.setdefault("example", example)

    def operation_helper(self, path=None, operations=None, **kwargs) -> None:
        seen = set()
        for method, operation in (operations or {}).items():
            if method in METHODS:
                self.complete(path, operation)
                if operation.get("operationId") in seen:  # one view for two methods (PATCH = POST)
                    operation["operationId"] += f"_{method}"
                seen.add(operation.get("operationId"))

    def complete(self, path: str, operation: dict) -> None:
        found = list(operation.pop("x-errors", ()))
        for requirement in operation.get("security", ()):
            for scheme in requirement:
                found += AUTH_ERRORS[scheme]
        if operation.get("security"):
            found.append(e.Unavailable)  # auth itself reads Redis or MySQL
        if "requestBody" in operation:
            found += BODY_ERRORS
        if any(p.get("in") == "query" for p in operation.get("parameters", ())):
            found.append(e.InvalidField)
        if "{" in path:
            found.append(e.RouteNotFound)  # an id out of range, or not a number
        if operation.pop("x-idempotent", False):
            operation.setdefault("parameters", []).append("Idempotency-Key")
            found.append(e.InvalidField)
        responses = operation.setdefault("responses", {})
        for status in [status for status, response in responses.items() if isinstance(response, str)]:
            del responses[status]  # flask-smorest's BAD_REQUEST and DEFAULT_ERROR, in its own error shape
        for status, codes in by_status(found).items():
            responses[str(status)] = error_response(codes)
        for response in responses.values():
            response.setdefault("headers", {})["X-Request-ID"] = REQUEST_ID
        bodies = [operation.get("requestBody", {}), responses.get("200", {})]
        for body in [body["content"][JSON] for body in bodies if JSON in body.get("content", {})]:
            if "example" not in body:
                body["example"] = self.example(body["schema"])

    def example(self, schema: dict):
        """An example of a schema: its own, or one made of its properties' examples."""
        if "$ref" in schema:
            schema = self.spec.components.schemas[schema["$ref"].rsplit("/", 1)[1]]
        if "example" in schema:
            return schema["example"]
        for choices in ("oneOf", "allOf"):
            if choices in schema:
                return self.example(schema[choices][0])
        if "properties" in schema:
            return {name: self.example(prop) for name, prop in schema["properties"].items()}
        if schema.get("type") == "array":
            return [self.example(schema["items"])]
        if "enum" in schema:
            return schema["enum"][0]
        return {"integer": schema.get("minimum", 1), "boolean": True}.get(schema.get("type"), {})


def by_status(found: list) -> dict[int, list]:
    """The error classes by HTTP status, each once, in code order."""
    grouped = {}
    for cls in sorted(set(found), key=lambda cls: cls.code):
        grouped.setdefault(cls.status, []).append(cls)
    return dict(sorted(grouped.items()))


def error_response(classes: list) -> dict:
    lines = "\n".join(f"- `{cls.code}` {cls.__name__}: {cls.message}" for cls in classes)
    example = {"meta": {"code": classes[0].code, "message": classes[0].message}}
    response = {"description": f"Business codes (`meta.code`):\n\n{lines}",
                "content": {JSON: {"schema": ERROR_REF, "example": example}}, "x-codes": [cls.code for cls in classes]}
    if classes[0].status in (429, 503):
        response["headers"] = {"Retry-After": RETRY_AFTER}
    return response


class Api(SmorestApi):
    """flask-smorest's Api with our error envelope instead of its {code, status, message, errors}."""

    DEFAULT_ERROR_RESPONSE_NAME = None
    ERROR_SCHEMA = schemas.ErrorSchema


def package_dir(package: str, *parts: str) -> Path:
    """A folder inside an installed package, found without importing it."""
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise RuntimeError(f"the package {package} is not installed (requirements.txt)")
    return Path(next(iter(found.submodule_search_locations)), *parts)


SWAGGER_UI_ASSETS = "/docs/assets/swagger-ui"
REDOC_ASSETS = "/docs/assets/redoc"


def asset_blueprint() -> flask.Blueprint:
    """Swagger UI's and ReDoc's files, served by the service itself (pinned PyPI packages ship them),
    so /docs and /redoc work with no internet access."""
    import swagger_ui_bundle

    assets = flask.Blueprint("docs_assets", __name__)
    folders = {SWAGGER_UI_ASSETS: Path(swagger_ui_bundle.swagger_ui_path),
               REDOC_ASSETS: package_dir("flask_openapi3_redoc", "templates", "redoc", "js")}
    for prefix, folder in folders.items():
        def serve(filename, folder=folder):
            return flask.send_from_directory(folder, filename, max_age=86400)
        assets.add_url_rule(f"{prefix}/<path:filename>", f"asset_{prefix.rsplit('/', 1)[1]}", serve)
    return assets


JSON_TYPES = {"integer": (int,), "string": (str,), "boolean": (bool,), "number": (int, float)}


def int64(converter, field, ret: dict, **kwargs) -> dict:
    """A bound past 2^53 as `format: int64`, not as a number: JavaScript (Swagger UI, ReDoc) would
    show 2^63 - 1 as 9223372036854776000. The range is the introduction's."""
    if ret.get("maximum", 0) > 2**53:
        del ret["maximum"]
        return {"format": "int64"}
    return {}


def forms(converter, field, **kwargs) -> dict:
    """A field that takes several forms (a member as a uid or an object) says which: `forms`."""
    return {"oneOf": [converter.field2property(form) for form in field.forms]} if hasattr(field, "forms") else {}


def named_example(converter, field, ret: dict, **kwargs) -> dict:
    """The example of EXAMPLES for the field's name, if of the field's JSON type."""
    example = EXAMPLES.get(field.name)
    if "example" in ret or example is None or type(example) not in JSON_TYPES.get(ret.get("type"), ()):
        return {}
    return {"example": example}


def init_app(app: flask.Flask, api: Api) -> None:
    """The document's shared parts and the UI pages' assets; before the blueprints are registered."""
    uid_max = app.config["CUSTOMER_ID_BASE"] - 1

    def uid_range(converter, field, **kwargs) -> dict:
        return {"maximum": uid_max} if isinstance(field, Uid) else {}

    for function in (uid_range, int64, forms, named_example):
        api.ma_plugin.converter.add_attribute_function(function)
    api.spec.options.setdefault("info", {})["description"] = INTRODUCTION
    api.spec.components.schemas.pop("PaginationMetadata", None)  # flask-smorest's; no listing here uses it
    app.register_blueprint(asset_blueprint())
