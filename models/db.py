"""The request's MySQL connection: the per-process pool, get_db(), transaction(), and helpers
that put several statements in one round trip. With replicas.py and redis_client.py, the only
Flask-aware modules of models/."""
import os
from contextlib import contextmanager
from types import SimpleNamespace

import pymysql
from dbutils.pooled_db import PooledDB
from flask import Flask, current_app, g

from .connection import Connection, mysql_connect_args, session_setup

PING = "SELECT 1"

# DBUtils' creator: Connection, with pymysql's exceptions and thread safety.
CONNECTOR = SimpleNamespace(connect=Connection, dbapi=pymysql, threadsafety=pymysql.threadsafety)


def defer(cur, sql: str, args: dict | None = None) -> None:
    """Run sql in cur's transaction with its next statement or its commit, in the same round trip
    (see Connection); for statements whose rows, rowcount and id nobody reads. On a plain PyMySQL
    connection (a script's, a test's) it runs at once."""
    if isinstance(cur.connection, Connection):
        cur.connection.defer(cur.mogrify(sql, args))
    else:
        cur.execute(sql, args)


def values(cur, row: str, rows: list[dict]) -> str:
    """The VALUES list of a multi-row INSERT: each of rows escaped into the `row` template."""
    return ", ".join(cur.mogrify(row, each) for each in rows)


def results(cur, sql: str, args: dict | None = None) -> list[list[dict]]:
    """Run several statements (sql joined by ';') in one round trip; each one's rows."""
    cur.execute(sql, args)
    found = [cur.fetchall()]
    while cur.nextset():
        found.append(cur.fetchall())
    return found


def pooled_connection(app: Flask):
    """A connection of the process's pool, apart from the request's own."""
    return _pool(app).connection()


def _pool(app: Flask) -> PooledDB:
    # Built on first use in each process: a pool made before gunicorn forks would
    # share its sockets between workers.
    pid, pool = app.extensions.get("mysql_pool", (None, None))
    if pid != os.getpid():
        pool = PooledDB(
            CONNECTOR,
            maxcached=app.config["MYSQL_POOL_SIZE"],
            setsession=session_setup(app.config),
            ping=1,
            # Roll back only a transaction left open (every write is one, begun explicitly), not every
            # connection handed back: that ROLLBACK was one more round trip on every request.
            reset=False,
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
    """Hand the request's connections back (teardown): its own, and a replica's (replicas.get_replica_db)."""
    held = g._get_current_object().__dict__  # dict.pop: cheaper than g.pop's extra call, on every request
    db, replica = held.pop("db", None), held.pop("replica_db", None)
    if db is not None:
        db.close()
    if replica is not None:
        replica.close()


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
