"""models/connection.py's Connection: statements deferred to the next round trip behave as if run at once."""
import pymysql
import pytest
from helpers import gone_within, rows

from models import group as groups
from models.db import defer, pooled_connection, transaction, values
from models.queue_items import Changes


@pytest.fixture
def conn(app, db):
    with db.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS scratch")
        cur.execute("CREATE TABLE scratch (id INT PRIMARY KEY, note VARCHAR(20) NOT NULL)")
    pooled = pooled_connection(app)
    yield pooled
    pooled.close()


@pytest.fixture
def sent(conn, monkeypatch):
    """The packets the pooled connection sends from now on, as text."""
    raw, packets = conn._con._con, []
    original = type(raw)._execute_command

    def recording(self, command, sql):
        packets.append(sql.decode() if isinstance(sql, bytes) else sql)
        return original(self, command, sql)

    monkeypatch.setattr(type(raw), "_execute_command", recording)
    return packets


def test_deferred_statements_run_in_order_before_the_next_one_in_one_round_trip(conn, db, sent):
    with transaction(conn) as cur:
        defer(cur, "INSERT INTO scratch (id, note) VALUES %(row)s", {"row": (1, "first")})
        defer(cur, "UPDATE scratch SET note = %(note)s WHERE id = 1", {"note": "it's \"quoted\" \\ 😀"})
        cur.execute("SELECT note FROM scratch WHERE id = 1")
        assert cur.fetchall() == [{"note": "it's \"quoted\" \\ 😀"}]
    assert rows(db, "SELECT id, note FROM scratch") == [{"id": 1, "note": "it's \"quoted\" \\ 😀"}]
    assert len(sent) == 2 and sent[0].startswith("BEGIN;") and sent[1] == "COMMIT"


def test_statements_deferred_to_the_commit_go_with_it(conn, db, sent):
    with transaction(conn) as cur:
        defer(cur, "INSERT INTO scratch (id, note) VALUES {values}".format(
            values=values(cur, "(%(id)s, %(note)s)", [{"id": 1, "note": "a"}, {"id": 2, "note": "b"}])))
        defer(cur, "UPDATE scratch SET note = 'c' WHERE id = 2")
    assert rows(db, "SELECT id, note FROM scratch ORDER BY id") == [{"id": 1, "note": "a"}, {"id": 2, "note": "c"}]
    assert len(sent) == 1 and sent[0].startswith("BEGIN;") and sent[0].endswith(";\nCOMMIT")


def test_a_transaction_of_one_deferred_statement_sends_it_alone_and_it_stands_or_fails_whole(conn, db, sent):
    with transaction(conn) as cur:
        defer(cur, "INSERT INTO scratch (id, note) VALUES (1, 'a'), (2, 'b')")
    assert rows(db, "SELECT id, note FROM scratch ORDER BY id") == [{"id": 1, "note": "a"}, {"id": 2, "note": "b"}]
    assert sent == ["INSERT INTO scratch (id, note) VALUES (1, 'a'), (2, 'b')"]
    with pytest.raises(pymysql.IntegrityError):  # row 3 goes in before row 2 fails: the statement undoes it
        with transaction(conn) as cur:
            defer(cur, "INSERT INTO scratch (id, note) VALUES (3, 'c'), (2, 'twice')")
    assert rows(db, "SELECT id FROM scratch ORDER BY id") == [{"id": 1}, {"id": 2}]
    with transaction(conn) as cur:  # a ';' inside a value: the plain way, BEGIN and COMMIT around it
        defer(cur, "INSERT INTO scratch (id, note) VALUES (4, 'x;y')")
    assert rows(db, "SELECT note FROM scratch WHERE id = 4") == [{"note": "x;y"}]
    assert sent[-1].startswith("BEGIN;") and sent[-1].endswith(";\nCOMMIT")


def test_a_deferred_statement_that_fails_fails_the_transaction_and_nothing_of_it_stays(conn, db):
    with pytest.raises(pymysql.IntegrityError):
        with transaction(conn) as cur:
            defer(cur, "INSERT INTO scratch (id, note) VALUES (1, 'kept?')")
            defer(cur, "INSERT INTO scratch (id, note) VALUES (1, 'twice')")  # the duplicate key fails at the commit
            defer(cur, "INSERT INTO scratch (id, note) VALUES (2, 'never run')")
    assert rows(db, "SELECT id FROM scratch") == []
    with pytest.raises(pymysql.IntegrityError):
        with transaction(conn) as cur:
            defer(cur, "INSERT INTO scratch (id, note) VALUES (3, NULL)")
            cur.execute("SELECT 1")  # raises the deferred statement's error, not its own
    assert rows(db, "SELECT id FROM scratch") == []
    with transaction(conn) as cur:  # and the connection goes on working
        defer(cur, "INSERT INTO scratch (id, note) VALUES (4, 'after')")
    assert rows(db, "SELECT id FROM scratch") == [{"id": 4}]


