"""Images, voice and files: uploads, downloads, thumbnails, MP3s, ranges and hostile media, on the
directory store and on an S3 store (moto's standalone server), and through the deployment's nginx."""
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from helpers import TEST_CONFIG, Api, assert_error, bearer, token_for, wait_for
from media_files import MotoServer, amr, bmp, chunked_post, gif, jpeg, mp3_duration, png, png_bomb, webp
from PIL import Image

from app import create_app

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (apt-get install ffmpeg)")


@pytest.fixture(scope="module")
def moto():
    server = MotoServer()
    yield server
    server.close()


class Media:
    """An app on one store, with a way to list what the store holds."""

    def __init__(self, app, kind: str, objects):
        self.app, self.kind, self.objects = app, kind, objects
        self.client = app.test_client()

    def upload(self, path, data, content_type, headers, **kw):
        response = self.client.post(path, data=data, headers={"Content-Type": content_type, **headers}, **kw)
        return response.status_code, response.get_json()

    def upload_form(self, path, data, headers, filename="upload.bin", part_type=None):
        form = {"file": (io.BytesIO(data), filename, part_type) if part_type else (io.BytesIO(data), filename)}
        response = self.client.post(path, data=form, headers=headers, content_type="multipart/form-data")
        return response.status_code, response.get_json()


def directory_media(tmp: Path, **settings) -> Media:
    app = create_app(TEST_CONFIG | {"MEDIA_STORE": str(tmp), **settings})
    return Media(app, "directory", lambda: sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()))


def s3_media(moto, **settings) -> Media:
    bucket = moto.bucket(f"media-{uuid.uuid4().hex[:12]}")
    app = create_app(TEST_CONFIG | {"MEDIA_STORE": f"s3://{bucket}/im", "MEDIA_S3_ENDPOINT_URL": moto.url, **settings})
    return Media(app, "s3", lambda: [key.removeprefix("im/") for key in moto.keys(bucket)])


@pytest.fixture(scope="module", params=["directory", "s3"])
def store(request, tmp_path_factory):
    if request.param == "directory":
        return directory_media(tmp_path_factory.mktemp("media"))
    return s3_media(request.getfixturevalue("moto"))


@pytest.fixture
def small(tmp_path):
    """The directory store with small limits: 1000 bytes per upload, 10000 pixels per image."""
    return directory_media(tmp_path, MEDIA_MAX_IMAGE_BYTES=1000, MEDIA_MAX_AUDIO_BYTES=1000, MEDIA_MAX_FILE_BYTES=1000,
                           MEDIA_MAX_PIXELS=10_000)


@pytest.fixture
def token(api):
    return bearer(token_for(api, 7))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_published(status, body, src: str):
    """200 with {"data": {"src", "src_url"}} and the same two fields beside it (the SDKs read them there)."""
    assert status == 200, body
    assert body["data"] == {"src": src, "src_url": "http://localhost" + src}, body
    assert body["src"] == body["data"]["src"] and body["src_url"] == body["data"]["src_url"]


def assert_cached_forever(response, etag_name: str):
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response.headers["ETag"] == f'"{etag_name}"'
    assert response.headers["X-Content-Type-Options"] == "nosniff"


# --- images ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["server", "client"])
def test_an_image_uploaded_raw_is_served_back_exactly(store, demo, token, who):
    data = jpeg(color=(1, 2, 3))
    status, body = store.upload("/images", data, "image/jpeg", demo["auth"] if who == "server" else token)
    assert_published(status, body, f"/images/{sha(data)}.jpg")
    assert f"images/{sha(data)}.jpg" in store.objects()
    response = store.client.get(body["data"]["src"])
    assert response.status_code == 200 and response.data == data
    assert response.headers["Content-Type"] == "image/jpeg"
    assert_cached_forever(response, f"{sha(data)}.jpg")


@pytest.mark.parametrize("make, content_type, ext", [(png, "image/png", "png"), (gif, "image/gif", "gif"),
                                                      (webp, "image/webp", "webp")])
def test_every_accepted_image_type_keeps_its_extension(store, demo, make, content_type, ext):
    data = make()
    status, body = store.upload("/images", data, content_type, demo["auth"])
    assert_published(status, body, f"/images/{sha(data)}.{ext}")
    response = store.client.get(body["data"]["src"])
    assert response.data == data and response.headers["Content-Type"] == content_type


@pytest.mark.parametrize("width, height, fitted", [(1, 1, (1, 1)), (4, 3, (4, 3)), (7, 9, (7, 9)), (1, 400, (1, 128))])
def test_tiny_images_and_their_thumbnails(store, demo, width, height, fitted):
    data = jpeg(width, height)
    status, body = store.upload("/images", data, "image/jpeg", demo["auth"])
    assert_published(status, body, f"/images/{sha(data)}.jpg")
    response = store.client.get(body["data"]["src"] + "@128w_128h_1c.jpg")
    assert response.status_code == 200 and Image.open(io.BytesIO(response.data)).size == (128, 128)
    response = store.client.get(body["data"]["src"] + "@128w_128h_0c.png")
    assert Image.open(io.BytesIO(response.data)).size == fitted  # fitted within, never enlarged


