"""The `app` table: the service's tenants (apps) and their credentials."""
import secrets

SELECT_APP = """
SELECT id, name, `key`, secret, store_id, disabled, allowed_ips
FROM app WHERE id = %(appid)s
"""
INSERT_APP = """
INSERT INTO app (name, `key`, secret, store_id) VALUES (%(name)s, %(key)s, %(secret)s, %(store_id)s)
"""
# FOR UPDATE: with no index on name, InnoDB locks the rows (and gaps) it scans, so a second
# create-app of the same name waits until the first has committed, then finds it.
LOCK_APP_BY_NAME = "SELECT id, name, `key`, secret FROM app WHERE name = %(name)s ORDER BY id LIMIT 1 FOR UPDATE"
LIST_APPS = "SELECT id, name, `key`, store_id, disabled, allowed_ips, created_at FROM app ORDER BY id"
SET_DISABLED = "UPDATE app SET disabled = %(disabled)s WHERE id = %(appid)s"
SET_SECRET = "UPDATE app SET secret = %(secret)s WHERE id = %(appid)s"
SET_ALLOWED_IPS = "UPDATE app SET allowed_ips = %(allowed_ips)s WHERE id = %(appid)s"
SHOW_APP = "SELECT id, name, `key`, secret, store_id, disabled, allowed_ips, created_at FROM app WHERE id = %(appid)s"


def find_app(cur, appid: int) -> dict | None:
    """The app row, or None."""
    cur.execute(SELECT_APP, {"appid": appid})
    return cur.fetchone()


def show_app(cur, appid: int) -> dict | None:
    """The app row with its creation time, or None."""
    cur.execute(SHOW_APP, {"appid": appid})
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


def set_disabled(cur, appid: int, disabled: bool) -> bool:
    """Disable (or enable again) the app; False when there is no such app (rowcount counts rows matched)."""
    return cur.execute(SET_DISABLED, {"appid": appid, "disabled": int(disabled)}) > 0


def rotate_secret(cur, appid: int) -> str | None:
    """Give the app a fresh random secret and return it; None when there is no such app."""
    secret = secrets.token_hex(16)
    return secret if cur.execute(SET_SECRET, {"appid": appid, "secret": secret}) > 0 else None


def set_allowed_ips(cur, appid: int, allowed_ips: str) -> bool:
    """Set the app's IP allow-list (comma-separated networks; empty: any address); False: no such app."""
    cur.execute(SELECT_APP, {"appid": appid})
    if cur.fetchone() is None:
        return False
    cur.execute(SET_ALLOWED_IPS, {"appid": appid, "allowed_ips": allowed_ips})
    return True
