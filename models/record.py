"""The MySQL record of the router's user keys (SPEC 5.3): tokens, flags, do-not-disturb, devices.

Every request writes here first and to Redis after (models/setting.py, token.py); `restore-redis`
(models/restore.py) rewrites Redis from these rows. Names and avatars are recorded in `user`.
"""
from .db import defer

# The user's token, unless one is recorded already (Redis lost it, or a concurrent grant made
# another meanwhile): the recorded one stays the user's. user_name is set before token: MySQL
# assigns left to right, and token IS NULL must read the row's old value (revoked: a fresh name).
INSERT_TOKEN = """
INSERT INTO user_token (appid, uid, token, user_name) VALUES (%(appid)s, %(uid)s, %(token)s, %(user_name)s)
ON DUPLICATE KEY UPDATE user_name = IF(%(rename)s OR token IS NULL, VALUES(user_name), user_name),
  token = COALESCE(token, VALUES(token))
"""
SELECT_TOKEN = "SELECT token, user_name FROM user_token WHERE appid = %(appid)s AND uid = %(uid)s"
RENAME_TOKEN = "UPDATE user_token SET user_name = %(user_name)s WHERE appid = %(appid)s AND uid = %(uid)s"
# The row stays, token NULL: the user was granted one once (statistics_users_<appid> counts it).
REVOKE_TOKEN = "UPDATE user_token SET token = NULL WHERE appid = %(appid)s AND uid = %(uid)s AND token IS NOT NULL"
UPSERT_FLAGS = """
INSERT INTO user_setting (appid, uid, forbidden, mute, notification_on)
VALUES (%(appid)s, %(uid)s, %(forbidden)s, %(mute)s, %(notification_on)s)
ON DUPLICATE KEY UPDATE forbidden = COALESCE(VALUES(forbidden), forbidden),
  mute = COALESCE(VALUES(mute), mute), notification_on = COALESCE(VALUES(notification_on), notification_on)
"""
UPSERT_SELLER = """
INSERT INTO user_setting (appid, uid, store_id, seller_id) VALUES (%(appid)s, %(uid)s, %(store_id)s, %(seller_id)s)
ON DUPLICATE KEY UPDATE store_id = VALUES(store_id), seller_id = VALUES(seller_id)
"""
UPSERT_QUIET = """
INSERT INTO user_do_not_disturb (appid, uid, kind, target, do_not_disturb)
VALUES (%(appid)s, %(uid)s, %(kind)s, %(target)s, %(on)s)
ON DUPLICATE KEY UPDATE do_not_disturb = VALUES(do_not_disturb)
"""
UPSERT_DEVICE = """
INSERT INTO user_device (appid, uid, kind, device_token, timestamp)
VALUES (%(appid)s, %(uid)s, %(kind)s, %(device_token)s, %(timestamp)s)
ON DUPLICATE KEY UPDATE device_token = VALUES(device_token), timestamp = VALUES(timestamp)
"""
DELETE_DEVICE = """
DELETE FROM user_device WHERE appid = %(appid)s AND uid = %(uid)s AND kind = %(kind)s
  AND device_token = %(device_token)s
"""
FORGET_TOKEN = """
UPDATE user_token SET token = NULL, user_name = '' WHERE appid = %(appid)s AND uid = %(uid)s
  AND (token IS NOT NULL OR user_name <> '')
"""
FORGET_SETTINGS = "DELETE FROM user_setting WHERE appid = %(appid)s AND uid = %(uid)s"
FORGET_DO_NOT_DISTURB = "DELETE FROM user_do_not_disturb WHERE appid = %(appid)s AND uid = %(uid)s"
FORGET_DEVICES = "DELETE FROM user_device WHERE appid = %(appid)s AND uid = %(uid)s"
FLAGS = ("forbidden", "mute", "notification_on")


def device_kind(field: str) -> str:
    """apns of apns_device_token."""
    return field.removesuffix("_device_token")


def record_token(cur, appid: int, uid: int, token: str, name: str | None) -> tuple[str, str]:
    """Record the user's token named name (None: keep a recorded name); answer the recorded token
    (another one when Redis had lost it) and its user_name. The row stays locked till the commit."""
    params = {"appid": appid, "uid": uid, "token": token, "user_name": name or "", "rename": name is not None}
    defer(cur, INSERT_TOKEN, params)
    cur.execute(SELECT_TOKEN, params)
    row = cur.fetchone()
    return row["token"], row["user_name"]


def rename_token(cur, appid: int, uid: int, user_name: str) -> None:
    defer(cur, RENAME_TOKEN, {"appid": appid, "uid": uid, "user_name": user_name})


def revoke_token(cur, appid: int, uid: int) -> None:
    """The user's token is revoked: its row stays, without a token."""
    defer(cur, REVOKE_TOKEN, {"appid": appid, "uid": uid})


def record_settings(cur, appid: int, uid: int, settings: dict) -> None:
    """The flags and the peer do-not-disturb of a settings change (name: see models/user.record_user)."""
    flags = {name: int(settings[name]) if name in settings else None for name in FLAGS}
    if any(value is not None for value in flags.values()):
        defer(cur, UPSERT_FLAGS, {"appid": appid, "uid": uid, **flags})
    if "do_not_disturb" in settings:
        quiet = settings["do_not_disturb"]
        record_quiet(cur, appid, uid, "peer", quiet["peer_uid"], quiet["on"])


def record_seller(cur, appid: int, uid: int, store_id: int, seller_id: int) -> None:
    """The seller a customer-service visitor was given in the store."""
    defer(cur, UPSERT_SELLER, {"appid": appid, "uid": uid, "store_id": store_id, "seller_id": seller_id})


def record_quiet(cur, appid: int, uid: int, kind: str, target: int, on: bool) -> None:
    """A peer's or a group's do-not-disturb flag of the user."""
    defer(cur, UPSERT_QUIET, {"appid": appid, "uid": uid, "kind": kind, "target": target, "on": int(on)})


def record_devices(cur, appid: int, uid: int, tokens: dict, now: int) -> None:
    """Bound device tokens ({"apns_device_token": ...}) with their bind time."""
    for field, value in tokens.items():
        defer(cur, UPSERT_DEVICE, {"appid": appid, "uid": uid, "kind": device_kind(field), "device_token": value,
                                   "timestamp": now})


def forget_devices(cur, appid: int, uid: int, tokens: dict) -> None:
    """Drop each given device token where it is still the bound one."""
    for field, value in tokens.items():
        defer(cur, DELETE_DEVICE, {"appid": appid, "uid": uid, "kind": device_kind(field), "device_token": value})


def forget_user(cur, appid: int, uid: int) -> bool:
    """Drop the user's token, flags, do-not-disturb and devices; whether there was any."""
    user = {"appid": appid, "uid": uid}
    forgotten = (cur.execute(FORGET_TOKEN, user) + cur.execute(FORGET_SETTINGS, user)
                 + cur.execute(FORGET_DO_NOT_DISTURB, user) + cur.execute(FORGET_DEVICES, user))
    return forgotten > 0
