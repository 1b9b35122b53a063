"""Small helpers every servicer uses: the caller's time budget and request fingerprints."""

from __future__ import annotations

import hashlib
from typing import Any

import grpc
from google.protobuf.message import Message

__all__ = ["fingerprint", "time_budget"]


def time_budget(context: grpc.aio.ServicerContext[Any, Any]) -> float | None:
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