def test_multipart_and_raw_uploads_of_the_same_bytes_are_one_object(store, demo, token):
    data = jpeg(color=(4, 5, 6))
    first = store.upload("/images", data, "image/jpeg", demo["auth"])
    again = store.upload("/images", data, "image/jpeg; charset=binary", token)
    form = store.upload_form("/images", data, token, "photo.jpeg", "image/jpeg")
    untyped = store.upload_form("/images", data, token, "photo")  # a part without its own type: sniffed
    octets = store.upload("/images", data, "application/octet-stream", token)  # no claim: sniffed
    assert first == again == form == untyped == octets
    assert store.objects().count(f"images/{sha(data)}.jpg") == 1


def test_uploads_need_credentials(store, demo):
    data = jpeg(color=(7, 8, 9))
    for headers in ({}, bearer("no-such-token")):
        status, body = store.upload("/images", data, "image/jpeg", headers)
        assert_error(status, body, 401)
    assert f"images/{sha(data)}.jpg" not in store.objects()
    assert store.upload_form("/files", b"x", {})[0] == 401
    assert store.upload("/audios", amr(), "audio/amr", {})[0] == 401


@pytest.mark.parametrize("suffix, size", [("@128w_128h_0c.jpg", (128, 96)), ("@128w_128h_1c.jpg", (128, 128)),
                                          ("@256w_256h_0c.jpg", (256, 192)), ("@256w_256h_1c.png", (256, 256))])
def test_thumbnails_have_the_size_asked_for_and_are_made_once(store, demo, suffix, size):
    data = jpeg(640, 480, color=(10, 11, len(suffix)))
    src = store.upload("/images", data, "image/jpeg", demo["auth"])[1]["data"]["src"]
    response = store.client.get(src + suffix)
    assert response.status_code == 200, response.data
    image = Image.open(io.BytesIO(response.data))
    assert image.size == size and image.format == ("PNG" if suffix.endswith("png") else "JPEG")
    assert response.headers["Content-Type"] == ("image/png" if suffix.endswith("png") else "image/jpeg")
    assert_cached_forever(response, src.rsplit("/", 1)[1] + suffix)
    key = f"{src[1:]}{suffix}"
    assert key in store.objects()
    # Kept: the stored thumbnail is what is served from now on (replace it to see).
    kept = store.app.extensions["media_store"]
    if store.kind == "directory":
        Path(kept.root, key).write_bytes(b"the kept one")
        assert store.client.get(src + suffix).data == b"the kept one"


def test_thumbnails_are_upright_and_carry_no_metadata(store, demo):
    data = jpeg(400, 200, exif=True)
    assert Image.open(io.BytesIO(data)).getexif()[0x0112] == 6
    src = store.upload("/images", data, "image/jpeg", demo["auth"])[1]["data"]["src"]
    assert store.client.get(src).data == data  # the original is kept as uploaded, metadata and all
    for suffix in ("@128w_128h_0c.jpg", "@256w_256h_0c.png"):
        raw = store.client.get(src + suffix).data
        image = Image.open(io.BytesIO(raw))
        assert image.size == (64, 128) if "128w" in suffix else (128, 256)  # 400x200 turned right
        assert not image.getexif() and "exif" not in image.info and "comment" not in image.info
        assert b"SecretCam" not in raw and b"where I live" not in raw and b"Exif" not in raw


def test_only_the_documented_thumbnail_sizes_exist(store, demo):
    src = store.upload("/images", png(), "image/png", demo["auth"])[1]["data"]["src"]
    for suffix in ("@100w_100h_0c.png", "@128w_256h_0c.png", "@128w_128h_2c.png", "@128w_128h_0c.bmp",
                   "@0128w_128h_0c.png", "@128w_128h_0c", "@99999w_99999h_1c.png"):
        response = store.client.get(src + suffix)
        assert_error(response.status_code, response.get_json(), 404)
    created = create_app(TEST_CONFIG | {"MEDIA_STORE": "/nonexistent-but-unused", "MEDIA_THUMBNAIL_SIZES": "64x32"})
    assert created.config["MEDIA_THUMBNAIL_SIZES"] == {(64, 32)}


def test_a_thumbnail_of_an_unknown_image_is_a_json_404(store):
    response = store.client.get(f"/images/{'0' * 64}.jpg@128w_128h_0c.jpg")
    assert_error(response.status_code, response.get_json(), 404, code=8001)
    assert not [key for key in store.objects() if key.startswith(f"images/{'0' * 64}")]


# --- voice -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["audio/amr", "application/plain", "application/octet-stream", None])
def test_voice_uploads_as_the_sdks_send_them(store, demo, token, content_type):
    data = amr(seed=len(content_type or ""))
    response = store.client.post("/audios", data=data, headers={**token, **(
        {"Content-Type": content_type} if content_type else {})})
    assert_published(response.status_code, response.get_json(), f"/audios/{sha(data)}")
    got = store.client.get(f"/audios/{sha(data)}")
    assert got.data == data and got.headers["Content-Type"] == "audio/amr"
    assert_cached_forever(got, f"{sha(data)}.amr")
    assert f"audios/{sha(data)}.amr" in store.objects()


