"""The four chaos scenarios. Each returns its raw numbers (a dict); ``chaos.report`` judges them.

Every scenario ends with the same check (``chaos.verify.verify``): what ZEGO still runs against
what the ledger says, once the gateway and then ZEGO's ``MaxIdleTime`` had their chance to end it.
Scenarios 1-3 are here; scenario 4 (subscribers resuming across restarts) is ``chaos.resume``. Their
sizes and durations are a :class:`chaos.params.Params`.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.processes import Processes
from chaos.harness import Intent, World, open_world
from chaos.params import FULL, QUICK, SMOKE, ZEGO_RETRY_SECONDS, Params
from chaos.resume import resume_across_restarts
from chaos.verify import verify

__all__ = ["FULL", "QUICK", "SCENARIOS", "SMOKE", "Params", "verify"]

SYSTEM_ERROR = 410000001


# -- 1. kill -9 during concurrent creates -----------------------------------------------------------


async def kill_during_creates(
    procs: Processes, root: Path, params: Params, gateway_env: dict[str, str]
) -> dict[str, Any]:
    """A burst of creates, each held ``create_latency_ms`` at ZEGO; SIGKILL after each timing."""
    out: dict[str, Any] = {}
    for kill_at in params.kill_timings:
        name = f"kill9_{int(kill_at * 1000)}ms"
        async with open_world(
            name, procs, root, cap=params.cap, time_scale=params.time_scale, gateway_env=gateway_env
        ) as world:
            await world.start_gateway()
            await world.register_agent()
            await world.fault("CreateAgentInstance", count=params.burst, latency_ms=params.create_latency_ms)
            intents = [Intent(n, name) for n in range(params.burst)]
            tasks = [asyncio.create_task(world.create(i, deadline_seconds=30)) for i in intents]
            await asyncio.sleep(kill_at)
            await world.stop_gateway(signal.SIGKILL)
            await asyncio.sleep(params.down_seconds)
            await world.start_gateway()
            await asyncio.gather(*tasks)
            out[name] = {"kill_at_seconds": kill_at, **await verify(world, intents, params)}
    return out


# -- 2. an outage longer than ZEGO's callback retries ---------------------------------------------


async def _wait_active(world: World) -> None:
    """Steady means ACTIVE: their AgentInstanceCreated got through before the outage."""
    for _ in range(50):  # bounded: 5 s
        states = {s["state"] for s in await world.list_sessions()}
        if states <= {"SESSION_STATE_ACTIVE"}:
            return
        await asyncio.sleep(0.1)


def _given_up(callbacks: list[dict[str, Any]], down_at: float, up_at: float) -> set[tuple[str, int, str]]:
    """(instance, sequence, event) of the callbacks ZEGO tried while the gateway was down and never
    got acknowledged, by any later retry either."""
    acked = {(c["instance_id"], c["sequence"]) for c in callbacks if c["acked"]}
    return {
        (c["instance_id"], c["sequence"], c["event"])
        for c in callbacks
        if down_at <= c["t"] <= up_at and not c["acked"] and (c["instance_id"], c["sequence"]) not in acked
    }


async def long_outage(
    procs: Processes, root: Path, params: Params, gateway_env: dict[str, str]
) -> dict[str, Any]:
    """Live sessions and creates in flight; the gateway is down longer than ZEGO retries callbacks.

    During the outage ZEGO finishes the in-flight creates (their AgentInstanceCreated is retried
    and dropped) and deletes one live session on its own (its user left: MaxIdleTime), whose
    AgentInstanceDeleted is dropped too.
    """
    name = "outage"
    outage = max(3.0, params.outage_factor * ZEGO_RETRY_SECONDS * params.time_scale)
    async with open_world(
        name, procs, root, cap=params.cap, time_scale=params.time_scale, gateway_env=gateway_env
    ) as world:
        await world.start_gateway()
        await world.register_agent()
        steady = [Intent(n, name) for n in range(params.steady)]
        await asyncio.gather(*(world.create(i, deadline_seconds=10, idle_seconds=10) for i in steady))
        await _wait_active(world)
        await world.fault("CreateAgentInstance", count=params.in_flight, latency_ms=params.create_latency_ms)
        flying = [Intent(100 + n, name) for n in range(params.in_flight)]
        tasks = [asyncio.create_task(world.create(i, deadline_seconds=60)) for i in flying]
        await asyncio.sleep(0.1)
        await world.stop_gateway(signal.SIGKILL)
        down_at = time.time()
        leaver = steady[0]
        await world.emulator_json(
            "POST", f"/_emulator/rooms/{leaver.room_id}/users/{leaver.user_id}", {"present": False}
        )
        await asyncio.sleep(outage)
        await world.start_gateway()
        up_at = time.time()
        await asyncio.gather(*tasks)
        given_up = _given_up(await world.callbacks(), down_at, up_at)
        result = await verify(world, steady + flying, params)
    if not given_up:
        # The premise failed (e.g. the gateway restarted too soon): the numbers would prove nothing.
        raise RuntimeError("ZEGO gave up on no callback: the outage did not outlast its retries")
    by_event = Counter(event for _, _, event in given_up)
    return {
        name: {
            "outage_seconds": round(outage, 1),
            "zego_retry_window_seconds": round(ZEGO_RETRY_SECONDS * params.time_scale, 1),
            "callbacks_zego_gave_up_on": len(given_up),
            "callbacks_given_up_by_event": dict(sorted(by_event.items())),
            **result,
        }
    }


# -- 3. create/end cycles under injected upstream faults ------------------------------------------

FAULT_PLAN: tuple[tuple[tuple[str, dict[str, Any]], ...], ...] = (
    (("CreateAgentInstance", {"code": SYSTEM_ERROR}),),  # ZEGO's own 5xx-like failure code
    (("CreateAgentInstance", {"mode": "http_503"}),),
    (("DeleteAgentInstance", {"code": SYSTEM_ERROR}),),  # a failed delete
    (("CreateAgentInstance", {"mode": "timeout"}),),  # held: not created, no answer in time
    (("CreateAgentInstance", {"mode": "lose_answer"}),),  # created, answer lost: an orphan
    (("DeleteAgentInstance", {"mode": "lose_answer"}),),  # deleted, answer lost
    (("DeleteAgentInstance", {"mode": "timeout"}),),
    # A second fault: an orphan, and the next delete (its clean-up, or someone's) fails.
    (("CreateAgentInstance", {"mode": "lose_answer"}), ("DeleteAgentInstance", {"code": SYSTEM_ERROR})),
)


async def fault_cycles(
    procs: Processes, root: Path, params: Params, gateway_env: dict[str, str]
) -> dict[str, Any]:
    """Workers create and end sessions while faults are injected one after another."""
    name = "faults"
    async with open_world(
        name, procs, root, cap=params.cap, time_scale=params.time_scale, gateway_env=gateway_env
    ) as world:
        await world.start_gateway()
        await world.register_agent()
        numbers = itertools.count()
        intents: list[Intent] = []
        deadline = time.monotonic() + params.cycle_seconds
        injected: list[str] = []

        async def worker() -> None:
            while time.monotonic() < deadline:
                n = next(numbers)
                if n >= params.cycles:
                    return
                if n % 2 == 0:  # every other cycle, the plan's next step (the next matching call takes it)
                    for action, spec in FAULT_PLAN[(n // 2) % len(FAULT_PLAN)]:
                        await world.fault(action, **spec)
                        injected.append(f"{action}:{spec.get('mode') or spec.get('code')}")
                intent = Intent(n, name)
                intents.append(intent)
                await world.create(intent, deadline_seconds=15)
                if intent.acked is not None:
                    await asyncio.sleep(0.2)
                    await world.end(intent.acked.session_id, deadline_seconds=15)

        await asyncio.gather(*(worker() for _ in range(params.workers)))
        await world.clear_faults()
        result = await verify(world, intents, params)
    if not result["faults"]:
        raise RuntimeError("no injected fault answered a call: the cycles ran without faults")
    return {name: {"faults_injected": len(injected), **result}}


SCENARIOS = {
    1: ("kill -9 during concurrent creates", kill_during_creates),
    2: ("outage longer than ZEGO's callback retries", long_outage),
    3: ("create/end cycles under upstream faults", fault_cycles),
    4: ("resuming subscribers across SIGTERM and SIGKILL", resume_across_restarts),
}
