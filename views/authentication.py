"""Who is calling: server auth (Basic appid:md5(secret)) or client auth (Bearer token)."""
import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import time
from dataclasses import dataclass
from functools import wraps
from typing import NoReturn

import flask_smorest
from flask import current_app, request
from redis.exceptions import RedisError

from models import ratelimit
from models import tenant as tenants
from models.db import get_db
from models.errors import (
    ApiError,
    AppDisabled,
    BadSecret,
    BadToken,
    Forbidden,
    IpNotAllowed,
    MissingCredentials,
    RateLimited,
    UnknownApp,
)
from models.redis_client import get_redis
from models.token import resolve_token

from .fields import parse_id, setting

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caller:
    appid: int
    uid: int | None  # None: the app's server; otherwise the user a client token belongs to
    name: str = ""  # a client's user_name, as its token was granted

    @property
    def is_server(self) -> bool:
        return self.uid is None


def find_app(appid: int) -> dict | None:
    """The app row from a short-lived per-process cache; misses are not cached."""
    cache = current_app._get_current_object().extensions["app_cache"]
    hit = cache.get(appid)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    with get_db().cursor() as cur:
        row = tenants.find_app(cur, appid)
    if row is not None:
        # An empty secret (a row inserted by hand) never authenticates: no digest matches None.
        row["secret_md5"] = hashlib.md5(row["secret"].encode()).hexdigest() if row["secret"] else None
        row["networks"] = _allowed_networks(row)
        cache[appid] = (time.monotonic() + setting("APP_CACHE_TTL"), row)
    return row


MALFORMED = object()  # the "networks" of an app whose allowed_ips cannot be read: it fails closed


def _allowed_networks(row: dict) -> tuple | object | None:
    """The app's IP allow-list, None when it has none; MALFORMED (logged once per cache period) when unreadable."""
    spec = row["allowed_ips"]
    if not spec or not spec.strip():
        return None
    try:
        return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in spec.split(",") if item.strip())
    except ValueError:
        log.error("app %s (%s): allowed_ips %r is not a comma-separated list of addresses or networks; "
                  "its server auth is refused (403) until it is fixed", row["id"], row["name"], spec)
        return MALFORMED


def caller(scheme: str | None = None) -> Caller:
    """The authenticated caller; scheme "Basic" or "Bearer" insists on one kind.

    It is kept in the WSGI environ, where the access log line finds its appid too."""
    environ = request._get_current_object().environ
    who = environ.get("im.caller")
    if who is None:
        kind, _, credentials = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if kind != "Basic" and kind != "Bearer":
            kind = SCHEME_WORDS.get(kind.lower())  # the scheme is case-insensitive (RFC 7235)
        credentials = credentials.strip()
        if kind is None or not credentials:
            raise MissingCredentials(headers={"WWW-Authenticate": challenge(scheme)})
        who = environ["im.caller"] = _server(credentials) if kind == "Basic" else _client(credentials)
    if scheme == "Basic" and not who.is_server or scheme == "Bearer" and who.is_server:
        raise Forbidden(f"This endpoint needs {'server' if scheme == 'Basic' else 'client'} auth.")
    return who


SCHEME_WORDS = {"basic": "Basic", "bearer": "Bearer"}
CHALLENGES = {"Basic": 'Basic realm="app server", charset="UTF-8"', "Bearer": 'Bearer realm="client"'}


def challenge(scheme: str | None, error: str | None = None) -> str:
    """The WWW-Authenticate value of a 401: the scheme the endpoint takes, or both."""
    if scheme is None:
        return f"{CHALLENGES['Basic']}, {CHALLENGES['Bearer']}"
    return CHALLENGES[scheme] + (f', error="{error}"' if error else "")


SCHEMES = {"server": "Basic", "client": "Bearer", "any": None}
SECURITY = {"server": [{"server": []}], "client": [{"client": []}], "any": [{"server": []}, {"client": []}]}


def requires(kind: str):
    """Decorate a view: authenticate a "server", "client" or "any" caller before the body is read."""

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            caller(SCHEMES[kind])
            return view(*args, **kwargs)

        # flask-smorest's doc() would add a layer to every call: take only what it documents.
        wrapper._apidoc = flask_smorest.Blueprint.doc(security=SECURITY[kind])(view)._apidoc
        return wrapper

    return decorator


