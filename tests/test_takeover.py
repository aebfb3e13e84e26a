"""init-db takes over a database made from GoBelieve's schema in place (SPEC 4), keeping every row."""
import re
import secrets
import time

import pymysql
import pytest
from helpers import TEST_CONFIG, Api, basic, rows

from app import create_app
from models.connection import mysql_connect_args
from models.migrations import SQL_DIR, holds, init_db, statements

# The router's reads (SPEC 4, "Router compatibility"; im_service's relationship.go).
ROUTER_GROUP = "SELECT id, appid, super FROM `group` WHERE id=%s AND deleted=0"
ROUTER_MEMBERS = "SELECT uid, timestamp, mute FROM group_member WHERE group_id=%s AND deleted=0"
ROUTER_FRIEND = "SELECT uid, friend_uid FROM `friend` WHERE appid=%s AND uid=%s AND friend_uid=%s"
ROUTER_BLACKLIST = "SELECT uid, friend_uid FROM `blacklist` WHERE appid=%s AND uid=%s AND friend_uid=%s"

# A GoBelieve database as SPEC 4 describes it: utf8, nullable ids and texts, `deleted` with no
# default, an int join time, GoBelieve's own index name; written here from those facts.
GOBELIEVE_SCHEMA = [
    """CREATE TABLE `group` (
      `id` BIGINT NOT NULL AUTO_INCREMENT,
      `appid` BIGINT DEFAULT NULL,
      `master` BIGINT DEFAULT NULL,
      `super` TINYINT NOT NULL DEFAULT 0,
      `name` VARCHAR(255) DEFAULT NULL,
      `notice` VARCHAR(255) DEFAULT NULL COMMENT 'announcement',
      `deleted` TINYINT(1) NOT NULL COMMENT 'soft delete',
      PRIMARY KEY (`id`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8""",
    """CREATE TABLE `group_member` (
      `group_id` BIGINT NOT NULL DEFAULT 0,
      `uid` BIGINT NOT NULL DEFAULT 0,
      `timestamp` INT DEFAULT NULL COMMENT 'joined, seconds',
      `nickname` VARCHAR(255) DEFAULT NULL,
      `mute` TINYINT(1) DEFAULT 0,
      `deleted` TINYINT(1) NOT NULL,
      PRIMARY KEY (`group_id`, `uid`),
      KEY `idx_group_member_uid` (`uid`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8""",
    *[f"""CREATE TABLE `{table}` (
      `appid` BIGINT NOT NULL,
      `uid` BIGINT NOT NULL,
      `friend_uid` BIGINT NOT NULL,
      `timestamp` INT NOT NULL COMMENT 'created',
      PRIMARY KEY (`appid`, `uid`, `friend_uid`)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8 COMMENT='{table} of GoBelieve'""" for table in ("friend", "blacklist")],
]
APPID = 7
GROUPS = [  # id, appid, master, super, name, notice, deleted
    (1, APPID, 100, 0, "Café crème", "Ünïcödé notice, 中文", 0),
    (2, APPID, None, 1, None, None, 0),
    (3, APPID, 101, 0, "gone", "", 1),
    (40, None, 102, 0, "no app", None, 0),
]
MEMBERS = [  # group_id, uid, timestamp, nickname, mute, deleted
    (1, 100, 1_600_000_000, "boss", 0, 0),
    (1, 101, None, None, None, 0),
    (1, 102, 1_600_000_100, "left", 1, 1),
    (2, 100, 1_600_000_200, "", 1, 0),
    (3, 101, 1_600_000_300, "x", 0, 1),
]
FRIENDS = [(APPID, 100, 101, 1_600_000_000), (APPID, 101, 100, 1_600_000_000)]
BLACKLIST = [(APPID, 100, 102, 1_600_000_500)]
NULL_BECOMES = {"master": 0, "appid": 0, "name": "", "notice": "", "timestamp": 0, "nickname": "", "mute": 0}


def connect(config, database=True):
    return pymysql.connect(**mysql_connect_args(config, database=database))


def with_defaults(row: dict) -> dict:
    """A row as it reads after the take-over: this schema's default where GoBelieve had NULL."""
    return {key: NULL_BECOMES[key] if value is None else value for key, value in row.items()}


