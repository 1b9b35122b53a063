"""Chaos scenario 4: subscribers resume across a SIGTERM restart and a SIGKILL restart.

Conversations run on a few sessions while subscribers watch the event stream and resume after the
last cursor they received whenever it ends. Afterwards every callback the gateway acknowledged must
have reached each subscriber exactly once (``chaos.measure.event_counts``).
"""

from __future__ import annotations

import asyncio
import contextlib
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
from chaos.measure import event_counts
from chaos.params import Params

__all__ = ["Subscriber", "resume_across_restarts"]

_POLLS = 100
"""Bounded waits: 100 polls 0.2 s apart (20 s)."""


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


def _request(sub: Subscriber) -> events_api.WatchEventsRequest:
    """From the oldest event, or (counted as an attempt) after the last cursor received."""
    if sub.cursor is None:
        return events_api.WatchEventsRequest(start=events_api.START_POSITION_OLDEST)
    sub.attempts += 1
    return events_api.WatchEventsRequest(
        start=events_api.START_POSITION_AFTER_CURSOR, after_cursor=sub.cursor
    )


def _events(item: Any) -> list[Any]:
    kind = item.WhichOneof("item")
    return [item.event] if kind == "event" else list(item.batch.events) if kind == "batch" else []


async def _subscribe(world: World, sub: Subscriber) -> None:
    """WatchEvents from the oldest event; after any end, resume after the last cursor received."""
    stub = events_rpc.EventServiceStub(world.channel)
    sub.ends = []
    sub.ended_at = []
    while True:
        request = _request(sub)
        resumed = sub.cursor is not None
        try:
            async for item in stub.WatchEvents(request):
                if resumed:
                    sub.resumes += 1
                    resumed = False
                for e in _events(item):
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
    return await event_log(events_rpc.EventServiceStub(world.channel))


async def event_log(stub: events_rpc.EventServiceStub) -> tuple[list[dict[str, Any]], int]:
    """The whole event log as ``stub``'s gateway lists it, and its head cursor."""
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


async def _restart_twice(world: World, params: Params, exits: dict[str, int | None]) -> float:
    """A phase, SIGTERM and restart, a phase, SIGKILL and restart after ``down_seconds``, a phase.
    Returns when the SIGTERM was sent."""
    await asyncio.sleep(params.phase_seconds)
    sigterm_at = time.time()
    exits["sigterm"] = await world.stop_gateway(signal.SIGTERM)
    await world.start_gateway()
    await asyncio.sleep(params.phase_seconds)
    exits["sigkill"] = await world.stop_gateway(signal.SIGKILL)
    await asyncio.sleep(params.down_seconds)
    await world.start_gateway()
    await asyncio.sleep(params.phase_seconds)
    return sigterm_at


async def _zego_pending(world: World) -> int:
    return int((await world.emulator_json("GET", "/_emulator/callbacks"))["pending"])


async def _drain_then_end(world: World, intents: list[Intent]) -> None:
    """The last turns finish and ZEGO delivers what it queued, before the sessions end (what arrives
    after a session's end is kept hidden, by design, and not delivered)."""
    for _ in range(_POLLS):
        await asyncio.sleep(0.2)
        if not await _zego_pending(world):
            break
    for intent in intents:
        if intent.acked:
            await world.end(intent.acked.session_id, deadline_seconds=15)


async def _caught_up(world: World, subs: list[Subscriber]) -> bool:
    """Whether, within the bounded wait, ZEGO has nothing left to send and every subscriber is at
    the log's head."""
    for _ in range(_POLLS):
        pending = await _zego_pending(world)
        _, head = await _log(world)
        if not pending and all(s.cursor == head for s in subs):
            return True
        await asyncio.sleep(0.2)
    return False


def _unlisted(
    callbacks: list[dict[str, Any]], logged: list[dict[str, Any]], ended_at: dict[str, float]
) -> list[tuple[Any, ...]]:
    """Acknowledged callbacks the log lacks, with when ZEGO got the 2xx after the session's end."""
    in_log = {(e["instance_id"], e["sequence"]) for e in logged}
    missing = {
        (c["event"], c["instance_id"], c["sequence"], round(c["t"] - ended_at.get(c["instance_id"], 0), 3))
        for c in callbacks
        if c["acked"] and (c["instance_id"], c["sequence"]) not in in_log
    }
    return sorted(missing, key=lambda m: m[3])


async def _measure(world: World, subs: list[Subscriber]) -> dict[str, Any]:
    """Every acknowledged callback against the log and each subscriber's stream."""
    logged, _ = await _log(world)
    delivery = await world.emulator_json("GET", "/_emulator/callbacks")
    callbacks = await world.callbacks()
    sessions = await world.list_sessions()
    ended_at = {s["instance_id"]: s["end_time"] for s in sessions if s["instance_id"] and s["end_time"]}
    counts = event_counts(
        callbacks, logged, [s.received for s in subs], sum(s.resumes for s in subs), ended_at
    )
    return {
        **asdict(counts),
        "stream_ends": sorted({end for s in subs for end in (s.ends or [])}),
        "reconnect_attempts": sum(s.attempts for s in subs),
        "zego_delivery": {k: delivery[k] for k in ("generated", "sent", "dropped", "retried")},
        "zego_drops": delivery["recent_drops"][:20],
        "unlisted_seconds_after_end": [list(m) for m in _unlisted(callbacks, logged, ended_at)[:20]],
    }


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
        caught_up, turns, sigterm_at = False, 0, 0.0
        try:
            sigterm_at = await _restart_twice(world, params, exits)
            quiet.set()
            turns = await talk
            await _drain_then_end(world, intents)
            caught_up = await _caught_up(world, subs)
        finally:
            quiet.set()
            for task in [*tasks, talk]:
                task.cancel()
            await asyncio.gather(*tasks, talk, return_exceptions=True)
        measured = await _measure(world, subs)
    return {
        name: {
            **measured,
            "caught_up": caught_up,
            "turns": turns,
            "gateway_exit_codes": exits,
            # How long open streams took to end after SIGTERM (the shutdown grace, or at once).
            "sigterm_to_stream_end_seconds": _slowest_end(subs, sigterm_at),
            "sessions": len(instances),
        }
    }
