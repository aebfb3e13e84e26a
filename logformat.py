"""The one JSON log shape of the API, gunicorn and the bridge: JsonFormatter for log records, and
access_line(), the access log's line written directly in the same shape (ts, level, logger,
message, request_id first). Control characters that would end or disguise a line are escaped."""
import json
import logging
import re
import time

from flask import has_request_context, request

# Characters JSON leaves raw that break or disguise a log line: DEL and the C1 controls (U+0085 ends a
# line for str.splitlines()), the line and paragraph separators, and the bidirectional overrides.
CONTROLS = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def escape_controls(encoded: str) -> str:
    """JSON text with CONTROLS written as \\uXXXX escapes (the same string to a JSON reader)."""
    return CONTROLS.sub(lambda found: f"\\u{ord(found[0]):04x}", encoded)


def _string(text: str) -> str:
    """A JSON string literal, non-ASCII kept as it is, CONTROLS escaped."""
    encoded = json.encoder.encode_basestring(text)
    return escape_controls(encoded) if CONTROLS.search(encoded) else encoded


def access_line(environ: dict, status: int, elapsed: float) -> bytes:
    """The access log's JSON line, formatted directly: json.dumps of a dict with floats costs
    several times more. The request id needs no escaping: views/ops.Observed checked or made it."""
    who, remote = environ.get("im.caller"), environ.get("REMOTE_ADDR")
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")  # SCRIPT_NAME: /v2 (app.py)
    return (f'{{"ts": {time.time():.3f}, "level": "INFO", "logger": "im.access", "message": "request", '
            f'"request_id": "{environ["im.request_id"]}", "method": {_string(environ["REQUEST_METHOD"])}, '
            f'"path": {_string(path)}, "status": {status}, "ms": {elapsed * 1000:.2f}, '
            f'"appid": {"null" if who is None else who.appid}, '
            f'"remote": {"null" if remote is None else _string(remote)}}}\n').encode("utf-8", "backslashreplace")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request id of the request being served: the one log shape
    of the API, gunicorn and the bridge (ts, level as logging names it, logger, message, request_id,
    null outside a request, then the record's own fields), control characters escaped."""

    encode = json.JSONEncoder(ensure_ascii=False, default=str).encode

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": round(record.created, 3), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage(),  # request_id always there (null outside a request): one shape
                 "request_id": request.environ.get("im.request_id") if has_request_context() else None}
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return escape_controls(self.encode(entry))
