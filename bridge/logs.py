"""JSON log lines on stderr: one object per line, with ts, level, msg and the event's fields."""
import json
import logging
import sys
import time

log = logging.getLogger("bridge")


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": round(record.created, 3), "level": record.levelname.lower(), "msg": record.getMessage()}
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def setup(level: str = "INFO") -> None:
    """Send the bridge's log to stderr as JSON lines (and nothing else's)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def info(msg: str, **fields) -> None:
    log.info(msg, extra={"fields": fields})


def warning(msg: str, **fields) -> None:
    log.warning(msg, extra={"fields": fields})


def error(msg: str, **fields) -> None:
    log.error(msg, extra={"fields": fields})


class Throttle:
    """Lets a repeated warning through at most once per interval, counting what it held back."""

    def __init__(self, seconds: float):
        self.seconds, self.last, self.held = seconds, 0.0, 0

    def allow(self) -> int | None:
        """None to stay quiet; else how many were held back since the last one let through."""
        now = time.monotonic()
        if now - self.last < self.seconds:
            self.held += 1
            return None
        held, self.last, self.held = self.held, now, 0
        return held
