"""Server-callback delivery (spec §8): envelope, signature, Sequence, gates, retries and injected faults.

Everything goes over loopback HTTP: the emulator POSTs to a real receiver (:mod:`.receiver`).
"""

from __future__ import annotations

import asyncio
import itertools
import time

from .conftest import ALL_CALLBACKS, APP_ID, CALLBACK_SECRET, StartEmulator, Zego
from .receiver import CallbackReceiver

ENVELOPE_KEYS = {
    "AppId",
    "Event",
    "Nonce",
    "Timestamp",
    "Signature",
    "AgentInstanceId",
    "AgentUserId",
    "AgentId",
    "Name",
    "RoomId",
    "Sequence",
    "Data",
}


async def _turn(zego: Zego, iid: str, text: str = "hello there", **latency: int) -> int:
    response = await zego.admin("POST", f"/instances/{iid}/turns", {"text": text, **latency})
    assert response.status_code == 200, response.text
    round_: int = response.json()["Round"]
    return round_


async def _stats(zego: Zego) -> dict[str, object]:
    response = await zego.admin("GET", "/callbacks")
    assert response.status_code == 200
    stats: dict[str, object] = response.json()
    return stats


async def test_envelope_shape_and_signature(zego: Zego, receiver: CallbackReceiver) -> None:
    rtc = zego.rtc("room_env")
    body = {"AgentId": "agent_1", "UserId": "user_1", "RTC": rtc}
    iid = (await zego.ok("CreateAgentInstance", body))["AgentInstanceId"]
    (created,) = await receiver.wait_event(iid, "AgentInstanceCreated")
    envelope = created.body
    assert set(envelope) == ENVELOPE_KEYS
    assert envelope["AppId"] == APP_ID and envelope["Event"] == "AgentInstanceCreated"
    assert envelope["Nonce"].isdigit() and isinstance(envelope["Timestamp"], int)
    assert abs(envelope["Timestamp"] - time.time() * 1000) < 60_000  # milliseconds, near now
    assert len(envelope["Signature"]) == 40 and created.signed(CALLBACK_SECRET)
    assert not created.signed("another-secret")
    assert (envelope["AgentUserId"], envelope["RoomId"]) == (rtc["AgentUserId"], "room_env")
    assert (envelope["AgentId"], envelope["Name"]) == ("agent_1", "Test")
    assert envelope["Data"] == {"CreatedTimestamp": envelope["Timestamp"]}
    # The Sequence is beyond 2**53 and travels digit for digit (a double would lose the low digits).
    assert isinstance(envelope["Sequence"], int) and envelope["Sequence"] > 2**53
    assert f'"Sequence":{envelope["Sequence"]}'.encode() in created.raw


async def test_sequence_increases_per_instance_with_gaps(zego: Zego, receiver: CallbackReceiver) -> None:
    first = await zego.create_voice(CallbackConfig=ALL_CALLBACKS)
    second = await zego.create_voice(CallbackConfig=ALL_CALLBACKS)
    for iid in (first, second):
        await _turn(zego, iid, "hi", speech_ms=100, asr_ms=10, llm_ttft_ms=10, tts_first_frame_ms=10)
    for iid in (first, second):
        await receiver.wait_event(iid, "AgentInstanceStatus", Status="IDLE")
        sequences = [r.body["Sequence"] for r in receiver.of(iid)]
        assert len(sequences) >= 8
        # Arrival order is Sequence order (per-instance delivery is serial), and Sequence is not contiguous.
        assert sequences == sorted(set(sequences))
        assert all(s > 2**53 for s in sequences)
        assert any(b - a > 1 for a, b in itertools.pairwise(sequences))
        assert all(r.signed(CALLBACK_SECRET) for r in receiver.of(iid))


async def test_callback_config_gates(zego: Zego, receiver: CallbackReceiver) -> None:
    silent = await zego.create_voice()
    partial = await zego.create_voice(CallbackConfig={"ASRResult": 1, "AgentInstanceStatus": 1})
    for iid in (silent, partial):
        await _turn(zego, iid, "a question long enough for audio", asr_ms=10, llm_ttft_ms=10)
    await receiver.wait_event(partial, "AgentInstanceStatus", Status="IDLE")
    await zego.wait_events(silent, "AgentInstanceStatus", count=3)  # the turn ran (THINKING, SPEAKING, IDLE)
    await zego.admin("POST", f"/instances/{silent}/exception", {"code": 2201})
    for iid in (silent, partial):
        await zego.ok("DeleteAgentInstance", {"AgentInstanceId": iid})
        await receiver.wait_event(iid, "AgentInstanceDeleted")
    # Ungated events always arrive; gated ones only with their flag set to 1.
    assert [r.event for r in receiver.of(silent)] == [
        "AgentInstanceCreated",
        "Exception",
        "AgentInstanceDeleted",
    ]
    assert {r.event for r in receiver.of(partial)} == {
        "AgentInstanceCreated",
        "ASRResult",
        "AgentInstanceStatus",
        "AgentInstanceDeleted",
    }
    # The emulator's own event log still has everything.
    assert {e["event"] for e in await zego.events(silent)} >= {
        "UserSpeakAction",
        "LLMResult",
        "UserAudioData",
    }


async def test_meta_info_needs_llm_meta_info(zego: Zego, receiver: CallbackReceiver) -> None:
    meta = {"LLMMetaInfo": {"BeginCharacters": "[[", "EndCharacters": "]]", "SendMetaKeys": ["emotion"]}}
    with_meta = await zego.create_voice(AdvancedConfig=meta)
    without = await zego.create_voice()
    for iid in (with_meta, without):
        await zego.ok("SendAgentInstanceLLM", {"AgentInstanceId": iid, "Text": "how are you"})
    (info,) = await receiver.wait_event(with_meta, "AgentInstanceMetaInfo")
    assert info.data["MetaInfo"] == {"emotion": "emulated-emotion"}
    await zego.wait_events(without, "AgentInstanceStatus", count=3)
    assert not [e for e in await zego.events(without) if e["event"] == "AgentInstanceMetaInfo"]


