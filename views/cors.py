"""CORS (flask-cors) for what browsers call: client-auth operations and the visitors' token.

Only when CORS_ORIGINS is set: with the default (none) nothing is registered and requests pay
nothing. Server-auth requests never get CORS headers, so a page cannot use an app's secret:
server-only routes are not CORS resources at all, and on routes that take both schemes a
request with Basic credentials has the headers taken off again.
"""
import re

from flask import Flask, request
from flask_cors import CORS

# The customer-service widget calls these from the visitor's browser: /auth/customer with no
# auth, /customer/register with Basic appid:app key (the key is public: it ships in the widget).
PUBLIC_PATHS = ("/auth/customer", "/customer/register")
ALLOW_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"]
EXPOSE_HEADERS = ["X-Request-ID", "Retry-After"]
ARGUMENT = re.compile(r"<[^>]+>")  # every path argument here is an id (<id:..>, <uid:..>): digits


def security(view_class, method: str) -> list:
    """The OpenAPI security of a MethodView's method (views/authentication.requires documents it)."""
    func = getattr(view_class, method.lower(), None)
    return getattr(func, "_apidoc", {}).get("manual_doc", {}).get("security", [])


def client_resources(app: Flask) -> dict:
    """{path regex: {"methods": [...]}} of every route a client (Bearer) or nobody may call."""
    resources = {}
    for rule in app.url_map.iter_rules():
        view_class = getattr(app.view_functions.get(rule.endpoint), "view_class", None)
        if view_class is None:
            continue
        methods = sorted(m for m in rule.methods - {"HEAD", "OPTIONS"}
                         if {"client": []} in security(view_class, m) or rule.rule in PUBLIC_PATHS)
        if methods:
            pattern = "^" + ARGUMENT.sub("[0-9]+", re.escape(rule.rule))
            resources[pattern + "/?$"] = {"methods": methods}
    return resources


def strip_for_server_auth(response):
    """No CORS headers on an answer to server auth (Basic), even on a route clients share."""
    if request.headers.get("Authorization", "")[:6].lower() == "basic " and request.path not in PUBLIC_PATHS:
        for name in [name for name in response.headers.keys() if name.lower().startswith("access-control-")]:
            del response.headers[name]
    return response


def init_app(app: Flask) -> None:
    """CORS for CORS_ORIGINS ("*" or a list of origins); after the blueprints are registered."""
    origins = app.config["CORS_ORIGINS"]
    if not origins:
        return
    # Flask runs after_request functions last registered first: this one runs after flask-cors's.
    app.after_request(strip_for_server_auth)
    CORS(app, resources=client_resources(app), origins="*" if "*" in origins else list(origins),
         allow_headers=ALLOW_HEADERS, expose_headers=EXPOSE_HEADERS, supports_credentials=False, max_age=600,
         send_wildcard="*" in origins, vary_header=True)
