"""The path of one request through the project's files, drawn from a run of it: files visited,
calls from one file into another, and files entered more than once.

Usage: .venv/bin/python bench/callpath.py [--all]
Runs one `POST /groups/{gid}/members` in-process on the database gobelieve_callpath and Redis DB
13 (both emptied) and follows every Python call the view makes, from the view's own function to
its return: what every request passes through (the factory's middleware, logging,
authentication: caller() reads what it found) is left out. A file's entry is a call into it from
another file of the project (through a library or not; a generator resumed is no new entry). The
trail is every file but the plumbing that each SQL statement, Redis key and setting goes through
(PLUMBING). --all lists every call across files in order.
"""
import argparse
import base64
import hashlib
import sys
from collections import Counter
from pathlib import Path

import pymysql

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import config  # noqa: E402
from models.connection import mysql_connect_args  # noqa: E402
from models.migrations import init_db  # noqa: E402

DATABASE, REDIS_DB = "gobelieve_callpath", 13
SKIPPED = ("tests/", "bench/")
EVERY_REQUEST = {"views/authentication.py"}  # caller(): the request's authenticated caller
# What every statement and Redis call passes through: counted, but not part of the trail.
PLUMBING = {"models/db.py", "models/connection.py", "models/redis_io.py", "models/keys.py", "views/fields.py"}


def project_file(code) -> str | None:
    """The code's file relative to the project, or None for a library's (or a test's)."""
    path = Path(code.co_filename)
    if not path.is_relative_to(ROOT) or ".venv" in path.parts:
        return None
    name = str(path.relative_to(ROOT))
    return None if name.startswith(SKIPPED) else name


def prepare() -> tuple:
    """An app with one app row and a group of three; the test client and server-auth headers."""
    settings = config.load({"MYSQL_DATABASE": DATABASE})
    conn = pymysql.connect(**mysql_connect_args(settings, database=False))
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{DATABASE}`")
    conn.close()
    init_db(settings)
    from app import create_app
    app = create_app({"MYSQL_DATABASE": DATABASE, "REDIS_DB": REDIS_DB, "ACCESS_LOG": False})
    app.extensions["redis"].flushdb()
    conn = pymysql.connect(**mysql_connect_args(settings))
    with conn.cursor() as cur:
        cur.execute("INSERT INTO app (name, `key`, secret) VALUES ('path', 'path', 'path-secret')")
        appid = cur.lastrowid
    conn.close()
    digest = hashlib.md5(b"path-secret").hexdigest()
    headers = {"Authorization": "Basic " + base64.b64encode(f"{appid}:{digest}".encode()).decode()}
    client = app.test_client()
    gid = client.post("/groups", json={"master": 1, "name": "g", "members": [1, 2, 3]}, headers=headers).get_json()
    return client, headers, gid["data"]["group_id"]


def follow(run, view_name: str, view_file: str) -> list[tuple[str, str, str, str]]:
    """Run run() and list every call across project files made while view_name (in view_file) runs:
    (caller file, caller function, callee file, callee function)."""
    calls, inside, started = [], [], []  # started: frames seen, so a resumed generator is no new call

    def profile(frame, event, arg):
        code = frame.f_code
        if event == "call" and code.co_name == view_name and project_file(code) == view_file:
            inside.append(frame)
        elif event == "return" and inside and frame is inside[-1]:
            inside.pop()
        elif event == "call" and inside:
            if any(frame is seen for seen in started):
                return
            started.append(frame)
            callee = project_file(code)
            caller = frame.f_back
            while caller is not None and project_file(caller.f_code) is None:
                caller = caller.f_back
            if callee and caller is not None and project_file(caller.f_code) != callee:
                calls.append((project_file(caller.f_code), caller.f_code.co_qualname, callee, code.co_qualname))

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="list every call across files, in order")
    args = parser.parse_args()
    client, headers, gid = prepare()
    add = lambda uid: client.post(f"/groups/{gid}/members", json=[uid], headers=headers)  # noqa: E731
    add(100)  # warm: the pool, the message ids, the scripts
    answer = []
    calls = follow(lambda: answer.append(add(101)), "post", "views/group.py")
    assert answer[0].status_code == 200, answer[0].get_json()
    calls = [call for call in calls if call[2] not in EVERY_REQUEST]
    entries = Counter(callee for _, _, callee, _ in calls)
    files = ["views/group.py", *dict.fromkeys(callee for _, _, callee, _ in calls)]
    trail = [name for name in files if name not in PLUMBING]
    print("POST /groups/{gid}/members, from views/group.py Members.post to its return:")
    print(f"  files visited: {len(files)} ({len(trail)} on the trail, {len(files) - len(trail)} plumbing); "
          f"calls across files: {len(calls)}; files on the trail entered more than once: "
          f"{sum(1 for name in trail if entries[name] > 1)}")
    for name in files:
        print(f"  {name}: entered {entries.get(name, 0)} time(s){'' if name in trail else ' (plumbing)'}")
    if args.all:
        for caller, caller_fn, callee, callee_fn in calls:
            print(f"    {caller}:{caller_fn} -> {callee}:{callee_fn}")


if __name__ == "__main__":
    main()
