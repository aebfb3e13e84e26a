"""JSON log lines on stderr, in the API's shape (logformat.py, JsonFormatter): ts, level, logger
("bridge"), message, then the event's fields."""
import logging
import sys

from logformat import JsonFormatter

log = logging.getLogger("bridge")


def setup(level: str = "INFO") -> None:
    """Send the bridge's log to stderr as JSON lines (and nothing else's)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def info(msg: str, **fields) -> None:
    log.info(msg, extra={"fields": fields})


def warning(msg: str, **fields) -> None:
    log.warning(msg, extra={"fields": fields})


def error(msg: str, **fields) -> None:
    log.error(msg, extra={"fields": fields})