@needs_ffmpeg
def test_mp3_is_converted_once_and_kept(store, demo):
    data = amr(seconds=2, seed=42 + (store.kind == "s3"))
    assert store.upload_form("/audios", data, demo["auth"], "voice.amr")[0] == 200
    response = store.client.get(f"/audios/{sha(data)}.mp3")
    assert response.status_code == 200 and response.headers["Content-Type"] == "audio/mpeg"
    assert 1.5 < mp3_duration(response.data) < 2.5
    assert_cached_forever(response, f"{sha(data)}.mp3")
    assert f"audios/{sha(data)}.mp3" in store.objects()
    metrics = store.client.get("/metrics").data.decode()
    before = counter(metrics, 'im_api_media_conversions_total{kind="mp3"}')
    assert store.client.get(f"/audios/{sha(data)}.mp3").data == response.data
    assert counter(store.client.get("/metrics").data.decode(), 'im_api_media_conversions_total{kind="mp3"}') == before


@needs_ffmpeg
def test_an_m4a_with_its_index_last_converts_too(store, demo, tmp_path):
    m4a = tmp_path / "voice.m4a"  # ffmpeg writes the moov atom at the end unless told otherwise
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac",
                    str(m4a)], check=True)
    data = m4a.read_bytes()
    assert data.rfind(b"moov") > data.find(b"mdat")
    status, body = store.upload("/audios", data, "audio/mp4", demo["auth"])
    assert_published(status, body, f"/audios/{sha(data)}")
    assert store.client.get(body["data"]["src"]).headers["Content-Type"] == "audio/mp4"
    response = store.client.get(body["data"]["src"] + ".mp3")
    assert response.status_code == 200 and 0.8 < mp3_duration(response.data) < 1.3


def test_an_mp3_upload_is_its_own_mp3(store, demo, tmp_path):
    data = b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" + b"\x00" * 400
    status, body = store.upload("/audios", data, "audio/mpeg", demo["auth"])
    assert_published(status, body, f"/audios/{sha(data)}")
    assert store.client.get(f"/audios/{sha(data)}.mp3").data == data
    assert store.client.get(f"/audios/{sha(data)}").headers["Content-Type"] == "audio/mpeg"


def counter(metrics: str, series: str) -> float:
    found = [line.rsplit(" ", 1)[1] for line in metrics.splitlines() if line.startswith(series + " ")]
    return float(found[0]) if found else 0.0


@needs_ffmpeg
def test_an_audio_ffmpeg_cannot_read_is_a_400_and_nothing_is_kept(store, demo):
    data = b"#!AMR\n" + b"\xff" * 300  # the magic line, then frames of no known mode
    assert store.upload("/audios", data, "audio/amr", demo["auth"])[0] == 200
    response = store.client.get(f"/audios/{sha(data)}.mp3")
    assert_error(response.status_code, response.get_json(), 400, code=8002)
    assert f"audios/{sha(data)}.mp3" not in store.objects()


def test_a_conversion_that_hangs_is_killed_and_answers_503(tmp_path, demo):
    hang = tmp_path / "ffmpeg"
    hang.write_text("#!/bin/sh\nexec sleep 30\n")
    hang.chmod(0o755)
    media = directory_media(tmp_path / "store", MEDIA_FFMPEG=str(hang), MEDIA_CONVERT_SECONDS=0.5)
    data = amr(seed=99)
    assert media.upload("/audios", data, "audio/amr", demo["auth"])[0] == 200
    started = time.monotonic()
    response = media.client.get(f"/audios/{sha(data)}.mp3")
    assert time.monotonic() - started < 5  # killed at MEDIA_CONVERT_SECONDS, not after its 30 s
    assert_error(response.status_code, response.get_json(), 503, code=8005)
    assert response.headers["Retry-After"]
    assert media.objects() == [f"audios/{sha(data)}.amr"]


def test_unknown_voice_is_a_json_404(store):
    for path in (f"/audios/{'1' * 64}", f"/audios/{'1' * 64}.mp3", f"/audios/{'1' * 64}.amr", "/audios/abc"):
        response = store.client.get(path)
        assert_error(response.status_code, response.get_json(), 404)
        assert response.headers["X-Content-Type-Options"] == "nosniff"


# --- files -------------------------------------------------------------------------------------------


def test_a_file_keeps_its_extension_and_is_served_with_its_type(store, demo, token):
    data = b"hello, ranges " * 100
    status, body = store.upload_form("/files", data, token, "Notes.TXT")
    assert_published(status, body, f"/files/{sha(data)}.txt")
    response = store.client.get(body["data"]["src"])
    assert response.data == data and response.headers["Content-Type"].startswith("text/plain")
    assert "Content-Disposition" not in response.headers
    assert_cached_forever(response, f"{sha(data)}.txt")
    assert store.upload_form("/files", data, demo["auth"], "notes.txt") == (status, body)
    status, body = store.upload_form("/files", data, token, "no-extension")
    assert_published(status, body, f"/files/{sha(data)}")
    assert store.client.get(f"/files/{sha(data)}").headers["Content-Type"] == "application/octet-stream"


