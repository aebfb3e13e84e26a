"""Retried group creations get their first result, kept in MySQL (message posts keep theirs in Redis)."""
import json

import pymysql

CLAIM = "INSERT INTO idempotency (appid, idem_key) VALUES (%(appid)s, %(key)s)"
FIRST_RESULT = "SELECT result FROM idempotency WHERE appid = %(appid)s AND idem_key = %(key)s"
RECORD = "UPDATE idempotency SET result = %(result)s WHERE appid = %(appid)s AND idem_key = %(key)s"


def _row_key(caller: str, key: str) -> str:
    """One namespace per caller ("server" or "client:<uid>"); a key cannot forge the prefix."""
    return f"{caller}:{key}"


def claim(cur, appid: int, caller: str, key: str) -> dict | None:
    """Claim the key in the caller's transaction: None if it is ours now, else the first request's result.

    A concurrent request with the same key waits on the row until the first one commits."""
    params = {"appid": appid, "key": _row_key(caller, key)}
    try:
        cur.execute(CLAIM, params)
        return None
    except pymysql.IntegrityError:
        cur.execute(FIRST_RESULT, params)
        return json.loads(cur.fetchone()["result"])


def record(cur, appid: int, caller: str, key: str, result: dict) -> None:
    cur.execute(RECORD, {"appid": appid, "key": _row_key(caller, key), "result": json.dumps(result)})
