"""The one error path: every failure becomes {"meta": {"code", "message"}} with its status."""
import logging
import re

import pymysql
import redis
from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from models import errors

from .fields import setting

log = logging.getLogger(__name__)

HTTP_ERRORS = {
    404: errors.RouteNotFound,
    405: errors.MethodNotAllowed,
    413: errors.BodyTooLarge,
    415: errors.UnsupportedMediaType,
}


def _first_message(messages, path=()) -> tuple[str, str]:
    """The dotted path and text of the first validation message (marshmallow nests them)."""
    if isinstance(messages, dict):
        key, value = next(iter(messages.items()))
        return _first_message(value, path + (str(key),))
    if isinstance(messages, list) and messages and not isinstance(messages[0], str):
        return _first_message(messages[0], path)
    text = messages[0] if isinstance(messages, list) and messages else str(messages)
    return ".".join(p for p in path if p != "_schema"), text


def field_error(messages) -> errors.InvalidField:
    """An InvalidField naming the field, from marshmallow's {"field": ["..."]}."""
    field, text = _first_message(messages)
    return errors.InvalidField(f"{field}: {text}" if field else text)


def respond(error: errors.ApiError):
    response = jsonify(meta={"code": error.code, "message": error.message})
    response.status_code = error.status
    if error.status in (429, 503):
        response.headers["Retry-After"] = str(setting("RETRY_AFTER"))
    response.headers.update(error.headers)
    if error.status == 401 and "WWW-Authenticate" not in error.headers:  # every 401 says how to authenticate
        response.headers["WWW-Authenticate"] = 'Basic realm="app server", charset="UTF-8", Bearer realm="client"'
    return response


def handle_http_exception(exc: HTTPException):
    if exc.code == 405:
        return respond(errors.MethodNotAllowed(headers={"Allow": ", ".join(exc.valid_methods or [])}))
    if exc.code in HTTP_ERRORS:
        return respond(HTTP_ERRORS[exc.code]())
    if exc.code and exc.code < 500:
        return respond(errors.InvalidField(exc.description or "Bad request."))
    return handle_unexpected(exc)


def handle_unavailable(exc: Exception):
    log.warning("backing service unavailable: %s: %s", type(exc).__name__, exc)
    return respond(errors.Unavailable())


# Redis up but refusing writes: full (maxmemory), a read-only replica, a failed snapshot
# (stop-writes-on-bgsave-error) or a cluster without a master for the slot. Like a Redis that is
# away, it may answer again soon: 503 with Retry-After, not a 500.
REFUSING_WRITES = (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError,
                   redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError)
# The same refusals by their reply code, where redis-py keeps only the text: MISCONF has no class,
# and a Lua script that raises a failed call's error gets "user_script:1: OOM ..."; a pipeline
# prefixes "Command # 1 (...) of pipeline caused error: ".
REFUSAL_CODE = re.compile(r"(?:^|: )(?:MISCONF|OOM|READONLY|CLUSTERDOWN|MASTERDOWN|TRYAGAIN) ")


def refuses_writes(exc: Exception) -> bool:
    """Whether a Redis error reply says Redis cannot take writes for now."""
    return isinstance(exc, REFUSING_WRITES) or REFUSAL_CODE.search(str(exc)) is not None


def handle_response_error(exc: redis.ResponseError):
    return handle_unavailable(exc) if refuses_writes(exc) else handle_unexpected(exc)


def handle_unexpected(exc: Exception):
    log.exception("unhandled error")
    return respond(errors.ApiError())


def register(app: Flask) -> None:
    app.register_error_handler(errors.ApiError, respond)
    app.register_error_handler(HTTPException, handle_http_exception)
    for exc in (pymysql.OperationalError, pymysql.InterfaceError, redis.ConnectionError, redis.TimeoutError):
        app.register_error_handler(exc, handle_unavailable)
    app.register_error_handler(redis.ResponseError, handle_response_error)
    app.register_error_handler(Exception, handle_unexpected)
