"""In-call control as domain methods: each builds its ZEGO request through the port, against a running
session only, within the caller's budget (counted from the call, not from when ZEGO is asked)."""

from __future__ import annotations

from typing import Any

import pytest

from service.domain.model import SessionState
from service.domain.sessions import SessionService
from service.domain.zego_config import LLM, AdvancedConfig, Message
from service.domain.zego_port import InstanceUpdate, Listening, Speech, TextTurn
from service.errors import FailedPrecondition
from tests.domain.conftest import voice_spec


class RecordingPort:
    """Passes every call to the real port and records (method, timeout)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[tuple[str, float | None]] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target) or name == "error_class":
            return target

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, kwargs.get("timeout")))
            return await target(*args, **kwargs)

        return call


@pytest.fixture
def recorded(sessions: SessionService) -> RecordingPort:
    port = RecordingPort(sessions.zego)
    sessions._zego = port  # type: ignore[assignment]
    return port


async def test_speech_text_and_interruption_return_zegos_rounds(
    sessions: SessionService, recorded: RecordingPort
) -> None:
    record = await sessions.create(voice_spec())
    spoken = await sessions.speak(record.session_id, Speech("Hello there, how are you today?"), timeout=5)
    asked = await sessions.send_text(
        record.session_id, TextTurn("What time is it?", priority="High"), timeout=5
    )
    cut = await sessions.interrupt(record.session_id, timeout=5)
    assert spoken > 0 and asked > spoken and cut >= asked
    assert await sessions.agent_status(record.session_id) in {"IDLE", "LISTENING", "THINKING", "SPEAKING"}
    names = [name for name, _ in recorded.calls if name != "create_instance"]
    assert names == ["speak", "send_text", "interrupt", "instance_status"]
    for name, budget in recorded.calls[1:4]:
        # The budget still counts down while the session is read: ZEGO gets what is left, never more.
        assert budget is not None and 0 < budget <= 5, (name, budget)
    assert recorded.calls[-1][1] is None  # no budget given: none invented


async def test_the_context_can_be_appended_read_and_reset(sessions: SessionService) -> None:
    record = await sessions.create(voice_spec())
    await sessions.append_context(
        record.session_id, [Message("user", "I like tea"), Message("assistant", "Noted")]
    )
    context = await sessions.context(record.session_id)
    assert context.messages[-2:] == (Message("user", "I like tea"), Message("assistant", "Noted"))
    assert context.total >= 2
    await sessions.reset_context(record.session_id)
    assert (await sessions.context(record.session_id)).messages == ()


async def test_an_update_records_only_the_user_stream(sessions: SessionService) -> None:
    record = await sessions.create(voice_spec())
    llm = LLM(url="https://llm.example/v1", api_key="k2", model="gpt-4o-mini")
    same = await sessions.update_instance(record.session_id, InstanceUpdate(llm=llm))
    assert same.user_stream_id == record.user_stream_id
    moved = await sessions.update_instance(record.session_id, InstanceUpdate(user_stream_id="other_stream"))
    assert moved.user_stream_id == "other_stream"
    assert (await sessions.get(record.session_id)).user_stream_id == "other_stream"


async def test_walkie_talkie_listening_returns_rounds(sessions: SessionService) -> None:
    record = await sessions.create(voice_spec(advanced_config=AdvancedConfig(communication_mode=2)))
    started = await sessions.start_listening(record.session_id, Listening(sequence=1))
    stopped = await sessions.stop_listening(record.session_id, Listening(sequence=2))
    assert started > 0 and stopped >= started


async def test_control_of_an_ended_session_never_reaches_zego(
    sessions: SessionService, recorded: RecordingPort
) -> None:
    record = await sessions.create(voice_spec())
    await sessions.end(record.session_id)
    before = list(recorded.calls)
    with pytest.raises(FailedPrecondition):
        await sessions.speak(record.session_id, Speech("hi"))
    with pytest.raises(FailedPrecondition):
        await sessions.update_instance(record.session_id, InstanceUpdate(user_stream_id="x"))
    assert recorded.calls == before
    assert (await sessions.get(record.session_id)).state is SessionState.ENDED
