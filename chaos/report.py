"""Rows with targets from the scenarios' raw numbers, the printed table, and the JSON file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["TARGETS", "Row", "rows_for", "table"]

TARGETS: dict[str, str] = {
    "double_creates": "creates in an intent's room while an earlier instance there was not gone",
    "lost_acked": "acknowledged creates the ledger lost",
    "leaked": "instances still running at ZEGO after clean-up, users leaving, MaxIdleTime, settle",
    "uncleared_leaks": "possible_leak sessions whose instances ZEGO has ended",
    "idle_ended_known": "instances the ledger knew that only ZEGO's MaxIdleTime ended",
    "over_cap": "creates that reached ZEGO at its cap",
    "lost_in_ledger": "callbacks acknowledged to ZEGO but not in the event log",
    "lost": "logged events a subscriber never got",
    "duplicated": "events a subscriber got more than once",
}
"""Every target is 0."""

INFO = (
    "creates_at_zego",
    "recreated_after_gone",
    "acked",
    "failed_or_refused",
    "retried_into_failed",
    "refills_acked",
    "unknown_creates",
    "leaked_unknown",
    "idle_ended_unknown",
    "possible_leaks_when_users_left",
    "possible_leak_sessions",
    "possible_leaks_never_created",
    "ghost_sessions_before_cleanup",
    "unowned_instances_before_cleanup",
    "still_live_in_ledger",
    "callbacks_zego_gave_up_on",
    "faults_injected",
    "acked_callbacks",
    "dropped_by_zego",
    "withheld_after_end",
    "logged",
    "delivered",
    "resumes",
    "caught_up",
    "sigterm_to_stream_end_seconds",
)


@dataclass(frozen=True)
class Row:
    scenario: str
    metric: str
    value: float
    target: str
    verdict: str
    """PASS, FAIL or info."""


def rows_for(scenario: str, raw: dict[str, Any]) -> list[Row]:
    """Target rows (value must be 0) first, then the information rows, in a fixed order."""
    rows = [
        Row(scenario, metric, float(raw[metric]), "0", "PASS" if raw[metric] == 0 else "FAIL")
        for metric in TARGETS
        if metric in raw
    ]
    rows += [
        Row(scenario, metric, float(raw[metric]), "-", "info")
        for metric in INFO
        if isinstance(raw.get(metric), (int, float))
    ]
    return rows


def table(rows: list[Row]) -> str:
    """The rows as a fixed-width table."""
    lines = [f"{'scenario':<16} {'metric':<34} {'value':>7} {'target':>6}  result"]
    lines.append("-" * len(lines[0]))
    for row in rows:
        lines.append(f"{row.scenario:<16} {row.metric:<34} {row.value:>7g} {row.target:>6}  {row.verdict}")
    return "\n".join(lines)
