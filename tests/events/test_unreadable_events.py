"""Defence in depth: a stored row that cannot be converted never ends a WatchEvents stream (lone or
batched), a resume or a ListEvents page. It is delivered in its place as an ``unreadable`` event with
its cursor, counted once and logged once (issue 16 §1)."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest

from agentgw_client.gen.agentgw.v1 import event_service_pb2 as eapi
from agentgw_client.gen.agentgw.v1 import event_service_pb2_grpc as erpc
from agentgw_client.gen.agentgw.v1 import session_event_pb2 as epb
from service.domain.events import EventType, NewEvent
from service.server import Gateway
from tests.events.helpers import callback, post

INSTANCE = "1912124734317838336"


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


# (event_type, data, overrides of other columns, the stored type the unreadable event reports or
# None when the row converts after all)
POISON: list[tuple[str, Any, dict[str, Any], str | None]] = [
    ("from_a_newer_release", {}, {}, "from_a_newer_release"),
    ("exception", [1, 2], {}, "exception"),  # data that is not an object
    ("exception", {"code": "x", "message": "m"}, {}, "exception"),
    ("exception", {"code": 2**63, "message": "m"}, {}, "exception"),  # beyond the proto's int64
    ("created", {"created_time_ms": 2**62}, {}, "created"),  # beyond Timestamp's year 9999
    ("ended", {"zego_code": 0, "latency": {"LLMTTFT": "fast"}}, {}, "ended"),
    ("asr_result", {"text": "x"}, {"event_time_ms": "soon"}, "asr_result"),
    ("llm_result", {"text": "x"}, {"labels": '{"team": 1}'}, "llm_result"),
    ("llm_result", {"text": "x"}, {"round": 2.0**64}, "llm_result"),  # SQLite keeps it as REAL
    # Free-form data written before it was kept as JSON text: too deep for a Struct, so it comes
    # as meta_info_json only, and is not unreadable at all.
    ("meta_info", {"meta_info": nested(60)}, {}, None),
]


@pytest.fixture
def ledger_backend() -> str:
    """SQLite only: the poison rows rely on its loose column types (text in an INTEGER column, a
    REAL beyond int64); PostgreSQL's typed columns refuse them before they are ever stored."""
    return "sqlite"


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    return {"heartbeat_seconds": 0.2, "subscriber_queue_size": 1000}


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}", timeout=10) as client:
        yield client


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> erpc.EventServiceStub:
    return erpc.EventServiceStub(channel)  # type: ignore[no-untyped-call]


def inject(gateway: Gateway) -> list[int]:
    """Write the POISON rows straight into the ledger file, as damage or a newer release would."""
    conn = sqlite3.connect(gateway.settings.db_path, timeout=5)
    cursors = []
    try:
        with conn:
            for event_type, data, overrides, _ in POISON:
                row = {
                    "instance_id": INSTANCE,
                    "event_type": event_type,
                    "event_time_ms": int(time.time() * 1000),
                    "received_at": time.time(),
                    "data": json.dumps(data),
                    "raw": json.dumps({"Event": "as ZEGO sent it"}),
                    **overrides,
                }
                columns = ", ".join(row)
                marks = ", ".join("?" for _ in row)
                sql = f"INSERT INTO events ({columns}) VALUES ({marks}) RETURNING cursor"
                cursors.append(conn.execute(sql, tuple(row.values())).fetchone()[0])
    finally:
        conn.close()
    return cursors


async def read_events(call: Any, want: int, *, timeout: float = 5.0) -> list[epb.SessionEvent]:
    got: list[epb.SessionEvent] = []
    async with asyncio.timeout(timeout):
        async for message in call:
            if message.HasField("event"):
                got.append(message.event)
            elif message.HasField("batch"):
                got.extend(message.batch.events)
            if len(got) >= want:
                break
    return got


def good(text: str) -> dict[str, Any]:
    return callback("LLMResult", INSTANCE, {"Round": 1, "Text": text})


