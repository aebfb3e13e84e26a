"""A MySQL connection as the service opens it: its arguments, its session setup, and the
Connection class (deferred statements, a checkout check without a round trip)."""
import select

import pymysql


def lock_wait(config) -> int:
    """Seconds any MySQL lock is waited for: one less than MYSQL_TIMEOUT, so the wait gives up
    before the socket's read timeout does (which would lose the connection)."""
    return max(1, int(config["MYSQL_TIMEOUT"]) - 1)


def session_setup(config) -> list[str]:
    """The statements that set up each new session."""
    # READ COMMITTED: no gap locks, so writers and the outbox relay do not block each other.
    return [
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        f"SET SESSION innodb_lock_wait_timeout = {lock_wait(config)}",
        "SET SESSION group_concat_max_len = 67108864",  # 64 MB: a disband's member list in one value
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


class Connection(pymysql.connections.Connection):
    """PyMySQL's connection, with fewer round trips inside a transaction, and a check on checkout
    that needs none (ping); tests/test_db.py checks it behaves as the plain way.

    BEGIN waits to go out with the transaction's first statement, and statements whose outcome
    matters only to the commit (defer()) wait for the next statement or the COMMIT: all go to
    MySQL as one multi-statement packet, which stops at the first statement that fails and
    raises its error there. A member add takes 5 MySQL round trips (bench/roundtrips.py).
    A transaction of one deferred statement goes as that statement alone, in autocommit.
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
        elif self.autocommit_mode and len(self._deferred) == 2 and self._deferred[0] == "BEGIN" \
                and ";" not in self._deferred[1]:
            # One statement is a transaction of its own in autocommit: without BEGIN and COMMIT
            # MySQL parses and commits less (a bind's upsert in a bare loop: 237 -> 183 us of MariaDB's CPU).
            sql, self._deferred = self._deferred[1], []
            super().query(sql)
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