@pytest.mark.parametrize("filename", ["page.html", "logo.svg", "feed.xml", "app.js", "x.xhtml", "run.exe"])
def test_files_a_browser_could_run_are_downloads(store, demo, filename):
    data = b"<html><script>alert(document.cookie)</script></html>" + filename.encode()
    src = store.upload_form("/files", data, demo["auth"], filename)[1]["data"]["src"]
    response = store.client.get(src)
    assert response.data == data
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Disposition"].startswith("attachment")
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_byte_ranges(store, demo):
    data = bytes(range(256)) * 40
    src = store.upload_form("/files", data, demo["auth"], "blob.bin")[1]["data"]["src"]
    cases = {"bytes=0-9": (0, 10), "bytes=100-": (100, len(data)), "bytes=-5": (len(data) - 5, len(data)),
             "bytes=10230-99999": (10230, len(data))}
    for header, (start, stop) in cases.items():
        response = store.client.get(src, headers={"Range": header})
        assert response.status_code == 206, header
        assert response.data == data[start:stop]
        assert response.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{len(data)}"
        assert response.headers["Content-Length"] == str(stop - start)
    response = store.client.get(src, headers={"Range": f"bytes={len(data)}-"})
    assert_error(response.status_code, response.get_json(), 416, code=8004)
    assert response.headers["Content-Range"] == f"bytes */{len(data)}"
    whole = store.client.get(src, headers={"Range": "bytes=0-1,5-6"})  # several ranges: the whole object
    assert whole.status_code == 200 and whole.data == data and whole.headers["Accept-Ranges"] == "bytes"
    other = store.client.get(src, headers={"Range": "bytes=0-9", "If-Range": '"another"'})
    assert other.status_code == 200 and other.data == data
    same = store.client.get(src, headers={"Range": "bytes=0-9", "If-Range": f'"{src.rsplit("/", 1)[1]}"'})
    assert same.status_code == 206 and same.data == data[:10]


def test_if_none_match_and_head(store, demo):
    data = png(31, 17)
    src = store.upload("/images", data, "image/png", demo["auth"])[1]["data"]["src"]
    etag = store.client.get(src).headers["ETag"]
    response = store.client.get(src, headers={"If-None-Match": etag})
    assert response.status_code == 304 and response.data == b""
    head = store.client.head(src)
    assert head.status_code == 200 and head.data == b"" and head.headers["Content-Length"] == str(len(data))


# --- hostile media -----------------------------------------------------------------------------------


def test_uploads_over_the_kind_limit_are_413(small, demo):
    big = jpeg(100, 100, quality=100)
    assert len(big) > 1000
    status, body = small.upload("/images", big, "image/jpeg", demo["auth"])
    assert_error(status, body, 413, "file", code=1005)
    assert "MEDIA_MAX_IMAGE_BYTES" in body["meta"]["message"]
    assert_error(*small.upload_form("/images", big, demo["auth"], "a.jpg"), 413, code=1005)
    assert_error(*small.upload("/audios", amr(), "audio/amr", demo["auth"]), 413, code=1005)
    assert_error(*small.upload_form("/files", b"x" * 1001, demo["auth"], "a.txt"), 413, code=1005)
    assert small.upload_form("/files", b"x" * 1000, demo["auth"], "a.txt")[0] == 200
    # A chunked body has no Content-Length to refuse at once: it is read up to the limit, never cut and kept.
    status, body = chunked_post(small.app, "/images", big, {**demo["auth"], "Content-Type": "image/jpeg"})
    assert_error(status, body, 413, code=1005)
    status, body = chunked_post(small.app, "/audios", amr()[:900], {**demo["auth"], "Content-Type": "audio/amr"})
    assert status == 200, body
    assert small.objects() == sorted([f"files/{sha(b'x' * 1000)}.txt", f"audios/{sha(amr()[:900])}.amr"])


def test_decompression_bombs_are_refused_before_decoding(small, store, demo):
    status, body = small.upload("/images", png(101, 100, "RGB"), "image/png", demo["auth"])
    assert_error(status, body, 400, "file", code=8003)
    bomb = png_bomb()
    assert len(bomb) < 100_000
    status, body = store.upload("/images", bomb, "image/png", demo["auth"])
    assert_error(status, body, 400, code=8003)
    assert not [key for key in store.objects() if sha(bomb) in key]


HOSTILE_IMAGES = {
    "empty": (b"", "image/jpeg", 400, 8002),
    "text said to be a JPEG": (b"just some text, not a picture at all", "image/jpeg", 415, 1006),
    "HTML said to be a PNG": (b"<html><script>alert(1)</script></html>", "image/png", 415, 1006),
    "SVG": (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "image/svg+xml", 415, 1006),
    "SVG said to be a PNG": (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "image/png", 415,
                             1006),
    "BMP": (bmp(), "image/bmp", 415, 1006),
    "BMP said to be a PNG": (bmp(), "image/png", 415, 1006),
    "a PNG said to be a JPEG": (png(), "image/jpeg", 400, 8002),
    "a truncated JPEG": (jpeg()[:600], "image/jpeg", 400, 8002),
    "a JPEG header and garbage": (b"\xff\xd8\xff\xe0" + b"\x00" * 500, "image/jpeg", 400, 8002),
    "a JPEG sent as JSON": (jpeg(), "application/json", 415, 1006),
    "no Content-Type": (jpeg(), "", 415, 1006),
}


