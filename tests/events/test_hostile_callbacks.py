"""Hostile but validly signed callbacks: refused with 400, a reason and a metric, before anything is
stored, while every stream, resume and ListEvents goes on (issue 16 §1)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest

from agentgw_client.gen.agentgw.v1 import event_service_pb2 as eapi
from agentgw_client.gen.agentgw.v1 import event_service_pb2_grpc as erpc
from agentgw_client.gen.agentgw.v1 import session_event_pb2 as epb
from service.server import Gateway
from tests.conftest import eventually
from tests.events.helpers import callback, post

INSTANCE = "1912124734317838336"
HUGE_FLOAT = "__1e400__"  # replaced by the bare JSON number 1e400 (json.dumps cannot write it)
NAN = "__NaN__"


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def nested_list(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def encode(body: dict[str, Any]) -> bytes:
    text = json.dumps(body).replace(f'"{HUGE_FLOAT}"', "1e400").replace(f'"{NAN}"', "NaN")
    return text.encode()


# (case, ZEGO event, Data, the field the reason names, the metric's reason label)
HOSTILE: list[tuple[str, str, dict[str, Any], str, str]] = [
    (
        "created_far_past_9999",
        "AgentInstanceCreated",
        {"CreatedTimestamp": 2**62},
        "Data.CreatedTimestamp",
        "out_of_range",
    ),
    (
        "created_negative",
        "AgentInstanceCreated",
        {"CreatedTimestamp": -1},
        "Data.CreatedTimestamp",
        "out_of_range",
    ),
    ("exception_code_above_int64", "Exception", {"Code": 2**63, "Message": "m"}, "Data.Code", "out_of_range"),
    ("exception_code_text", "Exception", {"Code": "E2203", "Message": "m"}, "Data.Code", "wrong_type"),
    (
        "exception_message_object",
        "Exception",
        {"Code": 2203, "Message": {"x": 1}},
        "Data.Message",
        "wrong_type",
    ),
    (
        "float_1e400",
        "AgentInstanceDeleted",
        {"Code": 0, "LatencyData": {"LLMTPS": HUGE_FLOAT}},
        "Data.LatencyData.LLMTPS",
        "out_of_range",
    ),
    ("nan_literal", "LLMResult", {"Round": NAN, "Text": "x"}, "Data.Round", "out_of_range"),
    (
        "llmttft_fast",
        "AgentInstanceDeleted",
        {"Code": 0, "LatencyData": {"LLMTTFT": "fast"}},
        "Data.LatencyData.LLMTTFT",
        "wrong_type",
    ),
    (
        "latency_not_object",
        "AgentInstanceDeleted",
        {"Code": 0, "LatencyData": [613]},
        "Data.LatencyData",
        "wrong_type",
    ),
    (
        "total_cost_above_int64",
        "AgentInstanceDeleted",
        {"LatencyData": {"TotalCost": 2**64}},
        "Data.LatencyData.TotalCost",
        "out_of_range",
    ),
    (
        "deleted_far_future",
        "AgentInstanceDeleted",
        {"Code": 0, "DeletedTimestamp": 10**17},
        "Data.DeletedTimestamp",
        "out_of_range",
    ),
    (
        "metainfo_60_deep",
        "AgentInstanceMetaInfo",
        {"Round": 1, "MetaInfo": nested(60)},
        "Data.MetaInfo",
        "too_deep",
    ),
    ("round_2_64", "ASRResult", {"Round": 2**64, "Text": "x", "UserId": "u"}, "Data.Round", "out_of_range"),
    ("round_negative", "ASRResult", {"Round": -5, "Text": "x", "UserId": "u"}, "Data.Round", "out_of_range"),
    ("round_bool", "LLMResult", {"Round": True, "Text": "x"}, "Data.Round", "wrong_type"),
    ("arrays_500_deep", "LLMResult", {"Round": 1, "Text": nested_list(500)}, "Data.Text", "too_deep"),
    ("lone_surrogate", "ASRResult", {"Round": 1, "Text": "\ud800", "UserId": "u"}, "Data.Text", "unstorable"),
    (
        "sample_rate_above_int32",
        "UserAudioData",
        {"Round": 1, "SampleRate": 2**31, "Audio": ""},
        "Data.SampleRate",
        "out_of_range",
    ),
    ("status_list", "AgentInstanceStatus", {"Round": 1, "Status": ["SPEAKING"]}, "Data.Status", "wrong_type"),
    ("data_not_object", "LLMResult", [1, 2], "Data", "wrong_type"),  # type: ignore[list-item]
    ("unknown_event", "NoSuchEvent", {"Round": 1}, "Event", "unknown_event"),
]


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


def invalid_count(gateway: Gateway, event: str, reason: str) -> float:
    labels = {"event": event if event != "NoSuchEvent" else "unknown", "reason": reason}
    value = gateway.metrics.registry.get_sample_value("agentgw_callbacks_invalid_total", labels)
    return value or 0.0


async def read_events(call: Any, want: int, *, timeout: float = 5.0) -> list[epb.SessionEvent]:
    """Events from a lone-event or a batched watch (heartbeats skipped) until ``want`` arrived."""
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


def good(i: int) -> dict[str, Any]:
    return callback("LLMResult", INSTANCE, {"Round": i, "Text": f"t{i}"})


@pytest.mark.parametrize(("case", "event", "data", "field", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE])
async def test_a_hostile_signed_callback_is_a_400_with_its_reason_and_is_counted(
    gateway: Gateway,
    http: httpx.AsyncClient,
    stub: erpc.EventServiceStub,
    case: str,
    event: str,
    data: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    before = invalid_count(gateway, event, reason)
    response = await post(http, encode(callback(event, INSTANCE, data)))
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["result"] == "malformed"
    assert answer["message"].startswith(field), answer  # the path of the culprit
    assert invalid_count(gateway, event, reason) == before + 1
    assert list((await stub.ListEvents(eapi.ListEventsRequest(), timeout=5)).events) == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 100_000, "too_deep"),
        (b'{"a":' * 100_000, "too_deep"),
        (b"\xff\xfe{}", "not_json"),
        (json.dumps({"Event": "LLMResult"}).encode("utf-16"), "not_json"),
        (b'{"Sequence": ' + b"9" * 5000 + b"}", "not_json"),
        (b"[]", "not_json"),
    ],
    ids=["arrays_100000_deep", "objects_100000_deep", "not_utf8", "utf16", "5000_digit_integer", "array"],
)
async def test_bodies_that_are_not_json_objects_are_400s(
    gateway: Gateway, http: httpx.AsyncClient, body: bytes, reason: str
) -> None:
    before = invalid_count(gateway, "unknown", reason)
    response = await post(http, body)
    assert (response.status_code, response.json()["result"]) == (400, "malformed")
    assert invalid_count(gateway, "unknown", reason) == before + 1


async def test_values_at_the_edges_of_their_ranges_are_stored_and_convert(
    http: httpx.AsyncClient, stub: erpc.EventServiceStub
) -> None:
    bodies = [
        callback("AgentInstanceCreated", INSTANCE, {"CreatedTimestamp": 253_402_300_799_999}),
        callback("Exception", INSTANCE, {"Code": 2**63 - 1, "Message": "m", "Round": 2**63 - 1}),
        callback("Exception", INSTANCE, {"Code": -(2**63), "Message": "m"}),
        callback("AgentInstanceMetaInfo", INSTANCE, {"Round": 1, "MetaInfo": nested(17)}),
        callback("AgentInstanceMetaInfo", INSTANCE, {"Round": 2, "MetaInfo": ["not", "an", "object"]}),
        # ZEGO's averages as floats and numbers as decimal text: unambiguous, so accepted.
        callback(
            "AgentInstanceDeleted",
            INSTANCE,
            {"Code": "0", "LatencyData": {"LLMTTFT": 613.6, "LLMTPS": "11.5"}},
        ),
    ]
    for body in bodies:
        response = await post(http, body)
        assert response.status_code == 200, response.text
    events = list((await stub.ListEvents(eapi.ListEventsRequest(), timeout=5)).events)
    assert [e.WhichOneof("payload") for e in events] == [
        "created", "exception", "exception", "meta_info", "meta_info", "ended",
    ]  # fmt: skip
    created, top, bottom, deep, shaped, ended = events
    assert created.created.created_time.ToMilliseconds() == 253_402_300_799_999
    assert (top.exception.code, top.round, bottom.exception.code) == (2**63 - 1, 2**63 - 1, -(2**63))
    assert json.loads(deep.meta_info.meta_info_json) == nested(17)
    assert deep.meta_info.meta_info["a"]["a"]["a"] is not None  # a Struct too
    assert json.loads(shaped.meta_info.meta_info_json) == ["not", "an", "object"]
    assert not shaped.meta_info.HasField("meta_info")
    assert (ended.ended.latency.llm_ttft_ms, ended.ended.latency.llm_tps) == (614, 11.5)


@pytest.mark.parametrize("max_batch_size", [0, 4])
async def test_streams_resumes_and_list_events_go_on_around_hostile_callbacks(
    http: httpx.AsyncClient, stub: erpc.EventServiceStub, gateway: Gateway, max_batch_size: int
) -> None:
    live = stub.WatchEvents(eapi.WatchEventsRequest(max_batch_size=max_batch_size))
    await eventually(lambda: gateway.core.bus.subscriber_count == 1)
    for i, (_, event, data, _, _) in enumerate(HOSTILE):
        assert (await post(http, good(i))).status_code == 200
        assert (await post(http, encode(callback(event, INSTANCE, data)))).status_code == 400
    assert (await post(http, b"[" * 100_000)).status_code == 400
    assert (await post(http, good(len(HOSTILE)))).status_code == 200
    want = [f"t{i}" for i in range(len(HOSTILE) + 1)]

    streamed = await read_events(live, len(want))
    assert [e.llm_result.text for e in streamed] == want
    live.cancel()

    listed: list[epb.SessionEvent] = []
    after = 0
    while True:  # paged, so a hostile body could have broken any page
        page = await stub.ListEvents(eapi.ListEventsRequest(page_size=3, after_cursor=after), timeout=5)
        listed += page.events
        if not page.events:
            break
        after = page.next_cursor
    assert [e.llm_result.text for e in listed] == want

    resumed = stub.WatchEvents(
        eapi.WatchEventsRequest(
            start=eapi.START_POSITION_AFTER_CURSOR,
            after_cursor=listed[2].cursor,
            max_batch_size=max_batch_size,
        )
    )
    assert [e.llm_result.text for e in await read_events(resumed, len(want) - 3)] == want[3:]
    assert (await post(http, good(99))).status_code == 200  # and live after the replay
    assert [e.llm_result.text for e in await read_events(resumed, 1)] == ["t99"]
    resumed.cancel()


# -- a bounded, seeded fuzz: whatever a signed body holds, the answer is 200 or 400, never a 5xx, and
# everything that was stored converts.

FIELDS = {
    "AgentInstanceCreated": ["CreatedTimestamp"],
    "AgentInstanceDeleted": ["Code", "DeletedTimestamp", "LatencyData"],
    "UserSpeakAction": ["UserId", "Action", "Round"],
    "ASRResult": ["UserId", "Round", "Text"],
    "LLMResult": ["Round", "Text"],
    "AgentInstanceStatus": ["Status", "Round"],
    "Interrupted": ["Round", "Reason", "PlayedText"],
    "Exception": ["Code", "Message", "Round"],
    "AgentInstanceMetaInfo": ["Round", "MetaInfo"],
    "UserAudioData": ["UserId", "Round", "SampleRate", "Format", "Audio"],
}
ENVELOPE = ["AgentInstanceId", "AgentId", "RoomId", "AgentUserId", "Sequence", "AppId", "Data"]
LATENCY = ["LLMTTFT", "LLMTPS", "TTSAudioFirstFrameTime", "TotalCost"]
VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30,
    1.5, -0.0, 1e308, HUGE_FLOAT, NAN, "", "x", "613", "11.5", "fast", "\u00e9\u4e2d", "\ud83d",
    "SPEAK_BEGIN", "IDLE", [], [1, "a"], {}, {"a": 1}, nested(5), nested(19), nested(25),
    nested_list(30), {"LLMTTFT": "fast"}, {"TotalCost": 2**63}, {"LLMTPS": HUGE_FLOAT},
]  # fmt: skip


def fuzzed(rng: Any, i: int) -> bytes:
    event = rng.choice(sorted(FIELDS))
    body = callback(event, str(10**18 + i % 7), {field: rng.choice(VALUES[:12]) for field in FIELDS[event]})
    for _ in range(rng.randint(1, 3)):
        where = rng.random()
        if where < 0.6:
            body["Data"] = dict(body["Data"]) if isinstance(body["Data"], dict) else {}
            body["Data"][rng.choice(FIELDS[event])] = rng.choice(VALUES)
        elif where < 0.8 and event == "AgentInstanceDeleted":
            body["Data"] = {"Code": 0, "LatencyData": {rng.choice(LATENCY): rng.choice(VALUES)}}
        else:
            body[rng.choice(ENVELOPE)] = rng.choice(VALUES)
    return encode(body)


async def test_random_signed_bodies_are_never_a_5xx_and_all_that_is_stored_converts(
    gateway: Gateway, http: httpx.AsyncClient, stub: erpc.EventServiceStub
) -> None:
    rng = random.Random(16)
    statuses: dict[int, int] = {}
    for i in range(400):
        response = await post(http, fuzzed(rng, i))
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    assert set(statuses) == {200, 400}, statuses  # both happen; nothing else does

    listed: list[epb.SessionEvent] = []
    after = 0
    while True:
        request = eapi.ListEventsRequest(
            page_size=50,
            after_cursor=after,
            include_raw=True,
            filter=eapi.EventFilter(event_types=[t for t in epb.EventType.values() if t]),
        )
        page = await stub.ListEvents(request, timeout=5)
        if not page.events:
            break
        listed += page.events
        after = page.next_cursor
    assert 0 < len(listed) <= statuses[200]
    assert [e for e in listed if e.WhichOneof("payload") == "unreadable"] == []
    watch = stub.WatchEvents(
        eapi.WatchEventsRequest(
            start=eapi.START_POSITION_OLDEST, max_batch_size=7, filter=request.filter, include_raw=True
        )
    )
    watched = await read_events(watch, len(listed))
    watch.cancel()
    assert [e.SerializeToString() for e in watched] == [e.SerializeToString() for e in listed]
    for event in watched:  # and a subscriber can parse every message
        epb.SessionEvent.FromString(event.SerializeToString())
    samples = [s for m in gateway.metrics.registry.collect() for s in m.samples]
    assert sum(s.value for s in samples if s.name == "agentgw_events_unreadable_total") == 0
    # Every 400 was counted with its event and reason (seed 16: 360 of the 400 bodies).
    assert sum(s.value for s in samples if s.name == "agentgw_callbacks_invalid_total") == statuses[400]


async def test_a_value_the_ledger_cannot_store_is_a_400_even_past_validation(
    gateway: Gateway, http: httpx.AsyncClient, stub: erpc.EventServiceStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Defence in depth: with the value checks switched off, the ledger's refusal still becomes a
    # 400 with a reason (not a 500, and not a 503 that ZEGO would retry for nothing).
    monkeypatch.setattr("service.domain.ingest.check_values", lambda data, raw: None)
    before = invalid_count(gateway, "LLMResult", "unstorable")
    body = callback("LLMResult", INSTANCE, {"Round": 1, "Text": "x"})
    body["AgentId"] = "\ud800"
    response = await post(http, encode(body))
    assert (response.status_code, response.json()["result"]) == (400, "malformed")
    assert response.json()["message"] == "a value cannot be stored"
    assert invalid_count(gateway, "LLMResult", "unstorable") == before + 1
    assert list((await stub.ListEvents(eapi.ListEventsRequest(), timeout=5)).events) == []
    assert (await post(http, good(1))).status_code == 200  # and the next one is stored