@pytest.fixture
def databases(app):
    """Names for a GoBelieve database and a fresh one, both dropped afterwards."""
    base = f"gobelieve_takeover_{secrets.token_hex(4)}"
    names = {"gobelieve": base, "fresh": base + "_fresh"}
    yield names
    server = connect(app.config, database=False)
    with server.cursor() as cur:
        for name in names.values():
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    server.close()


@pytest.fixture
def gobelieve(app, databases):
    """The config of a database made as GoBelieve makes it, with some rows."""
    config = {**app.config, "MYSQL_DATABASE": databases["gobelieve"]}
    server = connect(config, database=False)
    with server.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{databases['gobelieve']}` DEFAULT CHARACTER SET utf8")
        cur.execute(f"USE `{databases['gobelieve']}`")
        for statement in GOBELIEVE_SCHEMA:
            cur.execute(statement)
        cur.executemany("INSERT INTO `group` (id, appid, master, super, name, notice, deleted) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s)", GROUPS)
        cur.executemany("INSERT INTO group_member (group_id, uid, timestamp, nickname, mute, deleted) "
                        "VALUES (%s, %s, %s, %s, %s, %s)", MEMBERS)
        cur.executemany("INSERT INTO friend (appid, uid, friend_uid, timestamp) VALUES (%s, %s, %s, %s)", FRIENDS)
        cur.executemany("INSERT INTO blacklist (appid, uid, friend_uid, timestamp) VALUES (%s, %s, %s, %s)",
                        BLACKLIST)
    server.close()
    return config


def schema_of(config) -> dict:
    """What init-db decides about a database: its collation, tables, columns and indexes."""
    conn = connect(config)
    try:
        where = "WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME"
        tables = rows(conn, f"SELECT TABLE_NAME, ENGINE, ROW_FORMAT, TABLE_COLLATION, TABLE_COMMENT, CREATE_OPTIONS "
                            f"FROM information_schema.TABLES {where}")
        columns = rows(conn, f"SELECT * FROM information_schema.COLUMNS {where}, ORDINAL_POSITION")
        indexes = rows(conn, "SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, SEQ_IN_INDEX, COLUMN_NAME, SUB_PART, "
                             f"NULLABLE, INDEX_TYPE FROM information_schema.STATISTICS {where}, "
                             "INDEX_NAME, SEQ_IN_INDEX")
        created = {t["TABLE_NAME"]: rows(conn, f"SHOW CREATE TABLE `{t['TABLE_NAME']}`")[0]["Create Table"]
                   for t in tables}
        return {
            "collation": rows(conn, "SELECT DEFAULT_COLLATION_NAME AS c FROM information_schema.SCHEMATA "
                                    "WHERE SCHEMA_NAME = DATABASE()")[0]["c"],
            "tables": tables,
            "columns": [{k: v for k, v in c.items() if k != "TABLE_SCHEMA"} for c in columns],
            "indexes": indexes,
            "create": {t: re.sub(r" AUTO_INCREMENT=\d+", "", text) for t, text in created.items()},
            "migrations": [r["version"] for r in rows(conn, "SELECT version FROM schema_migration ORDER BY version")],
        }
    finally:
        conn.close()


def data_of(config) -> dict:
    """Every row of the four tables GoBelieve and this service share, in key order."""
    conn = connect(config)
    try:
        return {
            "group": rows(conn, "SELECT id, appid, master, super, name, notice, cover, code, deleted FROM `group` "
                                "ORDER BY id"),
            "group_member": rows(conn, "SELECT * FROM group_member ORDER BY group_id, uid"),
            "friend": rows(conn, "SELECT * FROM friend ORDER BY appid, uid, friend_uid"),
            "blacklist": rows(conn, "SELECT * FROM blacklist ORDER BY appid, uid, friend_uid"),
        }
    finally:
        conn.close()


def take_over(config) -> str:
    """Run `flask init-db` on the database of this config; return what it printed."""
    flask_app = create_app({**TEST_CONFIG, "MYSQL_DATABASE": config["MYSQL_DATABASE"]})
    with flask_app.app_context():
        result = flask_app.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    return result.output


def test_init_db_takes_over_a_gobelieve_database_keeping_every_row(gobelieve, databases):
    started = int(time.time())
    output = take_over(gobelieve)
    assert all(path.name in output for path in SQL_DIR.glob("*.sql")), output

    kept = data_of(gobelieve)
    keys = ("id", "appid", "master", "super", "name", "notice", "deleted")
    assert kept["group"] == [with_defaults(dict(zip(keys, g))) | {"cover": "", "code": None} for g in GROUPS]
    keys = ("group_id", "uid", "timestamp", "nickname", "mute", "deleted")
    assert kept["group_member"] == [with_defaults(dict(zip(keys, m))) for m in MEMBERS]
    keys = ("appid", "uid", "friend_uid", "timestamp")
    assert kept["friend"] == [dict(zip(keys, f)) for f in FRIENDS]
    assert kept["blacklist"] == [dict(zip(keys, b)) for b in BLACKLIST]
    conn = connect(gobelieve)
    stamps = rows(conn, "SELECT UNIX_TIMESTAMP(created_at) AS c, UNIX_TIMESTAMP(updated_at) AS u FROM `group`")
    assert all(started - 1 <= s["c"] <= time.time() + 1 and s["u"] >= s["c"] for s in stamps)

    fresh = {**gobelieve, "MYSQL_DATABASE": databases["fresh"]}
    init_db(fresh)
    assert schema_of(gobelieve) == schema_of(fresh)

    # What the router reads (SPEC 4): live groups and members only, with this schema's values.
    assert rows(conn, ROUTER_GROUP, 1) == [{"id": 1, "appid": APPID, "super": 0}]
    assert rows(conn, ROUTER_GROUP, 2) == [{"id": 2, "appid": APPID, "super": 1}]
    assert rows(conn, ROUTER_GROUP, 3) == []
    assert rows(conn, ROUTER_MEMBERS, 1) == [{"uid": 100, "timestamp": 1_600_000_000, "mute": 0},
                                             {"uid": 101, "timestamp": 0, "mute": 0}]
    assert rows(conn, ROUTER_MEMBERS, 3) == []
    assert rows(conn, ROUTER_FRIEND, (APPID, 100, 101)) == [{"uid": 100, "friend_uid": 101}]
    assert rows(conn, ROUTER_FRIEND, (APPID, 100, 102)) == []
    assert rows(conn, ROUTER_BLACKLIST, (APPID, 100, 102)) == [{"uid": 100, "friend_uid": 102}]
    assert rows(conn, ROUTER_BLACKLIST, (APPID, 102, 100)) == []
    conn.close()


def test_a_taken_over_database_takes_emoji_and_a_second_init_db_changes_nothing(gobelieve):
    take_over(gobelieve)
    conn = connect(gobelieve)
    with conn.cursor() as cur:
        cur.execute("UPDATE `group` SET name = 'party 🎉', notice = '😀' WHERE id = 1")
        cur.execute("UPDATE group_member SET nickname = '🐱 cat' WHERE group_id = 1 AND uid = 100")
    assert rows(conn, "SELECT name, notice FROM `group` WHERE id = 1") == [{"name": "party 🎉", "notice": "😀"}]
    assert rows(conn, "SELECT nickname FROM group_member WHERE group_id = 1 AND uid = 100") == [
        {"nickname": "🐱 cat"}]
    conn.close()

    before = schema_of(gobelieve), data_of(gobelieve)
    assert "up to date" in take_over(gobelieve)
    assert init_db(gobelieve) == []
    assert (schema_of(gobelieve), data_of(gobelieve)) == before


def test_the_api_works_on_a_taken_over_database(gobelieve, r):
    take_over(gobelieve)
    conn = connect(gobelieve)
    with conn.cursor() as cur:  # the app keeps GoBelieve's appid
        cur.execute("INSERT INTO app (id, name, `key`, secret) VALUES (%s, 'old', 'kold', 'sold')", (APPID,))
    flask_app = create_app({**TEST_CONFIG, "MYSQL_DATABASE": gobelieve["MYSQL_DATABASE"]})
    api = Api(flask_app.test_client(), basic(APPID, "sold"))

    status, body = api.post("/groups/1/members", {"members": [103, 102]})  # 102 was removed: revived
    assert status == 200, body
    assert sorted(r["uid"] for r in rows(conn, ROUTER_MEMBERS, 1)) == [100, 101, 102, 103]
    status, body = api.get("/groups/2")
    assert status == 200, body
    assert (body["data"]["name"], body["data"]["notice"], body["data"]["super"]) == ("", "", 1)
    status, body = api.post("/groups", {"master": 100, "name": "new 🎉", "members": [100, 104]})
    assert status == 200, body
    assert body["data"]["group_id"] > 40  # GoBelieve's AUTO_INCREMENT counter is kept
    assert rows(conn, ROUTER_GROUP, body["data"]["group_id"]) == [
        {"id": body["data"]["group_id"], "appid": APPID, "super": 0}]
    status, body = api.delete("/groups/1/members/101")
    assert status == 200, body
    assert [r["uid"] for r in rows(conn, ROUTER_MEMBERS, 1)] == [100, 102, 103]
    conn.close()


def test_on_a_database_this_service_made_the_take_over_does_nothing(app):
    """Every step of the take-over is conditional, and none holds on init-db's own schema."""
    conn = connect(app.config)
    steps = statements((SQL_DIR / "005_gobelieve_takeover.sql").read_text())
    assert steps and all(conditions for conditions, _ in steps)
    with conn.cursor() as cur:
        assert [statement for conditions, statement in steps if holds(cur, conditions)] == []
    conn.close()


def test_conditions_are_read_strictly():
    text = ("-- a comment\n-- only if index `t`.`a` exists\n-- only if index `t`.`b` is missing\n"
            "ALTER TABLE t\n  RENAME INDEX a TO b;\nSELECT 1;\n")
    (first, rename), (none, select) = statements(text)
    assert rename == "ALTER TABLE t\n  RENAME INDEX a TO b" and select == "SELECT 1" and none == []
    assert first == [({"kind": "index", "table": "t", "name": "a"}, True),
                     ({"kind": "index", "table": "t", "name": "b"}, False)]
    with pytest.raises(ValueError, match="cannot read"):
        statements("-- only if column t.c is missing\nSELECT 1;\n")  # no backticks: a typo, not ignored


def test_an_older_gobelieve_schema_gets_its_missing_columns(app, databases):
    """GoBelieve's first schema had groups without super, notice and deleted, members with only
    their two ids, and no friend or blacklist tables."""
    config = {**app.config, "MYSQL_DATABASE": databases["gobelieve"]}
    server = connect(config, database=False)
    with server.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{databases['gobelieve']}` DEFAULT CHARACTER SET utf8")
        cur.execute(f"USE `{databases['gobelieve']}`")
        cur.execute("CREATE TABLE `group` (id BIGINT AUTO_INCREMENT PRIMARY KEY, appid BIGINT, master BIGINT, "
                    "name VARCHAR(255)) DEFAULT CHARSET=utf8")
        cur.execute("CREATE TABLE group_member (group_id BIGINT, uid BIGINT, PRIMARY KEY (group_id, uid)) "
                    "DEFAULT CHARSET=utf8")
        cur.execute("INSERT INTO `group` (id, appid, master, name) VALUES (5, 7, 100, 'old'), (6, NULL, NULL, NULL)")
        cur.execute("INSERT INTO group_member (group_id, uid) VALUES (5, 100), (5, 101)")
    server.close()
    take_over(config)
    fresh = {**config, "MYSQL_DATABASE": databases["fresh"]}
    init_db(fresh)
    assert schema_of(config) == schema_of(fresh)
    kept = data_of(config)
    assert kept["group"] == [
        {"id": 5, "appid": 7, "master": 100, "super": 0, "name": "old", "notice": "", "cover": "", "code": None,
         "deleted": 0},
        {"id": 6, "appid": 0, "master": 0, "super": 0, "name": "", "notice": "", "cover": "", "code": None,
         "deleted": 0}]
    assert kept["group_member"] == [{"group_id": 5, "uid": uid, "timestamp": 0, "nickname": "", "mute": 0,
                                     "deleted": 0} for uid in (100, 101)]
    assert kept["friend"] == kept["blacklist"] == []
    conn = connect(config)
    assert rows(conn, ROUTER_MEMBERS, 5) == [{"uid": 100, "timestamp": 0, "mute": 0},
                                             {"uid": 101, "timestamp": 0, "mute": 0}]
    conn.close()
