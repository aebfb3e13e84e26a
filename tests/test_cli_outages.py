"""Operator commands when MySQL or Redis is down: one line naming the address, never a traceback."""
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import TEST_CONFIG, wait_for
from test_cli import invoke
from test_concurrency import free_port
from test_gunicorn import ROOT

from app import create_app

COMMANDS = [("create-app", "--name", "x"), ("list-apps",), ("disable-app", "1"), ("relay-outbox",), ("check",),
            ("init-db",), ("restore-redis",), ("take-over-redis",)]


def assert_one_line(result, *wanted):
    assert result.exit_code not in (0, None), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for text in wanted:
        assert text in lines[0], lines[0]


@pytest.fixture(scope="module")
def closed_port():
    return free_port()  # nothing listens there


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
def test_every_command_says_in_one_line_that_mysql_is_down_where(args, closed_port):
    down = create_app(TEST_CONFIG | {"MYSQL_PORT": closed_port, "MYSQL_TIMEOUT": 1})
    assert_one_line(invoke(down, *args), f"MySQL at 127.0.0.1:{closed_port}", f"--port={closed_port}")


@pytest.mark.parametrize("args", [("relay-outbox",), ("check",), ("restore-redis",), ("take-over-redis",)],
                         ids=lambda a: a[0])
def test_a_command_that_needs_redis_says_in_one_line_that_it_is_down_where(app, args, closed_port, db):
    with db.cursor() as cur:  # something to relay
        cur.execute("INSERT INTO outbox (redis_key, item) VALUES ('group_event_queue', '{}')")
    down = create_app(TEST_CONFIG | {"REDIS_PORT": closed_port, "REDIS_TIMEOUT": 1})
    assert_one_line(invoke(down, *args), f"Redis at 127.0.0.1:{closed_port}", f"--port {closed_port}")


def test_the_flask_command_prints_one_line_and_exits_non_zero(app, closed_port):
    env = {**os.environ, "MYSQL_PORT": str(closed_port), "MYSQL_TIMEOUT": "1",
           "MYSQL_DATABASE": app.config["MYSQL_DATABASE"], "REDIS_DB": str(app.config["REDIS_DB"])}
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "list-apps"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert f"MySQL at 127.0.0.1:{closed_port} is not reachable" in done.stderr


def test_a_bad_port_setting_is_one_line_even_for_help():
    env = {**os.environ, "MYSQL_PORT": "abc"}
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stdout + done.stderr and "MYSQL_PORT='abc'" in done.stdout + done.stderr


# --- every command of the real `flask` CLI, in a process of its own ----------------------------------

# Arguments for each command; a command added without a row here fails test_the_table_names_every_command.
ARGS = {
    "check": (), "init-db": (), "create-app": ("--name", "down-test"), "list-apps": (), "show-app": ("999999",),
    "disable-app": ("999999",), "enable-app": ("999999",), "rotate-secret": ("999999",),
    "set-allowed-ips": ("999999", "10.0.0.0/8"), "create-store": ("999999", "--name", "s"),
    "add-seller": ("999999", "--name", "s"), "relay-outbox": (), "restore-redis": (), "take-over-redis": (),
    "bridge-dead list": (), "bridge-dead redrive": ("--all",),
}
NEEDS_NO_BACKEND = {"bridge", "openapi", "routes", "shell", "run"}  # long-running, or no MySQL/Redis at all
NEEDS_BOTH = {"check", "relay-outbox", "restore-redis", "take-over-redis"}
NEEDS_REDIS = NEEDS_BOTH | {"bridge-dead list", "bridge-dead redrive"}


def flask(app, env: dict, *args) -> subprocess.CompletedProcess:
    """`flask --app app ARGS` on the test database, with env's settings on top."""
    env = {**os.environ, "MYSQL_DATABASE": app.config["MYSQL_DATABASE"], "REDIS_DB": str(app.config["REDIS_DB"]),
           "MYSQL_TIMEOUT": "1", "REDIS_TIMEOUT": "1", **env}
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def run_all(app, env: dict) -> dict:
    """Every command of ARGS run at once (each its own process), by name."""
    with ThreadPoolExecutor(4) as pool:
        done = pool.map(lambda name: flask(app, env, *name.split(), *ARGS[name]), ARGS)
        return dict(zip(ARGS, done, strict=True))


