"""Media objects: what an upload is (sniffed from its bytes), its name, its keys in the store,
thumbnails and MP3 conversion. Plain functions; views/media.py does the HTTP.

Names are SHA-256 hex digests of the bytes, so the same bytes always get the same name and
an upload retried is the same object. Keys in the store are `<kind>/<name>[.<ext>]`, the
layout deploy/nginx.conf serves (the extension gives nginx the Content-Type).
"""
import hashlib
import io
import re
import subprocess
import tempfile
from dataclasses import dataclass

from PIL import Image, ImageOps

from models.errors import ConversionFailed, InvalidMedia, TooManyPixels, UnsupportedMediaType

HASH = r"[0-9a-f]{64}"
IMAGE_EXT = r"jpg|png|gif|webp"
IMAGE_NAME = re.compile(rf"({HASH})\.({IMAGE_EXT})")
THUMBNAIL_NAME = re.compile(rf"({HASH})\.({IMAGE_EXT})@([1-9]\d{{0,3}})w_([1-9]\d{{0,3}})h_([01])c\.({IMAGE_EXT})")
AUDIO_NAME = re.compile(rf"({HASH})(\.mp3)?")
FILE_NAME = re.compile(rf"({HASH})(?:\.([a-z0-9]{{1,16}}))?")
FILE_EXT = re.compile(r"[a-z0-9]{1,16}")


@dataclass(frozen=True)
class Kind:
    ext: str
    content_type: str


# Pillow's format name -> the stored extension and type; only these are accepted as images.
IMAGES = {"JPEG": Kind("jpg", "image/jpeg"), "PNG": Kind("png", "image/png"), "GIF": Kind("gif", "image/gif"),
          "WEBP": Kind("webp", "image/webp")}
IMAGE_BY_EXT = {kind.ext: fmt for fmt, kind in IMAGES.items()}
DECLARED_IMAGES = {"image/jpeg": "JPEG", "image/jpg": "JPEG", "image/pjpeg": "JPEG", "image/png": "PNG",
                   "image/x-png": "PNG", "image/gif": "GIF", "image/webp": "WEBP"}

# Audio kinds by extension; AMR first: what the SDKs record, and the order nginx tries them in.
AUDIOS = {"amr": Kind("amr", "audio/amr"), "awb": Kind("awb", "audio/amr-wb"), "m4a": Kind("m4a", "audio/mp4"),
          "3gp": Kind("3gp", "audio/3gpp"), "aac": Kind("aac", "audio/aac"), "ogg": Kind("ogg", "audio/ogg"),
          "wav": Kind("wav", "audio/wav"), "flac": Kind("flac", "audio/flac"), "mp3": Kind("mp3", "audio/mpeg")}
DECLARED_AUDIOS = {"audio/amr": "amr", "audio/amr-wb": "awb", "audio/mp4": "m4a", "audio/m4a": "m4a",
                   "audio/x-m4a": "m4a", "audio/3gpp": "3gp", "audio/aac": "aac", "audio/x-aac": "aac",
                   "audio/aacp": "aac", "audio/ogg": "ogg", "audio/opus": "ogg", "audio/wav": "wav",
                   "audio/x-wav": "wav", "audio/wave": "wav", "audio/flac": "flac", "audio/x-flac": "flac",
                   "audio/mpeg": "mp3", "audio/mp3": "mp3", "audio/mpeg3": "mp3"}

# /files: the Content-Type of an extension, for types a browser shows or plays without running
# anything. Any other extension (html, svg, xml, js, ...) is served as a download:
# application/octet-stream with Content-Disposition: attachment. deploy/nginx.conf lists the same.
FILE_TYPES = {
    "txt": "text/plain", "csv": "text/csv", "pdf": "application/pdf", "json": "application/json",
    "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp",
    "mp3": "audio/mpeg", "amr": "audio/amr", "m4a": "audio/mp4", "aac": "audio/aac", "ogg": "audio/ogg",
    "wav": "audio/wav", "awb": "audio/amr-wb", "3gp": "audio/3gpp", "flac": "audio/flac",
    "mp4": "video/mp4", "mov": "video/quicktime", "webm": "video/webm",
    "zip": "application/zip", "gz": "application/gzip", "7z": "application/x-7z-compressed",
    "doc": "application/msword", "xls": "application/vnd.ms-excel", "ppt": "application/vnd.ms-powerpoint",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}
