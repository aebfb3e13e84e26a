"""Operator commands: flask --app app check | init-db | create-app | list-apps | disable-app | relay-outbox."""
from functools import wraps

import click
import pymysql
import redis
from flask import Flask, current_app
from flask.cli import with_appcontext

from models import outbox
from models import tenant as tenants
from models.db import get_db, get_redis, make_redis, mysql_connect_args, transaction
from models.migrations import init_db


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
    return (f"Redis at {config['REDIS_HOST']}:{config['REDIS_PORT']} is not reachable ({exc}). Start it, e.g.: "
            + start_hint("Redis", config))


def unreachable(config) -> list[str]:
    """One sentence for each backing service that cannot be reached with this configuration."""
    problems = []
    try:
        pymysql.connect(**mysql_connect_args(config, database=False)).close()
    except pymysql.Error as exc:
        problems.append(mysql_problem(config, exc))
    try:
        make_redis(config).ping()
    except redis.RedisError as exc:
        problems.append(redis_problem(config, exc))
    return problems


def require_services() -> None:
    problems = unreachable(current_app.config)
    if problems:
        raise click.ClickException("\n".join(problems))


def one_line_failures(command):
    """A command whose MySQL or Redis failure is one line naming the address (exit code 1), not a traceback."""

    @wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except pymysql.Error as exc:
            raise click.ClickException(mysql_problem(current_app.config, exc)) from None
        except redis.RedisError as exc:
            raise click.ClickException(redis_problem(current_app.config, exc)) from None

    return run


@click.command("check")
@with_appcontext
@one_line_failures
def check_command():
    """Check that MySQL and Redis are reachable; say how to start the one that is not."""
    require_services()
    click.echo("MySQL and Redis are reachable")


@click.command("init-db")
@with_appcontext
@one_line_failures
def init_db_command():
    """Create the database and apply every schema file in sql/ not applied yet."""
    require_services()
    applied = init_db(current_app.config)
    click.echo(f"applied: {', '.join(applied)}" if applied else "schema is up to date")


@click.command("create-app")
@with_appcontext
@one_line_failures
@click.option("--name", required=True, help="A name for the app (unique).")
@click.option("--store-id", default=0, show_default=True, type=click.IntRange(0, 2**63 - 1),
              help="Customer-service store (0: none).")
@click.option("--if-missing", is_flag=True, help="If an app of that name exists, print its credentials instead.")
def create_app_command(name: str, store_id: int, if_missing: bool):
    """Create an app and print its id, key and secret."""
    name = name.strip()
    if not name or len(name) > 255:
        raise click.BadParameter("give a name of 1 to 255 characters.", param_hint="--name")
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
@one_line_failures
def list_apps_command():
    """List the apps (without their secrets)."""
    with get_db().cursor() as cur:
        found = tenants.list_apps(cur)
    for row in found:
        state = "disabled" if row["disabled"] else "enabled"
        click.echo(f"{row['id']}\t{row['name']}\tkey={row['key']}\tstore_id={row['store_id']}\t{state}")


@click.command("disable-app")
@with_appcontext
@one_line_failures
@click.argument("appid", type=int)
def disable_app_command(appid: int):
    """Disable an app: every request it makes gets 403 (within APP_CACHE_TTL seconds)."""
    with transaction() as cur:
        found = tenants.disable_app(cur, appid)
    if not found:
        raise click.ClickException(f"no app {appid}")
    click.echo(f"app {appid} disabled")


@click.command("relay-outbox")
@with_appcontext
@one_line_failures
def relay_outbox_command():
    """Push every committed but undelivered queue item to Redis, in order."""
    click.echo(f"relayed {outbox.relay(get_db(), get_redis())} items")


def register(app: Flask) -> None:
    for command in (check_command, init_db_command, create_app_command, list_apps_command, disable_app_command,
                    relay_outbox_command):
        app.cli.add_command(command)
