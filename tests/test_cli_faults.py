"""Operator commands when MySQL or Redis is down, and create-app's refusals (issue 15 items 18, 19)."""
import os
import subprocess
import sys

import pytest
from conftest import TEST_CONFIG, rows
from test_cli import credentials, invoke
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


# --- create-app refuses what would make apps ambiguous ----------------------------------------------

@pytest.mark.parametrize("name", ["", "   "])
def test_create_app_refuses_an_empty_name(app, db, name):
    result = invoke(app, "create-app", "--name", name)
    assert result.exit_code != 0 and "--name" in result.output, result.output
    assert rows(db, "SELECT id FROM app") == []


def test_create_app_refuses_a_duplicate_name_and_if_missing_finds_the_one(app, db):
    first = credentials(invoke(app, "create-app", "--name", "shop").output)
    again = invoke(app, "create-app", "--name", "shop")
    assert again.exit_code != 0 and "exists" in again.output and str(first["appid"]) in again.output, again.output
    assert credentials(invoke(app, "create-app", "--name", "shop", "--if-missing").output) == first
    assert len(rows(db, "SELECT id FROM app")) == 1


@pytest.mark.parametrize("store_id", ["-5", "-1", str(2**63)])
def test_create_app_refuses_a_store_id_out_of_range(app, db, store_id):
    result = invoke(app, "create-app", "--name", "shop", "--store-id", store_id)
    assert result.exit_code != 0 and "--store-id" in result.output, result.output
    assert rows(db, "SELECT id FROM app") == []
