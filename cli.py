"""Operator commands: flask --app app check | init-db | create-app | list-apps | show-app | disable-app |
enable-app | rotate-secret | set-allowed-ips | create-store | add-seller | relay-outbox | restore-redis |
take-over-redis.

Every failure is one line (a click.ClickException), never a traceback: guard() wraps every command
of the app's CLI (the bridge's and flask-smorest's too), so a MySQL or Redis failure in any of them
is one line naming the address."""
import ipaddress
import sys
from functools import wraps

import click
import pymysql
import redis
from flask import Flask, current_app, has_app_context
from flask.cli import with_appcontext

from models import customer as customers
from models import marker, restore
from models import tenant as tenants
from models.connection import mysql_connect_args
from models.db import get_db, transaction
from models.errors import ApiError
from models.migrations import init_db
from models.redis_client import get_redis, make_redis


def start_hint(service: str, config) -> str:
    """How to start the service where the configuration looks for it."""
    if service == "MySQL":
        return ("start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- "
                f"--bind-address={config['MYSQL_HOST']} --port={config['MYSQL_PORT']}")
    return (f"redis-server --daemonize yes --bind {config['REDIS_HOST']} --port {config['REDIS_PORT']} "
            '--save "" --appendonly no')


def mysql_problem(config, exc: Exception) -> str:
    """One sentence: what is wrong with MySQL at the configured address, and what to do."""
    where = f"MySQL at {config['MYSQL_HOST']}:{config['MYSQL_PORT']}"
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    if code in (1049, 1146):  # unknown database, missing table
        return f"{where}, database {config['MYSQL_DATABASE']}: {exc.args[-1]}. Run: flask --app app init-db"
    if code in (2003, 2005, 2006, 2013) or isinstance(exc, pymysql.InterfaceError):
        return f"{where} is not reachable ({exc.args[-1] if exc.args else exc}). Start it, e.g.: " \
               + start_hint("MySQL", config)
    return f"{where} refused the request: {exc.args[-1] if exc.args else exc}"


def redis_problem(config, exc: Exception) -> str:
    """One sentence: what is wrong with Redis (or the Redis Cluster) configured, and what to do."""
    if config.get("REDIS_CLUSTER_NODES"):
        nodes = ",".join(f"{host}:{port}" for host, port in config["REDIS_CLUSTER_NODES"])
        return (f"Redis Cluster at {nodes} is not reachable ({exc}). Start its nodes, "
                "or correct REDIS_CLUSTER_NODES")
    return (f"Redis at {config['REDIS_HOST']}:{config['REDIS_PORT']} is not reachable ({exc}). Start it, e.g.: "
            + start_hint("Redis", config))


def mysql_unreachable(config) -> list[str]:
    """One sentence if MySQL cannot be reached with this configuration; else none."""
    try:
        pymysql.connect(**mysql_connect_args(config, database=False)).close()
    except pymysql.Error as exc:
        return [mysql_problem(config, exc)]
    return []


def redis_unreachable(config) -> list[str]:
    """One sentence if Redis cannot be reached with this configuration; else none."""
    try:
        make_redis(config).ping()
    except redis.RedisError as exc:
        return [redis_problem(config, exc)]
    return []


def unreachable(config) -> list[str]:
    """One sentence for each backing service that cannot be reached with this configuration."""
    return mysql_unreachable(config) + redis_unreachable(config)


def require(problems: list[str]) -> None:
    if problems:
        raise click.ClickException("\n".join(problems))


def one_line_failures(callback, config):
    """The callback, with a MySQL or Redis failure turned into one line naming the address (exit code 1).
    The address is the running app's (commands are module objects, shared by every app made)."""

    @wraps(callback)
    def run(*args, **kwargs):
        config_now = current_app.config if has_app_context() else config
        try:
            return callback(*args, **kwargs)
        except pymysql.Error as exc:
            raise click.ClickException(mysql_problem(config_now, exc)) from None
        except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
            raise click.ClickException(redis_problem(config_now, exc)) from None
        except ApiError as exc:  # a model's own refusal or Unavailable, e.g. a lock wait that timed out
            raise click.ClickException(exc.message) from None

    return run


def guard(command: click.Command, config) -> None:
    """Wrap command (and a group's subcommands, at any depth) with one_line_failures."""
    if command.callback is not None and not getattr(command.callback, "guarded", False):
        command.callback = one_line_failures(command.callback, config)
        command.callback.guarded = True
    for sub in getattr(command, "commands", {}).values():
        guard(sub, config)


@click.command("check")
@with_appcontext
def check_command():
    """Check that MySQL and Redis are reachable; say how to start the one that is not."""
    require(unreachable(current_app.config))
    click.echo("MySQL and Redis are reachable")


