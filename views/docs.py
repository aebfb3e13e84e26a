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


def envelope(data) -> dict:
    return {"type": "object", "required": ["data"], "properties": {"data": data}}


def responds(operation_id: str, data=schemas.SuccessSchema, *, errors: tuple = (), idempotent: bool = False):
    """Document a view: its operationId, the schema of its {"data": ...} and the business errors
    of its own (those of auth, bodies and paths are added by DocsPlugin); idempotent: it reads
    an Idempotency-Key header. The view itself is returned as it is."""

    def decorator(view):
        view._apidoc = deepcopy(getattr(view, "_apidoc", {}))
        manual = view._apidoc.setdefault("manual_doc", {})
        manual["operationId"] = operation_id
        manual.setdefault("responses", {})["200"] = {
            "description": "OK", "content": {JSON: {"schema": envelope(data)}}}
        manual["x-errors"] = list(errors)
        if idempotent:
            manual["x-idempotent"] = True
        return view

    return decorator


class DocsPlugin(BasePlugin):
    """Completes every operation when flask-smorest adds it to the document."""

    def init_spec(self, spec) -> None:
        self.spec = spec
        spec.components.header("X-Request-ID", {
            "description": "the request's id: the X-Request-ID sent (1 to 128 of A-Z a-z 0-9 . _ : -) or a new one",
            "required": True, "schema": {"type": "string"}})
        spec.components.header("Retry-After", {"description": "seconds to wait before retrying", "required": True,
                                               "schema": {"type": "integer", "minimum": 0}})
        spec.components.parameter("Idempotency-Key", "header", {
            "description": "a retry with the same key answers the first answer and does nothing more",
            "required": False, "schema": {"type": "string", "minLength": 1, "maxLength": 128}})

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


def by_status(found: list) -> dict[int, list]:
    """The error classes by HTTP status, each once, in code order."""
    grouped = {}
    for cls in sorted(set(found), key=lambda cls: cls.code):
        grouped.setdefault(cls.status, []).append(cls)
    return dict(sorted(grouped.items()))


def error_response(classes: list) -> dict:
    lines = "\n".join(f"- `{cls.code}` {cls.__name__}: {cls.message}" for cls in classes)
    response = {"description": f"Business codes (`meta.code`):\n\n{lines}", "content": {JSON: {"schema": ERROR_REF}},
                "x-codes": [cls.code for cls in classes]}
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


def init_app(app: flask.Flask, api: Api) -> None:
    """The document's shared parts and the UI pages' assets; before the blueprints are registered."""
    uid_max = app.config["CUSTOMER_ID_BASE"] - 1

    def uid_range(converter, field, **kwargs) -> dict:
        return {"maximum": uid_max} if isinstance(field, Uid) else {}

    api.ma_plugin.converter.add_attribute_function(uid_range)
    api.spec.components.schemas.pop("PaginationMetadata", None)  # flask-smorest's; no listing here uses it
    app.register_blueprint(asset_blueprint())
