"""The growth benchmark's code (``bench/scenarios/growth.py``) at a tiny size: the bulk fill copies
the template rows into a ledger the gateway serves, and every figure is measured.

The full sizes (1,000,000 sessions, 10,000,000 events) run in ``make bench``; here a few thousand
rows prove the SQL, the measurements and the rows."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.config import QUICK
from bench.processes import Processes, start_emulator
from bench.report import Report
from bench.scenarios import growth
from bench.scenarios.common import Context, register_agent

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[Context]:
    procs = Processes(tmp_path)
    try:
        _, url = await start_emulator(procs)
        await register_agent(url)
        params = dataclasses.replace(QUICK, resume_events=400, growth_sessions=600, growth_events=4000)
        yield Context(params, procs, url, tmp_path, Report())
    finally:
        await procs.close()


async def test_the_sqlite_fill_copies_the_templates_and_every_figure_is_measured(ctx: Context) -> None:
    db = ctx.workdir / "ledger.db"
    out = await growth.measure_backend(ctx, growth.sqlite_backend(db), 600, 4000)
    with sqlite3.connect(db) as conn:
        like = f"{growth.SESSION_PREFIX}%"
        sessions = conn.execute("SELECT count(*) FROM sessions WHERE session_id LIKE ?", (like,))
        assert sessions.fetchone() == (600,)
        # Every filled event belongs to a filled session, in cursor order of received_at.
        orphans = conn.execute(
            "SELECT count(*) FROM events e LEFT JOIN sessions s USING (session_id) WHERE s.session_id IS NULL"
        ).fetchone()
        assert orphans == (0,)
        filled = conn.execute("SELECT received_at FROM events WHERE raw IS NULL ORDER BY cursor")
        times = [r[0] for r in filled]
        assert times == sorted(times)
    # The purges removed the oldest events: a minute's worth, then a tenth of the log.
    assert out["steady_purge"]["removed"] >= 1
    assert out["catch_up_purge"]["removed"] >= 300
    assert out["steady_purge"]["callbacks_during"] >= 1
    assert out["steady_purge"]["refused_before"] == 0  # the gateway took every callback before
    for ledger in ("small", "full"):
        assert out[ledger]["resumed"] >= 400  # the templates first, then the same filled events
        assert out[ledger]["get_session"]["p50"] > 0 and out[ledger]["list_sessions"]["p50"] > 0
    growth._rows(ctx, "SQLite", out)
    metrics = [r.metric for r in ctx.report.rows]
    assert len(metrics) == 5 and all(m.startswith("SQLite") for m in metrics)
    targets = {"<= 1.2x empty", ">= empty / 1.2", "<= 50 ms, none refused", "-"}
    assert {r.target for r in ctx.report.rows} == targets


async def test_the_postgres_fill_copies_the_templates_and_every_figure_is_measured(
    ctx: Context, database_url: str
) -> None:
    backend = growth.postgres_backend(database_url, ctx.workdir / "unused.db")
    out = await growth.measure_backend(ctx, backend, 600, 4000)
    like = f"{growth.SESSION_PREFIX}%"
    rows = await backend.dialect.execute(f"SELECT count(*) FROM sessions WHERE session_id LIKE '{like}'")
    assert rows == [("600",)]
    orphans = await backend.dialect.execute(
        "SELECT count(*) FROM events e LEFT JOIN sessions s USING (session_id) WHERE s.session_id IS NULL"
    )
    assert orphans == [("0",)]
    assert out["steady_purge"]["removed"] >= 1 and out["catch_up_purge"]["removed"] >= 300
    for ledger in ("small", "full"):
        assert out[ledger]["resumed"] >= 400
    growth._rows(ctx, "PostgreSQL", out)
    assert len(ctx.report.rows) == 5
