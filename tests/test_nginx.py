"""deploy/nginx.conf in front of gunicorn on a unix socket, as deployed: addresses, allow-lists, 413s."""
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import basic, free_port, make_app, wait_for

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx-light)")
CLIENT = "127.0.0.2"  # the test's client address: a loopback address that is not a trusted proxy


@pytest.fixture
def site(app):
    """nginx on a free port -> gunicorn on a unix socket; yields the port."""
    tmp = Path(tempfile.mkdtemp(prefix="im-api-nginx-"))
    tmp.chmod(0o755)  # nginx's workers run as an unprivileged user and must reach the socket
    sock, port = tmp / "gunicorn.sock", free_port()
    env = {**os.environ, "MYSQL_DATABASE": app.config["MYSQL_DATABASE"], "REDIS_DB": str(app.config["REDIS_DB"]),
           "TRUSTED_PROXIES": "unix", "WEB_CONCURRENCY": "2", "ACCESS_LOG": "0"}
    gunicorn = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"unix:{sock}",
                                 "app:app"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    site_conf = (ROOT / "deploy/nginx.conf").read_text().replace("unix:/run/im-api/gunicorn.sock", f"unix:{sock}")
    site_conf = site_conf.replace("listen 80;", f"listen 127.0.0.1:{port};")
    (tmp / "nginx.conf").write_text(f"""
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
{site_conf}
}}
""")
    nginx = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(sock.exists, what="gunicorn's socket")
        wait_for(lambda: request(port, "GET", "/healthz")[0] == 200, what="nginx")
        yield port
    finally:
        for proc in (nginx, gunicorn):
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


def request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(CLIENT, 0))
    try:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        raw = response.read()
        return response.status, raw, dict(response.getheaders())
    except OSError:
        return 0, b"", {}
    finally:
        conn.close()


def test_requests_and_request_ids_pass_through(site, demo):
    status, raw, headers = request(site, "POST", "/auth/grant", {"uid": 1}, {**demo["auth"], "X-Request-ID": "r-1"})
    assert status == 200 and json.loads(raw)["data"]["token"]
    assert headers["X-Request-ID"] == "r-1"


def test_the_allow_list_sees_the_client_address_nginx_saw(site, db):
    allowed = make_app(db, name="allowed", allowed_ips=f"{CLIENT}/32")
    elsewhere = make_app(db, name="elsewhere", allowed_ips="127.0.0.3")
    assert request(site, "POST", "/auth/grant", {"uid": 1}, basic(allowed["id"], allowed["secret"]))[0] == 200
    status, raw, _ = request(site, "POST", "/auth/grant", {"uid": 1}, basic(elsewhere["id"], elsewhere["secret"]))
    assert status == 403 and json.loads(raw)["meta"]["code"] == 2005
    # A client cannot claim another address: nginx appends the real one, which is read first.
    spoofed = {**basic(elsewhere["id"], elsewhere["secret"]), "X-Forwarded-For": "127.0.0.3", "X-Real-IP": "127.0.0.3"}
    assert request(site, "POST", "/auth/grant", {"uid": 1}, spoofed)[0] == 403


def test_bodies_over_the_limit_are_413_in_the_envelope(site, demo):
    status, raw, _ = request(site, "POST", "/messages/peers", b"x" * (2 * 1024 * 1024), demo["auth"])
    assert status == 413 and json.loads(raw) == {
        "meta": {"code": 1005, "message": "The request body is too large."}}
    status, raw, _ = request(site, "POST", "/messages/peers",
                             {"sender": 1, "receiver": 2, "content": "x" * 900_000}, demo["auth"])
    assert status == 400 and json.loads(raw)["meta"]["message"].startswith("content:")


def test_metrics_are_only_for_the_local_host(site):
    assert request(site, "GET", "/metrics")[0] == 403
