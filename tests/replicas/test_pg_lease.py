"""The reaper lease on PostgreSQL: one holder at a time, failover within a bound when it dies."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import asyncpg
import pytest

from service.domain.lease import AlwaysHeld, while_held
from service.store.pg_lease import PgAdvisoryLease, lease_key

RETRY = 0.3
CHECK = 0.2
BOUND = RETRY + CHECK + 2.0  # the failover bound plus scheduling slack on a loaded 2-core machine


class Changes:
    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []

    def lease_held(self, lease: str, held: bool) -> None:
        self.seen.append((lease, held))


async def _eventually(predicate: object, within: float) -> float:
    """Seconds until ``predicate()`` held; fails after ``within``."""
    assert callable(predicate)
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < within, "condition not reached in time"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def test_lease_keys_are_stable_and_distinct() -> None:
    assert lease_key("reaper") == lease_key("reaper")
    assert lease_key("reaper") != lease_key("other")


async def test_one_holder_and_failover_when_its_connection_is_killed(pg_url: str) -> None:
    obs_a, obs_b = Changes(), Changes()
    a = PgAdvisoryLease(pg_url, retry_seconds=RETRY, check_seconds=CHECK, observer=obs_a)
    b = PgAdvisoryLease(pg_url, retry_seconds=RETRY, check_seconds=CHECK, observer=obs_b)
    async with a, b:
        await _eventually(lambda: a.held or b.held, BOUND)
        await asyncio.sleep(3 * RETRY)  # the other keeps trying and keeps failing
        assert a.held != b.held
        holder, other = (a, b) if a.held else (b, a)
        conn = await asyncpg.connect(pg_url)
        try:
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", holder.backend_pid)
        finally:
            await conn.close()
        took = await _eventually(lambda: other.held, BOUND)
        await _eventually(lambda: not holder.held, BOUND)
        assert took < BOUND
        await asyncio.sleep(3 * RETRY)
        assert other.held and not holder.held  # the old holder reconnected as a contender
    assert ("reaper", True) in obs_a.seen + obs_b.seen
    assert ("reaper", False) in (obs_a.seen if holder is a else obs_b.seen)


async def test_closing_the_holder_hands_over(pg_url: str) -> None:
    b = PgAdvisoryLease(pg_url, retry_seconds=RETRY, check_seconds=CHECK)
    async with PgAdvisoryLease(pg_url, retry_seconds=RETRY, check_seconds=CHECK) as a:
        await _eventually(lambda: a.held, BOUND)
        async with b:
            await asyncio.sleep(2 * RETRY)
            assert not b.held
            await a.__aexit__(None, None, None)
            await _eventually(lambda: b.held, BOUND)


_HOLDER = """
import asyncio, sys
from service.store.pg_lease import PgAdvisoryLease

async def main():
    async with PgAdvisoryLease(sys.argv[1], retry_seconds=0.2, check_seconds=0.2) as lease:
        await lease.acquired()
        print("held", flush=True)
        await asyncio.sleep(600)

asyncio.run(main())
"""


async def test_failover_when_the_holder_process_is_killed(pg_url: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLDER, pg_url, stdout=asyncio.subprocess.PIPE, cwd=os.getcwd()
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.strip() == b"held"
        async with PgAdvisoryLease(pg_url, retry_seconds=RETRY, check_seconds=CHECK) as mine:
            await asyncio.sleep(3 * RETRY)
            assert not mine.held
            proc.send_signal(signal.SIGKILL)
            assert await _eventually(lambda: mine.held, BOUND) < BOUND
    finally:
        if proc.returncode is None:
            proc.kill()
        await asyncio.wait_for(proc.wait(), 10)


async def test_duties_run_only_while_held_and_again_after_a_takeover(pg_url: str) -> None:
    entered: list[str] = []

    class Duty:
        def __init__(self, who: str) -> None:
            self.who = who

        async def __aenter__(self) -> None:
            entered.append(self.who)

        async def __aexit__(self, *exc: object) -> None:
            entered.append(f"{self.who} stopped")

    a = PgAdvisoryLease(pg_url, retry_seconds=RETRY, check_seconds=CHECK)
    b = PgAdvisoryLease(pg_url, retry_seconds=RETRY, check_seconds=CHECK)
    async with a, while_held(a, lambda: Duty("a")):
        await _eventually(lambda: entered == ["a"], BOUND)
        async with b, while_held(b, lambda: Duty("b")):
            await asyncio.sleep(3 * RETRY)
            assert entered == ["a"]
            conn = await asyncpg.connect(pg_url)
            try:
                await conn.fetchval("SELECT pg_terminate_backend($1)", a.backend_pid)
            finally:
                await conn.close()
            await _eventually(lambda: "b" in entered and "a stopped" in entered, BOUND)
    assert entered.count("b") == 1


@pytest.mark.parametrize("name", ["reaper"])
async def test_always_held_is_held(name: str) -> None:
    lease = AlwaysHeld(name)
    assert lease.held
    await asyncio.wait_for(lease.acquired(), 1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(lease.lost(), 0.05)


@pytest.mark.parametrize("name", ["x", "reaper"])  # "x" has a negative key: its check must match too
async def test_the_holder_keeps_the_lease_across_checks(pg_url: str, name: str) -> None:
    changes = Changes()
    async with PgAdvisoryLease(
        pg_url, name=name, retry_seconds=RETRY, check_seconds=0.05, observer=changes
    ) as a:
        await _eventually(lambda: a.held, BOUND)
        await asyncio.sleep(0.5)  # ten checks
        assert a.held
    assert changes.seen == [(name, True)]
