"""Rewriting the router's user keys (SPEC 5.1) from the MySQL record (SPEC 5.3), and the reverse
for a deployment taking over GoBelieve's Redis.

Safe while the API serves: each batch is read with shared row locks and written to Redis before
its transaction ends. A request changes a record row first and Redis after its commit, so a
change to a row of the batch waits for the batch's Redis write and lands after it: a newer write
is never overwritten by an older record. A revoked token, a deleted user or an unbound device has
no row, so nothing brings it back.
"""
import re
from collections.abc import Callable, Iterator

import pymysql
from redis.cluster import RedisCluster

from . import keys
from .db import transaction
from .record import UPSERT_DEVICE, UPSERT_QUIET

BATCH = 500
RETRIES = 3  # a batch that waited too long for a row lock (or deadlocked) is read again
LOCK_ERRORS = (1205, 1213)


def _after(columns: tuple[str, ...]) -> str:
    """The keyset condition "the primary key comes after the last row's", column by column."""
    terms = []
    for i, column in enumerate(columns):
        equal = [f"{c} = %(last_{c})s" for c in columns[:i]]
        terms.append("(" + " AND ".join([*equal, f"{column} > %(last_{column})s"]) + ")")
    return " OR ".join(terms)


def _page(table: str, fields: str, key: tuple[str, ...]) -> tuple[str, str]:
    """(the first page, a later page) of a record table, locked, optionally of one app only."""
    head = f"SELECT {fields} FROM {table} WHERE (%(only)s IS NULL OR appid = %(only)s)"
    tail = f"ORDER BY {', '.join(key)} LIMIT %(count)s LOCK IN SHARE MODE"
    return f"{head} {tail}", f"{head} AND ({_after(key)}) {tail}"


def _count(table: str) -> str:
    return f"SELECT COUNT(*) AS n FROM {table} WHERE (%(only)s IS NULL OR appid = %(only)s)"


USER_KEY, QUIET_KEY, DEVICE_KEY = ("appid", "uid"), ("appid", "uid", "kind", "target"), ("appid", "uid", "kind")
# Each record table: its pages and count (SQL built here once from these constant names, never from values).
TABLES = {
    "tokens": (*_page("user_token", "appid, uid, token, user_name", USER_KEY), _count("user_token"), USER_KEY),
    "names": (*_page("user", "appid, uid, name, avatar", USER_KEY), _count("user"), USER_KEY),
    "settings": (*_page("user_setting", "appid, uid, forbidden, mute, notification_on, store_id, seller_id", USER_KEY),
                 _count("user_setting"), USER_KEY),
    "do_not_disturb": (*_page("user_do_not_disturb", "appid, uid, kind, target, do_not_disturb", QUIET_KEY),
                       _count("user_do_not_disturb"), QUIET_KEY),
    "devices": (*_page("user_device", "appid, uid, kind, device_token, timestamp", DEVICE_KEY),
                _count("user_device"), DEVICE_KEY),
}


def _token(pipe, row: dict) -> None:
    pipe.pfadd(keys.statistics_users(row["appid"]), row["uid"])  # granted once, revoked or not
    if row["token"] is None:
        return
    user_key = keys.user(row["appid"], row["uid"])
    pipe.hset(keys.token(row["token"]), mapping={"user_id": row["uid"], "app_id": row["appid"],
                                                 "user_name": row["user_name"]})
    pipe.hset(user_key, "access_token", row["token"])
    pipe.hsetnx(user_key, "name", row["user_name"])  # a `user` row's name wins (a visitor has none)


def _names(pipe, row: dict) -> None:
    profile = {field: row[field] for field in ("name", "avatar") if row[field]}
    if profile:
        pipe.hset(keys.user(row["appid"], row["uid"]), mapping=profile)


SETTINGS = ("forbidden", "mute", "notification_on", "store_id", "seller_id")


def _settings(pipe, row: dict) -> None:
    flags = {field: str(row[field]) for field in SETTINGS if row[field] is not None}
    if flags:
        pipe.hset(keys.user(row["appid"], row["uid"]), mapping=flags)


