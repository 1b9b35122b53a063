"""Scenario 7, fleet: two agentgw replicas on one PostgreSQL against one process on SQLite.

* **Cross-replica fan-out**: a callback POSTed to replica A reaches N = 100 WatchEvents
  subscribers on replica B (A stores it in the shared log; B's tailer, woken by LISTEN/NOTIFY,
  feeds its subscribers), measured exactly as scenario 3 measures one process (``fanout._measure``:
  the send time travels in the event). Baseline: the same N = 100 on one agentgw on SQLite.
* **Durable ingest**: signed callbacks flat out into replica A with 10 subscribers on replica B,
  measured as scenario 4 (``ingest._measure``): every accepted event must reach every
  subscriber. Baseline: one agentgw on SQLite.

The fleet comes from ``tools.fleet`` (its PostgreSQL from ``tools.pgcluster``) and uses the run's
emulator. Targets: cross-replica p99 <= 2x the single-process p99; ingest >= 0.8x SQLite's rate,
0 lost.
"""

from __future__ import annotations

from typing import Any

from bench.processes import Gateway
from bench.report import Row
from bench.scenarios import fanout, ingest
from bench.scenarios.common import Context, LiveSession, create_session, gateway
from tools.fleet import Fleet, open_fleet

NAME = "7 fleet"
N = 100

BENCH_ENV = {
    # As bench.processes.start_gateway: nothing but the work measured limits the gateway.
    "AGENTGW_ZEGO_RATE_PER_SECOND": "1000000",
    "AGENTGW_VOICE_LIMIT": "1000000",
    "AGENTGW_DIGITAL_HUMAN_LIMIT": "1000000",
    "AGENTGW_LOG_LEVEL": "WARNING",
    "AGENTGW_SHUTDOWN_GRACE_SECONDS": "1",
    "AGENTGW_HEARTBEAT_SECONDS": "15",
}


async def _fleet_session(fleet: Fleet) -> LiveSession:
    """A live session created on replica A (its AgentInstanceCreated callback posted to A)."""
    a = fleet.replicas[0]
    assert a.proc is not None
    gw = Gateway(a.proc, a.grpc_target, a.http_url, fleet.workdir / "unused.db")
    # The measurements' warm-up (post_until_ready) waits until B's subscribers have an event.
    return await create_session(gw)


def _complete(result: dict[str, Any]) -> bool:
    return bool(result["received"] == result["expected"] and not result["errors"])


async def run(ctx: Context) -> None:
    async with gateway(ctx, "fleet-sqlite") as gw:
        session = await create_session(gw)
        single_fan = await fanout._measure(ctx, "agentgw", gw.grpc_target, gw.http_url, session, N, gw.pid)
        single_ingest = await ingest._measure(
            ctx, "agentgw", gw.grpc_target, gw.http_url, session, gw.pid, ingest.SUBSCRIBER_BATCH
        )
    async with open_fleet(
        ctx.procs,
        ctx.workdir / "fleet",
        replicas=2,
        emulator_url=ctx.emulator_url,
        gateway_env=BENCH_ENV,
    ) as fleet:
        a, b = fleet.replicas
        assert a.proc is not None and b.proc is not None
        session = await _fleet_session(fleet)
        cross_fan = await fanout._measure(ctx, "agentgw", b.grpc_target, a.http_url, session, N, a.proc.pid)
        cross_ingest = await ingest._measure(
            ctx, "agentgw", b.grpc_target, a.http_url, session, a.proc.pid, ingest.SUBSCRIBER_BATCH
        )
    ctx.report.details["fleet"] = {
        "single_fanout": single_fan,
        "fleet_fanout": cross_fan,
        "single_ingest": single_ingest,
        "fleet_ingest": cross_ingest,
    }
    add = ctx.report.add
    fan_ok = _complete(cross_fan) and cross_fan["p99"] <= 2.0 * single_fan["p99"]
    add(
        Row(
            NAME,
            f"A -> B N={N} p99 (baseline: 1 process, SQLite)",
            cross_fan["p99"],
            single_fan["p99"],
            "ms",
            "<= 2x single-process",
            fan_ok,
        )
    )
    add(Row(NAME, f"A -> B N={N} p50", cross_fan["p50"], single_fan["p50"], "ms"))
    ingest_ok = (
        cross_ingest["lost"] == 0
        and not cross_ingest["errors"]
        and cross_ingest["rate"] >= 0.8 * single_ingest["rate"]
    )
    add(
        Row(
            NAME,
            "ingest callbacks/s, PostgreSQL (baseline: SQLite)",
            cross_ingest["rate"],
            single_ingest["rate"],
            "/s",
            ">= 0.8x SQLite, 0 lost",
            ingest_ok,
        )
    )
    add(Row(NAME, "ingest events lost", cross_ingest["lost"], single_ingest["lost"], "events", "0",
            cross_ingest["lost"] == 0))  # fmt: skip
    add(
        Row(
            NAME,
            "one callback round trip p50",
            cross_ingest["round_trip_ms"]["p50"],
            single_ingest["round_trip_ms"]["p50"],
            "ms",
        )
    )
    if not _complete(cross_fan):
        print(f"  fleet N={N}: {cross_fan['received']}/{cross_fan['expected']} errors {cross_fan['errors']}")
