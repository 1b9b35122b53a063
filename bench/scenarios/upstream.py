"""Scenario 2, upstream overhead: CreateSession + EndSession through agentgw against the same two
ZEGO calls (CreateAgentInstance + DeleteAgentInstance) made directly with ``ZegoClient`` at the
emulator, at the same concurrency, a fixed number of pairs each.

Targets: agentgw adds <= 2 ms at p50 and <= 5 ms at p99 to a create+end pair.
"""

from __future__ import annotations

import time
from typing import Any

from bench.processes import cpu_seconds
from bench.report import Row
from bench.scenarios.common import Context, baseline, gateway, profiled
from bench.stats import summary
from bench.workers import WorkerPool

NAME = "2 upstream"


async def _measure(ctx: Context, mode: str, target: str, pid: int | None) -> dict[str, Any]:
    p = ctx.params
    spec = {
        "mode": mode,
        "target": target,
        "emulator_url": ctx.emulator_url,
        "concurrency": p.upstream_concurrency,
        "pairs": p.upstream_pairs,
        "seconds": 60.0,
        "warmup": 20,
        "prefix": f"{mode}{int(time.time() * 1000) % 10**9}",
        "max_seconds": 180,
    }
    async with await WorkerPool.start(ctx.procs, "upstream", [spec]) as pool:
        await pool.ready()
        # CPU per pair of whoever makes the two ZEGO calls (agentgw, or the direct client), and of
        # the emulator answering them (warm-up pairs ran before "ready", so they are not counted).
        caller = pid if pid is not None else pool.workers[0].proc.pid
        watched = {"caller": caller, "emulator": ctx.emulator_pid}
        before = {k: cpu_seconds(v) for k, v in watched.items() if v is not None}
        if pid is None:
            pool.broadcast("go")
            (result,) = await pool.results(120)
        else:
            async with profiled(ctx, pid, f"upstream-{mode}"):
                pool.broadcast("go")
                (result,) = await pool.results(120)
        total_pairs = max(1, len(result["create_ms"]) + sum(result["errors"].values()))
        cpu_us = {
            k: 1e6 * (cpu_seconds(v) - before[k]) / total_pairs for k, v in watched.items() if v is not None
        }
    pairs = [c + e for c, e in zip(result["create_ms"], result["end_ms"], strict=True)]
    return {
        "pair": summary(pairs),
        "create": summary(result["create_ms"]),
        "end": summary(result["end_ms"]),
        "throughput": len(pairs) / result["elapsed"],
        "cpu_us": cpu_us,
        "errors": result["errors"],
    }


async def _grpc_floor(ctx: Context) -> dict[str, Any]:
    """What any gRPC gateway in Python adds here: the bare server's no-op unary at the same
    concurrency (a create+end pair is two such round trips on top of the two ZEGO calls)."""
    p = ctx.params
    spec = {
        "target": "",
        "kind": "bare",
        "session_id": "",
        "concurrency": p.upstream_concurrency,
        "seconds": 3.0,
        "max_calls": 2 * p.upstream_pairs,
        "warmup": 200,
        "max_seconds": 120,
    }
    async with baseline(ctx) as bl:
        spec["target"] = bl.grpc_target
        async with await WorkerPool.start(ctx.procs, "unary", [spec]) as pool:
            await pool.ready()
            pool.broadcast("go")
            (result,) = await pool.results(60)
    return summary(result["latencies_ms"])


async def run(ctx: Context) -> None:
    async with gateway(ctx, "upstream") as gw:
        ours = await _measure(ctx, "agentgw", gw.grpc_target, gw.pid)
        direct = await _measure(ctx, "direct", "", None)
    floor = await _grpc_floor(ctx)
    ctx.report.details["upstream"] = {"agentgw": ours, "direct": direct, "bare_noop_unary": floor}
    clean = not ours["errors"] and not direct["errors"]
    if not clean:
        print(f"  errors: agentgw {ours['errors']} direct {direct['errors']}")
    _targets(ctx, ours, direct, clean)
    _information(ctx, ours, direct, floor)


def _targets(ctx: Context, ours: dict[str, Any], direct: dict[str, Any], clean: bool) -> None:
    """What agentgw adds to a create+end pair over the direct client, against its targets."""
    added_p50 = ours["pair"]["p50"] - direct["pair"]["p50"]
    added_p99 = ours["pair"]["p99"] - direct["pair"]["p99"]
    add = ctx.report.add
    add(
        Row(
            NAME,
            "create+end p50 (base: direct)",
            ours["pair"]["p50"],
            direct["pair"]["p50"],
            "ms",
            f"added <= 2 ms ({added_p50:+.2f})",
            clean and added_p50 <= 2.0,
        )
    )
    add(
        Row(
            NAME,
            "create+end p99 (base: direct)",
            ours["pair"]["p99"],
            direct["pair"]["p99"],
            "ms",
            f"added <= 5 ms ({added_p99:+.2f})",
            clean and added_p99 <= 5.0,
        )
    )


def _information(ctx: Context, ours: dict[str, Any], direct: dict[str, Any], floor: dict[str, Any]) -> None:
    """Rows without a target: the parts of a pair, throughput, the gRPC floor, where the CPU goes."""
    add = ctx.report.add
    add(Row(NAME, "create p50", ours["create"]["p50"], direct["create"]["p50"], "ms"))
    add(Row(NAME, "end p50", ours["end"]["p50"], direct["end"]["p50"], "ms"))
    add(Row(NAME, "pairs/s at c=10", ours["throughput"], direct["throughput"], "/s"))
    # The floor: direct + two no-op gRPC round trips at the same concurrency.
    add(
        Row(
            NAME,
            "floor: direct + 2 bare no-op gRPC p50",
            direct["pair"]["p50"] + 2 * floor["p50"],
            direct["pair"]["p50"],
            "ms",
        )
    )
    # Where the time goes: agentgw's CPU per pair (gRPC + ledger + the same two signed ZEGO calls)
    # beside the direct client's (just the two calls), and the emulator's under each.
    add(
        Row(
            NAME,
            "CPU per pair: agentgw / direct client",
            ours["cpu_us"]["caller"],
            direct["cpu_us"]["caller"],
            "us",
        )
    )
    if "emulator" in ours["cpu_us"]:
        add(
            Row(
                NAME, "CPU per pair: emulator", ours["cpu_us"]["emulator"], direct["cpu_us"]["emulator"], "us"
            )
        )
