"""Scenario 1, unary overhead: GetSession (a ledger read of an existing session) against a no-op
unary method on raw bytes, closed loop, at each concurrency for a fixed time.

Targets: throughput >= 0.6x the baseline's, p50 <= 1.5x the baseline's.
"""

from __future__ import annotations

from typing import Any

from bench.processes import cpu_seconds
from bench.report import Row
from bench.scenarios.common import Context, baseline, create_session, gateway, profiled, split
from bench.stats import summary
from bench.workers import WorkerPool

NAME = "1 unary"


async def _measure(
    ctx: Context, kind: str, target: str, session_id: str, concurrency: int, pid: int
) -> dict[str, Any]:
    p = ctx.params
    shares = split(concurrency, 1 if concurrency == 1 else 2)
    specs = [
        {
            "target": target,
            "kind": kind,
            "session_id": session_id,
            "concurrency": share,
            "seconds": p.unary_seconds,
            "max_calls": p.unary_max_calls // len(shares),
            "warmup": 200,
            "max_seconds": p.unary_seconds + 120,
        }
        for share in shares
    ]
    async with await WorkerPool.start(ctx.procs, "unary", specs) as pool:
        await pool.ready()
        async with profiled(ctx, pid, f"unary-c{concurrency}-{kind}"):
            cpu = cpu_seconds(pid)
            pool.broadcast("go")
            results = await pool.results(p.unary_seconds + 60)
            cpu = cpu_seconds(pid) - cpu
    latencies = [x for r in results for x in r["latencies_ms"]]
    errors: dict[str, int] = {}
    for r in results:
        for code, n in r["errors"].items():
            errors[code] = errors.get(code, 0) + n
    elapsed = max(r["elapsed"] for r in results)
    return {
        **summary(latencies),
        "throughput": len(latencies) / elapsed,
        "server_cpu_us_per_call": 1e6 * cpu / max(1, len(latencies)),
        "server_cpu_utilization": cpu / elapsed,
        "errors": errors,
    }


async def run(ctx: Context) -> None:
    details: dict[str, Any] = {}
    async with gateway(ctx, "unary") as gw, baseline(ctx) as bl:
        session = await create_session(gw)
        for concurrency in ctx.params.unary_concurrency:
            ours = await _measure(ctx, "agentgw", gw.grpc_target, session.session_id, concurrency, gw.pid)
            bare = await _measure(ctx, "bare", bl.grpc_target, session.session_id, concurrency, bl.pid)
            details[f"c{concurrency}"] = {"agentgw": ours, "baseline": bare}
            clean = not ours["errors"]
            thr = ours["throughput"] / bare["throughput"]
            p50 = ours["p50"] / bare["p50"]
            add = ctx.report.add
            add(
                Row(
                    NAME,
                    f"c={concurrency} throughput",
                    ours["throughput"],
                    bare["throughput"],
                    "/s",
                    ">= 0.6x baseline",
                    clean and thr >= 0.6,
                )
            )
            add(
                Row(
                    NAME,
                    f"c={concurrency} p50",
                    ours["p50"],
                    bare["p50"],
                    "ms",
                    "<= 1.5x baseline",
                    clean and p50 <= 1.5,
                )
            )
            add(Row(NAME, f"c={concurrency} p99", ours["p99"], bare["p99"], "ms"))
            add(
                Row(
                    NAME,
                    f"c={concurrency} server CPU per call",
                    ours["server_cpu_us_per_call"],
                    bare["server_cpu_us_per_call"],
                    "us",
                )
            )
            if ours["errors"]:
                print(f"  agentgw errors at c={concurrency}: {ours['errors']}")
    ctx.report.details["unary"] = details