def assert_one_line_error(done: subprocess.CompletedProcess, *wanted) -> None:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for text in wanted:
        assert text in lines[0], lines[0]


def test_the_table_names_every_command(app):
    names = set()
    for name, command in app.cli.commands.items():
        subs = getattr(command, "commands", None)
        names |= {f"{name} {sub}" for sub in subs} if subs and name != "openapi" else {name}
    assert names - NEEDS_NO_BACKEND == set(ARGS)


def test_every_command_with_mysql_down_says_so_in_one_line(app, closed_port):
    for name, done in run_all(app, {"MYSQL_PORT": str(closed_port)}).items():
        if name in NEEDS_REDIS - NEEDS_BOTH:  # the bridge's commands need Redis only
            assert done.returncode == 0 and "Traceback" not in done.stderr, (name, done.stderr)
            continue
        assert_one_line_error(done, f"MySQL at 127.0.0.1:{closed_port} is not reachable")


def test_every_command_with_redis_down_says_so_or_runs_on_mysql_alone(app, db, closed_port):
    with db.cursor() as cur:  # something for relay-outbox to push
        cur.execute("INSERT INTO outbox (redis_key, item) VALUES ('group_event_queue', '{}')")
    results = run_all(app, {"REDIS_PORT": str(closed_port)})
    for name in NEEDS_REDIS:
        assert_one_line_error(results[name], f"Redis at 127.0.0.1:{closed_port} is not reachable")
    assert results["init-db"].returncode == 0 and "schema is up to date" in results["init-db"].stdout
    assert results["create-app"].returncode == 0 and "appid=" in results["create-app"].stdout
    assert results["list-apps"].returncode == 0, results["list-apps"].stderr
    for name in ("show-app", "disable-app", "enable-app", "rotate-secret", "set-allowed-ips", "create-store"):
        assert_one_line_error(results[name], "no app 999999")  # MySQL answered: there is no such app
    assert_one_line_error(results["add-seller"], "no store 999999")


def test_the_bridge_says_in_one_line_that_its_metrics_port_is_taken(app):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = flask(app, {"IM_RPC_URL": "http://127.0.0.1:1", "BRIDGE_METRICS_PORT": str(port)}, "bridge")
    assert_one_line_error(done, f"BRIDGE_METRICS_PORT={port}", "Address already in use")


def test_the_bridge_with_redis_down_stands_by_and_logs_the_outage_once(app, closed_port, tmp_path):
    env = {**os.environ, "MYSQL_DATABASE": app.config["MYSQL_DATABASE"], "REDIS_PORT": str(closed_port),
           "REDIS_TIMEOUT": "0.2", "IM_RPC_URL": "http://127.0.0.1:1", "BRIDGE_METRICS_PORT": "0",
           "BRIDGE_LEASE_SECONDS": "0.5"}  # it polls for the lease every 0.1 s
    log = tmp_path / "bridge.log"
    with open(log, "w") as err:
        bridge = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "bridge"], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=err)
        try:
            wait_for(lambda: "taking the lease failing" in log.read_text(), seconds=60, what="the bridge to start")
            time.sleep(2)  # 20 more polls of the lease, all failing
        finally:
            bridge.send_signal(signal.SIGTERM)
            bridge.wait(timeout=30)
    stderr = log.read_text()
    assert bridge.returncode == 0 and "Traceback" not in stderr, stderr
    failing = [line for line in stderr.splitlines() if "taking the lease" in line]
    assert len(failing) == 1 and f"127.0.0.1:{closed_port}" in failing[0], stderr


@pytest.mark.parametrize("argv", [("-m", "flask", "--app", "app", "list-apps"), ("serve.py",)], ids=["flask", "serve"])
def test_an_unreachable_redis_cluster_at_start_is_one_line(app, closed_port, argv):
    env = {**os.environ, "MYSQL_DATABASE": app.config["MYSQL_DATABASE"], "REDIS_TIMEOUT": "0.5",
           "REDIS_CLUSTER_NODES": f"127.0.0.1:{closed_port}"}  # the cluster client connects when it is made
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert_one_line_error(done, f"Redis Cluster at 127.0.0.1:{closed_port} is not reachable", "REDIS_CLUSTER_NODES")
