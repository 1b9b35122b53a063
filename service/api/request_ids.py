"""Request ids of RPCs: the caller's ``x-request-id`` when it is usable, else a new one.

The RPC wrapper (``service.api.rpc_handlers``) takes one per call of our services, sets it in
``service.logs.request_id_var`` for every log line of the call, and sends it back as trailing
metadata ``x-request-id``, on success and on error.
"""

from __future__ import annotations

import itertools
import os
import secrets

from service.api.common import Context

__all__ = ["MAX_REQUEST_ID_CHARS", "REQUEST_ID_HEADER", "new_request_id", "request_id_of"]

REQUEST_ID_HEADER = "x-request-id"
MAX_REQUEST_ID_CHARS = 64


class _RequestIds:
    """A random per-process prefix and a counter: 32 hex characters, unique, no syscall per id."""

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


new_request_id = _RequestIds()
"""A new request id: ``new_request_id()``."""
os.register_at_fork(after_in_child=new_request_id.reseed)  # a forked child must not repeat its parent's ids


def request_id_of(context: Context) -> str:
    """The caller's ``x-request-id`` if it is 1-64 printable characters, else a new id (a hostile or
    broken header is replaced, never echoed into logs and trailers)."""
    for key, value in context.invocation_metadata() or ():
        if (
            key == REQUEST_ID_HEADER
            and isinstance(value, str)
            and 0 < len(value) <= MAX_REQUEST_ID_CHARS
            and value.isprintable()
        ):
            return value
    return new_request_id()
