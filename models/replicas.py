"""MySQL replicas for paged listings: which replica is fit to answer, and its connection."""
import logging
import os
import threading
import time
from types import SimpleNamespace

import pymysql
from dbutils.pooled_db import PooledDB
from flask import Flask, current_app, g

from .connection import mysql_connect_args, session_setup
from .db import get_db

REPLICA_STATUS = "SHOW SLAVE STATUS"
REPLICA_TIMEOUT = 1  # seconds: how long a dead or frozen replica can hold up a listing
REPLICA_CHECK_EVERY = 1  # seconds a replica's health is believed, per process
REPLICA_DOWN_FOR = 5  # seconds a replica that failed its check is left alone
log = logging.getLogger(__name__)


class ReplicaConnection(pymysql.connections.Connection):
    """A replica's connection: its handshake and its ping wait at most connect_timeout
    (REPLICA_TIMEOUT) for the server, its queries read_timeout (MYSQL_TIMEOUT).

    Replicas.connection() pings each one it hands out: a replica that froze since its last
    health check is found by that round trip within REPLICA_TIMEOUT, and the listing goes to the
    primary. (A socket check like Connection.ping sees a frozen server as alive, and PyMySQL's
    handshake and ping wait read_timeout.)"""

    def connect(self, sock=None):
        query_timeout, self._read_timeout = self._read_timeout, self.connect_timeout
        try:
            super().connect(sock)
        finally:
            self._read_timeout = query_timeout

    def ping(self, reconnect=True):
        """A COM_PING answered within connect_timeout; a connection closed by an earlier failure
        is opened again first (as quickly bounded). No second try: the caller skips the replica."""
        if self._sock is None:
            self.connect()
        query_timeout, self._read_timeout = self._read_timeout, self.connect_timeout
        try:
            super().ping()
        finally:
            self._read_timeout = query_timeout


REPLICA_CONNECTOR = SimpleNamespace(connect=ReplicaConnection, dbapi=pymysql, threadsafety=pymysql.threadsafety)


class Replicas:
    """The MySQL replicas of one process: a pool each, and which of them is fit to answer.

    A replica is fit while its last check (at most REPLICA_CHECK_EVERY old) found it
    replicating with Seconds_Behind_Master <= MYSQL_REPLICA_MAX_LAG; a check that fails or times
    out (REPLICA_TIMEOUT) leaves it out for REPLICA_DOWN_FOR. None fit: the caller uses the primary."""

    def __init__(self, config):
        self.max_lag, self._lock, self._next = config["MYSQL_REPLICA_MAX_LAG"], threading.Lock(), 0
        self._replicas = []
        for host, port in config["MYSQL_REPLICA_HOSTS"]:
            args = mysql_connect_args(config) | {"host": host, "port": port, "connect_timeout": REPLICA_TIMEOUT}
            probe = args | {"read_timeout": REPLICA_TIMEOUT, "write_timeout": REPLICA_TIMEOUT}
            # ping=0: connection() pings with a bound of its own, and sees the outcome. The session
            # setup is the connection's init_command: its ping may reconnect without DBUtils knowing.
            pool = PooledDB(REPLICA_CONNECTOR, maxcached=config["MYSQL_POOL_SIZE"], ping=0, reset=False,
                            init_command=";\n".join(session_setup(config)), **args)
            self._replicas.append({"name": f"{host}:{port}", "pool": pool, "probe": probe, "fit": False,
                                   "until": 0.0})

    def connection(self):
        """A pooled connection to a fit replica (in turn) that answered a ping within
        REPLICA_TIMEOUT, or None when none is fit."""
        count = len(self._replicas)
        for i in range(count):
            replica = self._replicas[(self._next + i) % count]
            if self._fit(replica):
                self._next = (self._next + i + 1) % count
                try:
                    conn = replica["pool"].connection()
                except pymysql.Error as exc:
                    self._mark(replica, False, f"connect failed: {exc}")
                    continue
                try:
                    conn.ping()
                    return conn
                except pymysql.Error as exc:
                    conn.close()  # back to the pool closed: its next ping connects again
                    self._mark(replica, False, f"no answer to a ping within {REPLICA_TIMEOUT} s: {exc}")
        return None

    def _fit(self, replica) -> bool:
        if time.monotonic() < replica["until"]:
            return replica["fit"]
        with self._lock:
            if time.monotonic() >= replica["until"]:  # another thread may have checked meanwhile
                self._check(replica)
        return replica["fit"]

    def _check(self, replica) -> None:
        try:
            conn = pymysql.connect(**replica["probe"])
            try:
                with conn.cursor() as cur:
                    cur.execute(REPLICA_STATUS)
                    status = cur.fetchone()
            finally:
                conn.close()
        except pymysql.Error as exc:
            return self._mark(replica, False, f"unreachable: {exc}")
        lag = status and status["Seconds_Behind_Master"]
        if lag is None:  # not a replica, or its SQL or IO thread stopped: how far behind is unknown
            return self._mark(replica, False, "not replicating")
        if lag > self.max_lag:
            return self._mark(replica, False, f"{lag} s behind")
        self._mark(replica, True)

    def _mark(self, replica, fit: bool, why: str = "") -> None:
        if replica["fit"] and not fit:
            log.warning("MySQL replica %s skipped: %s", replica["name"], why)
        replica["fit"] = fit
        replica["until"] = time.monotonic() + (REPLICA_CHECK_EVERY if fit else REPLICA_DOWN_FOR)


def _replicas(app: Flask) -> Replicas | None:
    if not app.config["MYSQL_REPLICA_HOSTS"]:
        return None
    pid, replicas = app.extensions.get("mysql_replicas", (None, None))
    if pid != os.getpid():  # per process, as the pool
        replicas = Replicas(app.config)
        app.extensions["mysql_replicas"] = (os.getpid(), replicas)
    return replicas


def get_replica_db():
    """A connection for a paged listing: a fit replica's (it may lag up to MYSQL_REPLICA_MAX_LAG
    seconds), else the request's primary connection. Never for a write or a read inside a change."""
    ctx = g._get_current_object()
    if "replica_db" not in ctx:
        replicas = _replicas(current_app._get_current_object())
        ctx.replica_db = replicas and replicas.connection()
    return ctx.replica_db or get_db()
