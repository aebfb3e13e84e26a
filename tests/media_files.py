"""Media for the tests, made on the spot (images with metadata, AMR voice, decompression bombs),
and moto's standalone S3 server."""
import http.client
import io
import json
import os
import random
import struct
import subprocess
import sys
import threading
import zlib

from helpers import free_port, wait_for
from PIL import Image
from werkzeug.serving import make_server

JPEG_ORIENTATION_RIGHT = 6  # EXIF: the picture is to be turned 90 degrees clockwise to be upright


def jpeg(width=640, height=480, exif: bool = False, color=(200, 30, 30), quality=90) -> bytes:
    """A JPEG; exif: with an orientation (turn right), a GPS position and a camera name."""
    image = Image.new("RGB", (width, height), color)
    image.paste((10, 10, 220), (0, 0, width // 2, height // 4))  # a mark to tell the sides apart
    out = io.BytesIO()
    if exif:
        data = Image.Exif()
        data[0x0112] = JPEG_ORIENTATION_RIGHT
        data[0x0110] = "SecretCam 3000"
        data.get_ifd(0x8825)[2] = (52.0, 31.0, 12.0)  # GPSLatitude
        image.save(out, "JPEG", quality=quality, exif=data.tobytes(), comment=b"where I live")
    else:
        image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def png(width=300, height=200, mode="RGBA") -> bytes:
    image = Image.new(mode, (width, height), (0, 128, 0, 128) if mode == "RGBA" else (0, 128, 0))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def gif(width=50, height=40) -> bytes:
    out = io.BytesIO()
    Image.new("P", (width, height), 3).save(out, "GIF")
    return out.getvalue()


def webp(width=60, height=30) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (1, 2, 3)).save(out, "WEBP")
    return out.getvalue()


def bmp() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "BMP")
    return out.getvalue()


def png_bomb(width=20000, height=20000) -> bytes:
    """A valid PNG header of width x height grey pixels whose data is a few KB of zlib: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = zlib.compress(b"\x00" * (width + 1) * 64, 9)  # the first rows only: enough to be a PNG
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def amr(seconds: int = 1, seed: int = 1) -> bytes:
    """AMR-NB as the SDKs record it: the magic line, then 12.2 kbit/s frames (50 a second)."""
    rng = random.Random(seed)
    return b"#!AMR\n" + b"".join(b"\x3c" + bytes(rng.getrandbits(8) for _ in range(31)) for _ in range(50 * seconds))


def mp3_duration(data: bytes) -> float:
    """The seconds of audio ffmpeg decodes from MP3 bytes (it fails the test when they do not decode)."""
    decoded = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "mp3", "-i", "pipe:0", "-f", "s16le", "-ac",
                              "1", "-ar", "8000", "pipe:1"], input=data, capture_output=True, check=True)
    assert not decoded.stderr, decoded.stderr
    return len(decoded.stdout) / 2 / 8000


def chunked_post(app, path: str, data: bytes, headers: dict) -> tuple[int, dict]:
    """POST data with Transfer-Encoding: chunked to the app on werkzeug's own server (the test client
    always sends a Content-Length); (status, JSON body)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        conn.request("POST", path, body=iter([data[i:i + 4096] for i in range(0, len(data), 4096)]),
                     headers=headers, encode_chunked=True)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        server.shutdown()


class MotoServer:
    """moto's standalone S3-compatible server on a free port, with AWS credentials for it in the environment."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.saved = {name: os.environ.get(name) for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                                             "AWS_DEFAULT_REGION")}
        os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = self.boto()
        wait_for(self.answers, what="moto's server")

    def boto(self):
        import boto3
        return boto3.client("s3", endpoint_url=self.url)

    def answers(self) -> bool:
        try:
            self.client.list_buckets()
            return True
        except Exception:
            return False

    def bucket(self, name: str) -> str:
        self.client.create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        return sorted(item["Key"] for item in self.client.list_objects_v2(Bucket=bucket).get("Contents", []))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        for name, value in self.saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
