"""A body without Content-Length (chunked) is taken whole or refused with 413, on real servers.

werkzeug's test client always frames a body with Content-Length, so these talk HTTP/1.1 over a
raw socket to werkzeug's own server (in a thread) and to gunicorn as deployed.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading

import pytest
from helpers import rows
from test_concurrency import free_port
from test_faults import wait_for
from test_gunicorn import ROOT, healthy
from werkzeug.serving import make_server


@pytest.fixture(scope="module")
def werkzeug_server(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()


@pytest.fixture(scope="module")
def gunicorn_server(app):
    port = free_port()
    env = {**os.environ, "MYSQL_DATABASE": app.config["MYSQL_DATABASE"], "REDIS_DB": str(app.config["REDIS_DB"]),
           "WEB_CONCURRENCY": "1"}
    with tempfile.TemporaryFile() as log:
        gunicorn = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind",
                                     f"127.0.0.1:{port}", "app:app"], cwd=ROOT, env=env, stdout=log, stderr=log)
        try:
            wait_for(lambda: healthy(port), what="gunicorn")
            yield port
        finally:
            gunicorn.send_signal(signal.SIGTERM)
            gunicorn.wait(timeout=40)


@pytest.fixture(params=["werkzeug", "gunicorn"])
def port(request):
    return request.getfixturevalue(f"{request.param}_server")


def chunked_post(port: int, path: str, body: bytes, auth: dict, chunk: int = 16 * 1024) -> tuple[int, dict]:
    """POST the body in chunks, without Content-Length; the status and JSON answer."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: {auth['Authorization']}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    framed = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + chunk]), body[i:i + chunk]) for i in range(0, len(body), chunk))
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        try:
            sock.sendall(head.encode() + framed + b"0\r\n\r\n")
        except OSError:  # the server may answer 413 and close before reading it all
            pass
        answer = b""
        try:
            while not complete(answer) and (chunk := sock.recv(65536)):
                answer += chunk
        except OSError:
            pass
    status_line, _, rest = answer.partition(b"\r\n")
    headers, _, payload = rest.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in headers.lower():
        payload = dechunk(payload)
    return int(status_line.split()[1]), json.loads(payload)


def complete(answer: bytes) -> bool:
    """Whether the answer holds a whole response (a server may keep the socket open after it)."""
    headers, found, payload = answer.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in headers.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return len(payload) >= int(line.split(b":")[1])
    return payload.endswith(b"0\r\n\r\n")


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size, _, data = data.partition(b"\r\n")
        if int(size, 16) == 0:
            break
        out, data = out + data[:int(size, 16)], data[int(size, 16) + 2:]
    return out


def group_body(size: int) -> bytes:
    """A group-creation body of exactly `size` bytes (a padding field the schema ignores)."""
    start = b'{"master": 1, "name": "chunked", "members": [1], "pad": "'
    return start + b"x" * (size - len(start) - 2) + b'"}'


def groups(db) -> int:
    return rows(db, "SELECT COUNT(*) AS n FROM `group`")[0]["n"]


def test_a_chunked_body_within_the_limit_is_taken_whole(port, app, demo, db):
    limit = app.config["MAX_CONTENT_LENGTH"]
    for size in (1000, limit):
        status, body = chunked_post(port, "/groups", group_body(size), demo["auth"])
        assert status == 200, (size, body)
    assert groups(db) == 2


def test_a_valid_document_at_the_limit_followed_by_more_is_413_and_creates_nothing(port, app, demo, db):
    body = group_body(app.config["MAX_CONTENT_LENGTH"]) + b" " * 64 * 1024  # the cut part alone is valid JSON
    status, answer = chunked_post(port, "/groups", body, demo["auth"])
    assert status == 413 and answer["meta"]["code"] == 1005, answer
    assert groups(db) == 0


def test_a_chunked_body_of_twice_the_limit_is_413_not_invalid_json(port, app, demo, db):
    status, answer = chunked_post(port, "/groups", group_body(2 * app.config["MAX_CONTENT_LENGTH"]), demo["auth"])
    assert status == 413 and answer["meta"]["code"] == 1005, answer
    assert groups(db) == 0


def test_one_byte_over_the_limit_is_413(port, app, demo, db):
    status, answer = chunked_post(port, "/groups", group_body(app.config["MAX_CONTENT_LENGTH"] + 1), demo["auth"])
    assert status == 413, answer
    assert groups(db) == 0
