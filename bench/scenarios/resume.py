"""Scenario 6, resume: one subscriber replays 100,000 logged events (WatchEvents from
START_POSITION_OLDEST), counted until the last, against the bare server streaming the same
serialized message 100,000 times from memory (the client parses every message of both).

Not like for like: agentgw is asked for ``max_batch_size=BATCH`` events per stream message (the
API's opt-in batching), while the bare server sends one message per event, as a bare gRPC stream
does; the baseline's cost is almost all per-message gRPC work, which batching amortizes. The
target row and the CPU row are agentgw batched; an info row gives agentgw unbatched
(``max_batch_size`` 0) beside the same baseline.

The ledger is filled before agentgw starts: the first event through
``SqliteLedger.append_event``, the rest with the very INSERT and parameters ``append_event``
uses, in one ``executemany`` (a per-event transaction would take ~30 s of the run's budget).

Target: >= 20,000 events/s.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import grpc

from agentgw_client.gen.agentgw.v1 import event_service_pb2 as events_api
from agentgw_client.gen.agentgw.v1 import event_service_pb2_grpc as events_rpc
from bench.clients import channel_options, event_text
from bench.config import AGENT_ID, APP_ID
from bench.processes import cpu_seconds
from bench.report import Row
from bench.scenarios.common import Context, baseline, gateway, profiled
from bench.workers import WorkerPool
from service.domain.events import EventType, NewEvent
from service.store import _events
from service.store.sqlite import SqliteLedger

NAME = "6 resume"
BATCH = 250
"""max_batch_size agentgw is asked for."""


def _event(number: int) -> NewEvent:
    now = time.time()
    text = event_text("resume", number, now)
    raw = json.dumps(
        {
            "AppId": APP_ID,
            "Event": "LLMResult",
            "Nonce": "5f0c2b1a9d8e7f60",
            "Timestamp": int(now * 1000),
            "Signature": "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c",
            "AgentInstanceId": "1921825797275873300",
            "AgentUserId": "ag_bench_user",
            "AgentId": AGENT_ID,
            "RoomId": "room_bench_user",
            "Sequence": 10**12 + number,
            "Data": {"Text": text, "Round": 1},
        },
        separators=(",", ":"),
    )
    return NewEvent(
        event_type=EventType.LLM_RESULT,
        session_id="bench-resume-session",
        instance_id="1921825797275873300",
        agent_id=AGENT_ID,
        room_id="room_bench_user",
        event_time_ms=int(now * 1000),
        received_at=now,
        sequence=10**12 + number,
        round=1,
        data={"text": text},
        raw=raw,
        labels={"team": "bench"},
        agent_user_id="ag_bench_user",
    )


async def prefill(db_path: Path, count: int) -> float:
    """Fill a fresh ledger with ``count`` events; returns the seconds it took."""
    started = time.perf_counter()
    ledger = SqliteLedger(db_path)
    await ledger.open()
    try:
        await ledger.append_event(_event(0))
    finally:
        await ledger.close()
    with sqlite3.connect(db_path) as conn:
        conn.executemany(_events._INSERT, (_events._params(_event(i)) for i in range(1, count)))
    return time.perf_counter() - started


async def _sample_message(target: str) -> bytes:
    """One replayed message exactly as agentgw sends it, for the baseline to repeat."""
    async with grpc.aio.insecure_channel(target, options=channel_options()) as channel:
        listed = await events_rpc.EventServiceStub(channel).ListEvents(
            events_api.ListEventsRequest(page_size=1), timeout=10
        )
    return events_api.WatchEventsResponse(event=listed.events[0]).SerializeToString()


async def _measure(
    ctx: Context, kind: str, target: str, pid: int, payload: bytes, max_batch_size: int = 0
) -> dict[str, Any]:
    count = ctx.params.resume_events
    spec = {
        "target": target,
        "kind": kind,
        "count": count,
        "payload_hex": payload.hex(),
        "max_batch_size": max_batch_size,
        "max_seconds": 200,
    }
    async with await WorkerPool.start(ctx.procs, "replay", [spec]) as pool:
        await pool.ready()
        async with profiled(ctx, pid, f"resume-{kind}-batch{max_batch_size}"):
            cpu = cpu_seconds(pid)
            pool.broadcast("go")
            (result,) = await pool.results(180)
            cpu = cpu_seconds(pid) - cpu
    return {
        **result,
        "rate": result["received"] / result["elapsed"],
        "server_cpu_us_per_event": 1e6 * cpu / max(1, result["received"]),
    }


async def run(ctx: Context) -> None:
    count = ctx.params.resume_events
    db_dir = ctx.workdir / "db-resume"
    db_dir.mkdir(exist_ok=True)
    seconds = await prefill(db_dir / "ledger.db", count)
    print(f"  prefilled {count} events in {seconds:.1f} s")
    async with gateway(ctx, "resume") as gw:
        payload = await _sample_message(gw.grpc_target)
        ours = await _measure(ctx, "agentgw", gw.grpc_target, gw.pid, payload, BATCH)
        unbatched = await _measure(ctx, "agentgw", gw.grpc_target, gw.pid, payload, 0)
    async with baseline(ctx) as bl:
        bare = await _measure(ctx, "bare", bl.grpc_target, bl.pid, payload)
    ctx.report.details["resume"] = {
        "agentgw": ours,
        "agentgw_unbatched": unbatched,
        "baseline": bare,
        "max_batch_size": BATCH,
        "message_bytes": len(payload),
    }
    complete = ours["received"] == count
    ctx.report.add(
        Row(
            NAME,
            f"server CPU per replayed event (batches of {BATCH})",
            ours["server_cpu_us_per_event"],
            bare["server_cpu_us_per_event"],
            "us",
        )
    )
    ctx.report.add(
        Row(
            NAME,
            f"replay {count:,} events, unbatched",
            unbatched["rate"],
            bare["rate"],
            "/s",
        )
    )
    ctx.report.add(
        Row(
            NAME,
            f"replay {count:,} events, batches of {BATCH}",
            ours["rate"],
            bare["rate"],
            "/s",
            ">= 20,000/s",
            complete and ours["rate"] >= 20_000,
        )
    )
