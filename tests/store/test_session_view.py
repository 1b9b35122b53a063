"""session_view: a session, its transitions and turn statistics from one statement."""

from __future__ import annotations

from pathlib import Path

from service.domain.model import NewSession, SessionKind, SessionState
from tests.backends import LedgerFactory


async def test_view_matches_the_separate_reads(tmp_path: Path, make_ledger: LedgerFactory) -> None:
    ledger = make_ledger(tmp_path / "l.db")
    await ledger.open()
    new = NewSession(
        "s1", SessionKind.VOICE, "a", "u", "r", "au", "as", "us", {"k": "v"}, 60, "req", "h", 1.0
    )
    await ledger.reserve_session(new, 10)
    await ledger.transition("s1", SessionState.STARTING, expected=frozenset({SessionState.PENDING}), at=2.0,
                            cause="zego_created", updates={"instance_id": "1912124734317838336"})  # fmt: skip
    for latency in (900.0, 2100.0, 1200.0):
        await ledger.record_turn("s1", round_=1, trigger="user_speech", outcome="spoken",
                                 latency_ms=latency, budget_exceeded=latency > 1500, at=3.0)  # fmt: skip
    await ledger.record_turn("s1", round_=2, trigger="speak", outcome="abandoned", latency_ms=None,
                             budget_exceeded=False, at=4.0)  # fmt: skip
    view = await ledger.session_view("s1")
    assert view is not None
    record, transitions, stats = view
    assert record == await ledger.get_session("s1")
    assert transitions == await ledger.transitions("s1")
    assert (
        stats.turns,
        stats.abandoned,
        stats.p50_ms,
        stats.p95_ms,
        stats.max_ms,
        stats.budget_breaches,
    ) == (
        3,
        1,
        1200.0,
        2100.0,
        2100.0,
        1,
    )
    assert await ledger.session_view("missing") is None
    await ledger.close()
