"""Scenario 5, stream capacity: 5,000 concurrent idle WatchEvents streams (5 client processes x
20 channels, opened at a steady 1,250/s), against as many idle bare streams.

agentgw runs with a 2 s heartbeat (AGENTGW_HEARTBEAT_SECONDS); the baseline sends its own
heartbeat at the same interval. Resident memory (VmRSS) is read before the streams open and at
the end of the observation window; every stream's largest gap between heartbeats (window start
and end included) must stay within interval + slack.

Targets: RSS growth <= 250 MB; every stream's heartbeats on time (largest gap <= 2 s + 1 s).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from bench.processes import rss_kib
from bench.report import Row
from bench.scenarios.common import Context, baseline, gateway, profiled, split
from bench.stats import summary
from bench.workers import WorkerPool

NAME = "5 capacity"
SLACK_SECONDS = 1.0
STREAMS_PER_CHANNEL = 50
OPEN_RATE_PER_PROCESS = 250.0
"""Streams/s each client process opens: a burst of 5,000 would overrun grpc core's pending-call
limit (3,000) and be CANCELLED, on the bare server as on agentgw (reported separately)."""


async def _measure(ctx: Context, kind: str, target: str, pid: int) -> dict[str, Any]:
    p = ctx.params
    processes = max(1, math.ceil(p.capacity_streams / 1000))
    specs = [
        {
            "target": target,
            "kind": kind,
            "streams": share,
            "channels": max(1, math.ceil(share / STREAMS_PER_CHANNEL)),
            "open_rate": OPEN_RATE_PER_PROCESS,
            "ready_timeout": 90,
            "max_seconds": 300,
        }
        for share in split(p.capacity_streams, processes)
    ]
    rss_before = rss_kib(pid)
    async with await WorkerPool.start(ctx.procs, "watch", specs) as pool:
        readies = await pool.ready(timeout=150)
        opened = sum(r["ready"] for r in readies)
        async with profiled(ctx, pid, f"capacity-{kind}"):
            pool.broadcast("go")
            await asyncio.sleep(p.capacity_window_seconds)
            rss_after = rss_kib(pid)
            pool.broadcast("stop")
            results = await pool.results(120)
    gaps = [g for r in results for g in r["hb_max_gap"]]
    heartbeats = [c for r in results for c in r["hb_counts"]]
    errors: dict[str, int] = {}
    for r in results:
        for code, n in r["errors"].items():
            errors[code] = errors.get(code, 0) + n
    limit = p.heartbeat_seconds + SLACK_SECONDS
    return {
        "opened": opened,
        "rss_before_mib": rss_before / 1024,
        "rss_after_mib": rss_after / 1024,
        "rss_growth_mib": (rss_after - rss_before) / 1024,
        "gap": summary(gaps),
        "late_streams": sum(1 for g in gaps if g > limit),
        "min_heartbeats": min(heartbeats) if heartbeats else 0,
        "errors": errors,
    }


async def run(ctx: Context) -> None:
    p = ctx.params
    hb = str(p.heartbeat_seconds)
    async with gateway(ctx, "capacity", AGENTGW_HEARTBEAT_SECONDS=hb) as gw:
        ours = await _measure(ctx, "agentgw", gw.grpc_target, gw.pid)
    async with baseline(ctx, heartbeat_seconds=p.heartbeat_seconds) as bl:
        bare = await _measure(ctx, "bare", bl.grpc_target, bl.pid)
    ctx.report.details["capacity"] = {"agentgw": ours, "baseline": bare}
    all_open = ours["opened"] == p.capacity_streams and not ours["errors"]
    limit = p.heartbeat_seconds + SLACK_SECONDS
    n = p.capacity_streams
    add = ctx.report.add
    add(
        Row(
            NAME,
            f"RSS growth, {n} idle streams",
            ours["rss_growth_mib"],
            bare["rss_growth_mib"],
            "MiB",
            "<= 250 MB",
            all_open and ours["rss_growth_mib"] * 1.048576 <= 250,
        )
    )
    add(
        Row(
            NAME,
            "largest heartbeat gap",
            ours["gap"]["max"],
            bare["gap"]["max"],
            "s",
            f"<= {limit:g} s",
            all_open and ours["gap"]["max"] <= limit,
        )
    )
    add(Row(NAME, "heartbeat gap p99", ours["gap"]["p99"], bare["gap"]["p99"], "s"))
    add(
        Row(
            NAME,
            "streams with a late heartbeat",
            ours["late_streams"],
            bare["late_streams"],
            "streams",
            "0",
            all_open and ours["late_streams"] == 0,
        )
    )
    print(
        f"  agentgw: {ours['opened']}/{n} streams, RSS {ours['rss_before_mib']:.0f} -> "
        f"{ours['rss_after_mib']:.0f} MiB, min heartbeats per stream {ours['min_heartbeats']}, "
        f"errors {ours['errors']}"
    )