def _do_not_disturb(pipe, row: dict) -> None:
    appid, uid, target, on = row["appid"], row["uid"], row["target"], row["do_not_disturb"]
    if row["kind"] == "group":
        field, members = keys.group_quiet_field(target), keys.quiet_groups(appid, uid)
    else:
        field, members = keys.peer_quiet_field(target), keys.quiet_peers(appid, uid)
    pipe.hset(keys.user(appid, uid), field, "1" if on else "0")
    (pipe.sadd if on else pipe.srem)(members, target)


def _devices(pipe, row: dict) -> None:
    pipe.hset(keys.user(row["appid"], row["uid"]), mapping={f"{row['kind']}_device_token": row["device_token"],
                                                            f"{row['kind']}_timestamp": row["timestamp"]})


WRITERS = {"tokens": _token, "names": _names, "settings": _settings, "do_not_disturb": _do_not_disturb,
           "devices": _devices}


def count(conn, appid: int | None) -> int:
    """How many record rows a restore reads."""
    total = 0
    with conn.cursor() as cur:
        for _, _, counting, _ in TABLES.values():
            cur.execute(counting, {"only": appid})
            total += cur.fetchone()["n"]
    return total


def restore(conn, r, appid: int | None = None, batch: int = BATCH,
            progress: Callable[[int], None] = lambda n: None) -> int:
    """Write every recorded key (of one app, or all) to Redis; the number of rows written."""
    done = 0
    for name, (first, later, _, key) in TABLES.items():
        last = None
        while True:
            rows = _restore_batch(conn, r, WRITERS[name], first if last is None else later,
                                  {"only": appid, "count": batch, **(last or {})})
            done += len(rows)
            progress(len(rows))
            if len(rows) < batch:
                break
            last = {f"last_{column}": rows[-1][column] for column in key}
    return done


def _restore_batch(conn, r, write, sql: str, params: dict) -> list[dict]:
    """Read one page with shared locks, write it to Redis, then let the locks go."""
    for attempt in range(RETRIES):
        try:
            with transaction(conn) as cur:
                cur.execute(sql, params)
                rows = cur.fetchall()
                write_rows(r, write, rows)
            return rows
        except pymysql.OperationalError as exc:
            if exc.args[0] not in LOCK_ERRORS or attempt == RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def write_rows(r, write, rows: list[dict]) -> None:
    """One pipeline of the rows' Redis writes (per node in a cluster; no script spans slots)."""
    pipe = r.pipeline(transaction=False)
    for row in rows:
        write(pipe, row)
    pipe.execute()


# --- taking over GoBelieve's Redis: its users_* and access_token_* into the record ----------------

USER_HASH = re.compile(r"users_(\d+)_(\d+)")
DEVICE_FIELD = re.compile(r"(\w+)_device_token")
QUIET_FIELD = re.compile(r"(peer|group)_(\d+)")
UPSERT_TOKEN = """
INSERT INTO user_token (appid, uid, token, user_name) VALUES (%(appid)s, %(uid)s, %(token)s, %(user_name)s)
ON DUPLICATE KEY UPDATE token = VALUES(token), user_name = VALUES(user_name)
"""
INSERT_USER = "INSERT IGNORE INTO user (appid, uid, name, avatar) VALUES (%(appid)s, %(uid)s, %(name)s, %(avatar)s)"
UPSERT_FLAGS = """
INSERT INTO user_setting (appid, uid, forbidden, mute, notification_on, store_id, seller_id)
VALUES (%(appid)s, %(uid)s, %(forbidden)s, %(mute)s, %(notification_on)s, %(store_id)s, %(seller_id)s)
ON DUPLICATE KEY UPDATE forbidden = VALUES(forbidden), mute = VALUES(mute), notification_on = VALUES(notification_on),
  store_id = VALUES(store_id), seller_id = VALUES(seller_id)
"""
MAX_ID = 2**63 - 1


def _scan(r, pattern: str) -> Iterator[str]:
    if isinstance(r, RedisCluster):
        return r.scan_iter(match=pattern, count=1000, target_nodes=RedisCluster.PRIMARIES)
    return r.scan_iter(match=pattern, count=1000)


