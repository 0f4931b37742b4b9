"""Structured JSON logs: one object per line, with the request id when there is one."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from intelgraph_privacy.codec import dumps

LOGGER_NAME = "intelgraph.sidecar"
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as JSON: ts, level, logger, msg, and every `extra=` field."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return dumps(entry, default=str).decode()


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> logging.Logger:
    """Send the sidecar's logs (and aiohttp's) as JSON lines to `stream` (stderr by default)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in (LOGGER_NAME, "aiohttp"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    # aiohttp's own access log duplicates ours (which has the request id): keep it quiet.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return logging.getLogger(LOGGER_NAME)


def get_logger() -> logging.Logger:
    """The sidecar's logger."""
    return logging.getLogger(LOGGER_NAME)
