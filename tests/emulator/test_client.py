"""The emulator's shipped client (zego_emulator.client) and emulator_for (zego_emulator.testing)."""

from __future__ import annotations

import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from service.zego.token04 import mint_token04
from zego_emulator import EmulatorAdminError, EmulatorClient, ZegoCallError, errors
from zego_emulator.testing import emulator_for, random_config

from .conftest import LLM, TTS
from .receiver import CallbackReceiver


async def _agent_and_instance(zego: EmulatorClient, room: str = "room_c") -> str:
    await zego.ok("RegisterAgent", {"AgentId": "agent_c", "Name": "C", "LLM": LLM, "TTS": TTS})
    rtc = {"RoomId": room, "AgentStreamId": "agent_s", "AgentUserId": "agent_u", "UserStreamId": "user_s"}
    data = await zego.ok("CreateAgentInstance", {"AgentId": "agent_c", "UserId": "user_c", "RTC": rtc})
    return str(data["AgentInstanceId"])


def _refuses_connections(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((parts.hostname or "", parts.port or 0)) != 0


async def test_emulator_for_serves_on_a_free_loopback_port_and_stops_when_the_block_ends() -> None:
    async with emulator_for() as zego:
        assert urlsplit(zego.url).hostname == "127.0.0.1" and urlsplit(zego.url).port
        assert zego.app_id == zego.config.app_id == 1 and zego.callback_secret == zego.config.callback_secret
        assert await zego.ok("ListAgents", {}) is not None
        assert (await zego.state())["instances"] == []
        url = zego.url
    assert _refuses_connections(url)
    assert zego.http.is_closed


async def test_two_emulators_get_different_secrets_and_never_show_them() -> None:
    async with emulator_for() as a, emulator_for() as b:
        assert a.config.server_secret != b.config.server_secret and a.url != b.url
        for client in (a, b):
            assert client.config.server_secret not in repr(client)


async def test_ok_raises_the_zego_code_and_call_returns_the_envelope() -> None:
    async with emulator_for() as zego:
        envelope = await zego.call("QueryAgentInstanceStatus", {"AgentInstanceId": "nope"})
        assert envelope["Code"] == 410001002
        with pytest.raises(ZegoCallError) as info:
            await zego.ok("QueryAgentInstanceStatus", {"AgentInstanceId": "nope"})
        assert info.value.code == 410001002 and info.value.envelope["Code"] == 410001002
        with pytest.raises(LookupError):
            await zego.stored_agent("nobody")
        await zego.ok("RegisterAgent", {"AgentId": "agent_c", "Name": "C", "LLM": LLM, "TTS": TTS})
        assert (await zego.stored_agent("agent_c"))["LLM"]["Model"] == LLM["Model"]


async def test_a_client_built_from_the_wrong_secret_is_refused_by_the_signature_check() -> None:
    async with emulator_for() as zego:
        impostor = EmulatorClient(zego.url, app_id=zego.app_id, server_secret="f" * 32)
        async with impostor:
            assert (await impostor.call("ListAgents"))["Code"] == errors.SIGNATURE_WRONG


async def test_faults_are_injected_listed_consumed_and_cleared() -> None:
    async with emulator_for() as zego:
        fault = await zego.fault("ListAgents", code=410001008, count=2)
        assert fault["action"] == "ListAgents" and fault["count"] == 2
        assert [f["code"] for f in await zego.faults()] == [410001008]
        assert (await zego.call("ListAgents"))["Code"] == 410001008
        await zego.fault("*", latency_ms=10)
        assert await zego.clear_faults() == 2
        assert (await zego.call("ListAgents"))["Code"] == 0
        with pytest.raises(EmulatorAdminError) as info:
            await zego.fault("NoSuchAction", code=1)
        assert info.value.status == 400 and "action" in info.value.message


async def test_verify_token_reads_a_good_token_and_says_why_a_bad_one_fails() -> None:
    async with emulator_for() as zego:
        token = mint_token04(
            app_id=zego.app_id, user_id="alice", secret=zego.config.server_secret, effective_seconds=600
        )
        verdict = await zego.verify_token(token, "alice")
        assert verdict.valid and verdict.user_id == "alice" and verdict.app_id == zego.app_id
        assert verdict.expire is not None and verdict.expire >= int(time.time()) + 500
        wrong = await zego.verify_token(token, "mallory")
        assert not wrong.valid and wrong.error and wrong.layout is None
        assert zego.config.server_secret not in wrong.error


async def test_callback_url_faults_and_stats(shared_receiver: CallbackReceiver) -> None:
    shared_receiver.clear()
    async with emulator_for(random_config(time_scale=0.01)) as zego:
        stats = await zego.set_callback_url(shared_receiver.url)
        assert stats["url"] == shared_receiver.url and (await zego.callback_stats())["url"] == stats["url"]
        fault = await zego.callback_fault("duplicate", count=1, event="AgentInstanceCreated")
        assert fault["mode"] == "duplicate" and len(await zego.callback_faults()) == 1
        instance_id = await _agent_and_instance(zego)
        created = await shared_receiver.wait_event(instance_id, "AgentInstanceCreated", count=2)
        assert created[0].raw == created[1].raw  # the duplicate is the same delivery, twice
        await zego.callback_fault("drop", count=5)
        assert await zego.clear_callback_faults() == 1
        assert (await zego.set_callback_url(None))["url"] is None
    shared_receiver.clear()


async def test_turns_exceptions_rooms_and_the_journal() -> None:
    async with emulator_for(random_config(time_scale=0.01)) as zego:
        instance_id = await _agent_and_instance(zego)
        latencies = {"asr_ms": 100, "llm_ttft_ms": 200, "tts_first_frame_ms": 300}
        turn = await zego.user_turn(instance_id, "Hello?", **latencies)
        assert turn["AgentInstanceId"] == instance_id and turn["Round"] > 0
        assert {k: turn["latency"][k] for k in latencies} == latencies
        report = await zego.report_exception(instance_id, 2203)
        assert report["Data"]["Code"] == 2203
        journal = await zego.events(instance_id)
        assert journal and {e["instance_id"] for e in journal} == {instance_id}
        assert await zego.events(instance_id, event="Exception")
        with pytest.raises(EmulatorAdminError) as info:
            await zego.user_turn("no-such-instance", "Hello?")
        assert info.value.status == 404
        with pytest.raises(EmulatorAdminError) as info:
            await zego.room_turn("empty_room", "Anyone?")
        assert info.value.status == 404
        answer = await zego.set_room_user("room_c", "user_c", present=False)
        assert answer is not None


async def test_ids_cannot_escape_their_path_segment() -> None:
    """An instance id like ``../state`` names an instance, it does not reach another endpoint."""
    async with emulator_for() as zego:
        for hostile in ("../state", "a/../../reset", "x?y=1"):
            with pytest.raises(EmulatorAdminError) as info:
                await zego.user_turn(hostile, "hi")
            assert info.value.status in (400, 404)


async def test_reset_forgets_agents_and_faults() -> None:
    async with emulator_for() as zego:
        await _agent_and_instance(zego)
        await zego.fault("ListAgents", code=410001008)
        await zego.reset()
        assert await zego.faults() == [] and (await zego.ok("ListAgents", {}))["Total"] == 0


async def test_wrap_serves_a_middleware_around_the_app_with_its_lifespan() -> None:
    seen: list[str] = []

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                seen.append(scope["path"])
            await app(scope, receive, send)

        return middleware

    async with emulator_for(random_config(time_scale=0.01), wrap=wrap) as zego:
        instance_id = await _agent_and_instance(zego)
        await zego.user_turn(instance_id, "hi", speech_ms=10)  # the ticker (lifespan) runs the turn
        await zego.state()
    assert "/" in seen and "/_emulator/state" in seen


async def test_a_callers_http_client_stays_open_and_needs_no_base_url() -> None:
    async with emulator_for() as zego, httpx.AsyncClient() as http:
        client = EmulatorClient(
            zego.url, app_id=zego.app_id, server_secret=zego.config.server_secret, http=http
        )
        async with client:
            assert (await client.call("ListAgents"))["Code"] == 0
        assert not http.is_closed
        state: dict[str, Any] = await client.state()
        assert "agents" in state
