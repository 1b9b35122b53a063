"""agentgw_client against a real gateway: a full call, idempotent retries, RetryInfo, the error tree,
and a watch that survives dropped connections with no gap and no duplicate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from google.protobuf import struct_pb2

from agentgw_client import (
    Agent,
    AgentGw,
    CreateSessionRequest,
    DigitalHumanSpec,
    LlmConfig,
    RetryPolicy,
    RtcSpec,
    SessionEvent,
    TtsConfig,
    VoiceSpec,
    errors,
    new_request_id,
)
from agentgw_client.gen.agentgw.v1 import session_pb2 as spb
from service.server import Gateway
from tests.clients.conftest import Proxy
from tests.conftest import Emulator, eventually
from tests.events.helpers import callback, post

AVATAR = "63c3aa64-1d80-4b04-a0be-1c65614eb7eb"
RATE_LIMITED = 410001029  # ZEGO's rate-limit code: the gateway answers UNAVAILABLE + RetryInfo
INSTANCE = "1912124734317838336"  # a callback for an instance the gateway never started


def agent(agent_id: str = "client-agent") -> Agent:
    app = struct_pb2.Struct()
    app.update({"appid": "zego_test", "token": "zego_test", "cluster": "volcano_tts"})
    return Agent(
        agent_id=agent_id,
        display_name="Client test",
        llm=LlmConfig(url="https://llm.example/v1/chat/completions", api_key="secret-key", model="m"),
        tts=TtsConfig(vendor="ByteDance", app=app),
    )


def dh_request(agent_id: str = "client-agent") -> CreateSessionRequest:
    return CreateSessionRequest(
        agent_id=agent_id,
        user_id="user_1",
        digital_human=DigitalHumanSpec(digital_human_id=AVATAR),
        rtc=RtcSpec(room_id="room_1", user_stream_id="user_1_stream"),
    )


async def test_a_digital_human_call_from_create_to_ended(gw: AgentGw, emulator: Emulator) -> None:
    created = await gw.agents.create(agent())
    assert created.agent_id == "client-agent" and created.llm.api_key_set and not created.llm.api_key
    session = await gw.sessions.create(dh_request())
    assert session.request_id, "the client generated an idempotency key"
    assert session.digital_human_config.digital_human_id == AVATAR
    token = await gw.tokens.create("user_1", ttl=600)
    assert token.token.startswith("04") and token.expire_time.seconds > time.time()

    got: list[SessionEvent] = []

    async def follow() -> None:
        async for event in gw.events.watch(session_ids=[session.session_id], after_cursor=0):
            got.append(event)

    watcher = asyncio.create_task(follow())
    await emulator.user_turn(session.agent_instance_id, "Hello?")
    await eventually(lambda: any(e.HasField("llm_result") for e in got), 10)  # the agent answered
    ended = await gw.sessions.end(session.session_id)
    assert ended.state in (spb.SESSION_STATE_ENDING, spb.SESSION_STATE_ENDED)
    await asyncio.wait_for(watcher, timeout=15)  # the iterator ends by itself after `ended`
    kinds = [e.WhichOneof("payload") for e in got]
    assert kinds[-1] == "ended" and kinds.count("ended") == 1
    assert {"created", "asr_result", "llm_result"} <= set(kinds), kinds
    cursors = [e.cursor for e in got]
    assert cursors == sorted(set(cursors))
    assert (await gw.sessions.get(session.session_id)).session.state == spb.SESSION_STATE_ENDED
    await gw.agents.delete("client-agent")
    with pytest.raises(errors.NotFound):
        await gw.agents.get("client-agent")


async def test_a_retried_create_with_the_same_request_id_returns_the_original(
    gw: AgentGw, emulator: Emulator
) -> None:
    await gw.agents.create(agent())
    rid = new_request_id()
    first = await gw.sessions.create(CreateSessionRequest(**_voice(), request_id=rid))
    again = await gw.sessions.create(CreateSessionRequest(**_voice(), request_id=rid))
    assert again.session_id == first.session_id
    assert len((await emulator.state())["instances"]) == 1
    other = await gw.sessions.create(CreateSessionRequest(**_voice(user="user_2")))
    assert other.session_id != first.session_id and other.request_id and other.request_id != rid


def _voice(user: str = "user_1") -> dict[str, Any]:
    return {
        "agent_id": "client-agent",
        "user_id": user,
        "voice": VoiceSpec(),
        "rtc": RtcSpec(room_id=f"room_{user}", user_stream_id=f"{user}_stream"),
    }


async def test_errors_are_decoded_into_the_tree(gw: AgentGw) -> None:
    with pytest.raises(errors.NotFound) as missing:
        await gw.agents.get("nobody")
    assert missing.value.reason == "AGENT_NOT_FOUND" and missing.value.request_id
    await gw.agents.create(agent())
    with pytest.raises(errors.AlreadyExists) as exists:
        await gw.agents.create(agent())
    assert exists.value.reason == "AGENT_ALREADY_EXISTS"
    assert exists.value.metadata["zego_code"] == "410001008"
    bad = agent("bad id with spaces")
    bad.llm.url = "not a url"
    with pytest.raises(errors.InvalidArgument) as invalid:
        await gw.agents.create(bad)
    fields = {v.field for v in invalid.value.field_violations}
    assert {"agent.agent_id", "agent.llm.url"} <= fields, fields
    assert isinstance(invalid.value, errors.AgentGwError) and invalid.value.code.name == "INVALID_ARGUMENT"


@pytest.mark.parametrize("gateway_overrides", [{"voice_limit": 1}])
async def test_a_full_pool_is_capacity_exhausted_with_quota_and_retry_info(gw: AgentGw) -> None:
    await gw.agents.create(agent())
    await gw.sessions.create(CreateSessionRequest(**_voice()))
    started = time.monotonic()
    with pytest.raises(errors.CapacityExhausted) as full:
        await gw.sessions.create(CreateSessionRequest(**_voice(user="user_2")))
    assert time.monotonic() - started < 2, "RESOURCE_EXHAUSTED is not retried by default"
    assert full.value.reason == "CAPACITY_EXHAUSTED"
    assert [q.subject for q in full.value.quota_violations] == ["pool:voice"]
    assert full.value.retry_delay is not None and full.value.retry_delay > 0


async def test_retries_wait_what_retry_info_says(gw: AgentGw, emulator: Emulator) -> None:
    await gw.agents.create(agent())
    await emulator.fault(action="QueryAgents", code=RATE_LIMITED, count=2)
    started = time.monotonic()
    got = await gw.agents.get("client-agent", timeout=10)
    elapsed = time.monotonic() - started
    assert got.agent_id == "client-agent"
    # Two rate-limited attempts, each answered with RetryInfo (1 s): the third one succeeds.
    assert 2.0 <= elapsed < 5.0, elapsed


async def test_a_retry_that_would_outlive_the_deadline_is_not_made(gw: AgentGw, emulator: Emulator) -> None:
    await gw.agents.create(agent())
    await emulator.fault(action="QueryAgents", code=RATE_LIMITED, count=1)
    started = time.monotonic()
    with pytest.raises(errors.Unavailable) as unavailable:
        await gw.agents.get("client-agent", timeout=0.8)  # RetryInfo says 1 s: past the deadline
    assert time.monotonic() - started < 0.8
    assert unavailable.value.reason == "UPSTREAM_RATE_LIMITED" and unavailable.value.retry_delay == 1.0
    assert (await gw.agents.get("client-agent")).agent_id == "client-agent"  # the fault was used once


async def test_non_idempotent_calls_are_retried_only_when_nothing_was_done(
    gw: AgentGw, emulator: Emulator
) -> None:
    await gw.agents.create(agent())
    session = await gw.sessions.create(CreateSessionRequest(**_voice()))
    # A ZEGO server error: the TTS may or may not have been queued, so Speak is not repeated.
    await emulator.fault(action="SendAgentInstanceTTS", code=410001999, count=1)
    with pytest.raises(errors.Unavailable) as failed:
        await gw.sessions.speak(session.session_id, "hello")
    assert failed.value.reason == "UPSTREAM_ERROR"
    # Rate limited: ZEGO did nothing, so the same Speak is sent again after RetryInfo's delay.
    await emulator.fault(action="SendAgentInstanceTTS", code=RATE_LIMITED, count=1)
    assert await gw.sessions.speak(session.session_id, "hello") > 0


async def test_retry_policy_never_makes_one_attempt(wired: Gateway, emulator: Emulator) -> None:
    async with AgentGw(f"127.0.0.1:{wired.grpc_port}", retry=RetryPolicy.never()) as gw:
        await gw.agents.create(agent())
        await emulator.fault(action="QueryAgents", code=RATE_LIMITED, count=1)
        with pytest.raises(errors.Unavailable):
            await gw.agents.get("client-agent")


@pytest.fixture
async def proxy(wired: Gateway) -> AsyncIterator[Proxy]:
    p = Proxy(wired.grpc_port)
    await p.start()
    yield p
    await p.close()


async def _post_llm(http: httpx.AsyncClient, rounds: range) -> None:
    for i in rounds:
        response = await post(http, callback("LLMResult", INSTANCE, {"Round": i, "Text": f"t{i}"}))
        assert response.status_code == 200


async def test_watch_resumes_after_dropped_connections_without_gap_or_duplicate(
    wired: Gateway, proxy: Proxy
) -> None:
    fast = RetryPolicy(initial_backoff=0.05, max_backoff=0.2)
    got: list[SessionEvent] = []
    async with (
        AgentGw(f"127.0.0.1:{proxy.port}", retry=fast) as gw,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{wired.http_port}", timeout=5) as http,
    ):

        async def follow() -> None:
            async for event in gw.events.watch(event_types=[]):
                got.append(event)

        watcher = asyncio.create_task(follow())
        # The stream is open (the head cursor was read before it).
        await eventually(lambda: proxy.accepted >= 1 and wired.core.bus.subscriber_count == 1, 10)
        await _post_llm(http, range(5))
        await eventually(lambda: len(got) >= 5, 10)
        # Dropped, and kept down while events arrive; then dropped again right after reconnecting.
        proxy.refusing = True
        proxy.cut()
        await _post_llm(http, range(5, 10))
        await asyncio.sleep(0.5)
        proxy.refusing = False
        await eventually(lambda: proxy.accepted >= 2, 10)
        await _post_llm(http, range(10, 15))
        proxy.cut()
        await _post_llm(http, range(15, 20))
        await eventually(lambda: len(got) >= 20, 10)
        await asyncio.sleep(0.3)  # nothing more (no duplicate) arrives late
        watcher.cancel()
    texts = [e.llm_result.text for e in got]
    assert texts == [f"t{i}" for i in range(20)]
    cursors = [e.cursor for e in got]
    assert cursors == sorted(set(cursors))
    assert proxy.accepted >= 3


async def test_watch_raises_what_it_cannot_resume(gw: AgentGw) -> None:
    head = await gw.events.head_cursor()
    with pytest.raises(errors.OutOfRange):
        async for _ in gw.events.watch(after_cursor=head + 1000):
            pass


async def test_session_controls_and_lists(gw: AgentGw) -> None:
    await gw.agents.create(agent())
    session = await gw.sessions.create(CreateSessionRequest(**_voice()))
    assert [a.agent_id async for a in gw.agents.list(page_size=1)] == ["client-agent"]
    assert [s.session_id async for s in gw.sessions.list()] == [session.session_id]
    user = spb.ChatMessage(role=spb.CHAT_ROLE_USER, content="remember: blue")
    await gw.sessions.append_context(session.session_id, [user])
    assert [m.content for m in await gw.sessions.context(session.session_id)] == ["remember: blue"]
    await gw.sessions.reset_context(session.session_id)
    assert await gw.sessions.context(session.session_id) == []
    assert await gw.sessions.send_text(session.session_id, "hi") > 0
    assert await gw.sessions.interrupt(session.session_id) >= 0
    assert await gw.sessions.agent_status(session.session_id) != 0
    pools = {p.pool: p for p in (await gw.sessions.capacity()).pools}
    assert pools["voice"].in_use == 1
    with pytest.raises(errors.FailedPrecondition):
        await gw.sessions.start_listening(session.session_id, 1)  # not a walkie-talkie session
