"""Walkie-talkie mode (spec §5.18) and MaxIdleTime deletion with Code 1202 (spec §5.6, §5.8)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .conftest import DH_ID, StartEmulator, Zego

WALKIE: dict[str, Any] = {"AdvancedConfig": {"CommunicationMode": 2}}


def _listen(iid: str, seq: int | None = None, **extra: object) -> dict[str, object]:
    body: dict[str, object] = {"AgentInstanceId": iid, **extra}
    if seq is not None:
        body["Sequence"] = seq
    return body


async def test_listening_requires_walkie_talkie_mode(zego: Zego) -> None:
    iid = await zego.create_voice()
    assert await zego.code("StartListening", _listen(iid, 1)) == 410001042
    assert await zego.code("StopListening", _listen(iid, 1)) == 410001042


async def test_walkie_talkie_sequence_alternation_and_listening(zego: Zego) -> None:
    iid = await zego.create_voice(**WALKIE)
    assert await zego.code("StopListening", _listen(iid, 1)) == 410001043  # must start first
    started = (await zego.ok("StartListening", _listen(iid, 1)))["Round"]
    assert (await zego.ok("QueryAgentInstanceStatus", {"AgentInstanceId": iid}))["Status"] == "LISTENING"
    # The agent is listening: active LLM/TTS are refused.
    assert await zego.code("SendAgentInstanceLLM", {"AgentInstanceId": iid, "Text": "x"}) == 410001013
    assert await zego.code("SendAgentInstanceTTS", {"AgentInstanceId": iid, "Text": "x"}) == 410001013
    assert await zego.code("StartListening", _listen(iid, 2)) == 410001043  # not alternating
    assert await zego.code("StopListening", _listen(iid, 1)) == 410001043  # stale Sequence
    stopped = (await zego.ok("StopListening", _listen(iid, 3)))["Round"]
    assert stopped == started  # the reply belongs to the round that listening opened
    assert (await zego.ok("QueryAgentInstanceStatus", {"AgentInstanceId": iid}))["Status"] != "LISTENING"
    assert (await zego.ok("StartListening", _listen(iid, 4)))["Round"] > started
    # Sequences are per user: another user starts from scratch.
    assert await zego.code("StartListening", _listen(iid, 1, UserId="other")) == 0


async def test_user_not_publishing_is_410001046(zego: Zego) -> None:
    iid = await zego.create_voice(user="talker", **WALKIE)
    response = await zego.admin("POST", "/rooms/room_1/users/talker", {"publishing": False})
    assert response.json() == {"room_id": "room_1", "user_id": "talker", "present": True, "publishing": False}
    assert await zego.code("StartListening", _listen(iid, 1)) == 410001046
    await zego.admin("POST", "/rooms/room_1/users/talker", {"publishing": True})
    assert await zego.code("StartListening", _listen(iid, 2)) == 0


async def test_start_listening_cuts_the_agent(start_emulator: StartEmulator) -> None:
    zego = await start_emulator(time_scale=1.0)
    await zego.register()
    iid = await zego.create_voice(**WALKIE)
    round_ = await zego.ok("SendAgentInstanceTTS", {"AgentInstanceId": iid, "Text": "a long announcement"})
    await zego.ok("StartListening", _listen(iid))
    (event,) = await zego.events(iid, "Interrupted")
    assert event["data"] == {**event["data"], "Round": round_["Round"], "Reason": 1}


async def _wait_deleted(zego: Zego, iid: str, within: float) -> dict[str, object]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        events = await zego.events(iid, "AgentInstanceDeleted")
        if events:
            data: dict[str, object] = events[0]["data"]
            return data
        await asyncio.sleep(0.02)
    raise AssertionError(f"{iid} was not deleted within {within}s")


async def test_absent_user_deletes_the_instance_with_1202(start_emulator: StartEmulator) -> None:
    zego = await start_emulator(time_scale=0.01)  # MaxIdleTime 10 s -> 0.1 s
    await zego.register()
    kept = await zego.create_voice(user="stays", AdvancedConfig={"MaxIdleTime": 10})
    gone = await zego.create_voice(user="leaves", AdvancedConfig={"MaxIdleTime": 10})
    await zego.admin("POST", "/rooms/room_1/users/leaves", {"present": False})
    data = await _wait_deleted(zego, gone, within=3)
    assert data["Code"] == 1202
    await zego.wait_gone(gone, within=1)
    assert (await zego.status(kept))["Code"] == 0


async def test_returning_user_resets_the_idle_clock(start_emulator: StartEmulator) -> None:
    zego = await start_emulator(time_scale=0.01)  # MaxIdleTime 50 s -> 0.5 s
    await zego.register()
    iid = await zego.create_voice(user="flaky", AdvancedConfig={"MaxIdleTime": 50})
    await zego.admin("POST", "/rooms/room_1/users/flaky", {"present": False})
    await asyncio.sleep(0.25)
    await zego.admin("POST", "/rooms/room_1/users/flaky", {"present": True})
    await asyncio.sleep(0.5)
    assert (await zego.status(iid))["Code"] == 0


async def test_user_marked_absent_before_create(start_emulator: StartEmulator) -> None:
    zego = await start_emulator(time_scale=0.001)  # default MaxIdleTime 120 s -> 0.12 s
    await zego.register()
    await zego.admin("POST", "/rooms/room_1/users/never_came", {"present": False})
    iid = await zego.create_voice(user="never_came")
    assert (await _wait_deleted(zego, iid, within=3))["Code"] == 1202


async def test_live_instance_ends_without_tts(start_emulator: StartEmulator) -> None:
    zego = await start_emulator(time_scale=0.01)  # MaxIdleTime 30 s -> 0.3 s
    await zego.register()
    body = {
        "AgentId": "agent_1",
        "CDN": {"Url": "rtmp://x/y"},
        "DigitalHuman": {"DigitalHumanId": DH_ID},
        "AdvancedConfig": {"MaxIdleTime": 30},
    }
    iid = (await zego.ok("CreateLiveDigitalHumanAgentInstance", body))["AgentInstanceId"]
    assert (await _wait_deleted(zego, iid, within=3))["Code"] == 1202


async def test_live_max_idle_range(zego: Zego) -> None:
    body = {
        "AgentId": "agent_1",
        "CDN": {"Url": "rtmp://x/y"},
        "DigitalHuman": {"DigitalHumanId": DH_ID},
        "AdvancedConfig": {"MaxIdleTime": 20},
    }
    envelope = await zego.call("CreateLiveDigitalHumanAgentInstance", body)
    assert envelope["Message"] == "AdvancedConfig.MaxIdleTime must be between 30 and 86400"
