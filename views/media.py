"""/images, /audios, /files: uploads (client or server auth) and downloads (no auth), as the
original's client API served them to GoBelieve's SDKs.

An upload answers {"data": {"src", "src_url"}} and, for the SDKs that read them there
(Android's Gson types, iOS's dictionary), the same two fields beside "data". A download is
the stored object with ETag and immutable caching, byte ranges, and X-Content-Type-Options:
nosniff; a thumbnail or an MP3 is made on its first request and kept in the store.
"""
import hashlib
import logging
import shutil
import urllib.parse

from flask import Flask, Response, current_app, request
from flask.views import MethodView

from models import media
from models.errors import (
    BodyTooLarge,
    ConversionFailed,
    InvalidField,
    InvalidMedia,
    MediaNotFound,
    MediaUnavailable,
    RangeNotSatisfiable,
    TooManyPixels,
    UnsupportedMediaType,
)
from models.media_store import StoreUnavailable, make_store

from . import ops, schemas
from .authentication import from_trusted_proxy, requires
from .common import Blueprint, read_at_most
from .docs import responds
from .fields import setting

log = logging.getLogger(__name__)

blp = Blueprint("media", __name__, description="Images, voice and files: uploads and their downloads")

CACHE_FOREVER = "public, max-age=31536000, immutable"
MULTIPART = "multipart/form-data"
MULTIPART_OVERHEAD = 64 * 1024  # the part headers and boundaries around a multipart upload's file
UPLOAD_ERRORS = (InvalidMedia, TooManyPixels, BodyTooLarge, UnsupportedMediaType, InvalidField, MediaUnavailable)
DOWNLOAD_ERRORS = (MediaNotFound, RangeNotSatisfiable, MediaUnavailable)


BINARY = {"schema": {"type": "string", "format": "binary"}}
NAME_EXAMPLE = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # a sha256: names are hashes
OCTETS = "application/octet-stream"


def upload_doc(raw: bool = True):
    """The request body of an upload in the OpenAPI document: multipart `file`, and (raw) the bytes as the
    body. The SDKs send an image's own type (image/jpeg...) or audio/amr; the document names
    application/octet-stream, which is taken too (the type is always sniffed from the bytes)."""
    content = {OCTETS: BINARY} if raw else {}
    content[MULTIPART] = {"schema": {"type": "object", "required": ["file"],
                                     "properties": {"file": {"type": "string", "format": "binary"}}}}
    # "required" stays false where two body forms are listed: openapi-python-client 0.29 writes a client
    # that cannot be imported for a required body of two forms. An empty upload is a 400 either way.
    return blp.doc(requestBody={"required": not raw, "content": content})


def download_doc(types: str):
    """A download's answers in the OpenAPI document: binary bodies of these types (application/octet-stream
    listed first, for generated clients); the error envelope is added by DocsPlugin."""
    binary = {OCTETS: BINARY, types: BINARY}
    headers = {name: {"schema": {"type": "string"}} for name in ("ETag", "Cache-Control", "X-Content-Type-Options")}

    def decorator(view):
        view = responds(f"{view.__qualname__.split('.')[0].lower()}_download", errors=DOWNLOAD_ERRORS)(view)
        view._apidoc["manual_doc"]["responses"] = {
            "200": {"description": "the object", "content": binary, "headers": headers},
            "206": {"description": "the byte range asked for (Range)", "content": binary, "headers": headers},
            "304": {"description": "not modified (If-None-Match)"},
        }
        view._apidoc["manual_doc"]["parameters"] = [
            {"in": "header", "name": "Range", "required": False, "schema": {"type": "string"},
             "example": "bytes=0-1023"},
            {"in": "header", "name": "If-None-Match", "required": False, "schema": {"type": "string"},
             "example": f'"{NAME_EXAMPLE}.jpg"'}]
        return view

    return decorator