async def test_exception_callback(zego: Zego, receiver: CallbackReceiver) -> None:
    iid = await zego.create_voice()
    response = await zego.admin("POST", f"/instances/{iid}/exception", {"code": 2203})
    assert response.status_code == 200
    (exc,) = await receiver.wait_event(iid, "Exception")
    assert exc.data == {
        "Code": 2203,
        "Message": "The API key in the request is missing or invalid",
        "Round": 0,
    }
    await zego.admin("POST", f"/instances/{iid}/exception", {"code": 1001, "message": "boom", "round": 7})
    (_, custom) = await receiver.wait_event(iid, "Exception", count=2)
    assert custom.data == {"Code": 1001, "Message": "boom", "Round": 7}
    assert (await zego.admin("POST", "/instances/1/exception", {"code": 1001})).status_code == 404
    assert (await zego.admin("POST", f"/instances/{iid}/exception", {})).status_code == 400


async def test_callback_url_admin(zego: Zego, receiver: CallbackReceiver) -> None:
    for bad in ({}, {"url": 5}, {"url": "ftp://x/y"}, {"url": "/relative"}, {"url": "x", "more": 1}):
        assert (await zego.admin("POST", "/callbacks", bad)).status_code == 400, bad
    stats = await _stats(zego)
    assert stats["url"] == receiver.url
    assert set(stats) >= {"sent", "retried", "dropped", "pending", "recent_drops"}
    # Without a URL nothing is generated (not even Sequences); with one, delivery resumes.
    await zego.admin("POST", "/callbacks", {"url": None})
    quiet = await zego.create_voice()
    await zego.wait_events(quiet, "AgentInstanceCreated")
    await zego.admin("POST", "/callbacks", {"url": receiver.url})
    loud = await zego.create_voice()
    await receiver.wait_event(loud, "AgentInstanceCreated")
    assert receiver.of(quiet) == []
    assert (await _stats(zego))["sent"] == 1


async def test_retries_until_acknowledged_in_order(zego: Zego, receiver: CallbackReceiver) -> None:
    receiver.fail_next = 3
    iid = await zego.create_voice(CallbackConfig=ALL_CALLBACKS)
    await zego.ok("SendAgentInstanceTTS", {"AgentInstanceId": iid, "Text": "hi"})
    await receiver.wait_event(iid, "AgentInstanceStatus", Status="IDLE")
    events = [r.event for r in receiver.of(iid)]
    # Created failed 3 times; nothing else of the instance went out before it was acknowledged.
    assert events == ["AgentInstanceCreated"] * 4 + ["AgentInstanceStatus", "AgentInstanceStatus"]
    assert len({r.raw for r in receiver.of(iid, "AgentInstanceCreated")}) == 1  # identical body resent
    stats = await _stats(zego)
    assert (stats["retried"], stats["sent"], stats["dropped"], stats["pending"]) == (3, 3, 0, 0)


async def test_drop_after_five_retries_on_the_scaled_schedule(
    start_emulator: StartEmulator, shared_receiver: CallbackReceiver
) -> None:
    shared_receiver.clear()
    zego = await start_emulator(time_scale=0.001, callback_url=shared_receiver.url)
    await zego.register()
    shared_receiver.fail_next = 100
    iid = await zego.create_voice()
    await shared_receiver.wait_event(iid, "AgentInstanceCreated", count=6)
    deadline = time.monotonic() + 2
    while (stats := await _stats(zego))["dropped"] != 1:
        assert time.monotonic() < deadline, stats
        await asyncio.sleep(0.01)
    attempts = shared_receiver.of(iid, "AgentInstanceCreated")
    assert len(attempts) == 6  # the first try and 5 retries, then no more
    gaps = [b.at - a.at for a, b in itertools.pairwise(attempts)]
    for gap, wait in zip(gaps, (2, 4, 8, 16, 32), strict=True):
        assert gap >= wait * 0.001 * 0.9, (gaps, wait)  # 2, 4, 8, 16, 32 s times time_scale 0.001
    assert gaps[2] < gaps[3] < gaps[4]
    assert (stats["retried"], stats["sent"], stats["pending"]) == (5, 0, 0)
    assert stats["recent_drops"] == [
        {
            "AgentInstanceId": iid,
            "Event": "AgentInstanceCreated",
            "Sequence": attempts[0].body["Sequence"],
            "reason": "no 2xx after 5 retries",
        }
    ]
    shared_receiver.clear()


async def test_resign_on_retry(start_emulator: StartEmulator, shared_receiver: CallbackReceiver) -> None:
    shared_receiver.clear()
    zego = await start_emulator(
        time_scale=0.001, callback_url=shared_receiver.url, callback_retry_resign=True
    )
    await zego.register()
    shared_receiver.fail_next = 3
    iid = await zego.create_voice()
    attempts = await shared_receiver.wait_event(iid, "AgentInstanceCreated", count=4)
    assert len({r.body["Nonce"] for r in attempts}) == 4 and all(r.signed(CALLBACK_SECRET) for r in attempts)
    assert len({r.body["Sequence"] for r in attempts}) == 1  # the same callback, re-signed
    first = attempts[0].timestamp
    # Each retry is stamped at its emulated time: the unscaled waits 2, 4, 8 s after the first try.
    assert [r.timestamp - first for r in attempts] == [0, 2000, 6000, 14000]
    shared_receiver.clear()
