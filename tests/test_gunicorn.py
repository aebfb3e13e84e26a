"""gunicorn as deployed (gunicorn.conf.py): every line it and the app write is a JSON line."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest
from helpers import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent


def healthy(port) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_gunicorns_lines_and_the_apps_are_json_without_logging_errors(app):
    port = free_port()
    env = {**os.environ, "MYSQL_DATABASE": app.config["MYSQL_DATABASE"],
           "REDIS_DB": str(app.config["REDIS_DB"]), "WEB_CONCURRENCY": "1", "GUNICORN_ACCESS_LOG": "-"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        gunicorn = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind",
                                     f"127.0.0.1:{port}", "app:app"], cwd=ROOT, env=env, stdout=out, stderr=err)
        try:
            wait_for(lambda: healthy(port), what="gunicorn")
            gunicorn.send_signal(signal.SIGHUP)  # a reload sets gunicorn's logging up again
            wait_for(lambda: err.seek(0) or err.read().count(b"Booting worker") >= 2, what="the reload")
            wait_for(lambda: healthy(port), what="gunicorn after the reload")
        finally:
            gunicorn.send_signal(signal.SIGTERM)
            assert gunicorn.wait(timeout=40) == 0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    assert "Traceback" not in stdout + stderr and "--- Logging error ---" not in stdout + stderr, stderr
    lines = {"stdout": stdout.splitlines(), "stderr": stderr.splitlines()}
    records = {name: [json.loads(line) for line in text] for name, text in lines.items()}  # each line is JSON
    assert {r["logger"] for r in records["stdout"]} == {"im.access", "gunicorn.access"}
    messages = [r["message"] for r in records["stderr"]]
    for wanted in ("Starting gunicorn", "Booting worker", "Handling signal: hup", "Shutting down: Master"):
        assert any(message.startswith(wanted) for message in messages), messages
    assert all(r["logger"] == "gunicorn.error" and r["level"] in ("INFO", "WARNING") for r in records["stderr"])


BAD_SETTINGS = [("GUNICORN_THREADS", "x"), ("GUNICORN_THREADS", "0"), ("GUNICORN_TIMEOUT", "x"),
                ("GUNICORN_KEEPALIVE", "-1"), ("GUNICORN_BIND", "nowhere"), ("GUNICORN_BIND", "127.0.0.1:70000"),
                ("LOG_LEVEL", "loud"), ("WEB_CONCURRENCY", "x"), ("WEB_CONCURRENCY", "0"), ("MYSQL_PORT", "abc")]


def assert_stops_with_one_line(done: subprocess.CompletedProcess, variable: str, value: str) -> None:
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bad setting: {variable}={value!r}: expected "), done.stderr


@pytest.mark.parametrize(("variable", "value"), BAD_SETTINGS, ids=lambda v: str(v))
def test_a_bad_setting_stops_serve_py_with_one_line_naming_it(variable, value):
    done = subprocess.run([sys.executable, "serve.py"], cwd=ROOT, env={**os.environ, variable: value},
                          capture_output=True, text=True, timeout=60)
    assert_stops_with_one_line(done, variable, value)


@pytest.mark.parametrize(("variable", "value"), [s for s in BAD_SETTINGS if s[0] != "WEB_CONCURRENCY"],
                         ids=lambda v: str(v))
def test_a_bad_setting_stops_gunicorn_itself_with_one_line_naming_it(variable, value):
    # WEB_CONCURRENCY is left out: gunicorn reads it on import, before gunicorn.conf.py (serve.py checks it).
    done = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"], cwd=ROOT,
                          env={**os.environ, variable: value}, capture_output=True, text=True, timeout=60)
    assert_stops_with_one_line(done, variable, value)
