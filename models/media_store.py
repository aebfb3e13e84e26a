"""Where media objects live: a local directory (the default) or an S3-compatible bucket.

Both stores take the same keys, `<kind>/<name>` (images/..., audios/..., files/...), built by
models/media.py from names it has checked, and answer the same five calls. An object is
written whole and then published under its key (a rename, or S3's atomic PUT): a reader sees
the whole object or none. Names are content hashes, so a second put of a key is the same
bytes and is skipped. A store that cannot be reached raises StoreUnavailable.
"""
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

log = logging.getLogger(__name__)
CHUNK = 256 * 1024


class StoreUnavailable(Exception):
    """The store did not answer (a disk error, the bucket unreachable or refusing us)."""


class Store(Protocol):
    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int | None: ...
    def get(self, key: str) -> bytes | None: ...
    def put(self, key: str, source: bytes | BinaryIO, content_type: str) -> None: ...
    def read(self, key: str, start: int, stop: int) -> Iterator[bytes]: ...


class DirectoryStore:
    """Objects as files under root, in the layout deploy/nginx.conf serves: root/<kind>/<name>."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if path.parent.parent != self.root:  # keys are checked before; this is the last line of defence
            raise ValueError(f"media key {key!r} leaves the store")
        return path

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def size(self, key: str) -> int | None:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def get(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def put(self, key: str, source: bytes | BinaryIO, content_type: str) -> None:
        """Write a temporary file beside the target, then rename it into place (atomic on one file system)."""
        try:
            target = self.path(key)
            if target.exists():
                return
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
            try:
                with os.fdopen(fd, "wb") as out:
                    if isinstance(source, bytes):
                        out.write(source)
                    else:
                        source.seek(0)
                        shutil.copyfileobj(source, out, CHUNK)
                    out.flush()
                    os.fsync(out.fileno())
                os.chmod(temp, 0o644)  # nginx's workers read the directory store's files
                os.replace(temp, target)
                _sync_directory(target.parent)  # the rename itself survives a crash once answered
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def read(self, key: str, start: int, stop: int) -> Iterator[bytes]:
        """Bytes start..stop-1 of the object, in chunks; the file is opened now (so errors show now)."""
        try:
            handle = self.path(key).open("rb")
            handle.seek(start)
        except OSError as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return _chunks(handle, stop - start)


def _sync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _chunks(handle: BinaryIO, left: int) -> Iterator[bytes]:
    with handle:
        while left > 0:
            chunk = handle.read(min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


class S3Store:
    """Objects in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW) under an optional prefix."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, timeout: float = 5):
        import botocore.exceptions  # here: only an S3 deployment needs boto3 imported

        self.bucket, self.prefix = bucket, prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url, self.timeout = endpoint_url, timeout
        self.failures = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
        self._client, self._pid = None, None

    @property
    def client(self):
        """boto3's client, made in each process (a client's connections must not cross a gunicorn fork)."""
        if self._pid != os.getpid():
            import boto3
            import botocore.config

            self._client = boto3.client("s3", endpoint_url=self.endpoint_url, config=botocore.config.Config(
                connect_timeout=self.timeout, read_timeout=self.timeout,
                retries={"max_attempts": 2, "mode": "standard"}))
            self._pid = os.getpid()
        return self._client

    def _missing(self, exc: Exception) -> bool:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NotFound")

    def _call(self, method: str, **kwargs):
        """One S3 call; None when the object is missing, StoreUnavailable when the store fails."""
        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)
        except self.failures as exc:
            if self._missing(exc):
                return None
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def size(self, key: str) -> int | None:
        head = self._call("head_object", Key=self.prefix + key)
        return None if head is None else head["ContentLength"]

    def get(self, key: str) -> bytes | None:
        found = self._call("get_object", Key=self.prefix + key)
        return None if found is None else self._body(found)

    def put(self, key: str, source: bytes | BinaryIO, content_type: str) -> None:
        if self.exists(key):
            return
        if not isinstance(source, bytes):
            source.seek(0)
        self._call("put_object", Key=self.prefix + key, Body=source, ContentType=content_type)

    def read(self, key: str, start: int, stop: int) -> Iterator[bytes]:
        found = self._call("get_object", Key=self.prefix + key, Range=f"bytes={start}-{stop - 1}")
        if found is None:
            raise StoreUnavailable(f"{key} vanished while it was read")
        return self._stream(found["Body"])

    def _body(self, found: dict) -> bytes:
        try:
            return found["Body"].read()
        except self.failures as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def _stream(self, body) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()


def make_store(config: dict) -> Store:
    """The store MEDIA_STORE names: s3://bucket[/prefix] or a directory (made when missing)."""
    location = config["MEDIA_STORE"]
    if location.startswith("s3://"):
        bucket, _, prefix = location[len("s3://"):].partition("/")
        return S3Store(bucket, prefix, config["MEDIA_S3_ENDPOINT_URL"] or None, config["MEDIA_STORE_TIMEOUT"])
    return DirectoryStore(location)
