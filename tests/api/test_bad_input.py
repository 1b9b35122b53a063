"""Hostile input gets INVALID_ARGUMENT with the field path, a status that fits in the trailers, and
never reaches ZEGO (the emulator's counts stay as they were)."""

from __future__ import annotations

import math
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from google.rpc import error_details_pb2

from agentgw_client.gen.agentgw.v1 import (
    agent_pb2,
    agent_service_pb2,
    agent_service_pb2_grpc,
    audit_service_pb2,
    audit_service_pb2_grpc,
    session_pb2,
)
from agentgw_client.gen.agentgw.v1 import event_service_pb2 as events_api
from agentgw_client.gen.agentgw.v1 import event_service_pb2_grpc as events_rpc
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as rpc
from tests.api.sessions_helpers import digital_human_request, register_agent, voice_request
from tests.conftest import Emulator, RichError, rich_error

TIMEOUT = 5.0
SELECTOR = "a=" + "x" * 20_000  # a value too long to be a label, echoed in the error
LLM = agent_pb2.LlmConfig(url="https://llm.example/v1", api_key="k", model="m")
TTS = agent_pb2.TtsConfig(vendor="ByteDance")
TTS.app.update({"appid": "a", "token": "t"})


async def _rejected(call: Any) -> RichError:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        result = call
        if hasattr(result, "__aiter__"):
            async for _ in result:
                pass
        else:
            await result
    err = rich_error(failure.value)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT, (err.code, err.message)
    return err


async def _zego_calls(emulator: Emulator) -> dict[str, Any]:
    state = await emulator.state()
    return {"agents": len(state["agents"]), "instances": len(state["instances"])}


async def test_a_20000_character_label_selector_is_invalid_argument_everywhere(
    channel: grpc.aio.Channel,
) -> None:
    sessions = rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]
    events = events_rpc.EventServiceStub(channel)  # type: ignore[no-untyped-call]
    flt = events_api.EventFilter(label_selector="!" + "x" * 20_000)
    for call in (
        sessions.ListSessions(api.ListSessionsRequest(label_selector="!" + "x" * 20_000), timeout=TIMEOUT),
        events.ListEvents(events_api.ListEventsRequest(filter=flt), timeout=TIMEOUT),
        events.WatchEvents(events_api.WatchEventsRequest(filter=flt), timeout=TIMEOUT),
    ):
        err = await _rejected(call)
        assert err.field_paths[0].endswith("label_selector")
        assert len(err.message) <= 400


async def test_200_bad_messages_list_20_violations_and_how_many_more(channel: grpc.aio.Channel) -> None:
    sessions = rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]
    bad = [session_pb2.ChatMessage() for _ in range(200)]  # no role, no content
    err = await _rejected(
        sessions.AppendContext(api.AppendContextRequest(session_id="s1", messages=bad), timeout=TIMEOUT)
    )
    violations = err.get(error_details_pb2.BadRequest).field_violations
    assert len(violations) == 21
    assert violations[0].field.startswith("messages[0]")
    assert violations[-1].description.startswith("and ") and violations[-1].description.endswith(" more")


async def test_300_bad_mask_paths_are_invalid_argument(channel: grpc.aio.Channel) -> None:
    agents = agent_service_pb2_grpc.AgentServiceStub(channel)  # type: ignore[no-untyped-call]
    mask = field_mask_pb2.FieldMask(paths=[f"nope_{i}_" + "p" * 200 for i in range(300)])
    request = agent_service_pb2.UpdateAgentRequest(agent=agent_pb2.Agent(agent_id="a1"), update_mask=mask)
    err = await _rejected(agents.UpdateAgent(request, timeout=TIMEOUT))
    assert err.field_paths[0] == "update_mask.paths[0]"
    violations = err.get(error_details_pb2.BadRequest).field_violations
    # Long paths: the byte budget, not the count of 20, decides how many are listed.
    assert 1 < len(violations) <= 21
    assert violations[-1].description == f"and {300 - (len(violations) - 1)} more"