@pytest.mark.parametrize("case", HOSTILE_IMAGES)
def test_hostile_images(store, demo, case):
    data, content_type, status, code = HOSTILE_IMAGES[case]
    before = store.objects()
    response = store.client.post("/images", data=data, headers={
        **demo["auth"], **({"Content-Type": content_type} if content_type else {})})
    assert_error(response.status_code, response.get_json(), status, code=code)
    assert store.objects() == before


def test_hostile_multipart_uploads(store, demo):
    before = store.objects()
    assert_error(*store.upload_form("/images", b"", demo["auth"], "a.jpg"), 400, code=8002)
    assert_error(*store.upload_form("/images", b"not an image", demo["auth"], "a.jpg"), 415, code=1006)
    assert_error(*store.upload_form("/images", png(), demo["auth"], "a.png", "image/jpeg"), 400, code=8002)
    assert_error(*store.upload_form("/files", b"", demo["auth"], "a.txt"), 400, code=8002)
    response = store.client.post("/files", data={"other": (io.BytesIO(b"x"), "a.txt")}, headers=demo["auth"],
                                 content_type="multipart/form-data")
    assert_error(response.status_code, response.get_json(), 400, "file", code=1001)
    assert_error(*store.upload("/files", b"raw bytes", "application/octet-stream", demo["auth"]), 415, code=1006)
    response = store.client.post("/files", data=b"--x\r\ngarbage", headers=demo["auth"],
                                 content_type="multipart/form-data; boundary=x")
    assert response.status_code == 400
    assert store.objects() == before


@pytest.mark.parametrize("data, content_type, status, code", [
    (b"", "audio/amr", 400, 8002), (b"random bytes that are no audio", "audio/amr", 415, 1006),
    (jpeg(), "application/plain", 415, 1006), (amr(), "audio/mpeg", 400, 8002), (amr(), "audio/x-unknown", 415, 1006),
    (b"<html>x</html>", "text/html", 415, 1006)])
def test_hostile_voice(store, demo, data, content_type, status, code):
    before = store.objects()
    assert_error(*store.upload("/audios", data, content_type, demo["auth"]), status, code=code)
    assert store.objects() == before


NAMES = ["/images/..%2F..%2F..%2Fetc%2Fpasswd", "/images/%2e%2e", "/images/..", "/images/.jpg",
         f"/images/{'a' * 64}.jpg%00", f"/images/{'a' * 64}%00.jpg", "/images/%00", f"/images/{'a' * 64}.JPG",
         "/files/..%2Fconfig.py", "/files/..%5C..%5Capp.py", "/files/%2e%2e%2fapp.py", "/files/app.py",
         f"/files/{'a' * 64}.", f"/files/{'a' * 64}.tar.gz", "/audios/..%2F..%2Fapp.py", "/audios/%00",
         "/images/%C0%AE%C0%AE", f"/images/{'a' * 63}.jpg", f"/files/{'A' * 64}.txt"]


@pytest.mark.parametrize("path", NAMES)
def test_names_that_leave_the_store_are_404(store, path):
    response = store.client.get(path)
    assert response.status_code in (400, 404), response.data
    assert set(response.get_json()) == {"meta"}


def test_nothing_outside_the_store_is_ever_served(tmp_path, demo):
    (tmp_path / "secret.txt").write_text("outside")
    media = directory_media(tmp_path / "store")
    (tmp_path / "store" / "files").mkdir(parents=True)
    for path in ("/files/..%2Fsecret.txt", "/files/../secret.txt", "/files/%2e%2e/secret.txt"):
        response = media.client.get(path)
        assert response.status_code == 404 and b"outside" not in response.data


def test_the_store_away_is_503_with_retry_after_and_nothing_half_written(tmp_path, demo):
    media = directory_media(tmp_path)
    (tmp_path / "images").write_text("a file where the images directory should be")
    (tmp_path / "files").mkdir()
    (tmp_path / "files").chmod(0o500)
    status, body = media.upload("/images", jpeg(), "image/jpeg", demo["auth"])
    assert_error(status, body, 503, code=7005)
    response = media.client.get(f"/images/{'a' * 64}.jpg")
    assert_error(response.status_code, response.get_json(), 503, code=7005)
    assert response.headers["Retry-After"]
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".partial")]


def test_a_write_that_fails_midway_leaves_nothing_under_a_name(tmp_path):
    from models.media_store import DirectoryStore, StoreUnavailable

    class Broken(io.BytesIO):
        def read(self, *args):
            if self.tell() > 10:
                raise OSError("the disk went away")
            return super().read(11)

    store = DirectoryStore(tmp_path)
    with pytest.raises(StoreUnavailable):
        store.put("files/" + "b" * 64, Broken(b"x" * 1000), "text/plain")
    assert list(tmp_path.rglob("*.*")) == [] and not store.exists("files/" + "b" * 64)


