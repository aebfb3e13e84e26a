"""Operator commands: flask init-db | create-app | list-apps | disable-app (SPEC 6, 7)."""
import re

import pymysql
import pytest
from helpers import TEST_CONFIG, Api, basic, rows

from app import create_app
from models.connection import mysql_connect_args


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


# --- create-app refuses bad input -----------------------------------------------------------------

def one_line_error(result, text: str):
    assert result.exit_code == 1, result.output
    assert result.output.strip().count("\n") == 0 and "Traceback" not in result.output, result.output
    assert result.output.startswith("Error: ") and text in result.output, result.output


@pytest.mark.parametrize("name", ["", "   "])
def test_create_app_refuses_an_empty_name(cli, db, name):
    one_line_error(cli("create-app", "--name", name), "must not be empty")
    assert not rows(db, "SELECT id FROM app")


def test_create_app_refuses_a_duplicate_name(cli, db):
    first = credentials(cli("create-app", "--name", "shop").output)
    one_line_error(cli("create-app", "--name", "shop"), f"appid {first['appid']}")
    assert len(rows(db, "SELECT id FROM app")) == 1


@pytest.mark.parametrize("store_id", ["-5", "-1", str(2**63)])
def test_create_app_refuses_a_store_id_out_of_range(cli, db, store_id):
    one_line_error(cli("create-app", "--name", "shop", "--store-id", store_id), "--store-id")
    assert not rows(db, "SELECT id FROM app")


# --- show-app, enable-app, rotate-secret ----------------------------------------------------------

def test_show_app_hides_the_secret_unless_asked(cli):
    shop = credentials(cli("create-app", "--name", "shop", "--store-id", "7").output)
    result = cli("show-app", str(shop["appid"]))
    assert result.exit_code == 0, result.output
    assert f"appid={shop['appid']}" in result.output and "name=shop" in result.output
    assert f"key={shop['key']}" in result.output and "store_id=7" in result.output and "state=enabled" in result.output
    assert shop["secret"] not in result.output
    assert f"secret={shop['secret']}" in cli("show-app", str(shop["appid"]), "--secret").output


@pytest.mark.parametrize("command", ["show-app", "enable-app", "rotate-secret"])
def test_commands_on_an_unknown_app_fail_in_one_line(cli, command):
    one_line_error(cli(command, "999999"), "no app 999999")


def test_enable_app_lets_a_disabled_app_in_again(cli, client, app):
    shop = credentials(cli("create-app", "--name", "shop").output)
    cli("disable-app", str(shop["appid"]))
    result = cli("enable-app", str(shop["appid"]))
    assert result.exit_code == 0, result.output
    app.extensions["app_cache"].clear()
    assert Api(client, basic(shop["appid"], shop["secret"])).post("/auth/grant", {"uid": 1})[0] == 200
    assert "state=enabled" in cli("show-app", str(shop["appid"])).output


def test_rotate_secret_prints_a_new_secret_that_replaces_the_old(cli, client, app):
    shop = credentials(cli("create-app", "--name", "shop").output)
    result = cli("rotate-secret", str(shop["appid"]))
    assert result.exit_code == 0, result.output
    secret = re.fullmatch(r"secret=(\S+)\n", result.output)[1]
    assert secret != shop["secret"] and len(secret) >= 16
    app.extensions["app_cache"].clear()
    assert Api(client, basic(shop["appid"], secret)).post("/auth/grant", {"uid": 1})[0] == 200
    assert Api(client, basic(shop["appid"], shop["secret"])).post("/auth/grant", {"uid": 1})[0] == 401


# --- set-allowed-ips ------------------------------------------------------------------------------

def test_set_allowed_ips_stores_the_normalised_list(cli, db):
    shop = credentials(cli("create-app", "--name", "shop").output)
    result = cli("set-allowed-ips", str(shop["appid"]), " 10.1.2.3/8, 192.0.2.1 ,2001:db8::/32")
    assert result.exit_code == 0, result.output
    assert rows(db, "SELECT allowed_ips FROM app") == [{"allowed_ips": "10.0.0.0/8,192.0.2.1/32,2001:db8::/32"}]


def test_set_allowed_ips_takes_effect(cli, client, app):
    shop = credentials(cli("create-app", "--name", "shop").output)
    cli("set-allowed-ips", str(shop["appid"]), "10.0.0.0/8")
    app.extensions["app_cache"].clear()
    assert Api(client, basic(shop["appid"], shop["secret"])).post("/auth/grant", {"uid": 1})[0] == 403
    assert cli("set-allowed-ips", str(shop["appid"]), "").exit_code == 0
    app.extensions["app_cache"].clear()
    assert Api(client, basic(shop["appid"], shop["secret"])).post("/auth/grant", {"uid": 1})[0] == 200


@pytest.mark.parametrize("spec", ["10.0.0.0/33", "not-an-ip", "10.0.0.0/8,300.1.1.1"])
def test_set_allowed_ips_refuses_a_bad_network_in_one_line(cli, db, spec):
    shop = credentials(cli("create-app", "--name", "shop").output)
    cli("set-allowed-ips", str(shop["appid"]), "192.0.2.0/24")
    one_line_error(cli("set-allowed-ips", str(shop["appid"]), spec), "not an address or network")
    assert rows(db, "SELECT allowed_ips FROM app") == [{"allowed_ips": "192.0.2.0/24"}]


def test_set_allowed_ips_on_an_unknown_app_fails(cli):
    one_line_error(cli("set-allowed-ips", "999999", "10.0.0.0/8"), "no app 999999")


# --- create-store, add-seller ---------------------------------------------------------------------

def test_create_store_and_add_seller(cli, db):
    shop = credentials(cli("create-app", "--name", "shop").output)
    result = cli("create-store", str(shop["appid"]), "--name", "Front desk")
    assert result.exit_code == 0, result.output
    store_id = int(re.fullmatch(r"store_id=(\d+)\n", result.output)[1])
    assert rows(db, "SELECT appid, name FROM store WHERE id=%s", store_id) == [
        {"appid": shop["appid"], "name": "Front desk"}]
    assert rows(db, "SELECT store_id FROM app") == [{"store_id": store_id}]  # the app had none
    result = cli("add-seller", str(store_id), "--name", "Ann", "--avatar", "https://example.com/ann.png")
    assert result.exit_code == 0, result.output
    seller_id = int(re.fullmatch(r"seller_id=(\d+)\n", result.output)[1])
    assert rows(db, "SELECT store_id, name, avatar FROM seller WHERE id=%s", seller_id) == [
        {"store_id": store_id, "name": "Ann", "avatar": "https://example.com/ann.png"}]


def test_create_store_for_an_unknown_app_or_without_a_name_fails(cli, db):
    one_line_error(cli("create-store", "999999", "--name", "x"), "no app 999999")
    shop = credentials(cli("create-app", "--name", "shop").output)
    one_line_error(cli("create-store", str(shop["appid"]), "--name", " "), "must not be empty")
    assert not rows(db, "SELECT id FROM store")


def test_add_seller_to_an_unknown_store_fails(cli, db):
    one_line_error(cli("add-seller", "999999", "--name", "Ann"), "no store 999999")
    assert not rows(db, "SELECT id FROM seller")
