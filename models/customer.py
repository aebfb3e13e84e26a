"""Customer service: stores, their sellers, and visitors (customers) with client ids."""
import random

from . import keys

STORE_COLUMNS = "id, appid, name"
SELECT_STORE = f"SELECT {STORE_COLUMNS} FROM store WHERE id = %(store_id)s AND appid = %(appid)s"
SELECT_STORE_BY_ID = f"SELECT {STORE_COLUMNS} FROM store WHERE id = %(store_id)s"
INSERT_STORE = "INSERT INTO store (appid, name) VALUES (%(appid)s, %(name)s)"
SET_APP_STORE = "UPDATE app SET store_id = %(store_id)s WHERE id = %(appid)s AND store_id = 0"
SELLERS = """
SELECT id AS seller_id, name, avatar FROM seller WHERE store_id = %(store_id)s AND deleted = 0 ORDER BY id
"""
INSERT_SELLER = "INSERT INTO seller (store_id, name, avatar) VALUES (%(store_id)s, %(name)s, %(avatar)s)"
REMOVE_SELLER = "UPDATE seller SET deleted = 1 WHERE id = %(seller_id)s AND store_id = %(store_id)s"
INSERT_CUSTOMER = """
INSERT INTO customer (appid, customer_id, name, avatar) VALUES (%(appid)s, %(customer_id)s, %(name)s, %(avatar)s)
ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id)
"""
SELECT_CUSTOMER = "SELECT id FROM customer WHERE appid = %(appid)s AND customer_id = %(customer_id)s"
CUSTOMER_BY_ID = "SELECT id FROM customer WHERE appid = %(appid)s AND id = %(id)s"
SELECT_SELLER = """
SELECT id AS seller_id, name, avatar FROM seller WHERE id = %(seller_id)s AND store_id = %(store_id)s AND deleted = 0
"""


def find_store(cur, appid: int, store_id: int) -> dict | None:
    cur.execute(SELECT_STORE, {"appid": appid, "store_id": store_id})
    return cur.fetchone()


def store_by_id(cur, store_id: int) -> dict | None:
    """A store of any app (for operators), or None."""
    cur.execute(SELECT_STORE_BY_ID, {"store_id": store_id})
    return cur.fetchone()


def create_store(cur, appid: int, name: str) -> int:
    """Insert a store; it becomes the app's customer-service store if the app has none."""
    cur.execute(INSERT_STORE, {"appid": appid, "name": name})
    store_id = cur.lastrowid
    cur.execute(SET_APP_STORE, {"appid": appid, "store_id": store_id})
    return store_id


def sellers(cur, store_id: int) -> list[dict]:
    """The store's current sellers, by id."""
    cur.execute(SELLERS, {"store_id": store_id})
    return cur.fetchall()


def add_seller(cur, store_id: int, name: str, avatar: str) -> int:
    cur.execute(INSERT_SELLER, {"store_id": store_id, "name": name, "avatar": avatar})
    return cur.lastrowid


def remove_seller(cur, store_id: int, seller_id: int) -> bool:
    return cur.execute(REMOVE_SELLER, {"store_id": store_id, "seller_id": seller_id}) > 0


def customer_client_id(cur, appid: int, customer_id: str, base: int, name: str = "", avatar: str = "") -> int:
    """The client id of an app's customer, made on first sight; the same customer_id gets the same id."""
    cur.execute(INSERT_CUSTOMER, {"appid": appid, "customer_id": customer_id, "name": name, "avatar": avatar})
    return base + cur.lastrowid


def find_client_id(cur, appid: int, customer_id: str, base: int) -> int | None:
    cur.execute(SELECT_CUSTOMER, {"appid": appid, "customer_id": customer_id})
    row = cur.fetchone()
    return None if row is None else base + row["id"]


def client_id_exists(cur, appid: int, client_id: int, base: int) -> bool:
    """Whether the client id belongs to one of the app's customers."""
    cur.execute(CUSTOMER_BY_ID, {"appid": appid, "id": client_id - base})
    return cur.fetchone() is not None


def find_seller(cur, store_id: int, seller_id: int) -> dict | None:
    """The store's current seller with that id, or None."""
    cur.execute(SELECT_SELLER, {"store_id": store_id, "seller_id": seller_id})
    return cur.fetchone()


def seller_statuses(r, seller_ids: list[int]) -> list[str]:
    """online / offline for each seller, from the supporters_<id> hashes (missing: offline)."""
    pipe = r.pipeline(transaction=False)
    for seller_id in seller_ids:
        pipe.hget(keys.supporter(seller_id), "status")
    return ["online" if status == "online" else "offline" for status in pipe.execute()]


def choose_seller(candidates: list[dict], last_seller_id: int | None) -> dict:
    """The last seller if still in the store, else a random online one, else the first."""
    for seller in candidates:
        if seller["seller_id"] == last_seller_id:
            return seller
    online = [seller for seller in candidates if seller["status"] == "online"]
    return random.choice(online) if online else candidates[0]


def last_seller(r, appid: int, uid: int, store_id: int) -> int | None:
    """The seller the visitor was last given in this store, if any."""
    last_store, seller_id = r.hmget(keys.user(appid, uid), "store_id", "seller_id")
    return int(seller_id) if seller_id and last_store == str(store_id) else None


def remember_seller(r, appid: int, uid: int, store_id: int, seller_id: int) -> None:
    """Record the visitor's seller in its user hash (the router reads store_id and seller_id there too)."""
    r.hset(keys.user(appid, uid), mapping={"store_id": store_id, "seller_id": seller_id})