@blp.after_request
def no_sniffing(response: Response) -> Response:
    """Browsers take every media answer, errors included, as the type it says it is."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def store():
    return current_app._get_current_object().extensions["media_store"]


# --- uploads -----------------------------------------------------------------------------------------


@blp.route("/images")
class Images(MethodView):
    @responds("images_upload", schemas.MediaSchema, errors=UPLOAD_ERRORS)
    @upload_doc()
    @requires("any")
    def post(self):
        """Upload an image (JPEG, PNG, GIF or WebP): the bytes as the body with their type, or multipart `file`.

        The type is sniffed from the bytes (415 for another type, 400 for bytes that are not what
        their Content-Type says, a pixel count over MEDIA_MAX_PIXELS or an empty body; 413 over
        MEDIA_MAX_IMAGE_BYTES). The name is the bytes' SHA-256, so an upload retried is the same
        object; use `src_url` in the image message you send."""
        data, declared, _ = upload_bytes("MEDIA_MAX_IMAGE_BYTES", "image")
        declared = None if declared == OCTETS else declared  # no claim: the bytes say what they are
        if declared is not None and declared not in media.DECLARED_IMAGES:
            fail("image", UnsupportedMediaType(f"Content-Type: {declared or '(none)'} is not an accepted image "
                                               "type (image/jpeg, image/png, image/gif, image/webp or multipart)."))
        kind = counted("image", lambda: media.check_image(data, declared, setting("MEDIA_MAX_PIXELS")))
        name = f"{media.name_of(data)}.{kind.ext}"
        save(f"images/{name}", data, kind.content_type, "image")
        return published(f"/images/{name}")


@blp.route("/audios")
class Audios(MethodView):
    @responds("audios_upload", schemas.MediaSchema, errors=UPLOAD_ERRORS)
    @upload_doc()
    @requires("any")
    def post(self):
        """Upload a voice message (AMR as the SDKs record it; MP3, AAC, M4A, Ogg, WAV...): raw or multipart `file`.

        The bytes are kept as uploaded, named by their SHA-256; `<src>.mp3` serves an MP3 of them,
        made on its first request. 413 over MEDIA_MAX_AUDIO_BYTES, 415 for a type that is not
        audio, 400 for an empty body."""
        data, declared, _ = upload_bytes("MEDIA_MAX_AUDIO_BYTES", "audio")
        kind = counted("audio", lambda: media.check_audio(data, declared))
        name = media.name_of(data)
        save(f"audios/{name}.{kind.ext}", data, kind.content_type, "audio")
        return published(f"/audios/{name}")


@blp.route("/files")
class Files(MethodView):
    @responds("files_upload", schemas.MediaSchema, errors=UPLOAD_ERRORS)
    @upload_doc(raw=False)
    @requires("any")
    def post(self):
        """Upload a file (multipart `file`); its name keeps the upload's extension.

        Any type, up to MEDIA_MAX_FILE_BYTES (413 past it). The name is the bytes' SHA-256 with the
        uploaded file name's extension; downloads of types a browser would render or run come as
        attachments."""
        part = upload_part("MEDIA_MAX_FILE_BYTES", "file")
        digest, size = hashed(part.stream)
        if size == 0:
            fail("file", InvalidMedia("file: the upload is empty."))
        if size > setting("MEDIA_MAX_FILE_BYTES"):
            fail("file", too_large("MEDIA_MAX_FILE_BYTES"))
        ext = media.file_ext(part.filename)
        name = digest + (f".{ext}" if ext else "")
        save(f"files/{name}", part.stream, media.file_type(ext), "file", size)
        return published(f"/files/{name}")


def upload_bytes(limit_name: str, kind: str) -> tuple[bytes, str | None, str | None]:
    """The uploaded bytes, the type they were declared as (None: multipart without one) and the file name."""
    limit = setting(limit_name)
    if request.mimetype == MULTIPART:
        part = upload_part(limit_name, kind)  # werkzeug closes its file when the request ends
        data = part.stream.read(limit + 1)
        declared = media.mimetype(part.content_type)
        declared = None if declared in ("", OCTETS) else declared
        filename = part.filename
    else:
        data, declared, filename = raw_body(limit, limit_name, kind), media.mimetype(request.content_type), None
    if len(data) > limit:
        fail(kind, too_large(limit_name))
    if not data:
        fail(kind, InvalidMedia("file: the upload is empty."))
    return data, declared, filename


def raw_body(limit: int, limit_name: str, kind: str) -> bytes:
    """The request body, at most limit + 1 bytes read (a chunked body has no Content-Length to check first)."""
    if (request.content_length or 0) > limit:
        fail(kind, too_large(limit_name))
    request.max_content_length = limit + 1
    return read_at_most(request.stream, limit + 1, 256 * 1024)


def upload_part(limit_name: str, kind: str):
    """The multipart part named `file` (werkzeug spools a large one to a temporary file)."""
    if request.mimetype != MULTIPART:
        fail(kind, UnsupportedMediaType("Content-Type: this upload takes multipart/form-data with a part `file`."))
    limit = setting(limit_name)
    if (request.content_length or 0) > limit + MULTIPART_OVERHEAD:
        fail(kind, too_large(limit_name))
    request.max_content_length = limit + MULTIPART_OVERHEAD
    part = request.files.get("file")
    if part is None:
        fail(kind, InvalidField("file: a multipart part named `file` is required."))
    return part


def too_large(limit_name: str) -> BodyTooLarge:
    return BodyTooLarge(f"file: the upload is larger than {limit_name} ({setting(limit_name)} bytes).")


def hashed(stream) -> tuple[str, int]:
    """The SHA-256 hex digest and size of a stream, read in chunks from its start."""
    digest, size = hashlib.sha256(), 0
    stream.seek(0)
    while chunk := stream.read(256 * 1024):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def counted(kind: str, check):
    """check() of an upload; a refusal counts in the failures metric."""
    try:
        return check()
    except (InvalidMedia, TooManyPixels, UnsupportedMediaType) as exc:
        fail(kind, exc)


def fail(kind: str, exc: Exception):
    ops.MEDIA_FAILURES.labels(kind, type(exc).__name__).inc()
    raise exc


def put(key: str, source, content_type: str, kind: str) -> None:
    """Put the object in the store (once: a name is its content); the store away is a 503."""
    try:
        store().put(key, source, content_type)
    except StoreUnavailable as exc:
        log.warning("media store: %s", exc)
        fail(kind, MediaUnavailable())


def save(key: str, source, content_type: str, kind: str, size: int | None = None) -> None:
    """Put the upload in the store and count it."""
    put(key, source, content_type, kind)
    ops.MEDIA_UPLOADS.labels(kind).inc()
    ops.MEDIA_BYTES.labels(kind).inc(len(source) if size is None else size)


def published(src: str) -> dict:
    """The answer to an upload: src (a path) and src_url (absolute)."""
    found = {"src": src, "src_url": base_url() + src}
    return {"data": found, **found}


def base_url() -> str:
    """MEDIA_BASE_URL, or the scheme and host the client used (X-Forwarded-Proto believed from trusted proxies)."""
    configured = setting("MEDIA_BASE_URL")
    if configured:
        return configured.rstrip("/")
    scheme = request.scheme
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    if forwarded in ("http", "https") and from_trusted_proxy():
        scheme = forwarded
    return f"{scheme}://{request.host}"


# --- downloads ---------------------------------------------------------------------------------------


@blp.route("/images/<name>")
class Image(MethodView):
    @download_doc("image/*")
    def get(self, name):
        """An image as uploaded, or a thumbnail `<name>.<ext>@<w>w_<h>h_<c>c.<ext>` (made once, then kept).

        No auth: the name is unguessable. Answers carry ETag and immutable caching and honour
        Range and If-None-Match. A thumbnail is fitted in w x h (cropped to fill when c is 1),
        upright and without metadata; only the documented sizes are made. An unknown name is a
        JSON 404."""
        if match := media.IMAGE_NAME.fullmatch(name):
            return serve(f"images/{name}", media.IMAGES[media.IMAGE_BY_EXT[match[2]]].content_type)
        match = media.THUMBNAIL_NAME.fullmatch(name)
        if not match or (int(match[3]), int(match[4])) not in setting("MEDIA_THUMBNAIL_SIZES"):
            raise MediaNotFound()
        key, content_type = f"images/{name}", media.IMAGES[media.IMAGE_BY_EXT[match[6]]].content_type
        size = stored_size(key)
        if size is None:
            size = make_thumbnail(key, match, content_type)
        return serve(key, content_type, size)


def make_thumbnail(key: str, match, content_type: str) -> int:
    """Make a thumbnail from its original and keep it; its size."""
    original = stored_get(f"images/{match[1]}.{match[2]}")
    try:
        data = media.thumbnail(original, match[2], int(match[3]), int(match[4]), match[5] == "1", match[6],
                               setting("MEDIA_MAX_PIXELS"))
    except (InvalidMedia, TooManyPixels) as exc:
        fail("thumbnail", exc)
    save_variant(key, data, content_type, "thumbnail")
    return len(data)


@blp.route("/audios/<name>")
class Audio(MethodView):
    @download_doc("audio/*")
    def get(self, name):
        """A voice message as uploaded, or `<name>.mp3`: converted with ffmpeg on the first request, then kept.

        No auth: the name is unguessable. The conversion runs in a subprocess with a time and
        size limit; a failure is an error answer, never a half-made MP3. ETag, immutable caching
        and byte ranges as for images."""
        match = media.AUDIO_NAME.fullmatch(name)
        if not match:
            raise MediaNotFound()
        key, size = original_audio(match[1])
        if match[2] is None:
            return serve(key, media.AUDIOS[key.rsplit(".", 1)[1]].content_type, size)
        mp3 = f"audios/{name}"
        size = size if key == mp3 else stored_size(mp3)
        if size is None:
            size = make_mp3(key, mp3)
        return serve(mp3, media.AUDIOS["mp3"].content_type, size)


def original_audio(name: str) -> tuple[str, int]:
    """The key and size of an uploaded audio, whichever its type (AMR is looked for first)."""
    for ext in media.AUDIOS:
        size = stored_size(f"audios/{name}.{ext}")
        if size is not None:
            return f"audios/{name}.{ext}", size
    raise MediaNotFound()


def make_mp3(key: str, mp3: str) -> int:
    """Convert an uploaded audio to MP3 and keep it; its size."""
    try:
        data = media.to_mp3(stored_get(key), setting("MEDIA_FFMPEG"), setting("MEDIA_CONVERT_SECONDS"),
                            setting("MEDIA_MAX_MP3_BYTES"))
    except (InvalidMedia, ConversionFailed) as exc:
        log.warning("MP3 conversion of %s failed: %s", key, exc.message)
        fail("mp3", exc)
    save_variant(mp3, data, media.AUDIOS["mp3"].content_type, "mp3")
    return len(data)


@blp.route("/files/<name>")
class File(MethodView):
    @download_doc("*/*")
    def get(self, name):
        """A file as uploaded, with byte ranges; types a browser could run are served as downloads.

        No auth: the name is unguessable. `Content-Type` comes from the extension; HTML, SVG, XML
        and JavaScript come as `Content-Disposition: attachment`. ETag and immutable caching."""
        match = media.FILE_NAME.fullmatch(name)
        if not match:
            raise MediaNotFound()
        content_type = media.file_type(match[2])
        return serve(f"files/{name}", content_type, attachment=content_type == media.DOWNLOAD)


def save_variant(key: str, data: bytes, content_type: str, kind: str) -> None:
    """Keep a thumbnail or an MP3 made now, and count it."""
    put(key, data, content_type, kind)
    ops.MEDIA_CONVERSIONS.labels(kind).inc()


def stored_size(key: str) -> int | None:
    try:
        return store().size(key)
    except StoreUnavailable as exc:
        log.warning("media store: %s", exc)
        raise MediaUnavailable() from None


def stored_get(key: str) -> bytes:
    try:
        data = store().get(key)
    except StoreUnavailable as exc:
        log.warning("media store: %s", exc)
        raise MediaUnavailable() from None
    if data is None:
        raise MediaNotFound()
    return data


def serve(key: str, content_type: str, size: int | None = None, attachment: bool = False) -> Response:
    """The object with caching headers, If-None-Match (304) and a single byte range (206, or 416)."""
    size = stored_size(key) if size is None else size
    if size is None:
        raise MediaNotFound()
    etag = key.rsplit("/", 1)[1]
    headers = {"ETag": f'"{etag}"', "Cache-Control": CACHE_FOREVER, "Accept-Ranges": "bytes"}
    if attachment:
        headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{urllib.parse.quote(etag)}"
    if request.if_none_match.contains(etag):
        return Response(status=304, headers=headers)
    start, stop, status = 0, size, 200
    wanted = request.range
    if wanted is not None and len(wanted.ranges) == 1 and wanted.units == "bytes" and range_applies(etag):
        found = wanted.range_for_length(size)
        if found is None:
            raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
        (start, stop), status = found, 206
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    headers["Content-Length"] = str(stop - start)
    body = () if request.method == "HEAD" or stop == start else stream(key, start, stop)
    return Response(body, status=status, headers=headers, content_type=content_type, direct_passthrough=True)


def range_applies(etag: str) -> bool:
    """An If-Range naming another version (or a date: names never change, but a date is no proof) asks
    for the whole object instead (RFC 9110 13.1.5)."""
    if_range = request.if_range
    return if_range.etag is None and if_range.date is None or if_range.etag == etag


def stream(key: str, start: int, stop: int):
    try:
        return store().read(key, start, stop)
    except StoreUnavailable as exc:
        log.warning("media store: %s", exc)
        raise MediaUnavailable() from None


def init_app(app: Flask) -> None:
    """The media store the settings name; a missing ffmpeg is logged now, not found out at the first MP3."""
    app.extensions["media_store"] = make_store(app.config)
    if not shutil.which(app.config["MEDIA_FFMPEG"]):
        log.error("MEDIA_FFMPEG=%s is not installed: GET /audios/<name>.mp3 answers 503 (apt-get install ffmpeg)",
                  app.config["MEDIA_FFMPEG"])