def _server(credentials: str) -> Caller:
    try:
        appid, _, digest = base64.b64decode(credentials, validate=True).decode().partition(":")
        appid = parse_id(appid)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise MissingCredentials(headers={"WWW-Authenticate": challenge("Basic")}) from None
    appid = appid if 0 <= appid < 2**63 else None  # out of range: no such app, nor a count of its own
    held_back(appid)
    app = find_app(appid) if appid is not None else None
    if app is None:
        failed(UnknownApp(headers={"WWW-Authenticate": challenge("Basic")}), appid, unknown=True)
    if app["secret_md5"] is None or not hmac.compare_digest(app["secret_md5"].encode(), digest.lower().encode()):
        failed(BadSecret(headers={"WWW-Authenticate": challenge("Basic")}), appid)
    if app["disabled"]:
        raise AppDisabled()
    networks = app["networks"]
    if networks is not None and (networks is MALFORMED or not _in(client_address(), networks)):
        raise IpNotAllowed("The app's allowed_ips setting cannot be read; its operator must fix it."
                           if networks is MALFORMED else None)
    return Caller(appid, None)


def _client(token: str) -> Caller:
    held_back()
    found = resolve_token(get_redis(), token)
    app = find_app(found[0]) if found else None
    if app is None:
        failed(BadToken(headers={"WWW-Authenticate": challenge("Bearer", "invalid_token")}))
    if app["disabled"]:
        raise AppDisabled()
    return Caller(*found)


def _holds() -> ratelimit.Holds:
    return current_app._get_current_object().extensions["auth_holds"]


def held_back(appid: int | None = None) -> None:
    """429 for a client address past its limit of failed authentications, and for an unknown
    appid past its own (without a MySQL read). Nothing is looked at while nobody is held back."""
    holds = _holds()
    if not holds:
        return
    wait = holds.wait(("address", client_address()))
    if wait is None and appid is not None:
        wait = holds.wait(("unknown app", appid))
    if wait is not None:
        raise RateLimited("Too many failed authentications; retry later.", headers={"Retry-After": str(wait)})


def failed(error: ApiError, appid: int | None = None, unknown: bool = False) -> NoReturn:
    """Count a failed authentication against the client's address (AUTH_FAIL_RATE_LIMIT) and the
    appid (AUTH_FAIL_APP_RATE_LIMIT), then raise error; past either limit, hold the address back
    in this process (and an unknown appid) and raise RateLimited. A right secret from an address
    that is not held back still passes: the appid's limit holds back only addresses that fail."""
    address = client_address()
    limits = [(f"auth_address_{address}", setting("AUTH_FAIL_RATE_LIMIT"))]
    if appid is not None:
        limits.append((f"auth_app_{appid}", setting("AUTH_FAIL_APP_RATE_LIMIT")))
    try:
        wait = ratelimit.count_hits(get_redis(), limits)
    except RedisError as exc:  # the failure stands; only its count is lost
        log.warning("failed authentication not counted: %s", exc)
        raise error from None
    if wait is None:
        raise error
    holds = _holds()
    holds.hold(("address", address), wait)
    if unknown and appid is not None:
        holds.hold(("unknown app", appid), wait)
    raise RateLimited("Too many failed authentications; retry later.", headers={"Retry-After": str(wait)})


_ANY = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


def _in(address: str, networks: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address() -> str:
    """The client's address: proxy headers count only when the peer is a trusted proxy.

    X-Forwarded-For is read from the right, skipping trusted proxies, because a client
    can put anything at its left; X-Real-IP is the fallback. "unix" in TRUSTED_PROXIES
    trusts peers on a unix socket (nginx in front of gunicorn on the same host).
    """
    peer = request.remote_addr or ""
    proxies = setting("TRUSTED_PROXIES")
    on_unix_socket = proxies.unix and not _in(peer, _ANY)
    if not (_in(peer, proxies.networks) or on_unix_socket):
        return peer
    for hop in reversed(request.headers.get("X-Forwarded-For", "").split(",")):
        if hop.strip() and not _in(hop, proxies.networks):
            return hop.strip()
    return request.headers.get("X-Real-IP", peer).strip()


def from_trusted_proxy() -> bool:
    """Whether the peer is one of TRUSTED_PROXIES (its forwarded headers are believed)."""
    peer, proxies = request.remote_addr or "", setting("TRUSTED_PROXIES")
    return _in(peer, proxies.networks) or proxies.unix and not _in(peer, _ANY)