BAD_ASR = [
    (agent_pb2.AsrConfig(vad_energy_threshold=math.nan), "asr.vad_energy_threshold"),
    (agent_pb2.AsrConfig(vad_energy_threshold=math.inf), "asr.vad_energy_threshold"),
    (agent_pb2.AsrConfig(vad_energy_threshold=1.5), "asr.vad_energy_threshold"),
    (agent_pb2.AsrConfig(vad_sensitive_level=7), "asr.vad_sensitive_level"),
    (agent_pb2.AsrConfig(vad_silence_segmentation_ms=50), "asr.vad_silence_segmentation_ms"),
    (agent_pb2.AsrConfig(pause_interval_ms=5000), "asr.pause_interval_ms"),
    (agent_pb2.AsrConfig(vad_min_speech_duration_ms=-1), "asr.vad_min_speech_duration_ms"),
    (agent_pb2.AsrConfig(vendor="NoSuchASR"), "asr.vendor"),
]


@pytest.mark.parametrize(("asr", "field"), BAD_ASR, ids=[f"{f}={a}".replace("\n", " ") for a, f in BAD_ASR])
async def test_bad_asr_at_the_agent_level_never_reaches_zego(
    channel: grpc.aio.Channel, emulator: Emulator, asr: agent_pb2.AsrConfig, field: str
) -> None:
    agents = agent_service_pb2_grpc.AgentServiceStub(channel)  # type: ignore[no-untyped-call]
    before = await _zego_calls(emulator)
    create = agent_service_pb2.CreateAgentRequest(agent=agent_pb2.Agent(agent_id="a1", llm=LLM, asr=asr))
    assert (await _rejected(agents.CreateAgent(create, timeout=TIMEOUT))).field_paths == [f"agent.{field}"]
    update = agent_service_pb2.UpdateAgentRequest(
        agent=agent_pb2.Agent(agent_id="a1", asr=asr), update_mask=field_mask_pb2.FieldMask(paths=["asr"])
    )
    # UpdateAgent validates the merged agent after reading it from ZEGO, so the agent must exist.
    await agents.CreateAgent(
        agent_service_pb2.CreateAgentRequest(agent=agent_pb2.Agent(agent_id="a1", llm=LLM, tts=TTS)),
        timeout=TIMEOUT,
    )
    assert (await _rejected(agents.UpdateAgent(update, timeout=TIMEOUT))).field_paths == [f"agent.{field}"]
    stored = await emulator.stored_agent("a1")
    assert not stored.get("ASR")  # the bad ASR never got there
    assert (await _zego_calls(emulator))["instances"] == before["instances"]


async def test_valid_asr_settings_pass(channel: grpc.aio.Channel, emulator: Emulator) -> None:
    agents = agent_service_pb2_grpc.AgentServiceStub(channel)  # type: ignore[no-untyped-call]
    asr = agent_pb2.AsrConfig(vendor="tencent", vad_energy_threshold=0.4, vad_sensitive_level=3)
    await agents.CreateAgent(
        agent_service_pb2.CreateAgentRequest(agent=agent_pb2.Agent(agent_id="ok1", llm=LLM, asr=asr)),
        timeout=TIMEOUT,
    )
    assert (await emulator.stored_agent("ok1"))["ASR"]["VADEnergyThreshold"] == 0.4


async def test_non_finite_numbers_in_free_form_params_are_refused(
    channel: grpc.aio.Channel, emulator: Emulator
) -> None:
    agents = agent_service_pb2_grpc.AgentServiceStub(channel)  # type: ignore[no-untyped-call]
    llm = agent_pb2.LlmConfig()
    llm.CopyFrom(LLM)
    llm.params.update({"options": [1, {"x": math.inf}], "t": math.nan})
    create = agent_service_pb2.CreateAgentRequest(agent=agent_pb2.Agent(agent_id="a2", llm=llm))
    err = await _rejected(agents.CreateAgent(create, timeout=TIMEOUT))
    assert sorted(err.field_paths) == ["agent.llm.params.options[1].x", "agent.llm.params.t"]
    assert (await _zego_calls(emulator))["agents"] == 0


async def test_bad_asr_and_nan_on_a_session_never_reach_zego(
    channel: grpc.aio.Channel, emulator: Emulator
) -> None:
    await register_agent(emulator)
    sessions = rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]
    request = voice_request(asr=agent_pb2.AsrConfig(vendor="x", vad_energy_threshold=math.nan))
    err = await _rejected(sessions.CreateSession(request, timeout=TIMEOUT))
    assert sorted(err.field_paths) == ["asr.vad_energy_threshold", "asr.vendor"]
    request = voice_request(
        llm=agent_pb2.LlmConfig(url="https://l.example", api_key="k", model="m", temperature=math.nan)
    )
    assert (await _rejected(sessions.CreateSession(request, timeout=TIMEOUT))).field_paths == [
        "llm.temperature"
    ]
    assert (await _zego_calls(emulator))["instances"] == 0


