"""Small helpers every servicer uses: the context type, the caller's time budget, request fingerprints,
timestamps."""

from __future__ import annotations

import hashlib
from typing import Any, TypeAlias

import grpc
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from service.domain.validation import Violations

__all__ = ["Context", "fingerprint", "time_budget", "timestamp_seconds"]

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
"""The servicer context of an RPC handler (requests and responses typed by the generated code)."""

_MIN_SECONDS = -62135596800  # 0001-01-01T00:00:00Z, protobuf's Timestamp range
_MAX_SECONDS = 253402300799  # 9999-12-31T23:59:59Z


def time_budget(context: Context) -> float | None:
    """Seconds left of the caller's deadline, or None when the caller set none.

    The ZEGO client bounds each upstream call by this (minus a margin), so an upstream call
    never outlives the RPC that asked for it.
    """
    return context.time_remaining()


def fingerprint(request: Message, *, ignore: tuple[str, ...] = ("request_id",)) -> str:
    """A stable hash of a request without its idempotency key, to detect a reused request_id."""
    copy = type(request)()
    copy.CopyFrom(request)
    for name in ignore:
        copy.ClearField(name)
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


def timestamp_seconds(v: Violations, field: str, value: timestamp_pb2.Timestamp) -> float:
    """A request's Timestamp as epoch seconds; outside protobuf's range (years 1 to 9999, nanos
    0 to 999,999,999) it is a violation on ``field`` instead of the ValueError protobuf raises."""
    ok = _MIN_SECONDS <= value.seconds <= _MAX_SECONDS and 0 <= value.nanos <= 999_999_999
    if not v.check(ok, field, "is not a valid timestamp (years 1 to 9999)"):
        return 0.0
    return value.seconds + value.nanos / 1e9
