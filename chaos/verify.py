"""The check every chaos scenario ends with: what ZEGO still runs against what the ledger says.

:func:`verify`: the client fills the pool to the cap (a gateway that freed a slot ZEGO still uses
lets ZEGO see a create beyond its cap), ends every session the ledger lists as live, and waits up to
the settle window until the gateway has nothing left to end (what still runs then, with an id the
ledger knows, was not ended by the gateway: ``idle_ended_known``). Then every client's user leaves
its room, as real users do once their session ended or failed, and the harness waits ZEGO's
``MaxIdleTime`` (120 s, scaled) plus the settle window: ZEGO ends what runs for an absent user and
reports it (AgentInstanceDeleted, 1202), which must clear the ledger's possible leaks. What still
runs at ZEGO then is a permanent leak (``leaked``), and so is a ``possible_leak`` row whose instances
are all gone (``uncleared_leaks``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from chaos.harness import Intent, World
from chaos.measure import idle_counts, leak_counts
from chaos.params import ZEGO_DEFAULT_MAX_IDLE_SECONDS, Params

__all__ = ["verify"]

Sessions = list[dict[str, Any]]
Done = Callable[[list[str], Sessions], Awaitable[bool]]


async def _settle(world: World, seconds: float, done: Done) -> tuple[list[str], Sessions, float]:
    """Poll ZEGO and the ledger every 0.5 s until ``done(running, sessions)`` or ``seconds`` pass."""
    started = time.monotonic()
    while True:
        running = await world.running()
        sessions = await world.list_sessions()
        if await done(running, sessions) or time.monotonic() - started > seconds:
            return running, sessions, time.monotonic() - started
        await asyncio.sleep(0.5)


async def _gateway_done(running: list[str], sessions: Sessions) -> bool:
    """Nothing left the gateway could end: no live session, no running instance it knows."""
    known = {s["instance_id"] for s in sessions if s["instance_id"]}
    return not any(s["live"] for s in sessions) and not known & set(running)


def _zego_done(world: World) -> Done:
    """ZEGO runs nothing, and every possible leak of the ledger is cleared."""

    async def done(running: list[str], sessions: Sessions) -> bool:
        if running:
            return False
        counts = leak_counts(await world.calls(), running, sessions, [], await world.callbacks())
        return counts.uncleared_leaks == 0

    return done


def _flagged(rows: Sessions, field: str) -> int:
    """How many ledger rows have ``field`` set."""
    return sum(1 for row in rows if row[field])


def _intent_counts(intents: list[Intent], refills: list[Intent]) -> dict[str, int]:
    acked = sum(1 for i in intents if i.acked)
    return {
        "intents": len(intents),
        "acked": acked,
        "failed_or_refused": len(intents) - acked,
        "retried_into_failed": sum(1 for i in intents + refills if i.retried_into_failed),
        "refills": len(refills),
        "refills_acked": sum(1 for i in refills if i.acked),
    }


async def verify(world: World, intents: list[Intent], params: Params) -> dict[str, Any]:
    """Refill to the cap, end what the ledger lists as live, settle; then every user leaves its
    room, ZEGO's ``MaxIdleTime`` passes, settle again; compare the two views."""
    before = await world.list_sessions()
    running = set(await world.running())
    live_ids = {s["instance_id"] for s in before if s["live"] and s["instance_id"]}
    refills: list[Intent] = []
    if params.refill:
        refills = [Intent(10_000 + i, world.name) for i in range(world.cap)]
        await asyncio.gather(*(world.create(i, deadline_seconds=3) for i in refills))
    live = [s for s in await world.list_sessions() if s["live"]]
    ended = await asyncio.gather(*(world.end(s["session_id"], deadline_seconds=15) for s in live))
    present, at_leave, settled = await _settle(world, params.settle_seconds, _gateway_done)
    # The clients' users hang up, as real ones do once their session ended or failed: ZEGO ends
    # what still runs after MaxIdleTime (scaled like every emulated delay) and says so with
    # AgentInstanceDeleted (1202), which the gateway matches by the generated agent user id.
    everyone = intents + refills
    await asyncio.gather(*(world.leave(i) for i in everyone))
    idle_wait = ZEGO_DEFAULT_MAX_IDLE_SECONDS * params.time_scale
    still, sessions, idle_settled = await _settle(world, idle_wait + params.settle_seconds, _zego_done(world))
    calls, callbacks = await world.calls(), await world.callbacks()
    world.save_journal(calls, callbacks)
    counts = leak_counts(calls, still, sessions, [i.acked for i in everyone if i.acked], callbacks)
    return {
        **asdict(counts),
        **asdict(idle_counts(present, still, at_leave)),
        **_intent_counts(intents, refills),
        "ghost_sessions_before_cleanup": len(live_ids - running),
        "unowned_instances_before_cleanup": len(running - live_ids),
        "running_when_users_left": len(present),
        "possible_leaks_when_users_left": _flagged(at_leave, "possible_leak"),
        "possible_leak_sessions": _flagged(sessions, "possible_leak"),
        "still_live_in_ledger": _flagged(sessions, "live"),
        "end_answers": sorted(set(ended)),
        "settle_seconds": round(settled, 1),
        "idle_settle_seconds": round(idle_settled, 1),
        "instance_ids_when_users_left": sorted(present),
        "leaked_instance_ids": sorted(still),
    }
