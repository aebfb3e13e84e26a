"""The `app` table: the service's tenants (apps) and their credentials."""
import secrets

SELECT_APP = """
SELECT id, name, `key`, secret, store_id, disabled, allowed_ips
FROM app WHERE id = %(appid)s
"""
INSERT_APP = """
INSERT INTO app (name, `key`, secret, store_id) VALUES (%(name)s, %(key)s, %(secret)s, %(store_id)s)
"""
SELECT_APP_BY_NAME = "SELECT id, name, `key`, secret FROM app WHERE name = %(name)s ORDER BY id LIMIT 1"
# FOR UPDATE: with no index on name, InnoDB locks the rows (and gaps) it scans, so a second
# create-app of the same name waits until the first has committed, then finds it.
LOCK_APP_BY_NAME = "SELECT id, name, `key`, secret FROM app WHERE name = %(name)s ORDER BY id LIMIT 1 FOR UPDATE"
LIST_APPS = "SELECT id, name, `key`, store_id, disabled, allowed_ips, created_at FROM app ORDER BY id"
DISABLE_APP = "UPDATE app SET disabled = 1 WHERE id = %(appid)s"


def find_app(cur, appid: int) -> dict | None:
    """The app row, or None."""
    cur.execute(SELECT_APP, {"appid": appid})
    return cur.fetchone()


def find_app_by_name(cur, name: str) -> dict | None:
    cur.execute(SELECT_APP_BY_NAME, {"name": name})
    return cur.fetchone()


def lock_app_by_name(cur, name: str) -> dict | None:
    """The first app of that name, locked for the caller's transaction (create-app), or None."""
    cur.execute(LOCK_APP_BY_NAME, {"name": name})
    return cur.fetchone()


def create_app_row(cur, name: str, store_id: int = 0) -> dict:
    """Insert an app with fresh random credentials; return id, name, key and secret."""
    row = {"name": name, "key": secrets.token_hex(8), "secret": secrets.token_hex(16), "store_id": store_id}
    cur.execute(INSERT_APP, row)
    return {"id": cur.lastrowid, **row}


def list_apps(cur) -> list[dict]:
    cur.execute(LIST_APPS)
    return cur.fetchall()


def disable_app(cur, appid: int) -> bool:
    """Mark the app disabled; False when there is no such app."""
    return cur.execute(DISABLE_APP, {"appid": appid}) > 0