@click.command("init-db")
@with_appcontext
def init_db_command():
    """Create the database and apply every schema file in sql/ not applied yet (MySQL only: Redis may be down)."""
    require(mysql_unreachable(current_app.config))
    applied = init_db(current_app.config)
    click.echo(f"applied: {', '.join(applied)}" if applied else "schema is up to date")
    if redis_unreachable(current_app.config):  # migrations need MySQL only; the marker waits for Redis
        click.echo("note: Redis is not reachable: /readyz checks its lost-data marker once it is", err=True)
    elif not marker.intact(get_redis(), get_db()):  # marks a Redis that lost nothing
        click.echo(f"warning: {marker.LOST}", err=True)


MAX_ID = 2**63 - 1


def require_name(name: str, what: str = "name") -> str:
    """The name without surrounding blanks; an empty or over-long one is an error."""
    name = name.strip()
    if not name:
        raise click.ClickException(f"--{what} must not be empty")
    if len(name) > 255:
        raise click.ClickException(f"--{what} must be at most 255 characters")
    return name


def require_id(value: int, what: str) -> int:
    if not 0 <= value <= MAX_ID:
        raise click.ClickException(f"{what} must be 0 to {MAX_ID}, not {value}")
    return value


@click.command("create-app")
@with_appcontext
@click.option("--name", required=True, help="A name for the app (unique).")
@click.option("--store-id", default=0, show_default=True, help="Customer-service store (0: none).")
@click.option("--if-missing", is_flag=True, help="If an app of that name exists, print its credentials instead.")
def create_app_command(name: str, store_id: int, if_missing: bool):
    """Create an app and print its id, key and secret."""
    name, store_id = require_name(name), require_id(store_id, "--store-id")
    with transaction() as cur:
        row = tenants.lock_app_by_name(cur, name)  # two create-apps of one name wait for each other
        if row is not None and not if_missing:
            raise click.ClickException(f"an app named {name!r} exists already (appid {row['id']}); "
                                       "give another name, or --if-missing to print its credentials")
        if row is None:
            row = tenants.create_app_row(cur, name, store_id)
    click.echo(f"appid={row['id']}\nkey={row['key']}\nsecret={row['secret']}")


@click.command("list-apps")
@with_appcontext
def list_apps_command():
    """List the apps (without their secrets)."""
    with get_db().cursor() as cur:
        found = tenants.list_apps(cur)
    for row in found:
        state = "disabled" if row["disabled"] else "enabled"
        click.echo(f"{row['id']}\t{row['name']}\tkey={row['key']}\tstore_id={row['store_id']}\t{state}")


@click.command("disable-app")
@with_appcontext
@click.argument("appid", type=int)
def disable_app_command(appid: int):
    """Disable an app: every request it makes gets 403 (within APP_CACHE_TTL seconds)."""
    set_disabled(appid, True)


def require_app(cur, appid: int) -> dict:
    row = tenants.show_app(cur, appid)
    if row is None:
        raise click.ClickException(f"no app {appid}")
    return row


@click.command("show-app")
@with_appcontext
@click.argument("appid", type=int)
@click.option("--secret", "with_secret", is_flag=True, help="Print the secret too.")
def show_app_command(appid: int, with_secret: bool):
    """Show an app: name, key, store, state, allowed IPs (the secret only with --secret)."""
    with get_db().cursor() as cur:
        row = require_app(cur, appid)
    click.echo(f"appid={row['id']}\nname={row['name']}\nkey={row['key']}\nstore_id={row['store_id']}\n"
               f"state={'disabled' if row['disabled'] else 'enabled'}\nallowed_ips={row['allowed_ips']}\n"
               f"created_at={row['created_at']}")
    if with_secret:
        click.echo(f"secret={row['secret']}")


@click.command("enable-app")
@with_appcontext
@click.argument("appid", type=int)
def enable_app_command(appid: int):
    """Enable a disabled app again (within APP_CACHE_TTL seconds)."""
    set_disabled(appid, False)


def set_disabled(appid: int, disabled: bool) -> None:
    with transaction() as cur:
        found = tenants.set_disabled(cur, appid, disabled)
    if not found:
        raise click.ClickException(f"no app {appid}")
    click.echo(f"app {appid} {'disabled' if disabled else 'enabled'}")


@click.command("rotate-secret")
@with_appcontext
@click.argument("appid", type=int)
def rotate_secret_command(appid: int):
    """Give an app a new secret and print it; running workers accept the old one for up to APP_CACHE_TTL seconds."""
    with transaction() as cur:
        secret = tenants.rotate_secret(cur, appid)
    if secret is None:
        raise click.ClickException(f"no app {appid}")
    click.echo(f"secret={secret}")


