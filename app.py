"""The application factory: configuration, pools, Redis, blueprints, error handlers and CLI."""
import logging
import threading
import time

import redis
from flask import Flask
from flask.globals import request_ctx
from werkzeug.routing import IntegerConverter, ValidationError

import cli
import config
from bridge import cli as bridge_cli
from models.db import close_db, get_db, pooled_connection
from models.queue import MessageIds, Queues
from models.ratelimit import Holds
from models.redis_client import make_redis
from models.unit_of_work import UnitOfWork
from outage import Outage
from views import BLUEPRINTS, cors, docs, errors, media, ops
from views.fields import ID_TEXT, MAX_ID, setting

log = logging.getLogger(__name__)
V2 = "/v2"  # the original's client API prefix: GoBelieve's SDKs call <API_URL>/... with an API_URL ending in /v2


class IdConverter(IntegerConverter):
    """<id:uid> in a path: an integer 0 <= id < 2**63 (anything else is a 404)."""

    regex = ID_TEXT.pattern  # ASCII digits, no leading zero: werkzeug's \d+ also takes "٧" and "７"

    def __init__(self, url_map):
        super().__init__(url_map, min=0, max=MAX_ID)


class UidConverter(IdConverter):
    """<uid:uid> in a path: an app user's id, below CUSTOMER_ID_BASE (customers' ids are a 404)."""

    def to_python(self, value):
        uid = super().to_python(value)
        if uid >= setting("CUSTOMER_ID_BASE"):
            raise ValidationError()
        return uid


class App(Flask):
    """Flask, with two things every request pays for done more cheaply, served at / and at /v2."""

    def ensure_sync(self, func):
        # No view here is async: Flask would inspect each layer of every call to find out.
        return func

    def wsgi_app(self, environ, start_response):
        # Every route also answers under /v2, as the original's client API did (SPEC section 6). /v2 is
        # mounted the WSGI way (SCRIPT_NAME /v2, the rest in PATH_INFO), so the URL map, the OpenAPI
        # document, CORS, auth and every error answer are the same ones, for routes added later too.
        path = environ.get("PATH_INFO", "")
        if path[:3] == V2 and path[3:4] in ("/", ""):
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + V2
            environ["PATH_INFO"] = path[3:]
        return super().wsgi_app(environ, start_response)

    def dispatch_request(self):
        # The matched rule, for the latency histogram's label (views/ops.py, Observed): one
        # proxy lookup here, where a before_request hook cost a hook call and three lookups.
        request = request_ctx.request
        if request.url_rule is not None:
            request.environ["im.endpoint"] = request.url_rule.rule
        return super().dispatch_request()


def create_app(overrides: dict | None = None) -> Flask:
    """The app; every setting is parsed and checked first (config.SettingError names a bad one)."""
    app = App(__name__, static_folder=None)
    app.config.update(config.load(overrides))
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    app.url_map.converters["id"] = IdConverter
    app.url_map.converters["uid"] = UidConverter
    app.url_map.strict_slashes = False

    api = docs.Api(app, spec_kwargs={"extra_plugins": [docs.DocsPlugin()], "components": {"securitySchemes": {
        "server": {"type": "http", "scheme": "basic", "description": "appid : md5hex(secret)"},
        "client": {"type": "http", "scheme": "bearer", "description": "the user's access token"},
    }}})
    api.register_converter(IdConverter, lambda converter: {"type": "integer", "format": "int64", "minimum": 0})
    uid_max = app.config["CUSTOMER_ID_BASE"] - 1
    api.register_converter(UidConverter, lambda converter: {"type": "integer", "minimum": 0, "maximum": uid_max})
    docs.init_app(app, api)
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint)
    errors.register(app)  # after Api(), so our handlers replace flask-smorest's
    cors.init_app(app)  # after the blueprints: it reads which routes clients call
    ops.init_app(app)
    media.init_app(app)

    app.extensions["redis"] = make_redis(app.config)
    app.extensions["app_cache"] = {}
    app.extensions["auth_holds"] = Holds()  # failed authentications (views/authentication.py)
    ids = MessageIds(lambda: pooled_connection(app))
    app.extensions["queues"] = Queues(app.extensions["redis"], ids, app.config)
    app.extensions["units"] = UnitOfWork(get_db, app.extensions["queues"], app.config)
    app.teardown_appcontext(close_db)
    cli.register(app)
    bridge_cli.register(app)
    cli.guard_all(app)  # after every register(): each command's failures in one line
    return app


def start_relay_thread(app: Flask) -> threading.Thread | None:
    """Drain the outbox every OUTBOX_RELAY_INTERVAL seconds (setting it to 0 stops the thread):
    it delivers what requests could not push while Redis was down. gunicorn starts one per worker.
    While MySQL or Redis is down it tries less often (up to every 10 s) and logs only when the
    failure starts, once a minute while it lasts, and when it ends (outage.Outage)."""
    if app.config.get("OUTBOX_RELAY_INTERVAL", 0) <= 0:  # 0, or an app of another kind (bench/floor.py)
        return None

    def loop():
        outage = Outage(log, "outbox relay", app.config["OUTBOX_RELAY_INTERVAL"])
        wait = outage.interval
        while app.config["OUTBOX_RELAY_INTERVAL"] > 0:
            time.sleep(wait)
            try:
                with app.app_context():  # its teardown returns the connection to the pool
                    app.extensions["units"].relay(app.extensions["redis"])
            except Exception as exc:  # keep trying, less often; the next round may find the service back
                wait = outage.failed(exc)
            else:
                wait = outage.succeeded()

    thread = threading.Thread(target=loop, name="outbox-relay", daemon=True)
    thread.start()
    return thread


try:
    app = create_app()
except config.SettingError as exc:  # one line, not a traceback: gunicorn, flask --help and every command stop here
    raise SystemExit(f"bad setting: {exc}") from None
except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:  # a cluster client connects when made
    raise SystemExit(cli.redis_problem(config.load(), exc)) from None
