"""Simulated conversations (spec §9, §10): callback orders, Rounds, emulated Timestamps and LatencyData."""

from __future__ import annotations

import asyncio
import base64
import itertools
import random
from typing import Any

from zego_emulator.config import EmulatorConfig
from zego_emulator.latency import LatencySampler

from .conftest import ALL_CALLBACKS, DH_ID, StartEmulator, Zego, make_config
from .receiver import CallbackReceiver

LONG_TEXT = "This sentence takes a good while to speak aloud in emulated time. " * 4  # 268 chars


async def _turn(zego: Zego, iid: str, text: str = "what is the weather", **extra: Any) -> dict[str, Any]:
    response = await zego.admin("POST", f"/instances/{iid}/turns", {"text": text, **extra})
    assert response.status_code == 200, response.text
    turn: dict[str, Any] = response.json()
    return turn


async def _slow(start_emulator: StartEmulator, receiver: CallbackReceiver, **overrides: Any) -> Zego:
    """A dedicated emulator slow enough (time_scale 0.05) to act while the agent speaks or thinks."""
    zego = await start_emulator(time_scale=0.05, callback_url=receiver.url, **overrides)
    await zego.register()
    return zego


async def test_user_turn_order_and_injected_latencies(zego: Zego, receiver: CallbackReceiver) -> None:
    meta = {"LLMMetaInfo": {"SendMetaKeys": ["emotion"]}}
    iid = await zego.create_voice(CallbackConfig=ALL_CALLBACKS, AdvancedConfig=meta)
    turn = await _turn(
        zego, iid, "hello", speech_ms=1200, asr_ms=300, llm_ttft_ms=1000, tts_first_frame_ms=800
    )
    n = turn["Round"]
    assert turn["UserId"] == "user_1"
    assert turn["latency"] == {
        "speech_ms": 1200,
        "asr_ms": 300,
        "llm_ttft_ms": 1000,
        "tts_first_frame_ms": 800,
    }
    await receiver.wait_event(iid, "AgentInstanceStatus", Status="IDLE", Round=n)
    assert receiver.steps(iid) == [
        ("AgentInstanceCreated",),
        ("UserSpeakAction", "SPEAK_BEGIN", n),
        ("UserSpeakAction", "SPEAK_END", n),
        ("UserAudioData", n),
        ("ASRResult", n),
        ("AgentInstanceStatus", "THINKING", n),
        ("LLMResult", n),
        ("LLMResult", n),
        ("AgentInstanceStatus", "SPEAKING", n),
        ("AgentInstanceMetaInfo", n),
        ("AgentInstanceStatus", "IDLE", n),
    ]
    arrived = receiver.of(iid)
    at = {(r.event, r.data.get("Action") or r.data.get("Status")): r.timestamp for r in arrived}
    # Emulated time: with time_scale 0.01 the turn took ~50 ms, yet the Timestamps carry the exact offsets.
    assert at["UserSpeakAction", "SPEAK_END"] - at["UserSpeakAction", "SPEAK_BEGIN"] == 1200
    assert at["ASRResult", None] - at["UserSpeakAction", "SPEAK_END"] == 300
    assert at["AgentInstanceStatus", "THINKING"] == at["ASRResult", None]
    assert at["LLMResult", None] - at["AgentInstanceStatus", "THINKING"] == 1000
    assert at["AgentInstanceStatus", "SPEAKING"] - at["UserSpeakAction", "SPEAK_END"] == 2100
    assert [r.timestamp for r in arrived] == sorted(r.timestamp for r in arrived)
    asr = receiver.of(iid, "ASRResult")[0].data
    assert asr == {"UserId": "user_1", "Round": n, "Text": "hello"}
    audio = receiver.of(iid, "UserAudioData")[0].data
    assert (audio["SampleRate"], audio["Format"]) == (16000, "pcm") and len(
        base64.b64decode(audio["Audio"])
    ) == 32000
    history = (await zego.ok("GetAgentInstanceMsgList", {"AgentInstanceId": iid}))["MessageList"]
    assert history[0] == {"Role": "user", "Content": "hello"} and history[1]["Role"] == "assistant"


