"""Mapping between the ledger's records and SQLite rows.

Kept apart from the store so the SQL module reads as transactions and queries. Enums are stored
as their string values, booleans as 0/1, labels as JSON text with sorted keys, and every
timestamp as REAL seconds since the epoch.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from service.domain.model import (
    EndReason,
    IdempotencyRecord,
    NewSession,
    SessionKind,
    SessionRecord,
    SessionState,
    Transition,
)

__all__ = [
    "SESSION_COLUMNS",
    "SESSION_SELECT",
    "dump_labels",
    "encode_updates",
    "idempotency_from_row",
    "new_session_params",
    "session_from_row",
    "transition_from_row",
]

SESSION_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SessionRecord))
"""Column names of ``sessions``: exactly the SessionRecord field names, in field order."""

SESSION_SELECT = f"SELECT {', '.join(SESSION_COLUMNS)} FROM sessions"

# Set by the store itself on every change; callers must not smuggle them in through ``updates``.
_MANAGED = frozenset({"session_id", "state", "version", "updated_at"})


def dump_labels(labels: Mapping[str, str]) -> str:
    """Canonical JSON of a label set: sorted keys, UTF-8 kept as is.

    ``ensure_ascii=False`` matters: with escapes, a key such as ``café`` would be stored as
    ``caf\\u00e9`` and a JSON path lookup by the real key would miss it.
    """
    return json.dumps(dict(labels), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _opt_enum(value: Any) -> str | None:
    return None if value is None else str(EndReason(value).value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _kind(value: Any) -> str:
    return SessionKind(value).value


def _flag(value: Any) -> int:
    return 1 if value else 0


_ENCODERS: dict[str, Callable[[Any], Any]] = {
    "kind": _kind,
    "labels": dump_labels,
    "max_duration_seconds": int,
    "created_at": float,
    "end_reason": _opt_enum,
    "end_detail": str,
    "zego_code": _opt_int,
    "possible_leak": _flag,
    "exception_count": int,
    "last_exception_code": _opt_int,
    "last_exception_message": str,
    # An int instance id (ZEGO sends a JSON number) becomes its exact decimal text.
    "instance_id": _opt_str,
    "started_at": _opt_float,
    "ended_at": _opt_float,
}


def encode_updates(updates: Mapping[str, Any]) -> dict[str, Any]:
    """Column values for ``updates``, validated before any SQL runs.

    Raises:
        ValueError: a name is not a SessionRecord field, or is one the store manages itself
            (session_id, state, version, updated_at), or a value cannot be encoded.
    """
    encoded: dict[str, Any] = {}
    for name, value in updates.items():
        if name not in SESSION_COLUMNS:
            raise ValueError(f"unknown session field {name!r}")
        if name in _MANAGED:
            raise ValueError(f"session field {name!r} is managed by the store and cannot be updated")
        encode: Callable[[Any], Any] = _ENCODERS.get(name, _opt_str)
        encoded[name] = encode(value)
    return encoded


def new_session_params(new: NewSession, state: SessionState) -> dict[str, Any]:
    """Column values of the row ``reserve_session`` inserts."""
    return {
        "session_id": new.session_id,
        "kind": SessionKind(new.kind).value,
        "state": state.value,
        "agent_id": new.agent_id,
        "user_id": new.user_id,
        "room_id": new.room_id,
        "agent_user_id": new.agent_user_id,
        "agent_stream_id": new.agent_stream_id,
        "user_stream_id": new.user_stream_id,
        "labels": dump_labels(new.labels),
        "max_duration_seconds": int(new.max_duration_seconds),
        "request_id": new.request_id,
        "request_hash": new.request_hash,
        "created_at": float(new.created_at),
        "updated_at": float(new.created_at),
        "cdn_url": new.cdn_url,
        "version": 0,
        "owner": new.owner,
        "trace_parent": new.trace_parent,
    }


_KINDS = {k.value: k for k in SessionKind}
_STATES = {s.value: s for s in SessionState}
_REASONS = {r.value: r for r in EndReason}
_AT = {name: i for i, name in enumerate(SESSION_COLUMNS)}
_KIND, _STATE, _LABELS = _AT["kind"], _AT["state"], _AT["labels"]
_END_REASON, _POSSIBLE_LEAK = _AT["end_reason"], _AT["possible_leak"]
_WIDTH = len(SESSION_COLUMNS)


def _member(members: Mapping[Any, Any], value: Any, what: str) -> Any:
    # A dict lookup: EnumType.__call__ costs several times more, on every row read.
    try:
        return members[value]
    except (KeyError, TypeError):
        raise ValueError(f"{value!r} is not a valid {what}") from None


def session_from_row(row: sqlite3.Row | tuple[Any, ...]) -> SessionRecord:
    """A SessionRecord from a row whose first columns are :data:`SESSION_COLUMNS`, in order (as
    :data:`SESSION_SELECT` selects them).

    Raises:
        ValueError: the row holds a value this code does not know (e.g. an enum value written
            by a newer release); the store reports it as a StoreError.
    """
    values = list(row[:_WIDTH])
    values[_KIND] = _member(_KINDS, values[_KIND], "SessionKind")
    values[_STATE] = _member(_STATES, values[_STATE], "SessionState")
    values[_LABELS] = dict(json.loads(values[_LABELS]))
    reason = values[_END_REASON]
    values[_END_REASON] = None if reason is None else _member(_REASONS, reason, "EndReason")
    values[_POSSIBLE_LEAK] = bool(values[_POSSIBLE_LEAK])
    return SessionRecord(*values)


def transition_from_row(row: sqlite3.Row) -> Transition:
    """A Transition from a ``session_transitions`` row."""
    from_state = row["from_state"]
    return Transition(
        session_id=row["session_id"],
        from_state=None if from_state is None else SessionState(from_state),
        to_state=SessionState(row["to_state"]),
        at=row["at"],
        cause=row["cause"],
        detail=row["detail"],
    )


def idempotency_from_row(row: sqlite3.Row) -> IdempotencyRecord:
    """An IdempotencyRecord from an ``idempotency_keys`` row."""
    return IdempotencyRecord(
        method=row["method"],
        request_id=row["request_id"],
        request_hash=row["request_hash"],
        response=bytes(row["response"]),
        created_at=row["created_at"],
    )
