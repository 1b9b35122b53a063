"""Scenario 3, event fan-out: from the callback POST's send time until each of N WatchEvents
subscribers has the event, against the bare fan-out (the same body POSTed to a bare Starlette
endpoint that pushes it to N raw-bytes streams).

The send time travels inside the event (the LLMResult Text); receivers subtract it from their
``time.time()`` (same machine, same clock). Subscribers are spread over processes and channels
(N = 1000: 4 processes x 10 channels). Events are paced, one at a time.

Targets: p99 <= 20 ms at N = 100, and p99 <= 1.5x the baseline's at every N.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import httpx

from bench.clients import event_text
from bench.processes import cpu_seconds
from bench.report import Row
from bench.scenarios.common import (
    Context,
    LiveSession,
    baseline,
    collect,
    create_session,
    gateway,
    post,
    post_until_ready,
    profiled,
    split,
)
from bench.stats import summary
from bench.workers import WorkerPool

NAME = "3 fan-out"


def _layout(n: int) -> list[tuple[int, int]]:
    """(streams, channels) per worker process for N subscribers."""
    processes = 1 if n <= 10 else 2 if n <= 100 else 4
    return [(share, max(1, math.ceil(share / 25))) for share in split(n, processes)]


def _interval(n: int) -> float:
    """Seconds between events: long enough for one event to reach everyone before the next."""
    return 0.02 if n <= 1 else 0.05 if n <= 10 else 0.1 if n <= 100 else 0.3


async def _measure(
    ctx: Context, kind: str, target: str, http_url: str, session: LiveSession, n: int, pid: int
) -> dict[str, Any]:
    events = dict(zip(ctx.params.fanout_ns, ctx.params.fanout_events, strict=True))[n]
    specs = [
        {"target": target, "kind": kind, "streams": streams, "channels": channels, "max_seconds": 300}
        for streams, channels in _layout(n)
    ]
    async with (
        await WorkerPool.start(ctx.procs, "watch", specs) as pool,
        httpx.AsyncClient(base_url=http_url, timeout=30) as client,
    ):
        await post_until_ready(pool, client, kind, session)
        pool.broadcast("expect", n=events)
        await asyncio.sleep(0.5)  # let the warm-up events drain
        async with profiled(ctx, pid, f"fanout-n{n}-{kind}"):
            cpu = cpu_seconds(pid)
            for number in range(events):
                started = time.monotonic()
                await post(client, kind, session.body(event_text("fan", number, time.time())))
                await asyncio.sleep(max(0.0, _interval(n) - (time.monotonic() - started)))
            results = await collect(pool, drain=20.0)
            cpu = cpu_seconds(pid) - cpu
    latencies = [x for r in results for x in r["latencies_ms"]]
    received = sum(sum(r["counts"]) for r in results)
    errors: dict[str, int] = {}
    for r in results:
        for code, count in r["errors"].items():
            errors[code] = errors.get(code, 0) + count
    return {
        **summary(latencies),
        "received": received,
        "expected": n * events,
        "server_cpu_us_per_delivery": 1e6 * cpu / max(1, received),
        "errors": errors,
    }


def _report(ctx: Context, n: int, ours: dict[str, Any], bare: dict[str, Any]) -> None:
    """The rows of one N: p99 against its target, p50, max, CPU per delivery, and any shortfall."""
    complete = ours["received"] == ours["expected"] and not ours["errors"]
    ratio_ok = ours["p99"] <= 1.5 * bare["p99"]
    add = ctx.report.add
    if n == 100:
        target, met = "<= 20 ms and <= 1.5x", complete and ratio_ok and ours["p99"] <= 20.0
    else:
        target, met = "<= 1.5x baseline", complete and ratio_ok
    add(Row(NAME, f"N={n} p99", ours["p99"], bare["p99"], "ms", target, met))
    add(Row(NAME, f"N={n} p50", ours["p50"], bare["p50"], "ms"))
    add(Row(NAME, f"N={n} max", ours["max"], bare["max"], "ms"))
    if n >= 100:  # CPU time is read in 10 ms ticks: meaningless for a few deliveries
        add(
            Row(
                NAME,
                f"N={n} server CPU per delivery",
                ours["server_cpu_us_per_delivery"],
                bare["server_cpu_us_per_delivery"],
                "us",
            )
        )
    if not complete:
        add(
            Row(
                NAME,
                f"N={n} delivered",
                ours["received"],
                bare["received"],
                "events",
                f"all {ours['expected']}",
                False,
            )
        )
        print(f"  agentgw N={n}: {ours['received']}/{ours['expected']} errors {ours['errors']}")


async def run(ctx: Context) -> None:
    details: dict[str, Any] = {}
    async with gateway(ctx, "fanout") as gw, baseline(ctx) as bl:
        session = await create_session(gw)
        for n in ctx.params.fanout_ns:
            ours = await _measure(ctx, "agentgw", gw.grpc_target, gw.http_url, session, n, gw.pid)
            bare = await _measure(ctx, "bare", bl.grpc_target, bl.http_url, session, n, bl.pid)
            details[f"n{n}"] = {"agentgw": ours, "baseline": bare}
            _report(ctx, n, ours, bare)
    ctx.report.details["fanout"] = details
