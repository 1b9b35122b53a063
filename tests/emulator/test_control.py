"""Controlling running instances: TTS/LLM, rounds, queue, interrupt, context, update, graceful shutdown."""

from __future__ import annotations

import asyncio
import itertools
import time

from .conftest import TTS, StartEmulator, Zego

LONG_TEXT = "This sentence takes a few emulated seconds to speak aloud. " * 2


async def _speaking_zego(start_emulator: StartEmulator) -> tuple[Zego, str]:
    """An emulator in real time (time_scale 1), so speech lasts seconds, and one voice instance."""
    zego = await start_emulator(time_scale=1.0)
    await zego.register()
    return zego, await zego.create_voice()


async def test_tts_speaks_then_returns_to_idle(zego: Zego) -> None:
    iid = await zego.create_voice()
    data = await zego.ok("SendAgentInstanceTTS", {"AgentInstanceId": iid, "Text": "hello"})
    assert set(data) == {"Round"} and isinstance(data["Round"], int)
    deadline = time.monotonic() + 3
    while (await zego.ok("QueryAgentInstanceStatus", {"AgentInstanceId": iid}))["Status"] != "IDLE":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    statuses = [
        (e["data"]["Status"], e["data"]["Round"]) for e in await zego.events(iid, "AgentInstanceStatus")
    ]
    assert statuses == [("SPEAKING", data["Round"]), ("IDLE", data["Round"])]


