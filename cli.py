"""Operator commands: flask --app app check | init-db | create-app | list-apps | disable-app | relay-outbox."""
import click
import pymysql
import redis
from flask import Flask, current_app
from flask.cli import with_appcontext

from models import outbox
from models import tenant as tenants
from models.db import get_db, get_redis, make_redis, mysql_connect_args, transaction
from models.migrations import init_db

START_HINTS = {
    "MySQL": "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
    "Redis": 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
}


def unreachable(config) -> list[str]:
    """One sentence for each backing service that cannot be reached with this configuration."""
    problems = []
    try:
        pymysql.connect(**mysql_connect_args(config, database=False)).close()
    except pymysql.Error as exc:
        problems.append(f"MySQL at {config['MYSQL_HOST']}:{config['MYSQL_PORT']} is not reachable ({exc}). "
                        f"Start it, e.g.: {START_HINTS['MySQL']}")
    try:
        make_redis(config).ping()
    except redis.RedisError as exc:
        problems.append(f"Redis at {config['REDIS_HOST']}:{config['REDIS_PORT']} is not reachable ({exc}). "
                        f"Start it, e.g.: {START_HINTS['Redis']}")
    return problems


def require_services() -> None:
    problems = unreachable(current_app.config)
    if problems:
        raise click.ClickException("\n".join(problems))


@click.command("check")
@with_appcontext
def check_command():
    """Check that MySQL and Redis are reachable; say how to start the one that is not."""
    require_services()
    click.echo("MySQL and Redis are reachable")


@click.command("init-db")
@with_appcontext
def init_db_command():
    """Create the database and apply every schema file in sql/ not applied yet."""
    require_services()
    applied = init_db(current_app.config)
    click.echo(f"applied: {', '.join(applied)}" if applied else "schema is up to date")


@click.command("create-app")
@with_appcontext
@click.option("--name", required=True, help="A name for the app.")
@click.option("--store-id", default=0, show_default=True, help="Customer-service store (0: none).")
@click.option("--if-missing", is_flag=True, help="If an app of that name exists, print its credentials instead.")
def create_app_command(name: str, store_id: int, if_missing: bool):
    """Create an app and print its id, key and secret."""
    with get_db().cursor() as cur:
        row = tenants.find_app_by_name(cur, name) if if_missing else None
    if row is None:
        with transaction() as cur:
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
    with transaction() as cur:
        found = tenants.disable_app(cur, appid)
    if not found:
        raise click.ClickException(f"no app {appid}")
    click.echo(f"app {appid} disabled")


@click.command("relay-outbox")
@with_appcontext
def relay_outbox_command():
    """Push every committed but undelivered queue item to Redis, in order."""
    click.echo(f"relayed {outbox.relay(get_db(), get_redis())} items")


def register(app: Flask) -> None:
    for command in (check_command, init_db_command, create_app_command, list_apps_command, disable_app_command,
                    relay_outbox_command):
        app.cli.add_command(command)
