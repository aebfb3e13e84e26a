"""Settings are parsed and checked once, when the app is made: a bad one stops the start with its name."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import config
from app import create_app

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("variable, value", [
    ("MYSQL_PORT", "abc"), ("MYSQL_PORT", "70000"), ("REDIS_TIMEOUT", "soon"), ("CUSTOMER_RATE_LIMIT", "lots"),
    ("CUSTOMER_RATE_LIMIT", "60/fortnight"), ("MAX_BATCH", "0"), ("ACCESS_LOG", "maybe"),
    ("TRUSTED_PROXIES", "10.0.0.0/33"), ("LOG_LEVEL", "LOUD"), ("MAX_BODY_BYTES", "1MB"),
    ("BRIDGE_CONCURRENCY", "0"), ("BRIDGE_STOP_SECONDS", "0"), ("BRIDGE_METRICS_PORT", "65536"),
    ("IM_RPC_URL", "ftp://router"),
])
def test_a_bad_value_in_the_environment_is_refused_naming_the_variable(variable, value):
    with pytest.raises(config.SettingError) as refused:
        config.load(environ={variable: value})
    assert str(refused.value).startswith(f"{variable}={value!r}: expected"), refused.value


def test_an_override_is_checked_like_the_environment():
    with pytest.raises(config.SettingError, match="CUSTOMER_RATE_LIMIT"):
        create_app({"CUSTOMER_RATE_LIMIT": "60 a minute"})


def test_a_log_level_in_lower_case_is_taken_as_gunicorn_takes_it():
    """LOG_LEVEL is shared with gunicorn.conf.py, which lower-cases it; "warning" once passed the
    check and then stopped create_app with a traceback."""
    assert config.load(environ={"LOG_LEVEL": "warning"})["LOG_LEVEL"] == "WARNING"
    create_app({"LOG_LEVEL": "info"})


def test_values_are_parsed_once():
    settings = config.load(environ={"MYSQL_PORT": "3307", "CUSTOMER_RATE_LIMIT": "5/hour", "ACCESS_LOG": "0",
                                    "TRUSTED_PROXIES": "10.0.0.0/8, unix", "MAX_BODY_BYTES": "2048"})
    assert settings["MYSQL_PORT"] == 3307
    assert settings["CUSTOMER_RATE_LIMIT"] == (5, 3600)
    assert settings["ACCESS_LOG"] is False
    assert settings["TRUSTED_PROXIES"].unix and len(settings["TRUSTED_PROXIES"].networks) == 1
    assert settings["MAX_CONTENT_LENGTH"] == 2048


def run(command: list[str], **env) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", [
    [str(BIN / "flask"), "--app", "app", "--help"],
    [str(BIN / "flask"), "--app", "app", "check"],
    [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--bind", "127.0.0.1:0", "app:app"],
])
def test_a_bad_setting_stops_every_entry_point_with_one_line(command):
    done = run(command, MYSQL_PORT="abc")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    assert "bad setting: MYSQL_PORT='abc': expected an integer" in done.stderr
    lines = [line for line in done.stderr.splitlines() if "MYSQL_PORT" in line]
    assert len(lines) == 1, done.stderr