def test_the_s3_store_away_is_503(demo, monkeypatch):
    from helpers import free_port
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    media = create_app(TEST_CONFIG | {"MEDIA_STORE": "s3://nowhere", "MEDIA_STORE_TIMEOUT": 0.5,
                                      "MEDIA_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}).test_client()
    response = media.post("/images", data=jpeg(), headers={**demo["auth"], "Content-Type": "image/jpeg"})
    assert_error(response.status_code, response.get_json(), 503, code=7005)
    response = media.get(f"/images/{'a' * 64}.jpg")
    assert_error(response.status_code, response.get_json(), 503, code=7005)


def test_bad_media_settings_stop_the_start_with_one_line():
    import config
    for name, value in (("MEDIA_STORE", "s3://No_Such..Bucket"), ("MEDIA_STORE", "ftp://x"),
                        ("MEDIA_STORE", "/etc/passwd/media"), ("MEDIA_THUMBNAIL_SIZES", "128"),
                        ("MEDIA_S3_ENDPOINT_URL", "minio:9000"), ("MEDIA_MAX_PIXELS", "0")):
        with pytest.raises(config.SettingError, match=name):
            config.load({name: value})
    result = subprocess.run([sys.executable, "-c", "import app"], cwd=Path(__file__).resolve().parent.parent,
                            env={**os.environ, "MEDIA_STORE": "s3://"}, capture_output=True, text=True)
    assert result.returncode != 0 and result.stderr.strip().splitlines() == [
        "bad setting: MEDIA_STORE='s3://': expected s3://<bucket>[/<prefix>] with an S3 bucket name"]


def test_media_counters_in_metrics(store, demo):
    data = gif(13, 7)
    before = store.client.get("/metrics").data.decode()
    store.upload("/images", data, "image/gif", demo["auth"])
    store.upload("/images", b"nope", "image/gif", demo["auth"])
    after = store.client.get("/metrics").data.decode()
    uploads, size = 'im_api_media_uploads_total{kind="image"}', 'im_api_media_upload_bytes_total{kind="image"}'
    failures = 'im_api_media_failures_total{error="UnsupportedMediaType",kind="image"}'
    assert counter(after, uploads) == counter(before, uploads) + 1
    assert counter(after, size) == counter(before, size) + len(data)
    assert counter(after, failures) == counter(before, failures) + 1


def test_src_url_follows_the_forwarded_scheme_only_from_trusted_proxies(store, demo):
    data = gif(3, 3)
    forwarded = {**demo["auth"], "X-Forwarded-Proto": "https", "Host": "api.example.com"}
    status, body = store.upload("/images", data, "image/gif", forwarded)  # the test client's peer is 127.0.0.1
    assert body["data"]["src_url"] == f"https://api.example.com/images/{sha(data)}.gif"
    response = store.client.post("/images", data=data, headers={**forwarded, "Content-Type": "image/gif"},
                                 environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert response.get_json()["data"]["src_url"] == f"http://api.example.com/images/{sha(data)}.gif"
    based = create_app(TEST_CONFIG | {"MEDIA_STORE": store.app.config["MEDIA_STORE"],
                                      "MEDIA_S3_ENDPOINT_URL": store.app.config["MEDIA_S3_ENDPOINT_URL"],
                                      "MEDIA_BASE_URL": "https://cdn.example.com/"})
    status, body = Media(based, store.kind, store.objects).upload("/images", data, "image/gif", demo["auth"])
    assert body["data"]["src_url"] == f"https://cdn.example.com/images/{sha(data)}.gif"


def test_the_document_describes_the_uploads_and_downloads(app):
    document = app.test_client().get("/openapi.json").get_json()
    for path in ("/images", "/audios"):
        content = document["paths"][path]["post"]["requestBody"]["content"]
        assert set(content) == {"application/octet-stream", "multipart/form-data"}
        assert content["application/octet-stream"]["schema"] == {"type": "string", "format": "binary"}
    assert set(document["paths"]["/files"]["post"]["requestBody"]["content"]) == {"multipart/form-data"}
    download = document["paths"]["/images/{name}"]["get"]
    assert "image/*" in download["responses"]["200"]["content"] and "security" not in download
    assert 8001 in download["responses"]["404"]["x-codes"]
    assert json.dumps(document)  # serialisable as it is served


# --- through the deployment's nginx ------------------------------------------------------------------


@pytest.fixture(scope="module")
def nginx_site(app):
    from test_nginx import NGINX, OPENSSL, request, start_nginx
    if NGINX is None or OPENSSL is None:
        pytest.skip("nginx or openssl is not installed (apt-get install nginx-light openssl)")
    tmp = Path(tempfile.mkdtemp(prefix="im-api-media-nginx-"))
    tmp.chmod(0o755)
    store, sock = tmp / "media", tmp / "gunicorn.sock"
    env = {**os.environ, "MYSQL_DATABASE": app.config["MYSQL_DATABASE"], "REDIS_DB": str(app.config["REDIS_DB"]),
           "TRUSTED_PROXIES": "unix", "WEB_CONCURRENCY": "2", "ACCESS_LOG": "0", "MEDIA_STORE": str(store)}
    gunicorn = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"unix:{sock}",
                                 "app:app"], cwd=Path(__file__).resolve().parent.parent, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nginx, site = start_nginx(tmp, sock, media=store)
    try:
        wait_for(sock.exists, what="gunicorn's socket")
        wait_for(lambda: request(site, "GET", "/healthz")[0] == 200, what="nginx")
        yield site, store
    finally:
        for proc in (nginx, gunicorn):
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


def raw_request(site, data: bytes):
    from test_nginx import raw_request
    return raw_request(site, data)


def via_nginx(site, method, path, body=None, headers=None):
    from test_nginx import request
    return request(site, method, path, body, headers or {})


def test_nginx_serves_the_directory_stores_downloads_itself(nginx_site, demo):
    site, store = nginx_site
    data = jpeg(color=(99, 98, 97))
    status, raw, _ = via_nginx(site, "POST", "/images", data, {**demo["auth"], "Content-Type": "image/jpeg"})
    src = json.loads(raw)["data"]["src"]
    assert status == 200 and json.loads(raw)["data"]["src_url"] == f"https://127.0.0.1{src}"
    # Served from the disk by nginx: the file changed behind the service's back is what comes back.
    path = store / src[1:]
    status, raw, headers = via_nginx(site, "GET", src)
    assert status == 200 and raw == data and headers["Content-Type"] == "image/jpeg"
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable" and headers["ETag"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert via_nginx(site, "GET", "/v2" + src)[1] == data
    status, raw, headers = via_nginx(site, "GET", src, headers={"Range": "bytes=2-11"})
    assert status == 206 and raw == data[2:12] and headers["Content-Range"] == f"bytes 2-11/{len(data)}"
    assert path.exists()


def test_nginx_hands_misses_to_the_service(nginx_site, demo):
    site, store = nginx_site
    data = png(500, 250)
    src = json.loads(via_nginx(site, "POST", "/images", data,
                               {**demo["auth"], "Content-Type": "image/png"})[1])["data"]["src"]
    status, raw, headers = via_nginx(site, "GET", src + "@128w_128h_0c.png")
    assert status == 200 and Image.open(io.BytesIO(raw)).size == (128, 64)
    assert (store / (src[1:] + "@128w_128h_0c.png")).read_bytes() == raw  # kept: nginx serves it from now on
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    status, raw, headers = via_nginx(site, "GET", f"/images/{'c' * 64}.jpg")
    assert status == 404 and json.loads(raw)["meta"]["code"] == 8001
    assert headers["Content-Type"] == "application/json" and headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/images/..%2F..%2Fetc%2Fpasswd", "/files/%2e%2e%2f%2e%2e%2fapp.py", "/images/%00"):
        status, raw, headers = via_nginx(site, "GET", path)
        assert status in (400, 404) and set(json.loads(raw)) == {"meta"}, (path, raw)
    (store / "images" / ".partial-abc").write_bytes(b"half")  # a write in progress is never served
    status, raw, _ = via_nginx(site, "GET", "/images/.partial-abc")
    assert status == 404 and json.loads(raw)["meta"]["code"] == 8001
    status, raw, _ = via_nginx(site, "POST", src, b"x", {**demo["auth"], "Content-Type": "image/png"})
    assert status == 405 and json.loads(raw)["meta"]["code"] == 1004


@needs_ffmpeg
def test_nginx_serves_voice_with_its_type_and_mp3_on_demand(nginx_site, demo):
    site, store = nginx_site
    data = amr(seed=7)
    src = json.loads(via_nginx(site, "POST", "/audios", data, {**demo["auth"], "Content-Type": "audio/amr"})[1])[
        "data"]["src"]
    status, raw, headers = via_nginx(site, "GET", src)
    assert status == 200 and raw == data and headers["Content-Type"] == "audio/amr"
    status, raw, headers = via_nginx(site, "GET", src + ".mp3")
    assert status == 200 and headers["Content-Type"] == "audio/mpeg" and mp3_duration(raw) > 0.5
    assert (store / (src[1:] + ".mp3")).exists()
    assert via_nginx(site, "GET", src)[1] == data  # the original still comes first


def test_nginx_gives_files_the_services_types(nginx_site, demo):
    site, _ = nginx_site
    from models.media import FILE_TYPES
    conf = (Path(__file__).resolve().parent.parent / "deploy/nginx.conf").read_text()
    listed = re.findall(r"^\s+([a-z]+/[\w.+-]+) ([a-z0-9]+);$", conf, re.M)
    assert sorted(listed) == sorted([(kind, ext) for ext, kind in FILE_TYPES.items()] * 2)  # both media locations
    for filename, expected in (("a.pdf", "application/pdf"), ("a.html", "application/octet-stream"),
                               ("a.svg", "application/octet-stream"), ("plain", "application/octet-stream")):
        data = f"content of {filename}".encode()
        body = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + filename.encode() +
                b"\"\r\n\r\n" + data + b"\r\n--b--\r\n")
        status, raw, _ = via_nginx(site, "POST", "/files", body, {
            **demo["auth"], "Content-Type": "multipart/form-data; boundary=b"})
        assert status == 200, raw
        status, raw, headers = via_nginx(site, "GET", json.loads(raw)["data"]["src"])
        assert raw == data and headers["Content-Type"] == expected
        assert ("attachment" in headers.get("Content-Disposition", "")) == (expected == "application/octet-stream")


def test_nginx_takes_uploads_up_to_the_media_limit(nginx_site, demo):
    site, _ = nginx_site
    data = os.urandom(3 * 1024 * 1024)
    body = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\r\n" + data +
            b"\r\n--b--\r\n")
    status, raw, _ = via_nginx(site, "POST", "/files", body, {
        **demo["auth"], "Content-Type": "multipart/form-data; boundary=b"})
    assert status == 200, raw[:300]
    assert via_nginx(site, "GET", json.loads(raw)["data"]["src"])[1] == data
    status, raw, _ = via_nginx(site, "POST", "/images", b"\xff\xd8\xff" + b"\x00" * (11 * 1024 * 1024),
                               {**demo["auth"], "Content-Type": "image/jpeg"})
    assert status == 413 and json.loads(raw)["meta"]["code"] == 1005
    assert "MEDIA_MAX_IMAGE_BYTES" in json.loads(raw)["meta"]["message"]  # the service's own answer
    status, headers, raw = raw_request(site, b"POST /files HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                                             b"boundary=b\r\nContent-Length: 60000000\r\n\r\n--b")
    assert status == 413 and json.loads(raw)["meta"]["code"] == 1005  # nginx's, over client_max_body_size


def test_upload_paths_take_only_post(store):
    for path in ("/images", "/audios", "/files"):
        status, body = Api(store.client, {}).get(path)
        assert_error(status, body, 405, code=1004)


def image_in_mode(mode: str, fmt: str) -> bytes:
    image = Image.new(mode, (40, 30))
    if mode == "P":
        image.putpalette([i % 256 for i in range(768)])
        image.info["transparency"] = 0
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


MODES = [("1", "PNG"), ("L", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("RGBA", "PNG"), ("I;16", "PNG"),
         ("CMYK", "JPEG"), ("L", "JPEG"), ("P", "GIF"), ("RGBA", "WEBP")]


@pytest.mark.parametrize("mode, fmt", MODES)
def test_thumbnails_of_every_pixel_mode_in_every_format(store, demo, mode, fmt):
    data = image_in_mode(mode, fmt)
    content_type = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}[fmt]
    status, body = store.upload("/images", data, content_type, demo["auth"])
    assert status == 200, body
    for ext in ("jpg", "png", "gif", "webp"):
        response = store.client.get(f"{body['data']['src']}@128w_128h_1c.{ext}")
        assert response.status_code == 200, (ext, response.data[:200])
        assert Image.open(io.BytesIO(response.data)).size == (128, 128)


MAGICS = [(b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF89a", "image/gif"),
          (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp")]


@pytest.mark.parametrize("magic, content_type", MAGICS)
def test_garbage_behind_an_image_magic_is_never_a_500(store, demo, magic, content_type):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=40, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(tail=st.binary(max_size=600), cut=st.integers(0, 4000))
    def upload(tail, cut):
        for body in (magic + tail, jpeg(30, 20)[:cut] + tail if content_type == "image/jpeg" else magic + tail[::-1]):
            status, answer = store.upload("/images", body, content_type, demo["auth"])
            assert status in (200, 400, 415), answer

    upload()


def test_the_same_upload_at_once_is_one_whole_object(store, demo):
    import threading
    data = jpeg(300, 200, color=(5, 55, 155 + (store.kind == "s3")))
    barrier, answers = threading.Barrier(6), []

    def upload():
        client = store.app.test_client()
        barrier.wait()
        response = client.post("/images", data=data, headers={**demo["auth"], "Content-Type": "image/jpeg"})
        answers.append((response.status_code, response.get_json()["data"]["src"]))

    threads = [threading.Thread(target=upload) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [(200, f"/images/{sha(data)}.jpg")] * 6
    assert [key for key in store.objects() if sha(data) in key] == [f"images/{sha(data)}.jpg"]
    assert not [key for key in store.objects() if ".partial" in key]
    assert store.client.get(f"/images/{sha(data)}.jpg").data == data


def test_every_form_answers_under_v2_as_the_sdks_call_it(store, demo, token):
    data, voice = png(9, 9, "RGB"), amr(seed=202)
    status, body = store.upload("/v2/images", data, "image/png", token)
    assert_published(status, body, f"/images/{sha(data)}.png")  # the src has no /v2: it works under both
    assert store.upload_form("/v2/images", data, demo["auth"], "a.png") == (status, body)
    assert store.client.get(f"/v2/images/{sha(data)}.png").data == data
    assert store.client.get(f"/v2/images/{sha(data)}.png@128w_128h_1c.png").status_code == 200
    assert store.upload("/v2/audios", voice, "audio/amr", token)[0] == 200
    assert store.client.get(f"/v2/audios/{sha(voice)}").data == voice
    status, body = store.upload_form("/v2/files", b"v2 notes", token, "n.txt")
    assert_published(status, body, f"/files/{sha(b'v2 notes')}.txt")
    assert store.client.get("/v2" + body["data"]["src"], headers={"Range": "bytes=3-"}).data == b"notes"
