"""Several agentgw processes on one PostgreSQL and one external emulator, as a fleet runs.

Every replica serves everything: a session created on A is watched live on B while ZEGO's
callbacks reach C; a replica killed with SIGKILL during concurrent creates loses nothing the
clients were told and lets nothing through twice or past the cap (judged from the journaled
emulator's view, with the chaos suite's own judge); a subscriber whose replica dies resumes on
another with no gap and no duplicate; the reaper lease passes to another replica when its holder
is killed. The kill and resume tests are the chaos suite's fleet scenarios (``chaos.fleet``), small.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest

from agentgw_client.gen.agentgw.v1 import event_service_pb2 as events_api
from agentgw_client.gen.agentgw.v1 import event_service_pb2_grpc as events_rpc
from agentgw_client.gen.agentgw.v1 import session_pb2 as spb
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as api_grpc
from bench.processes import Processes
from chaos.fleet import fleet_kill_during_creates, fleet_resume, open_fleet_world
from chaos.harness import Intent
from chaos.report import TARGETS
from chaos.scenarios import SMOKE
from tools.fleet import Fleet, Replica, open_fleet

pytestmark = pytest.mark.timeout(120)

SMALL = dataclasses.replace(
    SMOKE, cap=3, settle_seconds=20.0, phase_seconds=2.0, event_sessions=2, subscribers=2
)
"""The chaos smoke sizes, three slots. The settle window (how long the gateway may take to end what
it knows before the users leave; over as soon as it has) is the full run's order: 8 s was too short
on a loaded machine (``idle_ended_known`` 1 in one ``make test``)."""


FAST_REAPER = {"AGENTGW_REAPER_INTERVAL_SECONDS": "1", "AGENTGW_REAPER_PENDING_GRACE_SECONDS": "3"}
"""The killed replica's PENDING rows become the lease holder's once its heartbeat is 10 s old; with
the default reaper (a pass every 5 s, PENDING rows left alone for 30 s) settling them could take
longer than the settle window, and ZEGO's MaxIdleTime ended one first (``idle_ended_known`` in a
CI run). The grace is safe this short: a replica never settles a create in flight in itself, and
never one of another live replica."""


async def _events_until(stream: Any, session_id: str, wanted: set[str], seconds: float) -> list[Any]:
    """Events of ``session_id`` from ``stream`` until every payload in ``wanted`` was seen."""
    seen: list[Any] = []
    async with asyncio.timeout(seconds):
        async for item in stream:
            kind = item.WhichOneof("item")
            events = [item.event] if kind == "event" else list(item.batch.events) if kind == "batch" else []
            seen += [e for e in events if e.session_id == session_id]
            if wanted <= {e.WhichOneof("payload") for e in seen}:
                return seen
    return seen


async def test_created_on_a_watched_on_b_with_callbacks_to_c(
    procs: Processes, tmp_path: Path, database_url: str
) -> None:
    """What C received reaches a WatchEvents stream on B live (B's tailer of the shared log), and
    A lists the log exactly as B streamed it."""
    async with open_fleet_world(
        "acb", procs, tmp_path, cap=3, time_scale=0.1, replicas=3, database_url=database_url
    ) as world:
        fleet = world.the_fleet
        a, b, c = fleet.replicas
        await fleet.point_callbacks(c)
        await world.register_agent()
        on_b = events_rpc.EventServiceStub(world.channels[b.name])
        watch = on_b.WatchEvents(events_api.WatchEventsRequest(start=events_api.START_POSITION_OLDEST))
        seen: list[Any] = []

        async def until(wanted: set[str]) -> list[Any]:
            seen.extend(await _events_until(watch, session_id, wanted, 15))
            return seen

        on_a = api_grpc.SessionServiceStub(world.channels[a.name])
        intent = Intent(0, "acb")
        created = await on_a.CreateSession(world.create_request(intent, events=True), timeout=10)
        session_id = created.session.session_id
        # ZEGO's AgentInstanceCreated callback reached C; B has it.
        assert "created" in {e.WhichOneof("payload") for e in await until({"created"})}
        on_c = api_grpc.SessionServiceStub(world.channels[c.name])
        got = await on_c.GetSession(api.GetSessionRequest(session_id=session_id), timeout=5)
        assert got.session.state == spb.SESSION_STATE_ACTIVE
        # The same request_id retried on B returns the same session (idempotency is global).
        again = await api_grpc.SessionServiceStub(world.channels[b.name]).CreateSession(
            world.create_request(intent, events=True), timeout=10
        )
        assert again.session.session_id == session_id
        # Ended on B: exactly one terminal event.
        ended = await api_grpc.SessionServiceStub(world.channels[b.name]).EndSession(
            api.EndSessionRequest(session_id=session_id), timeout=10
        )
        assert ended.session.state in (spb.SESSION_STATE_ENDING, spb.SESSION_STATE_ENDED)
        await until({"ended"})
        assert [e.WhichOneof("payload") for e in seen].count("ended") == 1
        assert len({e.cursor for e in seen}) == len(seen)  # no duplicate
        watch.cancel()
        # And A lists the log exactly as B had it.
        listed = await events_rpc.EventServiceStub(world.channels[a.name]).ListEvents(
            events_api.ListEventsRequest(page_size=1000), timeout=5
        )
        assert [e.cursor for e in listed.events if e.session_id == session_id] == [e.cursor for e in seen]


async def test_kill_9_of_one_replica_during_concurrent_creates(
    procs: Processes, tmp_path: Path, database_url: str
) -> None:
    out = await fleet_kill_during_creates(
        procs, tmp_path, SMALL, FAST_REAPER, database_url=database_url, create_deadline=8.0
    )
    (world,) = out.values()
    assert world["intents"] == 2 * SMALL.cap and world["creates_at_zego"] >= 1
    assert world["acked"] >= 1
    for metric in (
        "double_creates",
        "lost_acked",
        "leaked",
        "over_cap",
        "uncleared_leaks",
        "unknown_creates",
    ):
        assert world[metric] == 0, (metric, world)
    assert {m for m in TARGETS if world.get(m)} == set(), world


async def test_a_subscriber_resumes_on_another_replica_with_no_gap_and_no_duplicate(
    procs: Processes, tmp_path: Path, database_url: str
) -> None:
    (world,) = (await fleet_resume(procs, tmp_path, SMALL, {}, database_url=database_url)).values()
    assert world["caught_up"], world
    assert world["resumes"] >= SMALL.subscribers  # each resumed at least once, after B died
    assert len(world["streams_on"]) >= 2
    assert all(n > 0 for n in world["received_before_kill"]), world  # B streamed live before it died
    assert world["logged"] > 0 and world["delivered"] > 0
    for metric in ("lost_in_ledger", "lost", "duplicated"):
        assert world[metric] == 0, (metric, world)


def _lease_acquired(replica: Replica) -> bool:
    """Whether ``replica``'s current process logged that it took a lease."""
    if replica.proc is None:
        return False
    for line in replica.proc.log_path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            message = str(json.loads(line).get("message", ""))
            if message.startswith("lease ") and message.endswith(" acquired"):
                return True
    return False


async def _holders(fleet: Fleet, seconds: float) -> list[Replica]:
    """The live replicas that logged a lease acquisition, once there is one (or after ``seconds``)."""
    deadline = time.monotonic() + seconds
    while True:
        holders = [r for r in fleet.live() if _lease_acquired(r)]
        if holders or time.monotonic() > deadline:
            return holders
        await asyncio.sleep(0.1)


async def test_the_reaper_lease_fails_over_within_its_retry_bound_when_its_holder_is_killed(
    procs: Processes, tmp_path: Path, database_url: str
) -> None:
    async with open_fleet(procs, tmp_path / "lease", replicas=2, database_url=database_url) as fleet:
        (holder,) = await _holders(fleet, 15)  # exactly one replica holds it
        (other,) = [r for r in fleet.replicas if r is not holder]
        await asyncio.sleep(3)  # a retry period or more: the other still does not take it
        assert not _lease_acquired(other)
        killed_at = time.monotonic()
        await fleet.kill(holder)
        assert await _holders(fleet, 15) == [other]
        # The database released the dead holder's lock at once; the other took it on its next try.
        assert time.monotonic() - killed_at < 10