def _chunks(items: Iterator[str], size: int) -> Iterator[list[str]]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _flag(value: str | None) -> int | None:
    return int(value) if value in ("0", "1") else None


def _small_id(text: str) -> int | None:
    value = int(text)
    return value if value <= MAX_ID else None


def take_over(conn, r, appid: int | None = None, batch: int = BATCH,
              progress: Callable[[int], None] = lambda n: None) -> dict:
    """Record the tokens, flags, do-not-disturb and devices found in Redis; counts by kind."""
    counts = {"users": 0, "tokens": 0, "settings": 0, "do_not_disturb": 0, "devices": 0}
    for names in _chunks(_scan(r, "users_*"), batch):
        found = [(match, key) for key in names if (match := USER_HASH.fullmatch(key))]
        pipe = r.pipeline(transaction=False)
        for _, key in found:
            pipe.hgetall(key)
        hashes = pipe.execute()
        rows = _user_rows(r, appid, [(m, h) for (m, _), h in zip(found, hashes)])
        with transaction(conn) as cur:
            for name, sql in (("tokens", UPSERT_TOKEN), ("users", INSERT_USER), ("settings", UPSERT_FLAGS),
                              ("do_not_disturb", UPSERT_QUIET), ("devices", UPSERT_DEVICE)):
                if rows[name]:
                    cur.executemany(sql, rows[name])
                counts[name] += len(rows[name])
        progress(len(names))
    return counts


def _user_rows(r, only: int | None, hashes: list) -> dict[str, list[dict]]:
    """The record rows of a batch of user hashes (their tokens' hashes read in one pipeline)."""
    rows = {"tokens": [], "users": [], "settings": [], "do_not_disturb": [], "devices": []}
    kept = []
    for match, fields in hashes:
        appid, uid = _small_id(match.group(1)), _small_id(match.group(2))
        if appid is None or uid is None or (only is not None and appid != only) or not fields:
            continue
        kept.append((appid, uid, fields))
        _user_fields(rows, appid, uid, fields)
    pipe = r.pipeline(transaction=False)
    with_token = [(appid, uid, fields["access_token"]) for appid, uid, fields in kept if fields.get("access_token")]
    for _, _, token in with_token:
        pipe.hmget(keys.token(token), "user_id", "app_id", "user_name")
    for (appid, uid, token), (user_id, app_id, user_name) in zip(with_token, pipe.execute()):
        if user_id == str(uid) and app_id == str(appid) and len(token) <= 128:  # a live token of this user
            rows["tokens"].append({"appid": appid, "uid": uid, "token": token, "user_name": user_name or ""})
    return rows


def _user_fields(rows: dict, appid: int, uid: int, fields: dict) -> None:
    """Add the rows one user hash records: profile, flags, do-not-disturb and devices."""
    user = {"appid": appid, "uid": uid}
    if "name" in fields or "avatar" in fields:
        rows["users"].append(user | {"name": fields.get("name", "")[:255], "avatar": fields.get("avatar", "")[:255]})
    flags = {name: _flag(fields.get(name)) for name in ("forbidden", "mute", "notification_on")}
    for name in ("store_id", "seller_id"):
        value = fields.get(name, "")
        flags[name] = _small_id(value) if value.isascii() and value.isdigit() else None
    if any(value is not None for value in flags.values()):
        rows["settings"].append(user | flags)
    for field, value in fields.items():
        if (quiet := QUIET_FIELD.fullmatch(field)) and _flag(value) is not None:
            target = _small_id(quiet.group(2))
            if target is not None:
                rows["do_not_disturb"].append(user | {"kind": quiet.group(1), "target": target, "on": _flag(value)})
        elif (device := DEVICE_FIELD.fullmatch(field)) and value and len(value) <= 512:
            stamp = fields.get(f"{device.group(1)}_timestamp", "0")
            rows["devices"].append(user | {"kind": device.group(1)[:16], "device_token": value,
                                           "timestamp": int(stamp) if stamp.isdigit() else 0})
