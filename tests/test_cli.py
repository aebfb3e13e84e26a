"""Operator commands: flask init-db | create-app | list-apps | disable-app (SPEC 6, 7)."""
import re

import pymysql
import pytest
from conftest import TEST_CONFIG, Api, basic, rows

from app import create_app
from models.db import mysql_connect_args


def invoke(flask_app, *args):
    # `flask` pushes an app context for every command; the bare test runner does not.
    with flask_app.app_context():
        return flask_app.test_cli_runner().invoke(args=list(args))


@pytest.fixture
def cli(app):
    return lambda *args: invoke(app, *args)


def credentials(output: str) -> dict:
    """The appid=, key= and secret= lines create-app prints."""
    found = dict(re.findall(r"^(appid|key|secret)=(\S+)$", output, flags=re.M))
    assert set(found) == {"appid", "key", "secret"}, output
    return {**found, "appid": int(found["appid"])}


# --- init-db --------------------------------------------------------------------------------------

@pytest.fixture
def scratch_app(app):
    """The app on a database of its own that does not exist yet (dropped again afterwards)."""
    name = app.config["MYSQL_DATABASE"] + "_cli"
    server = pymysql.connect(**mysql_connect_args(app.config, database=False))

    def drop():
        with server.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")

    drop()
    yield create_app({**TEST_CONFIG, "MYSQL_DATABASE": name})
    drop()
    server.close()


def schema_of(flask_app) -> dict:
    """Every table with its CREATE TABLE statement, and the applied migrations."""
    conn = pymysql.connect(**mysql_connect_args(flask_app.config))
    try:
        tables = [next(iter(row.values())) for row in rows(conn, "SHOW TABLES")]
        created = {t: rows(conn, f"SHOW CREATE TABLE `{t}`")[0]["Create Table"] for t in tables}
        created = {t: re.sub(r" AUTO_INCREMENT=\d+", "", text) for t, text in created.items()}
        return {"tables": created,
                "migrations": [r["version"] for r in rows(conn, "SELECT version FROM schema_migration")],
                "sequence": list(rows(conn, "SELECT name, value FROM sequence ORDER BY name"))}
    finally:
        conn.close()


def test_init_db_creates_the_database_and_schema(scratch_app):
    result = invoke(scratch_app, "init-db")
    assert result.exit_code == 0, result.output
    assert "001_schema.sql" in result.output
    tables = set(schema_of(scratch_app)["tables"])
    assert {"app", "group", "group_member", "user", "store", "seller"} <= tables


def test_init_db_twice_is_idempotent(scratch_app):
    assert invoke(scratch_app, "init-db").exit_code == 0
    conn = pymysql.connect(**mysql_connect_args(scratch_app.config))
    with conn.cursor() as cur:
        cur.execute("INSERT INTO app (name, secret) VALUES ('keep', 'me')")
    before = schema_of(scratch_app)
    result = invoke(scratch_app, "init-db")
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output
    assert schema_of(scratch_app) == before
    assert rows(conn, "SELECT name, secret FROM app") == [{"name": "keep", "secret": "me"}]
    conn.close()


def test_init_db_on_the_test_database_changes_nothing(cli, app):
    before = schema_of(app)
    result = cli("init-db")
    assert result.exit_code == 0, result.output
    assert schema_of(app) == before


# --- create-app -----------------------------------------------------------------------------------

def test_create_app_prints_credentials_and_inserts_the_row(cli, db):
    result = cli("create-app", "--name", "shop")
    assert result.exit_code == 0, result.output
    printed = credentials(result.output)
    assert rows(db, "SELECT id, name, `key`, secret, store_id, disabled FROM app") == [
        {"id": printed["appid"], "name": "shop", "key": printed["key"], "secret": printed["secret"],
         "store_id": 0, "disabled": 0}]
    assert len(printed["secret"]) >= 16


