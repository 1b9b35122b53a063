"""Callback faults (``/_emulator/callback-faults``): drop, duplicate, reorder, delay, bad signature."""

from __future__ import annotations

import time
from typing import Any

from .conftest import ALL_CALLBACKS, CALLBACK_SECRET, Zego
from .receiver import CallbackReceiver


async def _fault(zego: Zego, **fault: Any) -> dict[str, Any]:
    response = await zego.admin("POST", "/callback-faults", fault)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _tts(zego: Zego, iid: str, text: str = "hi") -> None:
    await zego.ok("SendAgentInstanceTTS", {"AgentInstanceId": iid, "Text": text})


async def test_fault_admin_validation_and_clear(zego: Zego) -> None:
    for bad in (
        {"mode": "explode"},
        {"mode": "delay"},  # needs delay_ms
        {"mode": "drop", "count": 0},
        {"mode": "drop", "event": "NoSuchEvent"},
        {"mode": "drop", "extra": 1},
        ["drop"],
    ):
        assert (await zego.admin("POST", "/callback-faults", bad)).status_code == 400, bad
    added = await _fault(zego, mode="drop", count=2, event="LLMResult")
    assert added["fault"] == {"mode": "drop", "count": 2, "delay_ms": 0, "event": "LLMResult"}
    await _fault(zego, mode="delay", delay_ms=5)
    assert len((await zego.admin("GET", "/callback-faults")).json()["faults"]) == 2
    assert (await zego.admin("DELETE", "/callback-faults")).json() == {"cleared": 2}
    assert (await zego.admin("GET", "/callback-faults")).json() == {"faults": []}


async def test_drop(zego: Zego, receiver: CallbackReceiver) -> None:
    await _fault(zego, mode="drop", event="AgentInstanceStatus", count=1)
    iid = await zego.create_voice(CallbackConfig=ALL_CALLBACKS)
    await _tts(zego, iid)
    await receiver.wait_event(iid, "AgentInstanceStatus", Status="IDLE")
    # SPEAKING was lost (as if every retry had failed); IDLE still came, after a Sequence gap.
    assert [r.event for r in receiver.of(iid)] == ["AgentInstanceCreated", "AgentInstanceStatus"]
    stats = (await zego.admin("GET", "/callbacks")).json()
    assert stats["dropped"] == 1 and stats["recent_drops"][0]["reason"] == "injected fault: drop"
    assert stats["recent_drops"][0]["Event"] == "AgentInstanceStatus"


async def test_duplicate(zego: Zego, receiver: CallbackReceiver) -> None:
    await _fault(zego, mode="duplicate", event="AgentInstanceCreated")
    iid = await zego.create_voice(CallbackConfig=ALL_CALLBACKS)
    await _tts(zego, iid)
    await receiver.wait_event(iid, "AgentInstanceStatus", Status="IDLE")
    first, second = receiver.of(iid, "AgentInstanceCreated")
    assert first.raw == second.raw  # same Nonce, Signature and Sequence: a consumer must deduplicate
    assert [r.event for r in receiver.of(iid)][:2] == ["AgentInstanceCreated", "AgentInstanceCreated"]
    assert (await zego.admin("GET", "/callbacks")).json()["duplicated"] == 1


async def test_reorder(zego: Zego, receiver: CallbackReceiver) -> None:
    await _fault(zego, mode="reorder", event="AgentInstanceCreated")
    iid = await zego.create_voice(CallbackConfig=ALL_CALLBACKS)
    await _tts(zego, iid)
    await receiver.wait_event(iid, "AgentInstanceStatus", Status="IDLE")
    arrived = receiver.of(iid)
    assert [r.event for r in arrived][:2] == ["AgentInstanceStatus", "AgentInstanceCreated"]
    sequences = [r.body["Sequence"] for r in arrived]
    assert sequences[0] > sequences[1]  # out of order on purpose; the Sequence tells the truth
    assert sorted(sequences) == sequences[1:2] + sequences[:1] + sequences[2:]


async def test_delay_keeps_the_instance_order(zego: Zego, receiver: CallbackReceiver) -> None:
    await _fault(zego, mode="delay", delay_ms=150, event="AgentInstanceCreated")
    started = time.monotonic()
    iid = await zego.create_voice(CallbackConfig=ALL_CALLBACKS)
    await _tts(zego, iid)
    await receiver.wait_event(iid, "AgentInstanceStatus", Status="IDLE")
    arrived = receiver.of(iid)
    assert arrived[0].event == "AgentInstanceCreated" and arrived[0].at - started >= 0.15
    # Later callbacks of the instance waited for the delayed one.
    assert [r.body["Sequence"] for r in arrived] == sorted(r.body["Sequence"] for r in arrived)


async def test_bad_signature(zego: Zego, receiver: CallbackReceiver) -> None:
    await _fault(zego, mode="bad_signature", count=1)
    iid = await zego.create_voice(CallbackConfig=ALL_CALLBACKS)
    await _tts(zego, iid)
    await receiver.wait_event(iid, "AgentInstanceStatus", Status="IDLE")
    created, *rest = receiver.of(iid)
    assert created.event == "AgentInstanceCreated" and len(created.body["Signature"]) == 40
    assert not created.signed(CALLBACK_SECRET)
    assert rest and all(r.signed(CALLBACK_SECRET) for r in rest)
