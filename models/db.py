"""MySQL and Redis handles for the current request (the one Flask-aware module of models/)."""
import os
from contextlib import contextmanager

import pymysql
import redis
from dbutils.pooled_db import PooledDB
from flask import Flask, current_app, g
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

PING = "SELECT 1"


def _session_setup(config) -> list[str]:
    # READ COMMITTED: no gap locks, so writers and the outbox relay do not block each other.
    return [
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        f"SET SESSION innodb_lock_wait_timeout = {max(1, int(config['MYSQL_TIMEOUT']) - 1)}",
    ]


def mysql_connect_args(config, database: bool = True) -> dict:
    """Keyword arguments of pymysql.connect() for this configuration."""
    args = dict(
        host=config["MYSQL_HOST"],
        port=config["MYSQL_PORT"],
        user=config["MYSQL_USER"],
        password=config["MYSQL_PASSWORD"],
        charset="utf8mb4",
        autocommit=True,
        client_flag=pymysql.constants.CLIENT.FOUND_ROWS,  # rowcount = rows matched, not rows changed
        cursorclass=pymysql.cursors.DictCursor,
        connect_timeout=config["MYSQL_TIMEOUT"],
        read_timeout=config["MYSQL_TIMEOUT"],
        write_timeout=config["MYSQL_TIMEOUT"],
    )
    if database:
        args["database"] = config["MYSQL_DATABASE"]
    return args


def pooled_connection(app: Flask):
    """A connection of the process's pool, apart from the request's own."""
    return _pool(app).connection()


def _pool(app: Flask) -> PooledDB:
    # Built on first use in each process: a pool made before gunicorn forks would
    # share its sockets between workers.
    pid, pool = app.extensions.get("mysql_pool", (None, None))
    if pid != os.getpid():
        pool = PooledDB(
            pymysql,
            maxcached=app.config["MYSQL_POOL_SIZE"],
            setsession=_session_setup(app.config),
            ping=1,
            **mysql_connect_args(app.config),
        )
        app.extensions["mysql_pool"] = (os.getpid(), pool)
    return pool


def get_db():
    """The request's pooled MySQL connection (autocommit; use transaction() to write)."""
    ctx = g._get_current_object()
    if "db" not in ctx:
        ctx.db = pooled_connection(current_app._get_current_object())
    return ctx.db


def ping_mysql(conn) -> None:
    """Raise unless MySQL answers on this connection."""
    with conn.cursor() as cur:
        cur.execute(PING)


def close_db(exc=None) -> None:
    db = g._get_current_object().pop("db", None)
    if db is not None:
        db.close()


@contextmanager
def transaction(conn=None):
    """Yield a cursor in a transaction: commit on success, roll back on any exception."""
    conn = conn or get_db()
    conn.begin()  # explicit, so DBUtils never silently re-runs a statement on a new connection
    try:
        with conn.cursor() as cur:
            yield cur
        conn.commit()
    except BaseException:
        try:
            conn.rollback()
        except pymysql.Error:
            pass  # the connection is gone; the server rolled back for us
        raise


def make_redis(config) -> redis.Redis:
    """The process's Redis client; redis-py re-creates its sockets after a fork."""
    return redis.Redis(
        host=config["REDIS_HOST"],
        port=config["REDIS_PORT"],
        db=config["REDIS_DB"],
        password=config["REDIS_PASSWORD"],
        socket_timeout=config["REDIS_TIMEOUT"],
        socket_connect_timeout=config["REDIS_TIMEOUT"],
        decode_responses=True,
        health_check_interval=30,
        # One quick retry (a dropped idle socket), not seconds of backoff while Redis is down.
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
    )


def get_redis() -> redis.Redis:
    return current_app._get_current_object().extensions["redis"]
