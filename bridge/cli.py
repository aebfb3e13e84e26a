"""The bridge's commands: flask --app app bridge | bridge-dead list | bridge-dead redrive [--all | ID].

A Redis failure in any of them is one line naming the address (cli.guard_all)."""
import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from config import SettingError
from models.queue_items import queue_names

from . import deadletter, logs
from .settings import from_config


def _queues() -> list[str]:
    return list(queue_names(current_app.config).values())


@click.command("bridge")
@with_appcontext
def bridge_command():
    """Feed a stock GoBelieve router from the queues (needs IM_RPC_URL); stops on SIGTERM."""
    from .worker import run  # asyncio and the worker only for this command

    try:
        settings = from_config(current_app.config)
        logs.setup(current_app.config["LOG_LEVEL"])
        status = run(settings)
    except SettingError as exc:  # also the metrics port taken, found when the bridge starts
        raise click.ClickException(str(exc)) from None
    raise SystemExit(status)


@click.group("bridge-dead")
def dead_group():
    """Look at and re-drive the items the router refused for good."""


@dead_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@with_appcontext
def list_command(as_json: bool):
    """List the dead letters of every queue, oldest first."""
    r = current_app.extensions["redis"]
    for queue in _queues():
        for letter in deadletter.entries(r, queue):
            if as_json:
                click.echo(letter["raw"])
            else:
                click.echo(f"{letter['queue']}\t{letter['id']}\t{letter['time']}\t{letter['status']}\t"
                           f"{letter['reason']}\t{letter['item']}")


@dead_group.command("redrive")
@click.argument("ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Re-drive every dead letter.")
@with_appcontext
def redrive_command(ids: tuple[str], everything: bool):
    """Put dead letters (by id, or --all) back on their queues, behind what waits there."""
    if bool(ids) == everything:
        raise click.UsageError("give dead-letter ids or --all")
    r, wanted, done = current_app.extensions["redis"], set(ids), set()
    for queue in _queues():
        for letter in deadletter.entries(r, queue):
            if (everything or letter["id"] in wanted) and deadletter.redrive(r, queue, letter):
                done.add(letter["id"])
                click.echo(f"re-driven {queue} {letter['id']}")
    missing = wanted - done
    if missing:
        raise click.ClickException(f"no dead letter with id {', '.join(sorted(missing))}")
    if everything and not done:
        click.echo("no dead letters")


def register(app: Flask) -> None:
    """Add the bridge's commands to the app's CLI."""
    app.cli.add_command(bridge_command)
    app.cli.add_command(dead_group)


