"""SQL builders for the PostgreSQL ledger's filtered reads (the twins of ``service.store._query``).

Every value a caller supplies (label keys included) is bound as a ``$n`` parameter; only fixed
SQL text and placeholders are ever concatenated. Labels are ``jsonb``: a key is looked up with
``->>`` / ``jsonb_exists`` by its decoded text, so quotes, dots and backslashes need no escaping.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from service.domain.events import EventFilter, EventType
from service.domain.model import LabelOp, LabelRequirement, SessionFilter, SessionKind, SessionState
from service.store._rows import SESSION_SELECT

__all__ = ["Params", "event_filter_sql", "label_clause", "list_sessions_query"]


class Params:
    """Positional parameters of one statement: :meth:`add` binds a value and returns ``$n``."""

    def __init__(self, *initial: Any) -> None:
        self.values: list[Any] = list(initial)

    def add(self, value: Any) -> str:
        """Bind ``value``; its placeholder."""
        self.values.append(value)
        return f"${len(self.values)}"

    def many(self, values: Iterable[Any]) -> str:
        """Bind each of ``values``; their placeholders, comma-separated (for ``IN (...)``)."""
        return ", ".join(self.add(v) for v in values)


def label_clause(req: LabelRequirement, params: Params, table: str = "sessions") -> str:
    """SQL for one label requirement, Kubernetes semantics (as ``service.store._query``)."""
    op = LabelOp(req.op)
    key = params.add(req.key)
    if op is LabelOp.EQUALS:
        return f"({table}.labels ->> {key}) = {params.add(req.value)}"
    if op is LabelOp.NOT_EQUALS:
        # IS DISTINCT FROM is NULL-aware: a missing key differs from every value.
        return f"({table}.labels ->> {key}) IS DISTINCT FROM {params.add(req.value)}"
    if op is LabelOp.EXISTS:
        return f"jsonb_exists({table}.labels, {key})"
    return f"NOT jsonb_exists({table}.labels, {key})"


def list_sessions_query(
    flt: SessionFilter, limit: int, after: tuple[float, str] | None
) -> tuple[str, list[Any]]:
    """The ListSessions page: newest first by (created_at, session_id), keyset-paginated."""
    where: list[str] = []
    p = Params()
    if flt.states:
        where.append(f"state IN ({p.many(sorted(SessionState(s).value for s in flt.states))})")
    if flt.kinds:
        where.append(f"kind IN ({p.many(sorted(SessionKind(k).value for k in flt.kinds))})")
    if flt.owner is not None:
        where.append(f"owner = {p.add(flt.owner)}")
    if flt.agent_id:
        where.append(f"agent_id = {p.add(flt.agent_id)}")
    if flt.room_id:
        where.append(f"room_id = {p.add(flt.room_id)}")
    for req in flt.label_selector:
        where.append(label_clause(req, p))
    if flt.possible_leak_only:
        where.append("possible_leak = 1")
    if after is not None:
        at, session_id = p.add(float(after[0])), p.add(after[1])
        where.append(f"(created_at < {at} OR (created_at = {at} AND session_id < {session_id}))")
    sql = SESSION_SELECT
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY created_at DESC, session_id DESC LIMIT {p.add(limit)}"
    return sql, p.values


def event_filter_sql(flt: EventFilter, p: Params) -> list[str]:
    """The WHERE terms of a delivered-events read matching ``flt`` (parameters bound to ``p``)."""
    where = ["hidden = 0"]
    if flt.owner is not None:
        where.append(f"owner = {p.add(flt.owner)}")
    if flt.session_ids:
        where.append(f"session_id IN ({p.many(sorted(flt.session_ids))})")
    if flt.agent_id:
        where.append(f"agent_id = {p.add(flt.agent_id)}")
    if flt.room_id:
        where.append(f"room_id = {p.add(flt.room_id)}")
    if flt.event_types:
        where.append(f"event_type IN ({p.many(sorted(EventType(t).value for t in flt.event_types))})")
    else:
        where.append(f"event_type != {p.add(EventType.USER_AUDIO.value)}")
    for req in flt.label_selector:
        where.append(label_clause(req, p, table="events"))
    return where