DOWNLOAD = "application/octet-stream"

# Image formats recognised but not accepted (415 rather than "not an image").
OTHER_IMAGES = ((b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"\x00\x00\x01\x00", "ICO"),
                (b"8BPS", "PSD"))


def name_of(data: bytes) -> str:
    """An object's name: the SHA-256 hex digest of its bytes."""
    return hashlib.sha256(data).hexdigest()


def mimetype(value: str | None) -> str:
    """The bare media type of a Content-Type header, lower case."""
    return (value or "").split(";", 1)[0].strip().lower()


# --- images -------------------------------------------------------------------------------------------


def sniff_image(data: bytes) -> str:
    """The Pillow format name of an accepted image's bytes; 415 for another type."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in OTHER_IMAGES:
        if data.startswith(magic):
            raise UnsupportedMediaType(f"file: {name} images are not accepted (JPEG, PNG, GIF or WebP).")
    if b"<svg" in data[:1024].lower():
        raise UnsupportedMediaType("file: SVG images are not accepted (JPEG, PNG, GIF or WebP).")
    raise UnsupportedMediaType("file: the body is not a JPEG, PNG, GIF or WebP image.")


def check_image(data: bytes, declared: str | None, max_pixels: int) -> Kind:
    """The kind of an uploaded image, after decoding it whole: 415 for a type not accepted, 400 for a body
    that is not what its Content-Type says, that does not decode, or that has more than max_pixels."""
    fmt = sniff_image(data)
    if declared and DECLARED_IMAGES.get(declared, fmt) != fmt:
        raise InvalidMedia(f"file: the Content-Type says {declared} but the body is a {fmt} image.")
    with _opened(data, fmt, max_pixels) as image:
        try:
            if fmt == "JPEG":  # decoded at an eighth of its size: every byte is still read, at a fraction of the work
                image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
        except Exception as exc:  # noqa: BLE001 - a decoder's any failure on hostile bytes is the upload's fault
            raise InvalidMedia(f"file: the {fmt} image does not decode ({type(exc).__name__}: {exc}).") from None
    return IMAGES[fmt]


def _opened(data: bytes, fmt: str, max_pixels: int) -> Image.Image:
    """The image opened (its header read, nothing decoded yet), refused above max_pixels."""
    try:
        image = Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError:
        raise TooManyPixels() from None
    except Exception as exc:  # noqa: BLE001 - as in check_image
        raise InvalidMedia(f"file: the {fmt} image does not decode ({type(exc).__name__}: {exc}).") from None
    width, height = image.size
    if width < 1 or height < 1:
        image.close()
        raise InvalidMedia(f"file: the image is {width}x{height} pixels.")
    if width * height > max_pixels:
        image.close()
        raise TooManyPixels(f"file: the image has {width}x{height} pixels, more than MEDIA_MAX_PIXELS ({max_pixels}).")
    return image


def thumbnail(data: bytes, source_ext: str, width: int, height: int, crop: bool, ext: str, max_pixels: int) -> bytes:
    """The image fitted within width x height (crop: cut to fill exactly), upright, in the format of ext,
    with no metadata at all (EXIF, location, comments, colour profile text)."""
    with _opened(data, IMAGE_BY_EXT[source_ext], max_pixels) as image:
        try:
            if image.format == "JPEG":  # decode only at the scale needed (either way up: orientation may turn it)
                image.draft(image.mode, (max(width, height), max(width, height)))
            image = ImageOps.exif_transpose(image)  # upright: what the EXIF orientation said
            image = _pixels(image, IMAGE_BY_EXT[ext])
            if crop:
                image = ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS)
            else:
                image.thumbnail((width, height), Image.Resampling.LANCZOS)
        except Exception as exc:  # noqa: BLE001 - as in check_image
            raise InvalidMedia(f"the stored image does not decode ({type(exc).__name__}: {exc}).") from None
    # A new image from the pixels alone: nothing of the original's info travels with it.
    clean = Image.frombytes(image.mode, image.size, image.tobytes())
    if image.mode == "P":
        clean.putpalette(image.getpalette())
    out = io.BytesIO()
    clean.save(out, IMAGE_BY_EXT[ext], **({"quality": 85} if ext in ("jpg", "webp") else {}))
    return out.getvalue()


def _pixels(image: Image.Image, fmt: str) -> Image.Image:
    """The image in a mode the target format takes (transparency on white for JPEG)."""
    if fmt == "JPEG":
        if image.mode in ("RGBA", "LA", "P", "PA"):
            rgba = image.convert("RGBA")
            background = Image.new("RGB", rgba.size, (255, 255, 255))
            background.paste(rgba, mask=rgba.getchannel("A"))
            return background
        return image.convert("RGB") if image.mode not in ("RGB", "L") else image
    if fmt == "GIF":
        return image.convert("RGB").quantize() if image.mode != "P" else image.copy()
    return image.convert("RGBA") if image.mode not in ("RGB", "RGBA", "L") else image.copy()


# --- audio --------------------------------------------------------------------------------------------


def sniff_audio(data: bytes) -> str | None:
    """The extension (a key of AUDIOS) of audio bytes, None when they are not a known audio type."""
    if data.startswith(b"#!AMR\n"):
        return "amr"
    if data.startswith(b"#!AMR-WB\n"):
        return "awb"
    if data[4:8] == b"ftyp":
        return "3gp" if data[8:11] in (b"3gp", b"3g2") else "m4a"
    if data.startswith(b"OggS"):
        return "ogg"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data.startswith(b"fLaC"):
        return "flac"
    if data.startswith(b"ID3"):
        return "mp3"
    if len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:
        return "aac" if data[1] & 0x06 == 0 else "mp3"  # MPEG frame sync; layer bits 00: AAC in ADTS
    return None


def check_audio(data: bytes, declared: str | None) -> Kind:
    """The kind of an uploaded audio: 415 when it is no audio type known here (or the Content-Type names
    a type that is not), 400 when it is not the audio type its Content-Type names."""
    ext = sniff_audio(data)
    if ext is None:
        raise UnsupportedMediaType("file: the body is not audio of a known type (AMR, MP3, AAC, M4A, Ogg, WAV, ...).")
    if declared and declared.startswith("audio/"):
        if declared not in DECLARED_AUDIOS:
            raise UnsupportedMediaType(f"file: {declared} is not an accepted audio type.")
        if DECLARED_AUDIOS[declared] != ext and {DECLARED_AUDIOS[declared], ext} != {"m4a", "3gp"}:
            raise InvalidMedia(f"file: the Content-Type says {declared} but the body is {AUDIOS[ext].content_type}.")
    return AUDIOS[ext]


def to_mp3(data: bytes, ffmpeg: str, seconds: float, max_bytes: int) -> bytes:
    """The audio as MP3, made by ffmpeg in a subprocess that is killed after `seconds` and whose output
    stops at max_bytes. InvalidMedia when ffmpeg cannot read it; ConversionFailed when it ran out of time."""
    # The input is a file, not a pipe: an M4A whose index (moov) comes last cannot be read from a pipe.
    with tempfile.NamedTemporaryFile(prefix="im-media-") as source:
        source.write(data)
        source.flush()
        command = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", "1", "-i", source.name,
                   "-vn", "-map_metadata", "-1", "-ac", "1", "-codec:a", "libmp3lame", "-q:a", "5",
                   "-fs", str(max_bytes), "-f", "mp3", "pipe:1"]
        return _run_ffmpeg(command, seconds, max_bytes)


def _run_ffmpeg(command: list[str], seconds: float, max_bytes: int) -> bytes:
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=seconds, check=False)
    except subprocess.TimeoutExpired:  # run() has killed it
        raise ConversionFailed(f"The MP3 conversion took longer than {seconds:g} s.") from None
    except OSError as exc:  # no ffmpeg
        raise ConversionFailed(f"The MP3 converter cannot run ({exc.strerror}).") from None
    if done.returncode != 0 or not done.stdout:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise InvalidMedia(f"The stored audio cannot be converted to MP3 ({reason[0][:200]}).")
    if len(done.stdout) >= max_bytes:
        raise InvalidMedia(f"The audio's MP3 would be larger than MEDIA_MAX_MP3_BYTES ({max_bytes}).")
    return done.stdout


# --- files --------------------------------------------------------------------------------------------


def file_ext(filename: str | None) -> str | None:
    """The extension an uploaded file's name ends with (lower case), None when it has none usable."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, ext = base.rpartition(".")
    ext = ext.lower()
    return ext if dot and stem and FILE_EXT.fullmatch(ext) else None


def file_type(ext: str | None) -> str:
    """The Content-Type a stored file is served with."""
    return FILE_TYPES.get(ext or "", DOWNLOAD)
