"""Structured logs: one JSON object per line on stderr, each carrying the current request id and,
when callers authenticate, the principal.

The request id lives in a context variable that the gRPC handler wrapper (``service.api.interceptors``)
sets for every RPC of our services, so any log line written while serving that RPC carries it
without passing it around.
"""

from __future__ import annotations

import contextvars
import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from service.auth.principal import principal_var

__all__ = ["CallContextFilter", "configure_logging", "current_request_id", "request_id_var"]

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "agentgw_request_id", default=None
)


def current_request_id() -> str | None:
    """The id of the RPC or callback being served, if any."""
    return request_id_var.get()


class CallContextFilter(logging.Filter):
    """Puts the call's request id and principal on every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        principal = principal_var.get()
        record.principal = principal.name if principal is not None else None
        return True


def configure_logging(level: str = "INFO") -> None:
    """Send every log record to stderr as one JSON object per line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CallContextFilter())
    handler.setFormatter(
        JsonFormatter(
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
