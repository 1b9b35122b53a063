"""The four chaos scenarios. Each returns its raw numbers (a dict); ``chaos.report`` judges them.

Every scenario ends with the same :func:`verify`: the client fills the pool to the cap (a
gateway that freed a slot ZEGO still uses lets ZEGO see a create beyond its cap), ends every
session the ledger lists as live, and waits up to the settle window until the gateway has
nothing left to end (what still runs then, with an id the ledger knows, was not ended by the
gateway: ``idle_ended_known``). Then every client's user leaves its room, as real users do once
their session ended or failed, and the harness waits ZEGO's ``MaxIdleTime`` (120 s, scaled) plus
the settle window: ZEGO ends what runs for an absent user and reports it (AgentInstanceDeleted,
1202), which must clear the ledger's possible leaks. What still runs at ZEGO then is a permanent
leak (``leaked``), and so is a ``possible_leak`` row whose instances are all gone
(``uncleared_leaks``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc

from agentgw_client.gen.agentgw.v1 import event_service_pb2 as events_api
from agentgw_client.gen.agentgw.v1 import event_service_pb2_grpc as events_rpc
from bench.processes import Processes
from chaos.harness import Intent, World, open_world
from chaos.measure import event_counts, idle_counts, leak_counts

__all__ = ["FULL", "QUICK", "SCENARIOS", "SMOKE", "Params"]

ZEGO_RETRY_SECONDS = 2 + 4 + 8 + 16 + 32
"""ZEGO's callback retries span 62 s (spec §8.1); the emulator scales them by its time_scale."""

ZEGO_DEFAULT_MAX_IDLE_SECONDS = 120
"""ZEGO ends an instance whose creating user is absent this long (spec §5.1, §6.9), unless the create
set ``AdvancedConfig.MaxIdleTime``; the emulator scales it by its time_scale (12 s at 0.1)."""

SYSTEM_ERROR = 410000001


@dataclass(frozen=True)
class Params:
    """Sizes and durations; every loop is bounded by a count and a time."""

    cap: int = 6
    time_scale: float = 0.1
    settle_seconds: float = 25.0
    kill_timings: tuple[float, ...] = (0.02, 0.15, 0.3, 0.42, 0.55, 0.8)
    burst: int = 6
    create_latency_ms: int = 400
    down_seconds: float = 1.0
    steady: int = 3
    in_flight: int = 3
    outage_factor: float = 1.5
    workers: int = 4
    cycles: int = 96
    cycle_seconds: float = 90.0
    event_sessions: int = 4
    subscribers: int = 3
    phase_seconds: float = 4.0
    refill: bool = True


FULL = Params()
QUICK = Params(
    settle_seconds=15.0, kill_timings=(0.05, 0.45), cycles=20, cycle_seconds=30.0, phase_seconds=2.5
)
SMOKE = Params(cap=3, settle_seconds=4.0, kill_timings=(0.1,), burst=2, create_latency_ms=300, refill=False)


async def _settle(world: World, seconds: float, done: Any) -> tuple[list[str], list[dict[str, Any]], float]:
    """Poll ZEGO and the ledger every 0.5 s until ``done(running, sessions)`` or ``seconds`` pass."""
    started = time.monotonic()
    while True:
        running = await world.running()
        sessions = await world.list_sessions()
        if await done(running, sessions) or time.monotonic() - started > seconds:
            return running, sessions, time.monotonic() - started
        await asyncio.sleep(0.5)


