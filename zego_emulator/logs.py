"""JSON log lines on stderr for the standalone emulator (``python -m zego_emulator``).

The same shape as the gateway's lines (``time``, ``level``, ``logger``, ``message`` and the extras),
without the gateway's request and trace context, which the emulator has none of: the emulator is its
own package and does not import the gateway's logging.
"""

from __future__ import annotations

import logging
import sys
import time

from pythonjsonlogger.json import JsonFormatter

__all__ = ["configure_logging"]


class _Rfc3339Formatter(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{seconds}.{int(record.msecs):03d}Z"


class _QuietLibraries(logging.Filter):
    """Drops httpx's per-request lines and uvicorn's access lines below WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name not in ("httpx", "uvicorn.access")


def configure_logging(level: str = "INFO") -> None:
    """Send every log record to stderr as one JSON object per line, without httpx's and uvicorn's chatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _Rfc3339Formatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            timestamp=False,
        )
    )
    # httpx logs each callback delivery at INFO: detail, not an event. Filtered on this handler, not
    # by the httpx logger's level, so nothing outlives the handler (a test process configures again).
    handler.addFilter(_QuietLibraries())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
