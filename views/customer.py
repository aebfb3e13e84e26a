"""Customer service: visitors' tokens, choosing a seller, and the stores and sellers behind them."""
import base64
import binascii
import hmac

import marshmallow as ma
from flask import request
from flask.views import MethodView

from models import customer as customers
from models import record as records
from models import tenant as tenants
from models.db import get_db, transaction
from models.errors import (
    AppDisabled,
    BadSecret,
    InvalidField,
    MissingCredentials,
    RateLimited,
    SellerNotFound,
    StoreNotConfigured,
    StoreNotFound,
    Unavailable,
)
from models.ratelimit import retry_after
from models.redis_client import get_redis

from . import schemas
from .authentication import caller, client_address, requires
from .common import Blueprint, ok
from .docs import responds
from .fields import Id, Schema, Text, parse_id, setting
from .tokens import issue_token

blp = Blueprint("customer", __name__, description="Customer service: visitors, stores and sellers")


class CustomerSchema(Schema):
    appid = Id(required=True)
    customer_id = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=128),
                                   metadata={"description": "the visitor's id in your system (1 to 128 characters)"})
    name = Text(allow_none=True, metadata={"example": "Visitor 8c1f"})
    avatar = Text(allow_none=True)
    platform_id = Id(allow_none=True)
    device_id = Text(allow_none=True)


class SupporterSchema(Schema):
    store_id = Id(required=True)


class StoreSchema(Schema):
    name = Text(required=True, metadata={"example": "Help desk"})


class SellerSchema(Schema):
    name = Text(required=True, metadata={"example": "Ann"})
    avatar = Text(load_default="")


@blp.route("/auth/customer")
class CustomerToken(MethodView):
    @responds("auth_customer", schemas.CustomerTokenSchema,
              errors=(RateLimited, AppDisabled, StoreNotConfigured, Unavailable))
    @blp.arguments(CustomerSchema)
    def post(self, args):
        """A visitor's permanent token for the app's customer service (no auth; rate limited per address).

        The app must have a customer-service store (400 otherwise, code 5001). The same
        `customer_id` always gets the same `client_id` (from the reserved range at 2^53 and up) and
        token. Limited per client address (CUSTOMER_RATE_LIMIT): past it, 429 with Retry-After."""
        return customer_token(args, app_key=None)


@blp.route("/customer/register")
class CustomerRegister(MethodView):
    @responds("customer_register", schemas.CustomerTokenSchema,
              errors=(MissingCredentials, BadSecret, RateLimited, AppDisabled, StoreNotConfigured, Unavailable))
    @blp.arguments(CustomerSchema)
    def post(self, args):
        """The original API's form of POST /auth/customer, with Basic auth appid:app key (the widget's call).

        `Authorization: Basic base64(<appid>:<app key>)` with the body's appid; the app key (not
        the secret) ships in the customer-service widget. The same body and answer as POST
        /auth/customer, and the same rate limit."""
        return customer_token(args, app_key=widget_credentials(args["appid"]))