async def verify(world: World, intents: list[Intent], params: Params) -> dict[str, Any]:
    """Refill to the cap, end what the ledger lists as live, settle; then every user leaves its
    room, ZEGO's ``MaxIdleTime`` passes, settle again; compare the two views."""
    before = await world.list_sessions()
    running = set(await world.running())
    live_ids = {s["instance_id"] for s in before if s["live"] and s["instance_id"]}
    ghosts = len(live_ids - running)
    unowned = len(running - live_ids)
    refills: list[Intent] = []
    if params.refill:
        refills = [Intent(10_000 + i, world.name) for i in range(world.cap)]
        await asyncio.gather(*(world.create(i, deadline_seconds=3) for i in refills))
    live = [s for s in await world.list_sessions() if s["live"]]
    ended = await asyncio.gather(*(world.end(s["session_id"], deadline_seconds=15) for s in live))

    async def gateway_done(running: list[str], sessions: list[dict[str, Any]]) -> bool:
        # Nothing left the gateway could end: no live session, no running instance it knows.
        known = {s["instance_id"] for s in sessions if s["instance_id"]}
        return not any(s["live"] for s in sessions) and not known & set(running)

    present, at_leave, settled = await _settle(world, params.settle_seconds, gateway_done)
    # The clients' users hang up, as real ones do once their session ended or failed: ZEGO ends
    # what still runs after MaxIdleTime (scaled like every emulated delay) and says so with
    # AgentInstanceDeleted (1202), which the gateway matches by the generated agent user id.
    everyone = intents + refills
    await asyncio.gather(*(world.leave(i) for i in everyone))
    idle_wait = ZEGO_DEFAULT_MAX_IDLE_SECONDS * params.time_scale

    async def zego_done(running: list[str], sessions: list[dict[str, Any]]) -> bool:
        if running:
            return False
        counts = leak_counts(await world.calls(), running, sessions, [], await world.callbacks())
        return counts.uncleared_leaks == 0

    still, sessions, idle_settled = await _settle(world, idle_wait + params.settle_seconds, zego_done)
    calls, callbacks = await world.calls(), await world.callbacks()
    world.save_journal(calls, callbacks)
    counts = leak_counts(calls, still, sessions, [i.acked for i in everyone if i.acked], callbacks)
    idle = idle_counts(present, still, at_leave)
    return {
        **asdict(counts),
        **asdict(idle),
        "intents": len(intents),
        "acked": sum(1 for i in intents if i.acked),
        "failed_or_refused": sum(1 for i in intents if not i.acked),
        "retried_into_failed": sum(1 for i in everyone if i.retried_into_failed),
        "refills": len(refills),
        "refills_acked": sum(1 for i in refills if i.acked),
        "ghost_sessions_before_cleanup": ghosts,
        "unowned_instances_before_cleanup": unowned,
        "running_when_users_left": len(present),
        "possible_leaks_when_users_left": sum(1 for s in at_leave if s["possible_leak"]),
        "possible_leak_sessions": sum(1 for s in sessions if s["possible_leak"]),
        "still_live_in_ledger": sum(1 for s in sessions if s["live"]),
        "end_answers": sorted(set(ended)),
        "settle_seconds": round(settled, 1),
        "idle_settle_seconds": round(idle_settled, 1),
        "instance_ids_when_users_left": sorted(present),
        "leaked_instance_ids": sorted(still),
    }


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
        # Steady means ACTIVE: their AgentInstanceCreated got through before the outage.
        for _ in range(50):  # bounded: 5 s
            states = {s["state"] for s in await world.list_sessions()}
            if states <= {"SESSION_STATE_ACTIVE"}:
                break
            await asyncio.sleep(0.1)
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
        callbacks = await world.callbacks()
        during = [c for c in callbacks if down_at <= c["t"] <= up_at]
        acked = {(c["instance_id"], c["sequence"]) for c in callbacks if c["acked"]}
        given_up = {(c["instance_id"], c["sequence"], c["event"]) for c in during if not c["acked"]}
        given_up = {g for g in given_up if (g[0], g[1]) not in acked}
        result = await verify(world, steady + flying, params)
    if not given_up:
        # The premise failed (e.g. the gateway restarted too soon): the numbers would prove nothing.
        raise RuntimeError("ZEGO gave up on no callback: the outage did not outlast its retries")
    return {
        name: {
            "outage_seconds": round(outage, 1),
            "zego_retry_window_seconds": round(ZEGO_RETRY_SECONDS * params.time_scale, 1),
            "callbacks_zego_gave_up_on": len(given_up),
            "callbacks_given_up_by_event": dict(
                sorted((e, sum(1 for g in given_up if g[2] == e)) for e in {g[2] for g in given_up})
            ),
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


# -- 4. resuming subscribers across SIGTERM and SIGKILL -------------------------------------------


@dataclass
class Subscriber:
    received: list[dict[str, Any]]
    cursor: int | None = None
    attempts: int = 0
    """Streams opened after the first (while the gateway is down, each retry is one)."""
    resumes: int = 0
    """Streams opened after a cursor that delivered something (a heartbeat at least)."""
    ends: list[str] | None = None
    ended_at: list[float] | None = None
    """Wall-clock times at which a stream ended (with any status)."""


async def _subscribe(world: World, sub: Subscriber) -> None:
    """WatchEvents from the oldest event; after any end, resume after the last cursor received."""
    stub = events_rpc.EventServiceStub(world.channel)
    sub.ends = []
    sub.ended_at = []
    while True:
        if sub.cursor is None:
            request = events_api.WatchEventsRequest(start=events_api.START_POSITION_OLDEST)
        else:
            request = events_api.WatchEventsRequest(
                start=events_api.START_POSITION_AFTER_CURSOR, after_cursor=sub.cursor
            )
            sub.attempts += 1
        resumed = sub.cursor is not None
        try:
            async for item in stub.WatchEvents(request):
                if resumed:
                    sub.resumes += 1
                    resumed = False
                kind = item.WhichOneof("item")
                events = (
                    [item.event] if kind == "event" else list(item.batch.events) if kind == "batch" else []
                )
                for e in events:
                    sub.received.append(
                        {"cursor": e.cursor, "instance_id": e.agent_instance_id, "sequence": e.sequence}
                    )
                    sub.cursor = e.cursor
            sub.ends.append("OK")
        except grpc.aio.AioRpcError as e:
            sub.ends.append(e.code().name)
        sub.ended_at.append(time.time())
        await asyncio.sleep(0.1)


def _slowest_end(subs: list[Subscriber], since: float) -> float | None:
    """The longest any subscriber's open stream lasted after ``since`` (None if none ended)."""
    delays = []
    for sub in subs:
        after = [t for t in sub.ended_at or [] if t >= since]
        if after:
            delays.append(min(after) - since)
    return round(max(delays), 2) if delays else None


async def _log(world: World) -> tuple[list[dict[str, Any]], int]:
    stub = events_rpc.EventServiceStub(world.channel)
    rows: list[dict[str, Any]] = []
    after, head = 0, 0
    for _ in range(10_000):  # bounded: 10,000 pages of 1,000
        page = await stub.ListEvents(
            events_api.ListEventsRequest(after_cursor=after, page_size=1000), timeout=10
        )
        head = page.head_cursor
        rows.extend(
            {"cursor": e.cursor, "instance_id": e.agent_instance_id, "sequence": e.sequence}
            for e in page.events
        )
        if not page.events:
            break
        after = page.next_cursor
    return rows, head


async def _talk(world: World, instances: list[str], stop: asyncio.Event) -> int:
    """User turns on every instance (the emulator's admin API) until ``stop``; returns how many.

    Each turn makes ZEGO send several callbacks (speech, ASR, status, LLM); one per instance a
    second (a turn lasts ~1.5 emulated seconds) keeps ZEGO's per-instance callback lanes, which
    deliver one callback at a time, from building a backlog.
    """
    turns = 0
    while not stop.is_set():
        for instance in instances:
            response = await world.admin.post(f"/_emulator/instances/{instance}/turns", json={"text": "hi"})
            turns += response.status_code == 200
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    return turns


async def resume_across_restarts(
    procs: Processes, root: Path, params: Params, gateway_env: dict[str, str]
) -> dict[str, Any]:
    """Conversations run; subscribers resume across a SIGTERM restart and a SIGKILL restart; then
    every callback the gateway acknowledged must have reached each of them exactly once."""
    name = "resume"
    async with open_world(
        name, procs, root, cap=params.cap, time_scale=params.time_scale, gateway_env=gateway_env
    ) as world:
        await world.start_gateway()
        await world.register_agent()
        intents = [Intent(n, name) for n in range(params.event_sessions)]
        await asyncio.gather(*(world.create(i, deadline_seconds=10, events=True) for i in intents))
        instances = [i.acked.instance_id for i in intents if i.acked]
        subs = [Subscriber([]) for _ in range(params.subscribers)]
        tasks = [asyncio.create_task(_subscribe(world, s)) for s in subs]
        quiet = asyncio.Event()
        talk = asyncio.create_task(_talk(world, instances, quiet))
        exits: dict[str, int | None] = {}
        caught_up = False
        turns = 0
        sigterm_at = 0.0
        try:
            await asyncio.sleep(params.phase_seconds)
            sigterm_at = time.time()
            exits["sigterm"] = await world.stop_gateway(signal.SIGTERM)
            await world.start_gateway()
            await asyncio.sleep(params.phase_seconds)
            exits["sigkill"] = await world.stop_gateway(signal.SIGKILL)
            await asyncio.sleep(params.down_seconds)
            await world.start_gateway()
            await asyncio.sleep(params.phase_seconds)
            quiet.set()
            turns = await talk
            # The last turns finish and ZEGO delivers what it queued, before the sessions end
            # (what arrives after a session's end is kept hidden, by design, and not delivered).
            for _ in range(100):  # bounded: 20 s
                await asyncio.sleep(0.2)
                if not (await world.emulator_json("GET", "/_emulator/callbacks"))["pending"]:
                    break
            for intent in intents:
                if intent.acked:
                    await world.end(intent.acked.session_id, deadline_seconds=15)
            # Caught up: ZEGO has nothing left to send and every subscriber is at the log's head.
            for _ in range(100):  # bounded: 20 s
                pending = (await world.emulator_json("GET", "/_emulator/callbacks"))["pending"]
                _, head = await _log(world)
                if not pending and all(s.cursor == head for s in subs):
                    caught_up = True
                    break
                await asyncio.sleep(0.2)
        finally:
            quiet.set()
            for task in [*tasks, talk]:
                task.cancel()
            await asyncio.gather(*tasks, talk, return_exceptions=True)
        logged, _ = await _log(world)
        delivery = await world.emulator_json("GET", "/_emulator/callbacks")
        callbacks = await world.callbacks()
        sessions = await world.list_sessions()
        ended_at = {s["instance_id"]: s["end_time"] for s in sessions if s["instance_id"] and s["end_time"]}
        counts = event_counts(
            callbacks, logged, [s.received for s in subs], sum(s.resumes for s in subs), ended_at
        )
        # For the report: acknowledged callbacks the log lacks, with when ZEGO got the 2xx.
        in_log = {(e["instance_id"], e["sequence"]) for e in logged}
        missing = sorted(
            {
                (
                    c["event"],
                    c["instance_id"],
                    c["sequence"],
                    round(c["t"] - ended_at.get(c["instance_id"], 0), 3),
                )
                for c in callbacks
                if c["acked"] and (c["instance_id"], c["sequence"]) not in in_log
            },
            key=lambda m: m[3],
        )
    return {
        name: {
            **asdict(counts),
            "caught_up": caught_up,
            "turns": turns,
            "gateway_exit_codes": exits,
            "stream_ends": sorted({end for s in subs for end in (s.ends or [])}),
            # How long open streams took to end after SIGTERM (the shutdown grace, or at once).
            "sigterm_to_stream_end_seconds": _slowest_end(subs, sigterm_at),
            "sessions": len(instances),
            "reconnect_attempts": sum(s.attempts for s in subs),
            "zego_delivery": {k: delivery[k] for k in ("generated", "sent", "dropped", "retried")},
            "zego_drops": delivery["recent_drops"][:20],
            "unlisted_seconds_after_end": [list(m) for m in missing[:20]],
        }
    }


SCENARIOS = {
    1: ("kill -9 during concurrent creates", kill_during_creates),
    2: ("outage longer than ZEGO's callback retries", long_outage),
    3: ("create/end cycles under upstream faults", fault_cycles),
    4: ("resuming subscribers across SIGTERM and SIGKILL", resume_across_restarts),
}