def test_a_transaction_that_ran_nothing_sends_nothing(conn, sent):
    with transaction(conn):
        pass
    with pytest.raises(RuntimeError):
        with transaction(conn):
            raise RuntimeError("before any statement")
    assert sent == []


def test_defer_outside_a_transaction_is_refused(conn, db):
    with conn.cursor() as cur:
        with pytest.raises(pymysql.ProgrammingError):
            defer(cur, "INSERT INTO scratch (id, note) VALUES (1, 'lost')")
        cur.execute("SELECT 1")
    assert rows(db, "SELECT id FROM scratch") == []


@pytest.fixture
def big_group_ids_removed(db):
    yield
    with db.cursor() as cur:
        cur.execute("DELETE FROM `group` WHERE id >= %s", (2**62,))
        cur.execute("ALTER TABLE `group` AUTO_INCREMENT = 1")  # back to max(id) + 1, for later creates


def test_a_group_read_as_one_json_value_is_the_group_read_as_columns(app, db, demo, big_group_ids_removed):
    with db.cursor() as cur:
        for gid, name, code in [(2**63 - 2, 'q"uo\\te \' 😀 \u2028', None), (2**62 + 7, "", "c0de")]:
            cur.execute("INSERT INTO `group` (id, appid, master, super, name, notice, cover, code, member_count) "
                        "VALUES (%s, %s, %s, 1, %s, 'n\\nl', '', %s, 12)", (gid, demo["id"], 2**62, name, code))
            cur.execute(f"SELECT {groups.GROUP_COLUMNS} FROM `group` WHERE id = %s", (gid,))
            plain = cur.fetchone()
            assert groups.find_group(cur, demo["id"], gid) == plain
            assert type(plain["super"]) is int and plain["code"] == code


def test_the_members_a_change_asks_about_are_read_with_the_group_lock_in_one_round_trip(conn, db, demo, sent):
    with db.cursor() as cur:
        cur.execute("INSERT INTO `group` (appid, master, name) VALUES (%s, 1, 'g')", (demo["id"],))
        gid = cur.lastrowid
        cur.execute("INSERT INTO group_member (group_id, uid, deleted) VALUES (%s, 1, 0), (%s, 2, 1)", (gid, gid))
    changes = Changes()
    with transaction(conn) as cur:
        group = groups.lock_group(cur, demo["id"], gid, [1, 2, 3])
        assert len(sent) == 1 and sent[0].startswith("BEGIN;") and "FOR UPDATE;" in sent[0]
        assert groups.live_members_among(cur, group, [3, 1, 2]) == {1} and len(sent) == 1  # no second read
        groups.add_members(cur, changes, group, [{"uid": 2}, {"uid": 3}], None, 100)
        assert len(sent) == 1
        # Once the change wrote members, the lock's read is out of date: membership is read again.
        assert groups.live_members_among(cur, group, [1, 2, 3]) == {1, 2, 3} and len(sent) == 2
        assert groups.live_members_among(cur, group, [4]) == set() and len(sent) == 3
    assert rows(db, "SELECT uid FROM group_member WHERE group_id = %s AND deleted = 0 ORDER BY uid",
                (gid,)) == [{"uid": 1}, {"uid": 2}, {"uid": 3}]


def test_a_group_of_another_app_locked_with_members_asked_about_is_not_found(conn, db, demo, other):
    with db.cursor() as cur:
        cur.execute("INSERT INTO `group` (appid, master, name) VALUES (%s, 1, 'theirs')", (other["id"],))
        gid = cur.lastrowid
        cur.execute("INSERT INTO group_member (group_id, uid) VALUES (%s, 1)", (gid,))
    with pytest.raises(groups.GroupNotFound):
        with transaction(conn) as cur:
            groups.lock_group(cur, demo["id"], gid, [1])
    assert groups.lock_group(conn.cursor(), other["id"], gid, [1, 2])["live"] == {1: True, 2: False}


def test_the_check_on_checkout_sends_nothing_and_finds_a_session_mysql_closed(conn, db, sent):
    raw = conn._con._con
    assert raw.ping() is True and sent == []
    with db.cursor() as cur:
        cur.execute("KILL %s", (raw.thread_id(),))
    gone_within(db, [raw.thread_id()])
    assert raw.ping() is False and sent == []  # so the pool opens a new session on checkout
