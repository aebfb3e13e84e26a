"""Media: uploads of a 100 KB JPEG, a thumbnail's first and cached request, and a download through the
deployment's nginx beside nginx serving the same file as a plain static file.

Usage: .venv/bin/python bench/media.py [--uploads 300] [--connections 8] [--seconds 5] [--smoke]
Runs gunicorn (as deployed, on a unix socket) behind deploy/nginx.conf (TLS on a free port, a
self-signed certificate) on the database and Redis DB of bench.py. Downloads are measured with
wrk when it is installed (apt-get install wrk), else with this script's own threads (which then
bound both figures alike). Prints one line per figure; docs/PERFORMANCE.md holds a run.
"""
import argparse
import base64
import concurrent.futures
import hashlib
import http.client
import io
import json
import os
import platform
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/, so that "bench" is the package

from bench.bench import DATABASE, REDIS_DB, free_port, prepare  # noqa: E402

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SOCKET, CERT, KEY = "unix:/run/im-api/gunicorn.sock", "/etc/nginx/tls/im-api.crt", "/etc/nginx/tls/im-api.key"
MEDIA = "/var/lib/im-api/media"


def jpeg_100k() -> bytes:
    """A JPEG of about 100 KB (noise compresses badly, as photos do)."""
    from PIL import Image

    image = Image.frombytes("RGB", (200, 200), os.urandom(200 * 200 * 3))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92)
    return out.getvalue()


def unique(jpeg: bytes, index: int) -> bytes:
    """The same picture with bytes after its end marker: decodes alike, hashes to a new name."""
    return jpeg + f"upload-{index}-{time.time_ns()}".encode()


class Site:
    """gunicorn on a unix socket behind deploy/nginx.conf, with a plain static location beside it."""

    def __init__(self, tmp: Path, appid: int, secret: str):
        self.tmp, self.media = tmp, tmp / "media"
        self.static = tmp / "static"
        self.static.mkdir()
        tmp.chmod(0o755)
        sock = tmp / "gunicorn.sock"
        env = {**os.environ, "MYSQL_DATABASE": DATABASE, "REDIS_DB": str(REDIS_DB), "TRUSTED_PROXIES": "unix",
               "ACCESS_LOG": "0", "MEDIA_STORE": str(self.media), "WEB_CONCURRENCY": os.environ.get(
                   "WEB_CONCURRENCY", str(os.cpu_count() or 1))}
        self.gunicorn = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind",
                                          f"unix:{sock}", "app:app"], cwd=ROOT, env=env,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.port = free_port()
        self.nginx = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(self.config(sock)), "-g", "daemon off;"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        digest = hashlib.md5(secret.encode()).hexdigest()
        self.auth = "Basic " + base64.b64encode(f"{appid}:{digest}".encode()).decode()
        self.tls = ssl.create_default_context(cafile=str(tmp / "cert.pem"))
        for _ in range(200):
            if sock.exists() and self.get("/healthz")[0] == 200:
                return
            time.sleep(0.05)
        raise SystemExit("gunicorn or nginx did not start")

    def config(self, sock: Path) -> Path:
        cert, key = self.tmp / "cert.pem", self.tmp / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                        "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                        "-out", str(cert)], check=True, capture_output=True)
        conf = (ROOT / "deploy/nginx.conf").read_text()
        for old, new in ((SOCKET, f"unix:{sock}"), ("listen 80;", f"listen 127.0.0.1:{free_port()};"),
                         ("listen 443 ssl;", f"listen 127.0.0.1:{self.port} ssl;"), (CERT, str(cert)),
                         (KEY, str(key)), (MEDIA, str(self.media))):
            conf = conf.replace(old, new)
        # The same files as plain static files: nginx's own speed, for comparison.
        conf = conf.replace("    location / {", f"    location /static/ {{\n        root {self.tmp};\n    }}\n\n"
                                                 "    location / {", 1)
        path = self.tmp / "nginx.conf"
        path.write_text(f"pid {self.tmp}/nginx.pid;\nerror_log {self.tmp}/error.log;\nworker_processes auto;\n"
                        f"events {{}}\nhttp {{\n    access_log off;\n    client_body_temp_path {self.tmp}/body;\n"
                        f"    proxy_temp_path {self.tmp}/proxy;\n{conf}\n}}\n")
        return path

    def connection(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.tls, timeout=30)

    def get(self, path: str, conn=None) -> tuple[int, bytes]:
        own = conn or self.connection()
        try:
            own.request("GET", path)
            response = own.getresponse()
            return response.status, response.read()
        except OSError:
            return 0, b""
        finally:
            if conn is None:
                own.close()

    def worker_cpu(self) -> float:
        """CPU seconds used so far by gunicorn's workers (user + system)."""
        total = 0.0
        children = Path(f"/proc/{self.gunicorn.pid}/task/{self.gunicorn.pid}/children").read_text().split()
        for pid in children:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def close(self) -> None:
        for proc in (self.nginx, self.gunicorn):
            proc.terminate()
            proc.wait(timeout=30)