def check(events: list[epb.SessionEvent], cursors: list[int]) -> None:
    """``events`` are good "a", the POISON rows in order, good "b"."""
    assert [e.WhichOneof("payload") for e in events] == [
        "llm_result",
        *("meta_info" if stored is None else "unreadable" for *_, stored in POISON),
        "llm_result",
    ]
    assert (events[0].llm_result.text, events[-1].llm_result.text) == ("a", "b")
    for event, cursor, (_, _, _, stored) in zip(events[1:-1], cursors, POISON, strict=True):
        assert event.cursor == cursor
        assert event.agent_instance_id == INSTANCE
        if stored is None:
            assert json.loads(event.meta_info.meta_info_json) == nested(60)
            continue
        assert event.unreadable.stored_type == stored and event.unreadable.reason
        known = {t.value: t for t in EventType}
        expected_type = f"EVENT_TYPE_{known[stored].name}" if stored in known else "EVENT_TYPE_UNSPECIFIED"
        assert epb.EventType.Name(event.unreadable.type) == expected_type


def unreadable_counts(gateway: Gateway) -> dict[str, float]:
    counts = {}
    for stored in {"unknown", *(s for *_, s in POISON if s)}:
        label = "unknown" if stored == "from_a_newer_release" else stored
        value = gateway.metrics.registry.get_sample_value("agentgw_events_unreadable_total", {"type": label})
        counts[label] = value or 0.0
    return counts


@pytest.mark.parametrize("max_batch_size", [0, 3])
async def test_unconvertible_rows_are_delivered_marked_and_streams_go_on(
    gateway: Gateway,
    http: httpx.AsyncClient,
    stub: erpc.EventServiceStub,
    caplog: pytest.LogCaptureFixture,
    max_batch_size: int,
) -> None:
    caplog.set_level(logging.WARNING, logger="agentgw.events")
    assert (await post(http, good("a"))).status_code == 200
    cursors = inject(gateway)
    assert (await post(http, good("b"))).status_code == 200
    total = len(POISON) + 2

    # A replay from the oldest event, then live.
    oldest = stub.WatchEvents(
        eapi.WatchEventsRequest(
            start=eapi.START_POSITION_OLDEST, max_batch_size=max_batch_size, include_raw=True
        )
    )
    replayed = await read_events(oldest, total)
    check(replayed, cursors)
    assert json.loads(replayed[1].raw_json) == {"Event": "as ZEGO sent it"}  # the original, if asked for

    # A resume from just before the damage.
    resumed = stub.WatchEvents(
        eapi.WatchEventsRequest(
            start=eapi.START_POSITION_AFTER_CURSOR,
            after_cursor=replayed[0].cursor,
            max_batch_size=max_batch_size,
        )
    )
    check(replayed[:1] + await read_events(resumed, total - 1), cursors)

    # ListEvents, in pages of 3 and in one page.
    listed: list[epb.SessionEvent] = []
    after = 0
    while True:
        page = await stub.ListEvents(eapi.ListEventsRequest(page_size=3, after_cursor=after), timeout=5)
        if not page.events:
            break
        listed += page.events
        after = page.next_cursor
    check(listed, cursors)
    check(list((await stub.ListEvents(eapi.ListEventsRequest(), timeout=5)).events), cursors)

    # A live event that cannot be converted (stored before validation existed, say) is marked too,
    # and the live streams carry on past it.
    bad = await gateway.core.events.append(
        NewEvent(
            event_type=EventType.EXCEPTION,
            session_id=None,
            instance_id=INSTANCE,
            agent_id="",
            room_id="",
            event_time_ms=int(time.time() * 1000),
            received_at=time.time(),
            sequence=None,
            round=None,
            data={"code": "not a number"},
        )
    )
    assert bad is not None
    assert (await post(http, good("c"))).status_code == 200
    for call in (oldest, resumed):
        live_bad, live_good = await read_events(call, 2)
        assert (live_bad.cursor, live_bad.unreadable.stored_type) == (bad.cursor, "exception")
        assert live_good.llm_result.text == "c"
        call.cancel()

    # Counted once per row, however often it was delivered; logged once per row too.
    expected: dict[str, float] = {"unknown": 0.0}
    for *_, stored in POISON:
        if stored is not None:
            label = "unknown" if stored == "from_a_newer_release" else stored
            expected[label] = expected.get(label, 0.0) + 1
    expected["exception"] += 1  # the live one
    assert unreadable_counts(gateway) == expected
    logged = [r for r in caplog.records if r.getMessage().startswith("stored event cannot be converted")]
    assert sorted(r.__dict__["cursor"] for r in logged) == sorted([*cursors[:-1], bad.cursor])