def widget_credentials(appid: int) -> str:
    """The app key of a Basic appid:key header naming this appid (MissingCredentials otherwise)."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    try:
        given_appid, _, key = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
        if scheme.lower() != "basic" or parse_id(given_appid) != appid or not key:
            raise ValueError
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise MissingCredentials("Give Authorization: Basic base64(appid:app key) for the body's appid.") from None
    return key


def customer_token(args: dict, app_key: str | None):
    """The visitor's token, store and client id; app_key, when given, must be the app's key."""
    wait = retry_after(get_redis(), f"customer_{client_address()}", setting("CUSTOMER_RATE_LIMIT"))
    if wait is not None:
        raise RateLimited(headers={"Retry-After": str(wait)})
    with get_db().cursor() as cur:
        app = tenants.find_app(cur, args["appid"])  # uncached: a store set a moment ago counts
    if app_key is not None and (app is None or not hmac.compare_digest(app["key"].encode(), app_key.encode())):
        raise BadSecret("Wrong app id or app key.")
    if app is None:
        raise InvalidField("appid: no such app.")
    if app["disabled"]:
        raise AppDisabled()
    if not app["store_id"]:
        raise StoreNotConfigured()
    with transaction() as cur:
        client_id = customers.customer_client_id(cur, app["id"], args["customer_id"], setting("CUSTOMER_ID_BASE"),
                                                 args.get("name") or "", args.get("avatar") or "")
    token = issue_token(app["id"], client_id, args.get("name"), record=False)  # visitors are not app users
    return ok({"token": token, "store_id": app["store_id"], "client_id": client_id})


@blp.route("/supporters")
class Supporters(MethodView):
    @responds("supporters_choose", schemas.ChosenSellerSchema, errors=(StoreNotFound, SellerNotFound))
    @requires("client")
    @blp.arguments(SupporterSchema, location="query")
    def get(self, args):
        """A seller for the caller: its last one while still in the store, else a random online one, else the first.

        For a visitor's client (GoBelieve's SDKs call `/v2/supporters?store_id=`). The choice is
        remembered, so the visitor keeps talking to the same seller. `status` is the seller's
        online status from the router. 404 when the store is not the app's or has no seller."""
        who, r = caller(), get_redis()
        with get_db().cursor() as cur:
            if customers.find_store(cur, who.appid, args["store_id"]) is None:
                raise StoreNotFound()
            candidates = customers.sellers(cur, args["store_id"])
        if not candidates:
            raise SellerNotFound("The store has no seller.")
        for seller, status in zip(candidates, customers.seller_statuses(r, [s["seller_id"] for s in candidates])):
            seller["status"] = status
        last = customers.last_seller(r, who.appid, who.uid, args["store_id"])
        seller = customers.choose_seller(candidates, last)
        if seller["seller_id"] != last:  # a new choice: recorded first (SPEC 5.3)
            with transaction() as cur:
                records.record_seller(cur, who.appid, who.uid, args["store_id"], seller["seller_id"])
        customers.remember_seller(r, who.appid, who.uid, args["store_id"], seller["seller_id"])
        return ok(seller)


@blp.route("/stores")
class Stores(MethodView):
    @responds("stores_create", schemas.StoreIdSchema)
    @requires("server")
    @blp.arguments(StoreSchema)
    def post(self, args):
        """Create a store; it becomes the app's customer-service store if the app has none.

        The app's store (`app.store_id`) is what POST /auth/customer gives visitors; add sellers
        to it with POST /stores/{store_id}/sellers."""
        with transaction() as cur:
            store_id = customers.create_store(cur, caller().appid, args["name"])
        return ok({"store_id": store_id})


def require_store(cur, store_id: int) -> dict:
    store = customers.find_store(cur, caller().appid, store_id)
    if store is None:
        raise StoreNotFound()
    return store


@blp.route("/stores/<id:store_id>")
class Store(MethodView):
    @responds("store_get", schemas.StoreDetailSchema, errors=(StoreNotFound,))
    @requires("server")
    def get(self, store_id):
        """The store and its sellers.

        Each seller with its id, name and avatar, in the order they were added; 404 for a store of
        another app."""
        with get_db().cursor() as cur:
            store = require_store(cur, store_id)
            return ok({"id": store["id"], "name": store["name"], "sellers": customers.sellers(cur, store_id)})


@blp.route("/stores/<id:store_id>/sellers")
class Sellers(MethodView):
    @responds("store_sellers_add", schemas.SellerIdSchema, errors=(StoreNotFound,))
    @requires("server")
    @blp.arguments(SellerSchema)
    def post(self, args, store_id):
        """Add a seller to the store.

        Answers the new seller's id: the router's customer-service messages name sellers by it."""
        with transaction() as cur:
            require_store(cur, store_id)
            seller_id = customers.add_seller(cur, store_id, args["name"], args["avatar"])
        return ok({"seller_id": seller_id})


@blp.route("/stores/<id:store_id>/sellers/<id:seller_id>")
class Seller(MethodView):
    @responds("store_seller_remove", errors=(StoreNotFound, SellerNotFound))
    @requires("server")
    def delete(self, store_id, seller_id):
        """Remove a seller from the store.

        Visitors whose last seller it was get another one at their next GET /supporters."""
        with transaction() as cur:
            require_store(cur, store_id)
            if not customers.remove_seller(cur, store_id, seller_id):
                raise SellerNotFound()
        return ok()
