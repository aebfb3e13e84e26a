"""deploy/nginx.conf in front of gunicorn on a unix socket, as deployed: TLS, the redirect, addresses,
allow-lists, and nginx's own refusals in the JSON envelope."""
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import basic, free_port, make_app, wait_for

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(NGINX is None or OPENSSL is None,
                                reason="nginx or openssl is not installed (apt-get install nginx-light openssl)")
CLIENT = "127.0.0.2"  # the test's client address: a loopback address that is not a trusted proxy
SOCKET, CERT, KEY = "unix:/run/im-api/gunicorn.sock", "/etc/nginx/tls/im-api.crt", "/etc/nginx/tls/im-api.key"
MEDIA = "/var/lib/im-api/media"


@dataclass
class Site:
    http: int  # the plain-HTTP port (listen 80 in deploy/nginx.conf)
    https: int  # the TLS port (listen 443)
    tls: ssl.SSLContext  # a client context that trusts the test's self-signed certificate


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, made now, and its key."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def start_nginx(tmp: Path, sock: Path, media: Path | None = None) -> tuple[subprocess.Popen, Site]:
    """deploy/nginx.conf with only the socket, ports, certificate paths (and the media directory) rewritten."""
    cert, key = self_signed(tmp)
    http_port, https_port = free_port(), free_port()
    conf = (ROOT / "deploy/nginx.conf").read_text()
    for old, new in ((SOCKET, f"unix:{sock}"), ("listen 80;", f"listen 127.0.0.1:{http_port};"),
                     ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"), (CERT, str(cert)), (KEY, str(key)),
                     (MEDIA, str(media or tmp / "media"))):
        assert old in conf, f"deploy/nginx.conf no longer has {old!r}"
        conf = conf.replace(old, new)
    (tmp / "nginx.conf").write_text(f"""
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
{conf}
}}
""")
    nginx = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return nginx, Site(http_port, https_port, ssl.create_default_context(cafile=str(cert)))


@pytest.fixture(scope="module")
def site(app):
    """nginx on free ports -> gunicorn on a unix socket (one pair for the module's tests)."""
    tmp = Path(tempfile.mkdtemp(prefix="im-api-nginx-"))
    tmp.chmod(0o755)  # nginx's workers run as an unprivileged user and must reach the socket
    sock = tmp / "gunicorn.sock"
    env = {**os.environ, "MYSQL_DATABASE": app.config["MYSQL_DATABASE"], "REDIS_DB": str(app.config["REDIS_DB"]),
           "TRUSTED_PROXIES": "unix", "WEB_CONCURRENCY": "2", "ACCESS_LOG": "0", "QUEUE_MAX_LENGTH": "5"}
    gunicorn = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"unix:{sock}",
                                 "app:app"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nginx, site = start_nginx(tmp, sock)
    try:
        wait_for(sock.exists, what="gunicorn's socket")
        wait_for(lambda: request(site, "GET", "/healthz")[0] == 200, what="nginx")
        yield site
    finally:
        for proc in (nginx, gunicorn):
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def app_down():
    """nginx as deployed, with no gunicorn behind it."""
    tmp = Path(tempfile.mkdtemp(prefix="im-api-nginx-"))
    nginx, site = start_nginx(tmp, tmp / "nobody-listens.sock")
    try:
        wait_for(lambda: request(site, "GET", "/healthz")[0] != 0, what="nginx")
        yield site
    finally:
        nginx.terminate()
        nginx.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


def request(site, method, path, body=None, headers=None, tls=True):
    """One request from CLIENT over HTTPS (verifying the certificate) or plain HTTP; (status, body, headers)."""
    conn = http.client.HTTPSConnection("127.0.0.1", site.https, timeout=10, source_address=(CLIENT, 0),
                                       context=site.tls) if tls else \
        http.client.HTTPConnection("127.0.0.1", site.http, timeout=10, source_address=(CLIENT, 0))
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


def raw_request(site, data: bytes, tls=True) -> tuple[int, dict, bytes]:
    """Send bytes as they are (nothing checks them on the way), read one answer: (status, headers, body)."""
    sock = socket.create_connection(("127.0.0.1", site.https if tls else site.http), timeout=10,
                                    source_address=(CLIENT, 0))
    if tls:
        sock = site.tls.wrap_socket(sock, server_hostname="127.0.0.1")
    with sock:
        sock.sendall(data)
        answer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                break
            answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            if not chunk or (_ and len(body) >= int(parse_head(head)[1].get("content-length", 1 << 30))):
                break
    status, headers = parse_head(head)
    return status, headers, body


def parse_head(head: bytes) -> tuple[int, dict]:
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
    return int(lines[0].split()[1]), {name.strip().lower(): value.strip() for name, value in fields.items()}


def assert_envelope(status, headers, body, expected_status, code):
    assert status == expected_status, body
    assert {k.lower(): v for k, v in headers.items()}["content-type"] == "application/json", headers
    meta = json.loads(body)["meta"]
    assert set(json.loads(body)) == {"meta"} and meta["code"] == code and meta["message"], body