async def test_llm_thinks_then_speaks_and_records_the_answer(zego: Zego) -> None:
    iid = await zego.create_voice()
    body = {"AgentInstanceId": iid, "Text": "what time is it", "AddQuestionToHistory": True}
    round_ = (await zego.ok("SendAgentInstanceLLM", body))["Round"]
    deadline = time.monotonic() + 3
    while not await zego.events(iid, "LLMResult"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    history = (await zego.ok("GetAgentInstanceMsgList", {"AgentInstanceId": iid}))["MessageList"]
    assert history[0] == {"Role": "user", "Content": "what time is it"}
    assert history[1]["Role"] == "assistant"
    statuses = [e["data"]["Status"] for e in await zego.events(iid, "AgentInstanceStatus")]
    assert statuses[:2] == ["THINKING", "SPEAKING"]
    assert (await zego.events(iid, "LLMResult"))[0]["data"]["Round"] == round_


async def test_text_is_required(zego: Zego) -> None:
    iid = await zego.create_voice()
    for action in ("SendAgentInstanceTTS", "SendAgentInstanceLLM"):
        envelope = await zego.call(action, {"AgentInstanceId": iid})
        assert (envelope["Code"], envelope["Message"]) == (410000003, "Text is required")


async def test_tts_text_limit_is_300_characters(zego: Zego) -> None:
    iid = await zego.create_voice()
    assert await zego.code("SendAgentInstanceTTS", {"AgentInstanceId": iid, "Text": "你" * 300}) == 0
    envelope = await zego.call("SendAgentInstanceTTS", {"AgentInstanceId": iid, "Text": "a" * 301})
    assert (envelope["Code"], envelope["Message"]) == (410000003, "Text must be at most 300 characters")


async def test_disable_tts_refuses_tts(zego: Zego) -> None:
    iid = await zego.create_voice(AdvancedConfig={"DisableTTS": True})
    envelope = await zego.call("SendAgentInstanceTTS", {"AgentInstanceId": iid, "Text": "hi"})
    assert envelope["Code"] == 410001007 and "DisableTTS" in envelope["Message"]
    await zego.ok("SendAgentInstanceLLM", {"AgentInstanceId": iid, "Text": "hi"})


async def test_rounds_increase_and_are_not_contiguous(zego: Zego) -> None:
    iid = await zego.create_voice()
    rounds = []
    for i in range(8):
        action = "SendAgentInstanceLLM" if i % 2 else "SendAgentInstanceTTS"
        rounds.append((await zego.ok(action, {"AgentInstanceId": iid, "Text": f"t{i}"}))["Round"])
    other = await zego.create_voice()
    rounds.append((await zego.ok("SendAgentInstanceTTS", {"AgentInstanceId": other, "Text": "x"}))["Round"])
    assert rounds == sorted(set(rounds))
    assert any(b - a > 1 for a, b in itertools.pairwise(rounds))


async def test_enqueue_holds_at_most_five_pending(start_emulator: StartEmulator) -> None:
    zego, iid = await _speaking_zego(start_emulator)
    body = {"AgentInstanceId": iid, "Text": LONG_TEXT, "SamePriorityOption": "Enqueue"}
    rounds = [
        (await zego.ok("SendAgentInstanceTTS", body))["Round"] for _ in range(6)
    ]  # 1 playing + 5 queued
    envelope = await zego.call("SendAgentInstanceTTS", body)
    assert envelope["Code"] == 410001007
    assert "5 pending" in envelope["Message"]
    assert (await zego.admin("GET", "/state")).json()["instances"][0]["queue_length"] == 5
    # ClearAndInterrupt at the same priority clears the queue and plays at once.
    last = await zego.ok("SendAgentInstanceTTS", {"AgentInstanceId": iid, "Text": "now"})
    assert last["Round"] > rounds[-1]
    assert (await zego.admin("GET", "/state")).json()["instances"][0]["queue_length"] == 0
    interrupted = await zego.events(iid, "Interrupted")
    assert interrupted[-1]["data"]["Round"] == rounds[0] and interrupted[-1]["data"]["Reason"] == 3


async def test_high_priority_interrupts_and_low_priority_waits(start_emulator: StartEmulator) -> None:
    zego, iid = await _speaking_zego(start_emulator)
    medium = (await zego.ok("SendAgentInstanceTTS", {"AgentInstanceId": iid, "Text": LONG_TEXT}))["Round"]
    await zego.ok("SendAgentInstanceTTS", {"AgentInstanceId": iid, "Text": LONG_TEXT, "Priority": "Low"})
    assert len(await zego.events(iid, "Interrupted")) == 0
    high = await zego.ok(
        "SendAgentInstanceTTS", {"AgentInstanceId": iid, "Text": "urgent", "Priority": "High"}
    )
    (event,) = await zego.events(iid, "Interrupted")
    assert event["data"]["Round"] == medium and event["data"]["Reason"] == 3
    assert (await zego.admin("GET", "/state")).json()["instances"][0]["Round"] == high["Round"]


async def test_interrupt_returns_the_interrupted_round_and_goes_idle(start_emulator: StartEmulator) -> None:
    zego, iid = await _speaking_zego(start_emulator)
    round_ = (await zego.ok("SendAgentInstanceTTS", {"AgentInstanceId": iid, "Text": LONG_TEXT}))["Round"]
    assert (await zego.ok("QueryAgentInstanceStatus", {"AgentInstanceId": iid}))["Status"] == "SPEAKING"
    assert (await zego.ok("InterruptAgentInstance", {"AgentInstanceId": iid}))["Round"] == round_
    assert (await zego.ok("QueryAgentInstanceStatus", {"AgentInstanceId": iid}))["Status"] == "IDLE"
    (event,) = await zego.events(iid, "Interrupted")
    assert event["data"]["Reason"] == 4
    # Nothing running: a fresh round.
    assert (await zego.ok("InterruptAgentInstance", {"AgentInstanceId": iid}))["Round"] > round_


async def test_message_list(zego: Zego) -> None:
    seed = [{"Role": "user", "Content": "hi"}, {"Role": "assistant", "Content": "hello"}]
    iid = await zego.create_voice(MessageHistory={"SyncMode": 1, "Messages": seed, "WindowSize": 10})
    assert await zego.ok("GetAgentInstanceMsgList", {"AgentInstanceId": iid}) == {
        "Total": 2,
        "MessageList": seed,
    }
    await zego.ok("SendAgentInstanceTTS", {"AgentInstanceId": iid, "Text": "spoken"})
    await zego.ok("SendAgentInstanceTTS", {"AgentInstanceId": iid, "Text": "not kept", "AddHistory": False})
    await zego.ok(
        "AddAgentInstanceMsg", {"AgentInstanceId": iid, "Messages": [{"Role": "user", "Content": "x"}]}
    )
    data = await zego.ok("GetAgentInstanceMsgList", {"AgentInstanceId": iid})
    assert data["MessageList"][2:] == [
        {"Role": "assistant", "Content": "spoken"},
        {"Role": "user", "Content": "x"},
    ]
    bad = await zego.call(
        "AddAgentInstanceMsg", {"AgentInstanceId": iid, "Messages": [{"Role": "bot", "Content": ""}]}
    )
    assert (bad["Code"], bad["Message"]) == (410000003, "Messages[0].Role must be one of assistant, user")
    missing = await zego.call("AddAgentInstanceMsg", {"AgentInstanceId": iid, "Messages": [{"Role": "user"}]})
    assert missing["Message"] == "Messages[0].Content is required"
    await zego.ok("ResetAgentInstanceMsgList", {"AgentInstanceId": iid})
    assert await zego.ok("GetAgentInstanceMsgList", {"AgentInstanceId": iid}) == {
        "Total": 0,
        "MessageList": [],
    }


async def test_sync_mode_zero_starts_empty(zego: Zego) -> None:
    iid = await zego.create_voice(MessageHistory={"Messages": [{"Role": "user", "Content": "hi"}]})
    assert (await zego.ok("GetAgentInstanceMsgList", {"AgentInstanceId": iid}))["Total"] == 0


async def test_update_instance(zego: Zego) -> None:
    iid = await zego.create_voice(TTS={**TTS, "TerminatorText": "#"})
    new_params = {"app": {"appid": "b", "token": "t2", "cluster": "volcano_tts"}}
    await zego.ok(
        "UpdateAgentInstance",
        {"AgentInstanceId": iid, "TTS": {**TTS, "Params": new_params, "TerminatorText": "#"}},
    )
    await zego.ok("UpdateAgentInstance", {"AgentInstanceId": iid, "RTC": {"UserStreamId": "new_stream"}})
    state = (await zego.admin("GET", "/state")).json()
    assert state["instances"][0]["UserStreamId"] == "new_stream"
    for tts in (
        {"Vendor": "MiniMax", "Params": {"app": {}}},
        {**TTS, "TerminatorText": "!"},
        TTS,
        {**TTS, "TerminatorText": "#", "CharacterFilter": ["*"]},
    ):
        envelope = await zego.call("UpdateAgentInstance", {"AgentInstanceId": iid, "TTS": tts})
        assert envelope["Code"] == 410001011, tts
        assert "cannot be updated" in envelope["Message"]
    assert await zego.code("UpdateAgentInstance", {"AgentInstanceId": "1" * 19}) == 410001002


async def test_graceful_shutdown_refuses_other_calls_until_idle(start_emulator: StartEmulator) -> None:
    zego, iid = await _speaking_zego(start_emulator)
    await zego.ok("SendAgentInstanceTTS", {"AgentInstanceId": iid, "Text": LONG_TEXT})
    body = {"AgentInstanceId": iid, "GracefulShutdown": True, "GracefulShutdownTimeout": 1}
    await zego.ok("DeleteAgentInstance", body)
    for action in (
        "SendAgentInstanceTTS",
        "QueryAgentInstanceStatus",
        "InterruptAgentInstance",
        "DeleteAgentInstance",
    ):
        assert await zego.code(action, {"AgentInstanceId": iid, "Text": "x"}) == 410001041, action
    # Still speaking (several seconds of text), so the 1 s timeout ends it.
    await zego.wait_gone(iid, within=3)
    (deleted,) = await zego.events(iid, "AgentInstanceDeleted")
    assert deleted["data"]["Code"] == 0


async def test_graceful_shutdown_ends_when_idle(start_emulator: StartEmulator) -> None:
    zego = await start_emulator(time_scale=0.05)
    await zego.register()
    iid = await zego.create_voice()
    await zego.ok("SendAgentInstanceTTS", {"AgentInstanceId": iid, "Text": "short"})  # ~0.05 s of speech
    started = time.monotonic()
    await zego.ok("DeleteAgentInstance", {"AgentInstanceId": iid, "GracefulShutdown": True})
    await zego.wait_gone(iid, within=3)
    assert time.monotonic() - started < 1.0  # long before the 30 s (1.5 s scaled) timeout


async def test_graceful_shutdown_of_an_idle_instance_is_immediate(zego: Zego) -> None:
    iid = await zego.create_voice()
    await zego.ok("DeleteAgentInstance", {"AgentInstanceId": iid, "GracefulShutdown": True})
    assert (await zego.status(iid))["Code"] == 410001002


async def test_graceful_timeout_range(zego: Zego) -> None:
    iid = await zego.create_voice()
    for timeout in (0, 121):
        body = {"AgentInstanceId": iid, "GracefulShutdown": True, "GracefulShutdownTimeout": timeout}
        assert await zego.code("DeleteAgentInstance", body) == 410000003
