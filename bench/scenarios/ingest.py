"""Scenario 4, ingest: sustained signed callbacks per second into agentgw (durable SQLite ledger)
with 10 WatchEvents subscribers, and no loss: every accepted event is counted, by id, at every
subscriber. Baseline: the same bodies POSTed to the bare /push with 10 bare subscribers.

Several sender processes (httpx, a fixed concurrency each) post flat out for a fixed window;
the rate is accepted callbacks / window.

Also measured: one callback's round trip, sent one at a time on a keep-alive connection, and
the server's CPU time per callback.

The target row has agentgw's subscribers asking for batches (``SUBSCRIBER_BATCH``); an info row
repeats the run with one message per event, also required to lose nothing. A subscriber cut off
for falling behind (RESOURCE_EXHAUSTED, SUBSCRIBER_TOO_SLOW) resumes from its last cursor, as the
API asks; the rows say how often that happened.

Target: >= 1,000 callbacks/s, with zero loss.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

import httpx

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
)
from bench.stats import summary
from bench.workers import WorkerPool

NAME = "4 ingest"
SUBSCRIBER_BATCH = 100
"""The subscribers ask agentgw for up to this many events per message (WatchEventsRequest
max_batch_size): under a flood, what a high-volume consumer would do. Batching never waits to fill
a batch, so it adds no latency. The bare subscribers get one message per event (bare grpc has no
batching); the unbatched agentgw rate is reported beside it."""
RTT_SAMPLES = 40


def _sender_specs(ctx: Context, kind: str, http_url: str, session: LiveSession) -> list[dict[str, Any]]:
    """One spec per sender worker; each numbers its callbacks from its own base (no collisions)."""
    p = ctx.params
    seq_base = random.randrange(10**12, 10**15)
    return [
        {
            "kind": kind,
            "url": http_url,
            "instance_id": session.instance_id,
            "agent_user_id": session.agent_user_id,
            "room_id": session.room_id,
            "concurrency": p.ingest_sender_concurrency,
            "seconds": p.ingest_seconds,
            "max_count": p.ingest_max_per_sender,
            "tag": f"s{i}",
            "seq_base": seq_base + i * 10**9,
            "max_seconds": p.ingest_seconds + 120,
        }
        for i in range(p.ingest_senders)
    ]


async def _measure(
    ctx: Context,
    kind: str,
    target: str,
    http_url: str,
    session: LiveSession,
    pid: int,
    max_batch_size: int = 0,
) -> dict[str, Any]:
    p = ctx.params
    watch = {
        "target": target,
        "kind": kind,
        "max_batch_size": max_batch_size,
        "resume": True,
        "streams": p.ingest_subscribers,
        "channels": 2,
        "track_ids": True,
        "latencies": False,
        "max_seconds": 600,
    }
    senders = _sender_specs(ctx, kind, http_url, session)
    async with (
        await WorkerPool.start(ctx.procs, "watch", [watch]) as subscribers,
        httpx.AsyncClient(base_url=http_url, timeout=30) as client,
    ):
        await post_until_ready(subscribers, client, kind, session)
        round_trips = []
        for _ in range(RTT_SAMPLES):  # one at a time on one keep-alive connection
            started = time.perf_counter()
            await post(client, kind, session.body(f"rtt|-1|{time.time():.6f}"))
            round_trips.append(1000 * (time.perf_counter() - started))
        async with await WorkerPool.start(ctx.procs, "sender", senders) as pool:
            await pool.ready()
            async with profiled(ctx, pid, f"ingest-{kind}"):
                cpu = cpu_seconds(pid)
                pool.broadcast("go")
                sent = await pool.results(p.ingest_seconds + 90)
                cpu = cpu_seconds(pid) - cpu
        accepted = sum(r["accepted"] for r in sent)
        subscribers.broadcast("expect", n=accepted)
        (seen,) = await collect(subscribers, drain=60.0)
    window = max(r["elapsed"] for r in sent)
    statuses: Counter[str] = Counter()
    for r in sent:
        statuses.update(r["statuses"])
    return {
        "round_trip_ms": summary(round_trips),
        "rate": accepted / window,
        "server_cpu_us_per_callback": 1e6 * cpu / max(1, accepted),
        "server_cpu_utilization": cpu / window,
        "accepted": accepted,
        "window": window,
        "statuses": dict(statuses),
        "counts": seen["counts"],
        "unique": seen["unique"],
        "errors": seen["errors"],
        "resumes": sum(seen.get("resumes", [])),
        "lost": sum(max(0, accepted - u) for u in seen["unique"]),
    }


async def run(ctx: Context) -> None:
    async with gateway(ctx, "ingest") as gw, baseline(ctx) as bl:
        session = await create_session(gw)
        ours = await _measure(ctx, "agentgw", gw.grpc_target, gw.http_url, session, gw.pid, SUBSCRIBER_BATCH)
        await asyncio.sleep(1.0)
        unbatched = await _measure(ctx, "agentgw", gw.grpc_target, gw.http_url, session, gw.pid)
        await asyncio.sleep(1.0)
        bare = await _measure(ctx, "bare", bl.grpc_target, bl.http_url, session, bl.pid)
    ctx.report.details["ingest"] = {"agentgw": ours, "agentgw_unbatched": unbatched, "baseline": bare}
    no_loss = ours["lost"] == 0 and not ours["errors"]
    add = ctx.report.add
    add(
        Row(
            NAME,
            "callbacks/s, 10 subscribers",
            ours["rate"],
            bare["rate"],
            "/s",
            ">= 1,000/s, no loss",
            no_loss and ours["rate"] >= 1000.0,
        )
    )
    add(Row(NAME, "events lost (10 subscribers)", ours["lost"], bare["lost"], "events", "0", no_loss))
    add(
        Row(
            NAME,
            f"callbacks/s, 10 unbatched subscribers ({unbatched['resumes']} resumes)",
            unbatched["rate"],
            bare["rate"],
            "/s",
            "no loss",
            unbatched["lost"] == 0 and not unbatched["errors"],
        )
    )
    add(
        Row(
            NAME,
            "one callback round trip p50",
            ours["round_trip_ms"]["p50"],
            bare["round_trip_ms"]["p50"],
            "ms",
        )
    )
    add(
        Row(
            NAME,
            "server CPU per callback",
            ours["server_cpu_us_per_callback"],
            bare["server_cpu_us_per_callback"],
            "us",
        )
    )
    print(
        f"  agentgw: {ours['accepted']} accepted in {ours['window']:.1f} s, HTTP {ours['statuses']},"
        f" per-subscriber {ours['unique']}, stream errors {ours['errors']}, resumes {ours['resumes']}"
    )