def test_https_reaches_the_app_and_request_ids_pass_through(site, demo):
    status, raw, headers = request(site, "POST", "/auth/grant", {"uid": 1}, {**demo["auth"], "X-Request-ID": "r-1"})
    assert status == 200 and set(json.loads(raw)) == {"data"} and json.loads(raw)["data"]["token"]
    assert headers["X-Request-ID"] == "r-1"
    with socket.create_connection(("127.0.0.1", site.https)) as plain, \
            site.tls.wrap_socket(plain, server_hostname="127.0.0.1") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_old_tls_versions_are_refused(site):
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer TLS 1.1, so that the refusal is nginx's
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_connection(("127.0.0.1", site.https)) as plain, pytest.raises(ssl.SSLError):
        old.wrap_socket(plain, server_hostname="127.0.0.1")


def test_plain_http_redirects_to_https_but_answers_health_probes(site, demo):
    for method in ("GET", "POST"):
        status, _, headers = request(site, method, "/groups?start=0", {"uid": 1}, demo["auth"], tls=False)
        assert status == 308 and headers["Location"] == "https://127.0.0.1/groups?start=0"
    status, _, headers = request(site, "GET", "/users", headers={"Host": "api.example.com"}, tls=False)
    assert status == 308 and headers["Location"] == "https://api.example.com/users"
    status, raw, _ = request(site, "GET", "/healthz", tls=False)
    assert status == 200 and json.loads(raw) == {"data": {"status": "ok"}}


def test_plain_http_on_the_tls_port_is_a_400_in_the_envelope(site):
    with socket.create_connection(("127.0.0.1", site.https), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert_envelope(*parse_head(head), body, 400, 1001)


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
    status, raw, headers = request(site, "POST", "/messages/peers", b"x" * (2 * 1024 * 1024), demo["auth"])
    assert status == 413 and json.loads(raw) == {
        "meta": {"code": 1005, "message": "The request body is too large."}}
    assert headers["Content-Type"] == "application/json"
    status, raw, _ = request(site, "POST", "/messages/peers",
                             {"sender": 1, "receiver": 2, "content": "x" * 900_000}, demo["auth"])
    assert status == 400 and json.loads(raw)["meta"]["message"].startswith("content:")


REFUSALS = {  # what nginx itself refuses, before the app sees anything
    "malformed request line": (b"GARBAGE\r\n\r\n", 400, 1001),
    "two Host headers": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, 1001),
    "URI over 8 KiB": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, 1001),
    "header over 8 KiB": (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431, 1001),
    "headers over 32 KiB": (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-H%d: %s\r\n" % (i, b"a" * 7000) for i in range(6)) + b"\r\n", 431, 1001),
    "body over 1 MiB": (b"POST /messages/peers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
                        b"Content-Length: 2097152\r\n\r\n{", 413, 1005),
}


@pytest.mark.parametrize("case", REFUSALS)
@pytest.mark.parametrize("tls", [True, False], ids=["https", "http"])
def test_nginx_refusals_are_in_the_envelope(site, case, tls):
    data, status, code = REFUSALS[case]
    assert_envelope(*raw_request(site, data, tls=tls), status, code)


@pytest.mark.parametrize("length", [5000, 8170, 8180, 8185, 8190, 8195, 8200])
def test_long_uris_are_json_from_nginx_or_the_app_never_html(site, length):
    # gunicorn's own refusals are HTML: its request-line limit is above what nginx lets through.
    status, headers, body = raw_request(site, b"GET /" + b"a" * length + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status in (404, 414) and headers["content-type"] == "application/json", body
    assert json.loads(body)["meta"]["code"] == (1003 if status == 404 else 1001)


@pytest.mark.parametrize("length", [7000, 8170, 8180, 8185, 8190, 8195, 8200])
def test_long_headers_are_json_from_nginx_or_the_app_never_html(site, length):
    status, headers, body = raw_request(site, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * length +
                                        b"\r\nConnection: close\r\n\r\n")
    assert status in (200, 431) and headers["content-type"] == "application/json", body


def test_many_header_fields_are_json_not_gunicorns_html(site):
    status, headers, body = raw_request(site, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-H%d: a\r\n" % i for i in range(150)) + b"Connection: close\r\n\r\n")
    assert_envelope(status, headers, body, 431, 1001)


def test_the_apps_own_errors_pass_unchanged(site, demo):
    status, raw, headers = request(site, "POST", "/auth/grant", {"uid": "x"}, demo["auth"])
    assert_envelope(status, headers, raw, 400, 1001)
    assert json.loads(raw)["meta"]["message"].startswith("uid:")
    assert "X-Request-ID" in headers  # the app's answer, not a page of nginx's


def test_the_apps_503s_pass_unchanged(site, demo, r):
    r.lpush("im_message_queue", *["{}"] * 5)  # the site's QUEUE_MAX_LENGTH
    status, raw, headers = request(site, "POST", "/messages/peers", {"sender": 1, "receiver": 2, "content": "hi"},
                                   demo["auth"])
    assert_envelope(status, headers, raw, 503, 7002)
    assert "X-Request-ID" in headers and headers["Retry-After"]


def test_metrics_are_only_for_the_local_host(site):
    status, raw, headers = request(site, "GET", "/metrics")
    assert_envelope(status, headers, raw, 403, 2007)


def test_an_app_that_is_down_is_a_503_in_the_envelope(app_down):
    for tls in (True, False):
        status, raw, headers = request(app_down, "GET", "/healthz", tls=tls)
        assert_envelope(status, headers, raw, 503, 7001)
        assert headers["Retry-After"] == "5"

