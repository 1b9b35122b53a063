"""Structured logs: one JSON object per line on stderr, each carrying the current request id and,
when callers authenticate, the principal, and while a span is being traced, its ``trace_id``
and ``span_id``.

The request id lives in a context variable that the gRPC handler wrapper (``service.api.rpc_handlers``)
sets for every RPC of our services, so any log line written while serving that RPC carries it
without passing it around. The trace ids come from OpenTelemetry's current span the same way
(``service.tracing``); lines written outside a span, or with tracing off, have neither field.

``time`` is RFC 3339 in UTC with milliseconds (``2026-12-01T09:30:20.123Z``). httpx logs every
request at INFO; those lines are demoted to DEBUG, so they appear only when ``AGENTGW_LOG_LEVEL`` is
DEBUG.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

from service import tracing
from service.auth.principal import principal_var

__all__ = ["CallContextFilter", "configure_logging", "current_request_id", "request_id_var"]

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "agentgw_request_id", default=None
)


def current_request_id() -> str | None:
    """The id of the RPC or callback being served, if any."""
    return request_id_var.get()


class CallContextFilter(logging.Filter):
    """Puts the call's request id and principal, and the current span's ids when there is one, on
    every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        principal = principal_var.get()
        record.principal = principal.name if principal is not None else None
        if not tracing.enabled():  # off: no span can be current (0.5 us a line saved)
            return True
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            record.trace_id = format(ctx.trace_id, "032x")
            record.span_id = format(ctx.span_id, "016x")
        return True


class _DemoteToDebug(logging.Filter):
    """On a library's logger: its INFO lines become DEBUG lines, dropped unless DEBUG is enabled."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        # Propagated records meet no further level check: decide here, by the logger's own level.
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


class _Rfc3339Formatter(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{seconds}.{int(record.msecs):03d}Z"


def configure_logging(level: str = "INFO") -> None:
    """Send every log record to stderr as one JSON object per line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CallContextFilter())
    handler.setFormatter(
        _Rfc3339Formatter(
            "{asctime}{levelname}{name}{message}{request_id}{principal}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            timestamp=False,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's own access log would duplicate ours in another format.
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # httpx's "HTTP Request: POST ... 200 OK" per ZEGO call: debugging detail, not an event.
    httpx_logger = logging.getLogger("httpx")
    if not any(isinstance(f, _DemoteToDebug) for f in httpx_logger.filters):
        httpx_logger.addFilter(_DemoteToDebug())
