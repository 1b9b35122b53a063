"""The fleet worlds of ``make chaos``: three replicas on one PostgreSQL, one journaled emulator.

The same clients, the same clean-up and the same judge as the single-process scenarios
(``chaos.harness``, ``chaos.scenarios.verify``, ``chaos.measure``), on a fleet started by
``tools.fleet``. A :class:`FleetWorld` is a :class:`~chaos.harness.World` whose clients spread
their calls over the live replicas (a client-side round robin: what a gRPC load balancer does),
so a retry after a replica died lands on another one with the same ``request_id``. ZEGO (the
emulator) posts every callback to one URL, one replica's; when that replica dies, the harness
points ZEGO at a live one after ``down_seconds``, as a load balancer's health check would, and
ZEGO's own retries cover the gap.

Scenarios (numbered after the single-process ones; ``tests/fleet`` runs both, small, on the test
suite's PostgreSQL through ``database_url``):

5. kill -9 one of three replicas (the one taking callbacks) during a burst of concurrent creates
   spread over all three; the clients retry on the others; the dead replica is restarted at the
   end (a crashed pod comes back) and the world is verified like scenario 1;
6. subscribers on one replica while callbacks reach another; that replica is killed and the
   subscribers resume on the next one: every acknowledged callback exactly once, no gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx

from agentgw_client.gen.agentgw.v1 import event_service_pb2 as events_api
from agentgw_client.gen.agentgw.v1 import event_service_pb2_grpc as events_rpc
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as api_grpc
from bench.processes import Processes
from chaos.harness import Intent, World, channel_options
from chaos.measure import event_counts
from chaos.resume import event_log
from chaos.scenarios import Params, verify
from tools.fleet import EmulatorSpec, Fleet, Replica, open_fleet

__all__ = ["FLEET_SCENARIOS", "FleetWorld", "open_fleet_world"]

REPLICAS = 3
GATEWAY_ENV = {
    # As chaos.harness.World.start_gateway: a ZEGO that stalls is given up on soon.
    "AGENTGW_ZEGO_RATE_PER_SECOND": "200",
    "AGENTGW_ZEGO_TIMEOUT_SECONDS": "2",
}


@dataclass
class FleetWorld(World):
    """A chaos world whose gateway is a fleet of replicas."""

    fleet: Fleet | None = None
    channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def the_fleet(self) -> Fleet:
        assert self.fleet is not None
        return self.fleet

    def next_replica(self) -> Replica:
        """The next live replica, round robin (the first replica if none is live)."""
        live = self.the_fleet.live() or self.the_fleet.replicas[:1]
        return live[next(self._turn) % len(live)]

    @property
    def sessions(self) -> api_grpc.SessionServiceStub:
        return api_grpc.SessionServiceStub(self.channels[self.next_replica().name])

    def events_on(self, replica: Replica) -> events_rpc.EventServiceStub:
        return events_rpc.EventServiceStub(self.channels[replica.name])

    async def start_gateway(self) -> None:
        """Start every replica that is not running."""
        for replica in self.the_fleet.replicas:
            if not replica.alive():
                await self.the_fleet.start(replica)

    async def stop_gateway(self, sig: signal.Signals) -> int | None:
        """Stop every replica with ``sig``; the last exit code."""
        code = None
        for replica in self.the_fleet.replicas:
            code = await self.the_fleet.stop(replica, sig)
        return code


@contextlib.asynccontextmanager
async def open_fleet_world(
    name: str,
    procs: Processes,
    root: Path,
    *,
    cap: int,
    time_scale: float,
    replicas: int = REPLICAS,
    gateway_env: Mapping[str, str] | None = None,
    database_url: str | None = None,
) -> AsyncIterator[FleetWorld]:
    """A fleet (its own PostgreSQL unless ``database_url``) with the journaled emulator, replicas
    running, and its clients."""
    workdir = root / name
    spec = EmulatorSpec(module="chaos.emulator", args=("--cap", str(cap), "--time-scale", str(time_scale)))
    async with open_fleet(
        procs,
        workdir,
        replicas=replicas,
        database_url=database_url,
        cap=cap,
        emulator=spec,
        gateway_env={**GATEWAY_ENV, **(gateway_env or {})},
    ) as fleet:
        options = channel_options()
        channels = {r.name: grpc.aio.insecure_channel(r.grpc_target, options=options) for r in fleet.replicas}
        admin = httpx.AsyncClient(base_url=fleet.emulator_url, timeout=10, trust_env=False)
        first = fleet.replicas[0]
        assert fleet.emulator is not None  # the fleet started the journaled emulator
        world = FleetWorld(
            name, procs, workdir, fleet.emulator, fleet.emulator_url, first.grpc_port, first.http_port,
            workdir / "unused.db", cap, dict(gateway_env or {}), admin, channels[first.name],
            fleet=fleet, channels=channels,
        )  # fmt: skip
        try:
            yield world
        finally:
            for channel in channels.values():
                await channel.close()
            await admin.aclose()


# -- 5. kill -9 one replica during concurrent creates ---------------------------------------------


async def fleet_kill_during_creates(
    procs: Processes,
    root: Path,
    params: Params,
    gateway_env: dict[str, str],
    *,
    database_url: str | None = None,
    create_deadline: float = 30.0,
) -> dict[str, Any]:
    """Twice the cap of creates over three replicas, held at ZEGO; the replica taking callbacks is
    killed mid-burst; ZEGO is pointed at a live replica; the dead one comes back at the end.

    Each client retries its create (same ``request_id``, next replica) for ``create_deadline``."""
    name = "fleet_kill9"
    async with open_fleet_world(
        name,
        procs,
        root,
        cap=params.cap,
        time_scale=params.time_scale,
        gateway_env=gateway_env,
        database_url=database_url,
    ) as world:
        fleet = world.the_fleet
        victim, survivor = fleet.replicas[-1], fleet.replicas[0]
        await fleet.point_callbacks(victim)
        await world.register_agent()
        burst = max(params.burst, 2 * params.cap)
        await world.fault("CreateAgentInstance", count=burst, latency_ms=params.create_latency_ms)
        intents = [Intent(n, name) for n in range(burst)]
        tasks = [asyncio.create_task(world.create(i, deadline_seconds=create_deadline)) for i in intents]
        await asyncio.sleep(params.create_latency_ms / 2000)
        killed_at = time.monotonic()
        exit_code = await fleet.kill(victim)
        await asyncio.sleep(params.down_seconds)
        await fleet.point_callbacks(survivor)
        await asyncio.gather(*tasks)
        answered = time.monotonic() - killed_at
        await fleet.start(victim)
        result = await verify(world, intents, params)
    return {
        name: {
            "replicas": len(fleet.replicas),
            "killed": victim.name,
            "killed_exit_code": exit_code,
            "seconds_to_answer_every_create": round(answered, 1),
            "final_errors": sorted({i.error for i in intents if i.error}),
            **result,
        }
    }


# -- 6. subscribers resume on another replica -----------------------------------------------------


@dataclass
class FleetSubscriber:
    received: list[dict[str, Any]]
    cursor: int | None = None
    resumes: int = 0
    replicas: list[str] = field(default_factory=list)
    """The replica each stream was opened on, in order."""


async def _subscribe(world: FleetWorld, sub: FleetSubscriber, first: Replica) -> None:
    """WatchEvents on ``first`` from the oldest event; after any end, resume after the last cursor
    on the next live replica."""
    replica = first
    while True:
        if sub.cursor is None:
            request = events_api.WatchEventsRequest(start=events_api.START_POSITION_OLDEST)
        else:
            request = events_api.WatchEventsRequest(
                start=events_api.START_POSITION_AFTER_CURSOR, after_cursor=sub.cursor
            )
        resumed = sub.cursor is not None
        sub.replicas.append(replica.name)
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for item in world.events_on(replica).WatchEvents(request):
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
        await asyncio.sleep(0.1)
        replica = world.next_replica()


async def fleet_log(world: FleetWorld, replica: Replica) -> tuple[list[dict[str, Any]], int]:
    """The whole event log as ``replica`` lists it, and its head cursor."""
    return await event_log(world.events_on(replica))


async def _talk(world: FleetWorld, instances: list[str], stop: asyncio.Event) -> int:
    """One user turn per instance a second until ``stop`` (as scenario 4); how many turns."""
    turns = 0
    while not stop.is_set():
        for instance in instances:
            response = await world.admin.post(f"/_emulator/instances/{instance}/turns", json={"text": "hi"})
            turns += response.status_code == 200
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    return turns


async def fleet_resume(
    procs: Processes,
    root: Path,
    params: Params,
    gateway_env: dict[str, str],
    *,
    database_url: str | None = None,
) -> dict[str, Any]:
    """Callbacks reach replica A; subscribers watch on B; B is killed and they resume on A or C."""
    name = "fleet_resume"
    async with open_fleet_world(
        name,
        procs,
        root,
        cap=params.cap,
        time_scale=params.time_scale,
        gateway_env=gateway_env,
        database_url=database_url,
    ) as world:
        fleet = world.the_fleet
        a, b = fleet.replicas[0], fleet.replicas[1]
        await world.register_agent()
        intents = [Intent(n, name) for n in range(params.event_sessions)]
        await asyncio.gather(*(world.create(i, deadline_seconds=10, events=True) for i in intents))
        instances = [i.acked.instance_id for i in intents if i.acked]
        subs = [FleetSubscriber([]) for _ in range(params.subscribers)]
        tasks = [asyncio.create_task(_subscribe(world, s, b)) for s in subs]
        quiet = asyncio.Event()
        talk = asyncio.create_task(_talk(world, instances, quiet))
        caught_up = False
        turns = 0
        before_kill: list[int] = []
        try:
            await asyncio.sleep(params.phase_seconds)
            before_kill = [len(s.received) for s in subs]
            exit_code = await fleet.kill(b)
            await asyncio.sleep(params.phase_seconds)
            quiet.set()
            turns = await talk
            for _ in range(100):  # bounded: 20 s for ZEGO to deliver what it queued
                await asyncio.sleep(0.2)
                if not (await world.emulator_json("GET", "/_emulator/callbacks"))["pending"]:
                    break
            for intent in intents:
                if intent.acked:
                    await world.end(intent.acked.session_id, deadline_seconds=15)
            for _ in range(100):  # bounded: 20 s until every subscriber is at the log's head
                pending = (await world.emulator_json("GET", "/_emulator/callbacks"))["pending"]
                _, head = await fleet_log(world, a)
                if not pending and all(s.cursor == head for s in subs):
                    caught_up = True
                    break
                await asyncio.sleep(0.2)
        finally:
            quiet.set()
            for task in [*tasks, talk]:
                task.cancel()
            await asyncio.gather(*tasks, talk, return_exceptions=True)
        logged, _ = await fleet_log(world, a)
        callbacks = await world.callbacks()
        sessions = await world.list_sessions()
        ended_at = {s["instance_id"]: s["end_time"] for s in sessions if s["instance_id"] and s["end_time"]}
        counts = event_counts(
            callbacks, logged, [s.received for s in subs], sum(s.resumes for s in subs), ended_at
        )
    return {
        name: {
            **asdict(counts),
            "caught_up": caught_up,
            "turns": turns,
            "killed": b.name,
            "killed_exit_code": exit_code,
            "streams_on": sorted({r for s in subs for r in s.replicas}),
            # Each subscriber's events from B before B died: the resume must continue after them.
            "received_before_kill": before_kill,
            "sessions": len(instances),
        }
    }


FLEET_SCENARIOS = {
    5: ("fleet: kill -9 one of three replicas during concurrent creates", fleet_kill_during_creates),
    6: ("fleet: subscribers resume on another replica after kill -9", fleet_resume),
}