async def test_send_llm_and_send_tts_orders(zego: Zego, receiver: CallbackReceiver) -> None:
    llm = await zego.create_voice(CallbackConfig=ALL_CALLBACKS)
    tts = await zego.create_voice(CallbackConfig=ALL_CALLBACKS)
    n = (await zego.ok("SendAgentInstanceLLM", {"AgentInstanceId": llm, "Text": "hi"}))["Round"]
    m = (await zego.ok("SendAgentInstanceTTS", {"AgentInstanceId": tts, "Text": "hi"}))["Round"]
    await receiver.wait_event(llm, "AgentInstanceStatus", Status="IDLE")
    await receiver.wait_event(tts, "AgentInstanceStatus", Status="IDLE")
    assert receiver.steps(llm)[1:] == [
        ("AgentInstanceStatus", "THINKING", n),
        ("LLMResult", n),
        ("LLMResult", n),
        ("AgentInstanceStatus", "SPEAKING", n),
        ("AgentInstanceStatus", "IDLE", n),
    ]
    assert receiver.steps(tts)[1:] == [
        ("AgentInstanceStatus", "SPEAKING", m),
        ("AgentInstanceStatus", "IDLE", m),
    ]


async def test_interrupt_and_api_preemption(
    start_emulator: StartEmulator, shared_receiver: CallbackReceiver
) -> None:
    shared_receiver.clear()
    zego = await _slow(start_emulator, shared_receiver, llm_ttft_ms=4000, llm_ttft_jitter_ms=0)
    iid = await zego.create_voice(CallbackConfig=ALL_CALLBACKS)
    r1 = (await zego.ok("SendAgentInstanceTTS", {"AgentInstanceId": iid, "Text": LONG_TEXT}))["Round"]
    r2 = (await zego.ok("SendAgentInstanceLLM", {"AgentInstanceId": iid, "Text": "news?"}))["Round"]
    r3 = (await zego.ok("SendAgentInstanceTTS", {"AgentInstanceId": iid, "Text": LONG_TEXT}))["Round"]
    assert (await zego.ok("InterruptAgentInstance", {"AgentInstanceId": iid}))["Round"] == r3
    await shared_receiver.wait_event(iid, "AgentInstanceStatus", Status="IDLE", Round=r3)
    assert shared_receiver.steps(iid)[1:] == [
        ("AgentInstanceStatus", "SPEAKING", r1),
        ("Interrupted", 2, r1),  # cut by SendAgentInstanceLLM
        ("AgentInstanceStatus", "IDLE", r1),
        ("AgentInstanceStatus", "THINKING", r2),
        ("Interrupted", 3, r2),  # cut by SendAgentInstanceTTS while thinking
        ("AgentInstanceStatus", "IDLE", r2),
        ("AgentInstanceStatus", "SPEAKING", r3),
        ("Interrupted", 4, r3),  # InterruptAgentInstance
        ("AgentInstanceStatus", "IDLE", r3),
    ]
    assert shared_receiver.of(iid, "Interrupted")[1].data["PlayedText"] == ""  # nothing spoken while thinking
    shared_receiver.clear()


async def test_barge_in(start_emulator: StartEmulator, shared_receiver: CallbackReceiver) -> None:
    shared_receiver.clear()
    zego = await _slow(start_emulator, shared_receiver)
    iid = await zego.create_voice(CallbackConfig=ALL_CALLBACKS)
    old = (await zego.ok("SendAgentInstanceTTS", {"AgentInstanceId": iid, "Text": LONG_TEXT}))["Round"]
    await asyncio.sleep(0.15)  # about a sixth of the 16.6 emulated seconds of speech
    new = (await _turn(zego, iid, "stop", speech_ms=300, asr_ms=50, llm_ttft_ms=50, tts_first_frame_ms=50))[
        "Round"
    ]
    await shared_receiver.wait_event(iid, "AgentInstanceStatus", Status="IDLE", Round=new)
    assert new > old
    assert shared_receiver.steps(iid)[1:9] == [
        ("AgentInstanceStatus", "SPEAKING", old),
        ("UserSpeakAction", "SPEAK_BEGIN", new),
        ("Interrupted", 1, old),
        ("AgentInstanceStatus", "IDLE", old),
        ("UserSpeakAction", "SPEAK_END", new),
        ("ASRResult", new),
        ("AgentInstanceStatus", "THINKING", new),
        ("LLMResult", new),
    ]
    played = shared_receiver.of(iid, "Interrupted")[0].data["PlayedText"]
    assert 0 < len(played) < len(LONG_TEXT) and LONG_TEXT.startswith(played)
    shared_receiver.clear()


