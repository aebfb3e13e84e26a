"""MySQL and Redis handles for the current request (the one Flask-aware module of models/)."""
import logging
import os
import select
import threading
import time
from contextlib import contextmanager
from types import SimpleNamespace

import pymysql
import redis
from dbutils.pooled_db import PooledDB
from flask import Flask, current_app, g
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

PING = "SELECT 1"
REPLICA_STATUS = "SHOW SLAVE STATUS"
REPLICA_TIMEOUT = 1  # seconds: how long a dead or frozen replica can hold up a listing
REPLICA_CHECK_EVERY = 1  # seconds a replica's health is believed, per process
REPLICA_DOWN_FOR = 5  # seconds a replica that failed its check is left alone
log = logging.getLogger(__name__)


def lock_wait(config) -> int:
    """Seconds any MySQL lock is waited for: one less than MYSQL_TIMEOUT, so the wait gives up
    before the socket's read timeout does (which would lose the connection)."""
    return max(1, int(config["MYSQL_TIMEOUT"]) - 1)


def _session_setup(config) -> list[str]:
    # READ COMMITTED: no gap locks, so writers and the outbox relay do not block each other.
    return [
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        f"SET SESSION innodb_lock_wait_timeout = {lock_wait(config)}",
        "SET SESSION group_concat_max_len = 67108864",  # 64 MB: a disband's member list in one value
    ]


class Connection(pymysql.connections.Connection):
    """PyMySQL's connection, with fewer round trips inside a transaction, and a check on checkout
    that needs none (ping); tests/test_db.py checks it behaves as the plain way.

    BEGIN waits to go out with the transaction's first statement, and statements whose outcome
    matters only to the commit (defer()) wait for the next statement or the COMMIT: all go to
    MySQL as one multi-statement packet, which stops at the first statement that fails and
    raises its error there. A member add went from 17 MySQL round trips to 7 (bench/roundtrips.py).
    """

    def __init__(self, *args, **kwargs):
        self._deferred: list[str] = []
        self._in_transaction = False
        super().__init__(*args, **kwargs)

    def begin(self):
        if self._in_transaction:  # plain PyMySQL would commit the open one; here its deferred writes would go
            raise pymysql.err.ProgrammingError("begin() inside a transaction")
        self._deferred, self._in_transaction = ["BEGIN"], True

    def defer(self, sql: str) -> None:
        """Send sql (escaped already) with the next statement or the commit."""
        if not self._in_transaction:  # in autocommit nothing may come after it to carry it
            raise pymysql.err.ProgrammingError("defer() outside a transaction")
        self._deferred.append(sql)

    def query(self, sql, unbuffered=False):
        if not self._deferred:
            return super().query(sql, unbuffered)
        ahead, self._deferred = self._deferred, []
        if isinstance(sql, (bytes, bytearray)):  # executemany() builds a bytearray
            sql = sql.decode(self.encoding)
        self._execute_command(pymysql.constants.COMMAND.COM_QUERY, ";\n".join([*ahead, sql]).encode(self.encoding))
        for _ in ahead:
            self._read_query_result()  # raises the error of a statement that failed; the rest did not run
        self._affected_rows = self._read_query_result(unbuffered=unbuffered)
        return self._affected_rows

    def commit(self):
        self._in_transaction = False
        if self._deferred == ["BEGIN"]:  # nothing ran: there is no transaction to end
            self._deferred = []
        elif self._deferred:
            self.query("COMMIT")
        else:
            super().commit()

    def rollback(self):
        ahead, self._deferred, self._in_transaction = self._deferred, [], False
        if ahead[:1] != ["BEGIN"]:  # else MySQL never heard of this transaction
            super().rollback()

    def ping(self, reconnect=False):
        """Whether the session stands, without a round trip (the pool asks on every checkout).

        A connection at rest has nothing to read: bytes or an end of stream waiting on its socket
        mean MySQL closed the session (KILL, a restart, wait_timeout), and the pool reconnects.
        A server that froze or vanished is found by the request's first statement, which times
        out after MYSQL_TIMEOUT, as a ping's round trip would."""
        if self._sock is None:
            raise pymysql.err.InterfaceError("the connection is closed")
        poll = select.poll()
        poll.register(self._sock, select.POLLIN)
        return not poll.poll(0)


# DBUtils' creator: Connection, with pymysql's exceptions and thread safety.
CONNECTOR = SimpleNamespace(connect=Connection, dbapi=pymysql, threadsafety=pymysql.threadsafety)


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


def mysql_connect_args(config, database: bool = True) -> dict:
    """Keyword arguments of pymysql.connect() for this configuration."""
    args = dict(
        host=config["MYSQL_HOST"],
        port=config["MYSQL_PORT"],
        user=config["MYSQL_USER"],
        password=config["MYSQL_PASSWORD"],
        charset="utf8mb4",
        autocommit=True,
        # FOUND_ROWS: rowcount = rows matched, not rows changed; MULTI_STATEMENTS: see Connection
        # (every statement is still built from %(name)s parameters, escaped by PyMySQL).
        client_flag=pymysql.constants.CLIENT.FOUND_ROWS | pymysql.constants.CLIENT.MULTI_STATEMENTS,
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
            CONNECTOR,
            maxcached=app.config["MYSQL_POOL_SIZE"],
            setsession=_session_setup(app.config),
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
                            init_command=";\n".join(_session_setup(config)), **args)
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


def ping_mysql(conn) -> None:
    """Raise unless MySQL answers on this connection."""
    with conn.cursor() as cur:
        cur.execute(PING)


def close_db(exc=None) -> None:
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


def make_redis(config) -> redis.Redis | RedisCluster:
    """The process's Redis client (a RedisCluster when REDIS_CLUSTER_NODES is set); redis-py
    re-creates its sockets after a fork."""
    common = dict(
        password=config["REDIS_PASSWORD"],
        socket_timeout=config["REDIS_TIMEOUT"],
        socket_connect_timeout=config["REDIS_TIMEOUT"],
        decode_responses=True,
        health_check_interval=30,
        # One quick retry (a dropped idle socket), not seconds of backoff while Redis is down.
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
    )
    if config["REDIS_CLUSTER_NODES"]:
        return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in config["REDIS_CLUSTER_NODES"]],
                            **common)
    return redis.Redis(host=config["REDIS_HOST"], port=config["REDIS_PORT"], db=config["REDIS_DB"], **common)


def get_redis() -> redis.Redis:
    return current_app._get_current_object().extensions["redis"]