async def test_an_unknown_tts_vendor_never_reaches_zego(
    channel: grpc.aio.Channel, emulator: Emulator
) -> None:
    """Found by the fuzz: ZEGO answered 410000003 to an UpdateAgent with a made-up TTS vendor."""
    agents = agent_service_pb2_grpc.AgentServiceStub(channel)  # type: ignore[no-untyped-call]
    tts = agent_pb2.TtsConfig(vendor="helper-agent")
    tts.app.update({"appid": "a"})
    create = agent_service_pb2.CreateAgentRequest(agent=agent_pb2.Agent(agent_id="a3", llm=LLM, tts=tts))
    assert (await _rejected(agents.CreateAgent(create, timeout=TIMEOUT))).field_paths == ["agent.tts.vendor"]
    create.agent.tts.vendor = "minimax"  # ZEGO's examples spell vendors in several cases: accepted
    await agents.CreateAgent(create, timeout=TIMEOUT)
    assert (await _zego_calls(emulator))["agents"] == 1


async def test_a_digital_human_codec_other_than_h264_never_reaches_zego(
    channel: grpc.aio.Channel, emulator: Emulator
) -> None:
    """Found by the fuzz: ZEGO answered 410000014 to a digital human with EncodeCode "m"."""
    await register_agent(emulator)
    sessions = rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]
    request = digital_human_request()
    request.digital_human.encode_code = "VP8"
    err = await _rejected(sessions.CreateSession(request, timeout=TIMEOUT))
    assert err.field_paths == ["digital_human.encode_code"]
    assert (await _zego_calls(emulator))["instances"] == 0


async def test_an_out_of_range_audit_timestamp_is_invalid_argument(channel: grpc.aio.Channel) -> None:
    """Found by the fuzz: protobuf's ToNanoseconds raised ValueError (INTERNAL) on it."""
    audit = audit_service_pb2_grpc.AuditServiceStub(channel)  # type: ignore[no-untyped-call]
    request = audit_service_pb2.ListAuditRecordsRequest(
        start_time=timestamp_pb2.Timestamp(seconds=-(2**63)), end_time=timestamp_pb2.Timestamp(nanos=-1)
    )
    err = await _rejected(audit.ListAuditRecords(request, timeout=TIMEOUT))
    assert err.field_paths == ["start_time", "end_time"]
    ok = audit_service_pb2.ListAuditRecordsRequest(start_time=timestamp_pb2.Timestamp(seconds=0))
    await audit.ListAuditRecords(ok, timeout=TIMEOUT)


async def test_every_request_id_is_checked_by_one_rule_with_one_message(
    channel: grpc.aio.Channel, emulator: Emulator
) -> None:
    agents = agent_service_pb2_grpc.AgentServiceStub(channel)  # type: ignore[no-untyped-call]
    sessions = rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]
    before = await _zego_calls(emulator)
    agent = agent_pb2.Agent(agent_id="rid_agent", llm=LLM, tts=TTS)
    for request_id, message in (("tab\there", "must be printable"), ("x" * 65, "at most 64 characters")):
        errors = [
            await _rejected(
                agents.CreateAgent(
                    agent_service_pb2.CreateAgentRequest(agent=agent, request_id=request_id), timeout=TIMEOUT
                )
            ),
            await _rejected(sessions.CreateSession(voice_request(request_id=request_id), timeout=TIMEOUT)),
            await _rejected(
                sessions.EndSession(
                    api.EndSessionRequest(session_id="s1", request_id=request_id), timeout=TIMEOUT
                )
            ),
        ]
        described = {
            (v.field, v.description)
            for err in errors
            for v in err.get(error_details_pb2.BadRequest).field_violations
            if v.field == "request_id"
        }
        assert len(described) == 1, described  # the same field and words from every RPC
        assert message in next(iter(described))[1]
    assert await _zego_calls(emulator) == before