async def test_user_speech_does_not_cut_high_priority(zego: Zego) -> None:
    iid = await zego.create_voice()
    body = {"AgentInstanceId": iid, "Text": LONG_TEXT, "Priority": "High"}  # ~166 ms of real speech
    await zego.ok("SendAgentInstanceTTS", body)
    response = await zego.admin("POST", f"/instances/{iid}/turns", {"text": "hey"})
    assert response.status_code == 409 and "cannot interrupt" in response.json()["message"]


async def test_enqueued_tts(start_emulator: StartEmulator, shared_receiver: CallbackReceiver) -> None:
    shared_receiver.clear()
    zego = await _slow(start_emulator, shared_receiver)
    iid = await zego.create_voice(CallbackConfig=ALL_CALLBACKS)
    # ~100 characters: about 6 emulated seconds, ~300 ms here, so the second and third sentence are
    # queued while the first is still spoken even on a loaded machine (20 characters lasted ~60 ms,
    # less than three HTTP round trips sometimes take, and the agent went IDLE in between).
    text = "A sentence long enough to still be spoken while the next two are queued behind it, in order."
    body = {"AgentInstanceId": iid, "Text": text, "SamePriorityOption": "Enqueue"}
    rounds = [(await zego.ok("SendAgentInstanceTTS", body))["Round"] for _ in range(3)]
    await shared_receiver.wait_event(iid, "AgentInstanceStatus", Status="IDLE", Round=rounds[2], within=10)
    # Spec §9 sequence 5: Rounds assigned at once, status stays SPEAKING while only the Round changes.
    assert shared_receiver.steps(iid)[1:] == [
        ("AgentInstanceStatus", "SPEAKING", rounds[0]),
        ("AgentInstanceStatus", "SPEAKING", rounds[1]),
        ("AgentInstanceStatus", "SPEAKING", rounds[2]),
        ("AgentInstanceStatus", "IDLE", rounds[2]),
    ]
    shared_receiver.clear()


async def test_created_and_deleted_with_latency_averages(zego: Zego, receiver: CallbackReceiver) -> None:
    iid = await zego.create_voice(CallbackConfig=ALL_CALLBACKS)
    for asr, ttft, first_frame in ((200, 500, 300), (400, 700, 500)):
        n = (await _turn(zego, iid, "hi", asr_ms=asr, llm_ttft_ms=ttft, tts_first_frame_ms=first_frame))[
            "Round"
        ]
        await receiver.wait_event(iid, "AgentInstanceStatus", Status="IDLE", Round=n)
    await zego.ok("DeleteAgentInstance", {"AgentInstanceId": iid})
    (deleted,) = await receiver.wait_event(iid, "AgentInstanceDeleted")
    created = receiver.of(iid)[0]
    assert created.event == "AgentInstanceCreated" and created.data["CreatedTimestamp"] == created.timestamp
    assert deleted.data == {
        "Code": 0,
        "DeletedTimestamp": deleted.timestamp,
        # Averages over the two turns; TotalCost is SPEAK_END -> SPEAKING (ASR + TTFT + first frame).
        "LatencyData": {"LLMTTFT": 600, "LLMTPS": 25.0, "TTSAudioFirstFrameTime": 400, "TotalCost": 1300},
    }
    assert deleted is receiver.of(iid)[-1]


async def test_deleted_without_turns_reports_zero_latency(zego: Zego, receiver: CallbackReceiver) -> None:
    iid = await zego.create_voice()
    await zego.ok("DeleteAgentInstance", {"AgentInstanceId": iid})
    (deleted,) = await receiver.wait_event(iid, "AgentInstanceDeleted")
    # Deleting before the delayed AgentInstanceCreated was due still sends Created first.
    assert [r.event for r in receiver.of(iid)] == ["AgentInstanceCreated", "AgentInstanceDeleted"]
    assert deleted.data["LatencyData"] == {
        "LLMTTFT": 0,
        "LLMTPS": 0.0,
        "TTSAudioFirstFrameTime": 0,
        "TotalCost": 0,
    }


