"""SQL builders for the ledger's filtered reads.

Every value a caller supplies (label keys included) is bound as a parameter; only fixed SQL text
and ``?`` placeholders are ever concatenated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.domain.model import LabelOp, LabelRequirement, SessionFilter, SessionKind, SessionState
from service.store._rows import SESSION_SELECT, dump_labels

__all__ = ["label_clause", "list_sessions_query", "marks"]


def marks(values: Sequence[object]) -> str:
    """``?, ?, ...``: one placeholder per value."""
    return ", ".join("?" * len(values))


def label_clause(req: LabelRequirement, table: str = "sessions") -> tuple[str, list[str]]:
    """SQL and parameters for one label requirement, Kubernetes semantics.

    ``key=value``: present and equal; ``key!=value``: absent or different; ``key`` and ``!key``:
    present or absent.
    """
    op = LabelOp(req.op)
    key = req.key
    if dump_labels({key: ""}) == '{"' + key + '":""}':
        # The key needs no JSON escaping, so a quoted JSON path addresses it exactly, dots and
        # brackets included. SQLite's path syntax has no escape for '"' or '\', hence the else.
        path = '$."' + key + '"'
        if op is LabelOp.EQUALS:
            return f"json_extract({table}.labels, ?) = ?", [path, req.value]
        if op is LabelOp.NOT_EQUALS:
            # IS NOT is NULL-aware: a missing key (NULL) differs from every value.
            return f"json_extract({table}.labels, ?) IS NOT ?", [path, req.value]
        if op is LabelOp.EXISTS:
            return f"json_type({table}.labels, ?) IS NOT NULL", [path]
        return f"json_type({table}.labels, ?) IS NULL", [path]
    # json_each yields decoded keys, so it matches keys holding quotes, backslashes or controls.
    has_key = f"EXISTS (SELECT 1 FROM json_each({table}.labels) AS j WHERE j.key = ?"
    if op is LabelOp.EQUALS:
        return has_key + " AND j.value = ?)", [key, req.value]
    if op is LabelOp.NOT_EQUALS:
        return "NOT " + has_key + " AND j.value = ?)", [key, req.value]
    if op is LabelOp.EXISTS:
        return has_key + ")", [key]
    return "NOT " + has_key + ")", [key]


def list_sessions_query(
    flt: SessionFilter, limit: int, after: tuple[float, str] | None
) -> tuple[str, list[Any]]:
    """The ListSessions page: newest first by (created_at, session_id), keyset-paginated."""
    where: list[str] = []
    params: list[Any] = []
    if flt.states:
        states = sorted(SessionState(s).value for s in flt.states)
        where.append(f"state IN ({marks(states)})")
        params += states
    if flt.kinds:
        kinds = sorted(SessionKind(k).value for k in flt.kinds)
        where.append(f"kind IN ({marks(kinds)})")
        params += kinds
    if flt.owner is not None:
        where.append("owner = ?")
        params.append(flt.owner)
    if flt.agent_id:
        where.append("agent_id = ?")
        params.append(flt.agent_id)
    if flt.room_id:
        where.append("room_id = ?")
        params.append(flt.room_id)
    for req in flt.label_selector:
        clause, clause_params = label_clause(req)
        where.append(clause)
        params += clause_params
    if flt.possible_leak_only:
        where.append("possible_leak = 1")
    if after is not None:
        # Strictly after the previous page's last key in (created_at DESC, session_id DESC) order;
        # session_id breaks ties, so rows sharing a timestamp are neither skipped nor repeated.
        where.append("(created_at < ? OR (created_at = ? AND session_id < ?))")
        params += [float(after[0]), float(after[0]), after[1]]
    sql = SESSION_SELECT
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, session_id DESC LIMIT ?"
    params.append(limit)
    return sql, params
