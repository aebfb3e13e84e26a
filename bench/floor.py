"""The floor for POST /messages/peers: only the unavoidable work (Basic auth, JSON, one LPUSH)."""
import base64
import hashlib
import hmac
import json
import os

import redis
from flask import Flask, abort, request

APPID, SECRET = os.environ["BENCH_APPID"], os.environ["BENCH_SECRET"]
EXPECTED = "Basic " + base64.b64encode(f"{APPID}:{hashlib.md5(SECRET.encode()).hexdigest()}".encode()).decode()

app = Flask(__name__)
r = redis.Redis(db=int(os.environ.get("REDIS_DB", 0)))


@app.post("/messages/peers")
def peers():
    if not hmac.compare_digest(request.headers.get("Authorization", ""), EXPECTED):
        abort(401)
    body = request.get_json()
    r.lpush("im_message_queue", json.dumps({"kind": "peer", "appid": int(APPID), **body}))
    return {"data": {"id": 0}}
