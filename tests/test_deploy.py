"""The deployment files (deploy/): the systemd units follow the README's upgrade procedure, and the
environment file they read ships as an example naming every setting, with no secret in it."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_gunicorn import ROOT

import config

DEPLOY = ROOT / "deploy"
EXAMPLE = DEPLOY / "im-api.env.example"
UNITS = ("im-api.service", "im-api-migrate.service", "im-bridge.service")
SECRETS = ("MYSQL_PASSWORD", "REDIS_PASSWORD", "METRICS_TOKEN")


def unit(name: str) -> dict[str, list[str]]:
    """A unit's directives: name -> every value it is given (comments left out)."""
    found: dict[str, list[str]] = {}
    for line in (DEPLOY / name).read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def environment_file() -> dict[str, str]:
    """The example read as systemd reads an EnvironmentFile: NAME=value lines, comments skipped."""
    values = {}
    for line in EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith(("#", ";")):
            name, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f"not NAME=value: {line!r}"
            values[name] = value
    return values


def gunicorn_variables() -> set[str]:
    text = (ROOT / "gunicorn.conf.py").read_text() + (ROOT / "serve.py").read_text()
    return set(re.findall(r'(?:setting\(|environ(?:\.get\(|\[))\s*"([A-Z][A-Z0-9_]+)"', text)) - {
        "PROMETHEUS_MULTIPROC_DIR"}  # set by gunicorn.conf.py itself, not an operator's setting


def test_the_api_unit_does_not_migrate_on_start_and_the_migrate_unit_does():
    api = unit("im-api.service")
    commands = [v for key in ("ExecStartPre", "ExecStart", "ExecStartPost", "ExecReload") for v in api.get(key, [])]
    assert not any("init-db" in command for command in commands), commands
    assert api["ExecStart"] == ["/opt/im-api/.venv/bin/python serve.py"]
    migrate = unit("im-api-migrate.service")
    assert migrate["Type"] == ["oneshot"] and migrate["ExecStart"] == ["/opt/im-api/.venv/bin/flask --app app init-db"]
    assert migrate["Conflicts"] == ["im-api.service"]  # never beside this host's workers
    assert "WantedBy" not in migrate  # run when asked, never at boot


@pytest.mark.parametrize("name", UNITS)
def test_every_unit_reads_the_environment_file_the_example_is_for(name):
    assert unit(name)["EnvironmentFile"] == ["-/etc/im-api.env"]
    assert "im-api.env.example" in (DEPLOY / name).read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (apt-get install systemd)")
@pytest.mark.parametrize("name", UNITS)
def test_systemd_finds_nothing_wrong_with_the_unit(name):
    done = subprocess.run(["systemd-analyze", "verify", str(DEPLOY / name)], capture_output=True, text=True,
                          timeout=60)
    complaints = [line for line in (done.stdout + done.stderr).splitlines()
                  if "is not executable" not in line]  # /opt/im-api is not installed here
    assert complaints == [], complaints


def test_the_example_names_every_setting_with_its_default_and_no_secret():
    text, values = EXAMPLE.read_text(), environment_file()
    names = {declared.env or name for name, declared in vars(config.Config).items()
             if isinstance(declared, config.Setting)}
    mentioned = set(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", text, flags=re.M))
    assert names | gunicorn_variables() <= mentioned, sorted(names | gunicorn_variables() - mentioned)
    assert config.load(environ=values) == config.load(environ={})  # as shipped, it changes nothing
    assert all(values[name] == "" for name in SECRETS)
    assert not [name for name in values if name.startswith("AWS_")]  # S3 credentials: shown commented out only
    assert "GUNICORN_BIND" not in values  # it would replace the unit's socket, where nginx looks


def test_gunicorn_accepts_the_example(app):
    env = {**os.environ, **environment_file(), "MYSQL_DATABASE": app.config["MYSQL_DATABASE"],
           "REDIS_DB": str(app.config["REDIS_DB"]), "OUTBOX_RELAY_INTERVAL": "0"}
    done = subprocess.run([sys.executable, "serve.py", "--check-config"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr


def test_the_suite_says_in_one_line_what_it_skipped_and_why():
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # no systemd-analyze on this PATH
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_deploy.py",
                           "-k", "systemd_finds"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    notices = [line for line in done.stdout.splitlines() if line.startswith("NOT RUN:")]
    assert notices == ["NOT RUN: 3 tests skipped: systemd-analyze is not installed (apt-get install systemd) (3). "
                       "See README, \"What the full test suite needs\"."], done.stdout
