"""JSON log lines on stderr: one object per line, with ts, level, msg and the event's fields."""
import json
import logging
import sys

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