def test_create_app_with_a_store(cli, db):
    printed = credentials(cli("create-app", "--name", "shop", "--store-id", "42").output)
    assert rows(db, "SELECT store_id FROM app WHERE id=%s", printed["appid"]) == [{"store_id": 42}]


def test_created_app_authenticates_with_the_printed_secret(cli, client):
    printed = credentials(cli("create-app", "--name", "shop").output)
    status, body = Api(client, basic(printed["appid"], printed["secret"])).post("/auth/grant", {"uid": 1})
    assert status == 200, body


def test_two_apps_get_different_credentials(cli):
    first = credentials(cli("create-app", "--name", "a").output)
    second = credentials(cli("create-app", "--name", "b").output)
    assert first["appid"] != second["appid"]
    assert first["key"] != second["key"] and first["secret"] != second["secret"]


def test_create_app_if_missing_reprints_the_existing_app(cli, db):
    first = credentials(cli("create-app", "--name", "shop").output)
    result = cli("create-app", "--name", "shop", "--if-missing")
    assert result.exit_code == 0, result.output
    assert credentials(result.output) == first
    assert len(rows(db, "SELECT id FROM app")) == 1


def test_create_app_if_missing_creates_a_new_one(cli, db):
    printed = credentials(cli("create-app", "--name", "fresh", "--if-missing").output)
    assert rows(db, "SELECT id, name FROM app") == [{"id": printed["appid"], "name": "fresh"}]


def test_create_app_needs_a_name(cli, db):
    result = cli("create-app")
    assert result.exit_code != 0
    assert "--name" in result.output
    assert not rows(db, "SELECT id FROM app")


# --- list-apps ------------------------------------------------------------------------------------

def test_list_apps_shows_apps_without_secrets(cli):
    shop = credentials(cli("create-app", "--name", "shop").output)
    chat = credentials(cli("create-app", "--name", "chat").output)
    result = cli("list-apps")
    assert result.exit_code == 0, result.output
    for app_row, name in ((shop, "shop"), (chat, "chat")):
        line = next(line for line in result.output.splitlines() if line.startswith(f"{app_row['appid']}\t"))
        assert name in line and app_row["key"] in line
        assert app_row["secret"] not in result.output


def test_list_apps_marks_disabled_apps(cli):
    shop = credentials(cli("create-app", "--name", "shop").output)
    cli("disable-app", str(shop["appid"]))
    assert "disabled" in cli("list-apps").output


# --- disable-app ----------------------------------------------------------------------------------

def test_disable_app_makes_the_app_get_403(cli, client, db):
    shop = credentials(cli("create-app", "--name", "shop").output)
    result = cli("disable-app", str(shop["appid"]))
    assert result.exit_code == 0, result.output
    assert rows(db, "SELECT disabled FROM app WHERE id=%s", shop["appid"]) == [{"disabled": 1}]
    status, body = Api(client, basic(shop["appid"], shop["secret"])).post("/auth/grant", {"uid": 1})
    assert status == 403 and body["meta"]["code"] == 2006, body
    assert not rows(db, "SELECT * FROM user")


def test_disable_app_leaves_other_apps_alone(cli, client, db):
    shop = credentials(cli("create-app", "--name", "shop").output)
    chat = credentials(cli("create-app", "--name", "chat").output)
    cli("disable-app", str(shop["appid"]))
    assert rows(db, "SELECT disabled FROM app WHERE id=%s", chat["appid"]) == [{"disabled": 0}]
    assert Api(client, basic(chat["appid"], chat["secret"])).post("/auth/grant", {"uid": 1})[0] == 200


@pytest.mark.parametrize("appid", ["999999", "0"])
def test_disable_app_of_an_unknown_id_fails(cli, db, appid):
    cli("create-app", "--name", "shop")
    result = cli("disable-app", appid)
    assert result.exit_code != 0
    assert f"no app {appid}" in result.output
    assert rows(db, "SELECT disabled FROM app") == [{"disabled": 0}]


def test_disable_app_needs_an_integer_id(cli):
    result = cli("disable-app", "shop")
    assert result.exit_code == 2
