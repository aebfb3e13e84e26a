"""Round trips to MySQL and Redis per request, counted in the client (in-process, no timing).

Usage: .venv/bin/python bench/roundtrips.py [--requests 200]
Uses bench.py's database gobelieve_bench and Redis DB 9, which it empties. Counts what PyMySQL
sends (round trips, and the statements in them: several go in one packet, models/connection.py) and the
command batches redis-py sends, per request, after a warm-up; docs/PERFORMANCE.md holds a run.
"""
import argparse
import base64
import hashlib
import sys
from pathlib import Path

import pymysql.connections
import redis.connection

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/, so that "bench" is the package

from bench.bench import DATABASE, REDIS_DB, prepare  # noqa: E402


def counting(sent: dict) -> None:
    """Count every packet PyMySQL and redis-py send, into sent."""
    mysql_send = pymysql.connections.Connection._execute_command
    redis_send = redis.connection.Connection.send_packed_command

    def mysql(self, command, sql):
        sent["MySQL round trips"] += 1
        text = sql if isinstance(sql, str) else bytes(sql).decode("utf-8", "replace")
        sent["MySQL statements"] += text.count(";\n") + 1 if text else 1  # a ping has no text
        return mysql_send(self, command, sql)

    def redis_(self, *args, **kwargs):
        sent["Redis round trips"] += 1
        return redis_send(self, *args, **kwargs)

    pymysql.connections.Connection._execute_command = mysql
    redis.connection.Connection.send_packed_command = redis_


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    appid, secret, (gid, small_gid) = prepare()
    from app import create_app
    app = create_app({"MYSQL_DATABASE": DATABASE, "REDIS_DB": REDIS_DB, "QUEUE_MAX_LENGTH": 10**9,
                      "ACCESS_LOG": False})
    auth = "Basic " + base64.b64encode(f"{appid}:{hashlib.md5(secret.encode()).hexdigest()}".encode()).decode()
    client, headers = app.test_client(), {"Authorization": auth, "Content-Type": "application/json"}
    requests = [("POST /groups/{gid}/members (one new member)", lambda i: client.post(
                    f"/groups/{gid}/members", data=f"[{10_000 + i}]", headers=headers)),
                ("POST /groups (3 members)", lambda i: client.post(
                    "/groups", json={"master": 1, "name": "g", "members": [1, 2, 3]}, headers=headers)),
                ("DELETE /groups/{gid}/members/{uid}", lambda i: client.delete(
                    f"/groups/{gid}/members/{10_000 + i}", headers=headers)),
                ("GET /groups/{gid} (3 members)", lambda i: client.get(f"/groups/{small_gid}", headers=headers)),
                ("POST /messages/peers", lambda i: client.post(
                    "/messages/peers", json={"sender": 1, "receiver": 2, "content": "hi"}, headers=headers)),
                ("POST /auth/grant (a known user)", lambda i: client.post(
                    "/auth/grant", json={"uid": 1}, headers=headers)),
                ("POST /auth/grant (a new user)", lambda i: client.post(
                    "/auth/grant", json={"uid": 30_000 + i}, headers=headers)),
                ("POST /users/{uid} (name, do_not_disturb, forbidden)", lambda i: client.post(
                    f"/users/{30_000 + i}", json={"name": "n", "do_not_disturb": {"peer_uid": 2, "on": True},
                                                  "forbidden": True}, headers=headers)),
                ("POST /groups/{gid}/members/{uid} (quiet)", lambda i: client.post(
                    f"/groups/{small_gid}/members/1", json={"quiet": i % 2}, headers=headers))]
    sent = dict.fromkeys(("MySQL round trips", "MySQL statements", "Redis round trips"), 0)
    counted = False
    print(f"| request ({args.requests} each, after a warm-up) | " + " | ".join(sent) + " |")
    print("| --- |" + " ---: |" * len(sent))
    for label, request in requests:
        for i in range(args.requests // 10):  # warm-up: pool, scripts, message id blocks
            assert request(-1 - i).status_code in (200, 404), label
        if not counted:
            counting(sent)
            counted = True
        before = dict(sent)
        for i in range(args.requests):
            answer = request(i)
            assert answer.status_code == 200, (label, answer.get_data(as_text=True))
        print(f"| {label} | " + " | ".join(f"{(sent[k] - before[k]) / args.requests:.2f}" for k in sent) + " |")


if __name__ == "__main__":
    main()
