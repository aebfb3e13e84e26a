"""Liveness and readiness probes."""
from flask.views import MethodView

from models.db import get_db, get_redis, ping_mysql
from models.errors import Unavailable
from .common import Blueprint, ok

blp = Blueprint("ops", __name__, description="Health checks for load balancers and orchestrators")


@blp.route("/healthz")
class Health(MethodView):
    def get(self):
        """The process is up."""
        return ok({"status": "ok"})


@blp.route("/readyz")
class Ready(MethodView):
    def get(self):
        """MySQL and Redis are reachable (503 when one is not)."""
        try:
            ping_mysql(get_db())
            get_redis().ping()
        except Exception as exc:
            raise Unavailable(f"Not ready: {type(exc).__name__}.") from exc
        return ok({"status": "ready"})
