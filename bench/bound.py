"""The bound for POST /groups/{gid}/members: less than any correct member add can do (Basic auth,
JSON, one MySQL transaction in one packet, one LPUSH).

It locks the group row, upserts the member and counts it, and commits, all in one round trip on
a connection of the thread's own (no pool, no ping), then pushes one event. It does not check
that the member is new, number the event, write it to the outbox first, notify anyone or log.
bench/scaling.py --part parallel runs it beside the floor (bench/floor.py) and the real service.
"""
import base64
import hashlib
import hmac
import json
import os
import threading
import time

import pymysql
import redis
from flask import Flask, abort, request

import config
from models.connection import mysql_connect_args

APPID, SECRET = os.environ["BENCH_APPID"], os.environ["BENCH_SECRET"]
EXPECTED = "Basic " + base64.b64encode(f"{APPID}:{hashlib.md5(SECRET.encode()).hexdigest()}".encode()).decode()
CHANGE = ";\n".join([
    "BEGIN",
    "SELECT id FROM `group` WHERE id = %(gid)s AND appid = %(appid)s AND deleted = 0 FOR UPDATE",
    "INSERT INTO group_member (group_id, uid, timestamp) VALUES (%(gid)s, %(uid)s, %(now)s)"
    " ON DUPLICATE KEY UPDATE deleted = 0, timestamp = VALUES(timestamp)",
    "UPDATE `group` SET member_count = member_count + 1 WHERE id = %(gid)s",
    "COMMIT",
])

app = Flask(__name__)
r = redis.Redis(db=int(os.environ.get("REDIS_DB", 0)))
threads = threading.local()


def connection() -> pymysql.connections.Connection:
    if not hasattr(threads, "conn"):
        threads.conn = pymysql.connect(**mysql_connect_args(config.load()))  # MULTI_STATEMENTS, as the service
    return threads.conn


@app.post("/groups/<int:gid>/members")
def add(gid):
    if not hmac.compare_digest(request.headers.get("Authorization", ""), EXPECTED):
        abort(401)
    uid, now = request.get_json()[0], int(time.time())
    with connection().cursor() as cur:
        cur.execute(CHANGE, {"gid": gid, "appid": int(APPID), "uid": uid, "now": now})
        while cur.nextset():
            pass
    r.lpush("group_event_queue", json.dumps({"appid": int(APPID), "group_id": gid, "member_id": uid,
                                             "timestamp": now * 1000}))
    return {"data": {"success": True}}