def uploads(site: Site, count: int, connections: int) -> tuple[float, float]:
    """Requests per second and worker CPU milliseconds per upload of distinct 100 KB JPEGs."""
    jpeg = jpeg_100k()
    bodies = [unique(jpeg, i) for i in range(count)]
    local = threading.local()

    def send(body: bytes) -> None:
        if not hasattr(local, "conn"):
            local.conn = site.connection()
        local.conn.request("POST", "/images", body=body, headers={"Authorization": site.auth,
                                                                  "Content-Type": "image/jpeg"})
        response = local.conn.getresponse()
        answer = response.read()
        if response.status != 200:
            raise SystemExit(f"upload: {response.status} {answer[:200]!r}")

    cpu, started = site.worker_cpu(), time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(connections) as pool:
        list(pool.map(send, bodies))
    elapsed = time.perf_counter() - started
    return count / elapsed, (site.worker_cpu() - cpu) * 1000 / count


def upload_one(site: Site, body: bytes, content_type: str = "image/jpeg") -> str:
    conn = site.connection()
    conn.request("POST", "/images", body=body, headers={"Authorization": site.auth, "Content-Type": content_type})
    response = conn.getresponse()
    answer = json.loads(response.read())
    conn.close()
    return answer["data"]["src"]


def thumbnails(site: Site, images: int) -> tuple[float, float]:
    """Milliseconds of a thumbnail's first request (made and kept) and of a cached one (median)."""
    first, cached = [], []
    conn = site.connection()
    for i in range(images):
        src = upload_one(site, unique(jpeg_100k(), i)) + "@256w_256h_1c.jpg"
        for times in (first, cached, cached):
            started = time.perf_counter()
            status, _ = site.get(src, conn)
            times.append((time.perf_counter() - started) * 1000)
            if status != 200:
                raise SystemExit(f"thumbnail: {status}")
    return statistics.median(first), statistics.median(cached)


def throughput(site: Site, path: str, seconds: float, connections: int) -> float:
    """Requests per second of GET path over TLS keep-alive connections: wrk, or threads."""
    if shutil.which("wrk"):
        done = subprocess.run(["wrk", "-t", str(min(connections, os.cpu_count() or 1)), "-c", str(connections),
                               "-d", f"{max(1, round(seconds))}s", f"https://127.0.0.1:{site.port}{path}"],
                              capture_output=True, text=True, check=True)
        line = next(line for line in done.stdout.splitlines() if line.startswith("Requests/sec"))
        return float(line.split()[1])
    deadline, counts = time.perf_counter() + seconds, []

    def loop() -> None:
        conn, count = site.connection(), 0
        while time.perf_counter() < deadline:
            status, _ = site.get(path, conn)
            if status != 200:
                raise SystemExit(f"download {path}: {status}")
            count += 1
        counts.append(count)

    threads = [threading.Thread(target=loop) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=300)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--thumbnails", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="a few requests of each, to check that it runs")
    args = parser.parse_args()
    if args.smoke:
        args.uploads, args.connections, args.seconds, args.thumbnails = 10, 2, 0.5, 2

    appid, secret, _ = prepare()
    tmp = Path(tempfile.mkdtemp(prefix="im-bench-media-"))
    site = Site(tmp, appid, secret)
    try:
        print(f"machine: {platform.node()}, {os.cpu_count()} cores; wrk: {'yes' if shutil.which('wrk') else 'no'}")
        rate, cpu = uploads(site, args.uploads, args.connections)
        print(f"upload 100 KB JPEG: {rate:.0f} requests/s, {cpu:.1f} ms worker CPU per upload")
        first, cached = thumbnails(site, args.thumbnails)
        print(f"thumbnail 256x256 crop: first request {first:.1f} ms, cached {cached:.1f} ms (median)")
        src = upload_one(site, jpeg_100k())
        shutil.copy(site.media / src[1:], site.static / "same.jpg")
        os.chmod(site.static / "same.jpg", 0o644)
        media = throughput(site, src, args.seconds, args.connections)
        static = throughput(site, "/static/same.jpg", args.seconds, args.connections)
        print(f"download through nginx: {media:.0f} requests/s as media, {static:.0f} as a plain static file "
              f"({media / static:.2f}x)")
    finally:
        site.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