def allowed_ips(spec: str) -> str:
    """The list, checked and normalised ("10.0.0.0/8,192.0.2.1"); empty: any address."""
    items = [item.strip() for item in spec.split(",") if item.strip()]
    try:
        networks = [str(ipaddress.ip_network(item, strict=False)) for item in items]
    except ValueError as exc:
        raise click.ClickException(f"not an address or network (CIDR): {exc}") from None
    joined = ",".join(networks)
    if len(joined) > 1024:
        raise click.ClickException("the list is longer than 1024 characters")
    return joined


@click.command("set-allowed-ips")
@with_appcontext
@click.argument("appid", type=int)
@click.argument("networks")
def set_allowed_ips_command(appid: int, networks: str):
    """Let the app's secret be used only from these addresses or networks ("10.0.0.0/8,192.0.2.1"; "" clears)."""
    value = allowed_ips(networks)
    with transaction() as cur:
        found = tenants.set_allowed_ips(cur, appid, value)
    if not found:
        raise click.ClickException(f"no app {appid}")
    click.echo(f"app {appid} allowed_ips={value}" if value else f"app {appid} accepts any address")


@click.command("create-store")
@with_appcontext
@click.argument("appid", type=int)
@click.option("--name", required=True, help="The store's name.")
def create_store_command(appid: int, name: str):
    """Create a customer-service store; it becomes the app's store if the app has none."""
    name = require_name(name)
    with transaction() as cur:
        require_app(cur, appid)
        store_id = customers.create_store(cur, appid, name)
    click.echo(f"store_id={store_id}")


@click.command("add-seller")
@with_appcontext
@click.argument("store_id", type=int)
@click.option("--name", required=True, help="The seller's name.")
@click.option("--avatar", default="", help="The seller's avatar URL.")
def add_seller_command(store_id: int, name: str, avatar: str):
    """Add a seller to a store and print its id."""
    name = require_name(name)
    if len(avatar) > 255:
        raise click.ClickException("--avatar must be at most 255 characters")
    with transaction() as cur:
        if customers.store_by_id(cur, store_id) is None:
            raise click.ClickException(f"no store {store_id}")
        seller_id = customers.add_seller(cur, store_id, name, avatar)
    click.echo(f"seller_id={seller_id}")


@click.command("relay-outbox")
@with_appcontext
def relay_outbox_command():
    """Push every committed but undelivered queue item to Redis, in order."""
    click.echo(f"relayed {current_app.extensions['units'].relay(get_redis())} items")


@click.command("restore-redis")
@with_appcontext
@click.option("--app", "appid", type=int, default=None, help="Only this app's users (default: every app).")
@click.option("--batch", default=restore.BATCH, show_default=True, help="Rows per batch.")
def restore_redis_command(appid: int | None, batch: int):
    """Rewrite the router's user keys (tokens, names, settings, devices) in Redis from the MySQL record."""
    require(unreachable(current_app.config))
    conn, r = get_db(), get_redis()
    with click.progressbar(length=restore.count(conn, appid), label="restoring", file=sys.stderr,
                           show_pos=True) as bar:
        written = restore.restore(conn, r, appid, max(1, batch), progress=bar.update)
    if appid is None:
        marker.mark(r)  # Redis holds everything again
    click.echo(f"restored {written} records" + ("" if appid is None else f" of app {appid}"))


@click.command("take-over-redis")
@with_appcontext
@click.option("--app", "appid", type=int, default=None, help="Only this app's users (default: every app).")
def take_over_redis_command(appid: int | None):
    """Record the tokens, settings and device tokens found in Redis (a GoBelieve deployment's) in MySQL."""
    require(unreachable(current_app.config))
    r = get_redis()
    with click.progressbar(length=max(1, r.dbsize()), label="recording", file=sys.stderr) as bar:
        counts = restore.take_over(get_db(), r, appid, progress=bar.update)
    click.echo("recorded " + ", ".join(f"{n} {kind.replace('_', '-')}" for kind, n in counts.items()))


def register(app: Flask) -> None:
    """Add the operator commands to the app's CLI (guard_all() then wraps every command there)."""
    for command in (check_command, init_db_command, create_app_command, list_apps_command, show_app_command,
                    disable_app_command, enable_app_command, rotate_secret_command, set_allowed_ips_command,
                    create_store_command, add_seller_command, relay_outbox_command, restore_redis_command,
                    take_over_redis_command):
        app.cli.add_command(command)


def guard_all(app: Flask) -> None:
    """Every command of the app's CLI (this module's, the bridge's, flask-smorest's): failures in one line."""
    for command in app.cli.commands.values():
        guard(command, app.config)
