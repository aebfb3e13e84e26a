"""Fixtures: the app on a dedicated test database and Redis DB, emptied around every test.

Shared helpers (HTTP calls, row and queue readers, assertions) live in tests/helpers.py."""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pymysql
import pytest
import redis
from helpers import TABLES, TEST_CONFIG, Api, make_app
from redis.cluster import RedisCluster

import config
from app import create_app
from models.connection import mysql_connect_args
from models.migrations import init_db


def _config() -> dict:
    return config.load(TEST_CONFIG)


@pytest.fixture(scope="session")
def app():
    config = _config()
    conn = pymysql.connect(**mysql_connect_args(config, database=False))
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{config['MYSQL_DATABASE']}`")
    conn.close()
    init_db(config)
    yield create_app(TEST_CONFIG)
    shutil.rmtree(TEST_CONFIG["MEDIA_STORE"], ignore_errors=True)  # the run's uploads


@pytest.fixture
def db(app):
    """A direct MySQL connection to the test database (autocommit) for checking rows."""
    conn = pymysql.connect(**mysql_connect_args(app.config))
    yield conn
    conn.close()


@pytest.fixture
def r(app):
    """The test Redis DB, flushed before the test."""
    client = redis.Redis(host=app.config["REDIS_HOST"], port=app.config["REDIS_PORT"],
                         db=app.config["REDIS_DB"], password=app.config["REDIS_PASSWORD"], decode_responses=True)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(autouse=True)
def clean(app, db, r):
    with db.cursor() as cur:
        for table in TABLES:
            cur.execute(f"DELETE FROM {table}")
    app.extensions["app_cache"].clear()
    app.extensions["auth_holds"].clear()


@pytest.fixture(scope="session")
def small_app(app):
    """An app on the same database and Redis whose normal groups hold at most 3 members."""
    return create_app(TEST_CONFIG | {"MAX_GROUP_MEMBERS": 3})


@pytest.fixture
def small_api(small_app, demo):
    return Api(small_app.test_client(), demo["auth"])


def port_pair_free(port: int) -> bool:
    """Whether port and its cluster bus port (port + 10000) are both free."""
    for p in (port, port + 10000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


@pytest.fixture(scope="session")
def redis_cluster():
    """A local 3-master Redis Cluster of the test session's own: its startup nodes."""
    server = shutil.which("redis-server")
    if not server or not shutil.which("redis-cli"):
        pytest.skip("redis-server / redis-cli not installed")
    tmp = tempfile.mkdtemp(prefix="gobelieve-cluster-")
    ports, base = [], 20000 + os.getpid() % 20000
    while len(ports) < 3:
        if port_pair_free(base):
            ports.append(base)
        base += 1
    procs = [subprocess.Popen([server, "--port", str(p), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                               "--cluster-config-file", f"{tmp}/nodes-{p}.conf", "--dir", tmp, "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for p in ports]
    try:
        for p in ports:
            _wait(lambda port=p: _answers(port), f"redis-server on {p}")
        subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
                       "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=60)
        _wait(lambda: all("cluster_state:ok" in _cli(p, "cluster", "info") for p in ports), "cluster_state:ok")
        yield ",".join(f"127.0.0.1:{p}" for p in ports)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def _cli(port: int, *args) -> str:
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True).stdout


def _answers(port: int) -> bool:
    return _cli(port, "ping").strip() == "PONG"


def _wait(check, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def cluster_app(app, redis_cluster):
    """The app on the test database and the test session's Redis Cluster."""
    return create_app(TEST_CONFIG | {"REDIS_CLUSTER_NODES": redis_cluster})


@pytest.fixture
def cluster_r(cluster_app, redis_cluster):
    """A client of the test session's Redis Cluster, every master flushed before the test."""
    host, port = redis_cluster.split(",")[0].split(":")
    client = RedisCluster(host=host, port=int(port), decode_responses=True)
    client.flushall(target_nodes=RedisCluster.PRIMARIES)
    yield client
    client.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def demo(db):
    return make_app(db)


@pytest.fixture
def other(db):
    """A second app, to check that apps cannot see each other's objects."""
    return make_app(db, name="other")


@pytest.fixture
def api(client, demo):
    return Api(client, demo["auth"])


@pytest.fixture
def other_api(client, other):
    return Api(client, other["auth"])


@pytest.fixture
def router():
    """A stand-in for a stock GoBelieve router's HTTP RPC (tests/router_standin.py) on a free port."""
    from router_standin import RouterStandin  # it imports conftest's free_port

    standin = RouterStandin()
    yield standin
    standin.close()


def pytest_terminal_summary(terminalreporter):
    """One line naming what this machine lacks when tests were skipped for it, so a part of the suite
    is never skipped silently (README, "What the full test suite needs")."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        parts = "; ".join(f"{reason} ({count})" for reason, count in reasons.items())
        terminalreporter.write_line(f"NOT RUN: {sum(reasons.values())} tests skipped: {parts}. "
                                    "See README, \"What the full test suite needs\".")
