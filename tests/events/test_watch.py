"""WatchEvents and ListEvents: live, resume without gap or duplicate, heartbeats, expiry, overflow;
and the same guarantees with max_batch_size (events in EventBatch messages)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from agentgw_client.gen.agentgw.v1 import event_service_pb2 as eapi
from agentgw_client.gen.agentgw.v1 import event_service_pb2_grpc as erpc
from agentgw_client.gen.agentgw.v1 import session_event_pb2 as epb
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as rpc
from service.api import events as events_api
from service.domain.events import Event, EventType
from service.server import Gateway
from tests.api.sessions_helpers import register_agent, voice_request
from tests.conftest import Emulator, gateway_settings, rich_error
from tests.events.helpers import callback, post

INSTANCE = "1912124734317838336"


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    return {"heartbeat_seconds": 0.2, "subscriber_queue_size": 8}


# The no-gap tests ingest 60 events while the stream replays: with the module's 8-event buffer
# (small, for the overflow test) a replay that runs slower than ingest is cut off as too slow, which
# is the designed behaviour, not what those tests are about. They get a buffer larger than their ingest.
ROOMY = pytest.mark.parametrize(
    "gateway_overrides", [{"heartbeat_seconds": 0.2, "subscriber_queue_size": 1000}]
)


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}", timeout=5) as client:
        yield client


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> erpc.EventServiceStub:
    return erpc.EventServiceStub(channel)  # type: ignore[no-untyped-call]


async def collect(call: Any, want: int, *, timeout: float = 5.0) -> list[epb.SessionEvent]:
    """Read events (skipping heartbeats) until ``want`` arrived, bounded in time."""
    got: list[epb.SessionEvent] = []
    async with asyncio.timeout(timeout):
        async for message in call:
            if message.HasField("event"):
                got.append(message.event)
                if len(got) >= want:
                    break
    return got


async def post_llm(http: httpx.AsyncClient, n: int, start: int = 0, room: str = "room_1") -> None:
    for i in range(start, start + n):
        response = await post(
            http, callback("LLMResult", INSTANCE, {"Round": i, "Text": f"t{i}"}, room_id=room)
        )
        assert response.status_code == 200


async def test_live_events_arrive_in_order(stub: erpc.EventServiceStub, http: httpx.AsyncClient) -> None:
    call = stub.WatchEvents(eapi.WatchEventsRequest())
    await call.wait_for_connection()
    await asyncio.sleep(0.05)  # the subscription is open once the handler runs
    await post_llm(http, 5)
    got = await collect(call, 5)
    call.cancel()
    assert [e.llm_result.text for e in got] == [f"t{i}" for i in range(5)]
    assert [e.cursor for e in got] == sorted(e.cursor for e in got)


@ROOMY
async def test_resume_has_no_gap_and_no_duplicate_under_concurrent_ingest(
    stub: erpc.EventServiceStub, http: httpx.AsyncClient
) -> None:
    await post_llm(http, 20)
    first = (await stub.ListEvents(eapi.ListEventsRequest(page_size=10), timeout=5)).events
    resume_after = first[-1].cursor
    call = stub.WatchEvents(
        eapi.WatchEventsRequest(start=eapi.START_POSITION_AFTER_CURSOR, after_cursor=resume_after)
    )
    ingest = asyncio.create_task(post_llm(http, 60, start=20))
    got = await collect(call, 70, timeout=15)
    await ingest
    call.cancel()
    texts = [e.llm_result.text for e in got]
    assert texts == [f"t{i}" for i in range(10, 80)]  # no gap, no duplicate, in order
    assert all(a.cursor < b.cursor for a, b in itertools.pairwise(got))


async def test_heartbeats_carry_the_head_cursor(stub: erpc.EventServiceStub, http: httpx.AsyncClient) -> None:
    await post_llm(http, 3)
    head = (await stub.ListEvents(eapi.ListEventsRequest(), timeout=5)).head_cursor
    call = stub.WatchEvents(eapi.WatchEventsRequest())
    async with asyncio.timeout(5):
        async for message in call:
            assert message.HasField("heartbeat")
            assert message.heartbeat.cursor == head
            break
    call.cancel()


async def test_cursor_out_of_range_and_expired(
    stub: erpc.EventServiceStub, http: httpx.AsyncClient, gateway: Gateway
) -> None:
    await post_llm(http, 3)
    head = (await stub.ListEvents(eapi.ListEventsRequest(), timeout=5)).head_cursor
    ahead = stub.WatchEvents(
        eapi.WatchEventsRequest(start=eapi.START_POSITION_AFTER_CURSOR, after_cursor=head + 5)
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await collect(ahead, 1)
    assert (info.value.code(), rich_error(info.value).reason) == (
        grpc.StatusCode.OUT_OF_RANGE,
        "CURSOR_AHEAD",
    )

    assert await gateway.sessions.ledger.purge_events(time.time() + 1) == 3
    expired = stub.WatchEvents(
        eapi.WatchEventsRequest(start=eapi.START_POSITION_AFTER_CURSOR, after_cursor=1)
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await collect(expired, 1)
    err = rich_error(info.value)
    assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CURSOR_EXPIRED")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListEvents(eapi.ListEventsRequest(after_cursor=1), timeout=5)
    assert rich_error(info.value).reason == "CURSOR_EXPIRED"
    # The head survives the purge: resuming from it is fine, and new events continue the order.
    await post_llm(http, 1, start=3)
    after = await stub.ListEvents(eapi.ListEventsRequest(after_cursor=head), timeout=5)
    assert [e.cursor for e in after.events] == [head + 1]


async def test_single_session_watch_completes_after_its_end(
    stub: erpc.EventServiceStub, channel: grpc.aio.Channel, emulator: Emulator
) -> None:
    await register_agent(emulator)
    sessions = rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]
    session = (await sessions.CreateSession(voice_request(), timeout=5)).session
    call = stub.WatchEvents(
        eapi.WatchEventsRequest(filter=eapi.EventFilter(session_ids=[session.session_id]))
    )
    await asyncio.sleep(0.05)
    await sessions.EndSession(api.EndSessionRequest(session_id=session.session_id), timeout=5)
    got = await collect(call, 10)  # the stream ends by itself
    assert [e.WhichOneof("payload") for e in got] == ["ended"]
    assert got[0].ended.synthesized
    assert await call.code() == grpc.StatusCode.OK
    # Watching an already ended session from the oldest event replays its end and completes.
    again = stub.WatchEvents(
        eapi.WatchEventsRequest(
            filter=eapi.EventFilter(session_ids=[session.session_id]), start=eapi.START_POSITION_OLDEST
        )
    )
    assert len(await collect(again, 10)) == 1
    assert await again.code() == grpc.StatusCode.OK


async def test_a_slow_subscriber_is_cut_off_without_slowing_others(
    stub: erpc.EventServiceStub, http: httpx.AsyncClient, gateway: Gateway
) -> None:
    audio = base64.b64encode(b"\0" * 96_000).decode()  # large events fill the HTTP/2 window fast
    audio_only = eapi.WatchEventsRequest(filter=eapi.EventFilter(event_types=[epb.EVENT_TYPE_USER_AUDIO]))
    # The slow reader's own channel keeps HTTP/2 windows small, so unread events back up quickly.
    small_window = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 65536)]
    slow_channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}", options=small_window)
    slow = erpc.EventServiceStub(slow_channel).WatchEvents(audio_only)  # type: ignore[no-untyped-call]
    fast = stub.WatchEvents(audio_only)
    await asyncio.sleep(0.05)
    fast_reader = asyncio.create_task(collect(fast, 40, timeout=20))
    for i in range(40):
        body = callback("UserAudioData", INSTANCE, {"UserId": "u", "Round": i, "Audio": audio})
        assert (await post(http, body)).status_code == 200  # ingest is never held up
    assert len(await fast_reader) == 40
    fast.cancel()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await collect(slow, 40, timeout=10)
    err = rich_error(info.value)
    assert (err.code, err.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "SUBSCRIBER_TOO_SLOW")
    await slow_channel.close()


async def test_filters_and_list_paging(stub: erpc.EventServiceStub, http: httpx.AsyncClient) -> None:
    await post_llm(http, 4, room="a")
    await post_llm(http, 3, start=4, room="b")
    await post(http, callback("ASRResult", INSTANCE, {"Text": "hi", "Round": 9}, room_id="a"))
    room_b = await stub.ListEvents(eapi.ListEventsRequest(filter=eapi.EventFilter(room_id="b")), timeout=5)
    assert [e.llm_result.text for e in room_b.events] == ["t4", "t5", "t6"]
    asr = await stub.ListEvents(
        eapi.ListEventsRequest(filter=eapi.EventFilter(event_types=[epb.EVENT_TYPE_ASR_RESULT])), timeout=5
    )
    assert [e.asr_result.text for e in asr.events] == ["hi"]
    seen: list[int] = []
    cursor = 0
    for _ in range(10):  # bounded
        page = await stub.ListEvents(eapi.ListEventsRequest(after_cursor=cursor, page_size=3), timeout=5)
        seen += [e.cursor for e in page.events]
        if not page.events:
            break
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)) == 8
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListEvents(
            eapi.ListEventsRequest(filter=eapi.EventFilter(label_selector="bad key")), timeout=5
        )
    assert rich_error(info.value).field_paths == ["filter.label_selector"]
    bad_start = stub.WatchEvents(eapi.WatchEventsRequest(start=9))  # type: ignore[arg-type]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await collect(bad_start, 1)
    assert rich_error(info.value).field_paths == ["start"]
    bad_types = stub.WatchEvents(eapi.WatchEventsRequest(filter=eapi.EventFilter(event_types=[99])))  # type: ignore[list-item]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await collect(bad_types, 1)
    assert rich_error(info.value).field_paths == ["filter.event_types[0]"]


async def test_resume_after_a_gateway_restart(
    emulator: Emulator, tmp_path: Path, database_url: str | None
) -> None:
    settings = gateway_settings(emulator, tmp_path / "ledger.db", database_url, heartbeat_seconds=0.2)
    async with Gateway(settings) as gw:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.http_port}") as http:
            await post_llm(http, 5)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as ch:
            call = erpc.EventServiceStub(ch).WatchEvents(  # type: ignore[no-untyped-call]
                eapi.WatchEventsRequest(start=eapi.START_POSITION_OLDEST)
            )
            got = await collect(call, 2)
            call.cancel()
    checkpoint = got[-1].cursor
    async with Gateway(settings) as gw:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.http_port}") as http:
            await post_llm(http, 2, start=5)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as ch:
            call = erpc.EventServiceStub(ch).WatchEvents(  # type: ignore[no-untyped-call]
                eapi.WatchEventsRequest(start=eapi.START_POSITION_AFTER_CURSOR, after_cursor=checkpoint)
            )
            rest = await collect(call, 5)
            call.cancel()
    assert [e.llm_result.text for e in got + rest] == [f"t{i}" for i in range(7)]


# -- batched (max_batch_size >= 2) ----------------------------------------------------------------


async def collect_batches(call: Any, want: int, *, timeout: float = 5.0) -> list[list[epb.SessionEvent]]:
    """Read batches (skipping heartbeats) until ``want`` events arrived, bounded in time."""
    batches: list[list[epb.SessionEvent]] = []
    async with asyncio.timeout(timeout):
        async for message in call:
            assert not message.HasField("event"), "a batched watch sent a lone event"
            if message.HasField("batch"):
                assert len(message.batch.events) >= 1
                batches.append(list(message.batch.events))
                if sum(map(len, batches)) >= want:
                    break
    return batches


def batched(max_batch_size: int, **fields: Any) -> eapi.WatchEventsRequest:
    return eapi.WatchEventsRequest(max_batch_size=max_batch_size, **fields)


@ROOMY
async def test_batched_resume_has_no_gap_and_no_duplicate_under_concurrent_ingest(
    stub: erpc.EventServiceStub, http: httpx.AsyncClient
) -> None:
    await post_llm(http, 20)
    first = (await stub.ListEvents(eapi.ListEventsRequest(page_size=10), timeout=5)).events
    call = stub.WatchEvents(batched(4, start=eapi.START_POSITION_AFTER_CURSOR, after_cursor=first[-1].cursor))
    ingest = asyncio.create_task(post_llm(http, 60, start=20))
    batches = await collect_batches(call, 70, timeout=15)
    await ingest
    call.cancel()
    got = [e for batch in batches for e in batch]
    assert [e.llm_result.text for e in got] == [f"t{i}" for i in range(10, 80)]  # no gap, no dup
    assert all(a.cursor < b.cursor for a, b in itertools.pairwise(got))
    assert all(1 <= len(batch) <= 4 for batch in batches)
    assert len(batches[0]) == 4  # the replay's first page held at least 10 events


async def test_batched_live_events_already_queued_share_a_batch_and_heartbeats_go_on(
    stub: erpc.EventServiceStub, gateway: Gateway
) -> None:
    bus = gateway.core.bus
    call = stub.WatchEvents(batched(3))
    messages = aiter(call)
    async with asyncio.timeout(5):
        hello = await anext(messages)  # a heartbeat: the stream is live and idle
    assert hello.heartbeat.cursor == bus.head
    head = bus.head
    for cursor in range(head + 1, head + 6):  # published at once: queued before the stream wakes
        bus.publish(
            Event(
                event_type=EventType.LLM_RESULT,
                session_id="s1",
                instance_id=INSTANCE,
                agent_id="helper-agent",
                room_id="room_1",
                event_time_ms=0,
                received_at=time.time(),
                sequence=cursor,
                round=1,
                data={"text": f"t{cursor}"},
                cursor=cursor,
            )
        )
    batches = await collect_batches(messages, 5)
    assert [[e.cursor for e in batch] for batch in batches] == [
        [head + 1, head + 2, head + 3],
        [head + 4, head + 5],
    ]
    async with asyncio.timeout(5):
        after = await anext(messages)
    assert after.heartbeat.cursor == head + 5
    call.cancel()


async def test_a_replay_of_many_pages_then_live(
    stub: erpc.EventServiceStub,
    http: httpx.AsyncClient,
    gateway: Gateway,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def delivered() -> float | None:
        return gateway.metrics.registry.get_sample_value("agentgw_event_delivery_seconds_count")

    monkeypatch.setattr(events_api, "REPLAY_PAGE", 5)  # 20 events: 4 pages
    await post_llm(http, 20)
    call = stub.WatchEvents(batched(3, start=eapi.START_POSITION_OLDEST))
    batches = await collect_batches(call, 20)
    assert [len(b) for b in batches] == [3, 2] * 4  # a batch never spans two pages
    await post_llm(http, 1, start=20)
    batches += await collect_batches(call, 1)
    call.cancel()
    got = [e.llm_result.text for b in batches for e in b]
    assert got == [f"t{i}" for i in range(21)]
    unbatched = stub.WatchEvents(eapi.WatchEventsRequest(start=eapi.START_POSITION_OLDEST))
    assert [e.llm_result.text for e in await collect(unbatched, 21)] == got
    unbatched.cancel()
    assert delivered() == 1  # only the live event: a replayed one's age is not a delivery latency


async def test_batches_never_wait_to_fill(stub: erpc.EventServiceStub, http: httpx.AsyncClient) -> None:
    await post_llm(http, 3)
    call = stub.WatchEvents(batched(1000, start=eapi.START_POSITION_OLDEST))
    replayed = await collect_batches(call, 3)
    assert [[e.llm_result.text for e in b] for b in replayed] == [["t0", "t1", "t2"]]
    await post_llm(http, 1, start=3)
    live = await collect_batches(call, 1)
    call.cancel()
    assert [[e.llm_result.text for e in b] for b in live] == [["t3"]]


async def test_batched_single_session_watch_completes_after_the_batch_with_its_end(
    stub: erpc.EventServiceStub, channel: grpc.aio.Channel, emulator: Emulator, http: httpx.AsyncClient
) -> None:
    await register_agent(emulator)
    sessions = rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]
    session = (await sessions.CreateSession(voice_request(), timeout=5)).session
    only = eapi.EventFilter(session_ids=[session.session_id])
    call = stub.WatchEvents(batched(10, filter=only))
    await asyncio.sleep(0.05)  # the subscription is open once the handler runs
    said = callback("LLMResult", session.agent_instance_id, {"Round": 1, "Text": "hello"})
    assert (await post(http, said)).status_code == 200
    await sessions.EndSession(api.EndSessionRequest(session_id=session.session_id), timeout=5)
    batches = await collect_batches(call, 10)  # the stream ends by itself
    assert [e.WhichOneof("payload") for b in batches for e in b] == ["llm_result", "ended"]
    assert await call.code() == grpc.StatusCode.OK
    # Replayed from the oldest, both are in one page of the log: one batch, then OK.
    again = stub.WatchEvents(batched(10, filter=only, start=eapi.START_POSITION_OLDEST))
    replayed = await collect_batches(again, 10)
    assert [[e.WhichOneof("payload") for e in b] for b in replayed] == [["llm_result", "ended"]]
    assert await again.code() == grpc.StatusCode.OK


@pytest.mark.parametrize("size", [-1, 1001])
async def test_max_batch_size_out_of_range_is_invalid(stub: erpc.EventServiceStub, size: int) -> None:
    call = stub.WatchEvents(batched(size))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await collect_batches(call, 1)
    err = rich_error(info.value)
    assert (err.code, err.field_paths) == (grpc.StatusCode.INVALID_ARGUMENT, ["max_batch_size"])
    # Reported together with the filter's problems, in one error.
    both = stub.WatchEvents(batched(size, filter=eapi.EventFilter(label_selector="bad key")))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await collect_batches(both, 1)
    assert rich_error(info.value).field_paths == ["max_batch_size", "filter.label_selector"]
