"""Retried requests get their first result: MySQL rows for MySQL changes, Redis keys for queue posts."""
import json

import pymysql

CLAIM = "INSERT INTO idempotency (appid, idem_key) VALUES (%(appid)s, %(key)s)"
FIRST_RESULT = "SELECT result FROM idempotency WHERE appid = %(appid)s AND idem_key = %(key)s"
RECORD = "UPDATE idempotency SET result = %(result)s WHERE appid = %(appid)s AND idem_key = %(key)s"


def claim(cur, appid: int, key: str) -> dict | None:
    """Claim the key in the caller's transaction: None if it is ours now, else the first request's result.

    A concurrent request with the same key waits on the row until the first one commits."""
    try:
        cur.execute(CLAIM, {"appid": appid, "key": key})
        return None
    except pymysql.IntegrityError:
        cur.execute(FIRST_RESULT, {"appid": appid, "key": key})
        return json.loads(cur.fetchone()["result"])


def record(cur, appid: int, key: str, result: dict) -> None:
    cur.execute(RECORD, {"appid": appid, "key": key, "result": json.dumps(result)})


def redis_key(appid: int, key: str) -> str:
    return f"idempotency_{appid}_{key}"