async def test_turn_refusals_and_input(zego: Zego) -> None:
    assert (await zego.admin("POST", "/instances/123/turns", {"text": "x"})).status_code == 404
    iid = await zego.create_voice()
    for bad in (
        {},
        {"text": ""},
        {"text": "x", "asr_ms": -1},
        {"text": "x", "user_id": "a b"},
        {"text": "x", "y": 1},
    ):
        assert (await zego.admin("POST", f"/instances/{iid}/turns", bad)).status_code == 400, bad
    walkie = await zego.create_voice(user="w", AdvancedConfig={"CommunicationMode": 2})
    live_body = {
        "AgentId": "agent_1",
        "CDN": {"Url": "rtmp://x/y"},
        "DigitalHuman": {"DigitalHumanId": DH_ID},
    }
    live = (await zego.ok("CreateLiveDigitalHumanAgentInstance", live_body))["AgentInstanceId"]
    for refused in (walkie, live):
        assert (await zego.admin("POST", f"/instances/{refused}/turns", {"text": "x"})).status_code == 409


async def test_room_turns(zego: Zego, receiver: CallbackReceiver) -> None:
    a = await zego.ok(
        "CreateAgentInstance", {"AgentId": "agent_1", "UserId": "u1", "RTC": zego.rtc("room_x")}
    )
    b = await zego.ok(
        "CreateAgentInstance", {"AgentId": "agent_1", "UserId": "u2", "RTC": zego.rtc("room_x")}
    )
    await zego.create_voice()  # room_1, not addressed
    one = await zego.admin("POST", "/rooms/room_x/turns", {"text": "hi", "user_id": "u1"})
    assert [t["AgentInstanceId"] for t in one.json()["turns"]] == [a["AgentInstanceId"]]
    both = await zego.admin("POST", "/rooms/room_x/turns", {"text": "hi all"})
    assert {t["AgentInstanceId"] for t in both.json()["turns"]} == {
        a["AgentInstanceId"],
        b["AgentInstanceId"],
    }
    assert (await zego.admin("POST", "/rooms/empty_room/turns", {"text": "x"})).status_code == 404


async def test_auto_turns_at_the_cadence(
    start_emulator: StartEmulator, shared_receiver: CallbackReceiver
) -> None:
    shared_receiver.clear()
    utterances = ("first line", "second line")
    zego = await start_emulator(
        auto_turn_interval_seconds=5.0, auto_turn_utterances=utterances, callback_url=shared_receiver.url
    )
    await zego.register()
    talker = await zego.create_voice(CallbackConfig=ALL_CALLBACKS)
    walkie = await zego.create_voice(
        user="w", CallbackConfig=ALL_CALLBACKS, AdvancedConfig={"CommunicationMode": 2}
    )
    begins = await shared_receiver.wait_event(talker, "UserSpeakAction", count=3, Action="SPEAK_BEGIN")
    texts = [r.data["Text"] for r in await shared_receiver.wait_event(talker, "ASRResult", count=2)]
    assert texts[:2] == list(utterances)
    # Emulated time between turns: at least the 5 s interval (a turn never starts while the last one runs).
    assert all(b.timestamp - a.timestamp >= 5000 for a, b in itertools.pairwise(begins))
    assert shared_receiver.of(walkie, "UserSpeakAction") == []
    shared_receiver.clear()


def test_latency_sampler_is_seeded_and_bounded() -> None:
    def draws(config: EmulatorConfig) -> list[tuple[int, int, int]]:
        sampler = LatencySampler(config)
        return [(s.asr_ms, s.ttft_ms, s.first_frame_ms) for s in (sampler.sample() for _ in range(200))]

    uniform = make_config(latency_seed=7)
    assert draws(uniform) == draws(make_config(latency_seed=7)) != draws(make_config(latency_seed=8))
    assert all(200 <= a <= 400 and 400 <= t <= 800 and 300 <= f <= 500 for a, t, f in draws(uniform))
    normal = make_config(latency_seed=1, latency_distribution="normal", asr_latency_jitter_ms=1000)
    assert all(0 <= a <= 4300 for a, _, _ in draws(normal))  # clamped: never negative, at most mean + 4 sigma
    pinned = LatencySampler(make_config(), random.Random(3)).sample(asr_ms=1, ttft_ms=2, first_frame_ms=3)
    assert (pinned.asr_ms, pinned.ttft_ms, pinned.first_frame_ms) == (1, 2, 3)
