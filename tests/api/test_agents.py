"""AgentService end to end: gRPC client -> gateway -> signed HTTP -> emulator."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2
from google.rpc import error_details_pb2

from agentgw_client.gen.agentgw.v1 import agent_pb2 as pb
from agentgw_client.gen.agentgw.v1 import agent_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import agent_service_pb2_grpc as rpc
from tests.conftest import Emulator, rich_error

API_KEY = "sk-test-secret-key-0001"
TTS_TOKEN = "tts-token-secret-0002"


def make_agent(agent_id: str = "xiaozhi", **kwargs: object) -> pb.Agent:
    app = struct_pb2.Struct()
    app.update({"appid": "zego_test", "token": TTS_TOKEN, "cluster": "volcano_tts"})
    params = struct_pb2.Struct()
    params.update({"audio": {"voice_type": "zh_female_vv_uranus_bigtts"}})
    llm_params = struct_pb2.Struct()
    llm_params.update({"max_tokens": 1024})
    agent = pb.Agent(
        agent_id=agent_id,
        display_name="Xiao Zhi",
        llm=pb.LlmConfig(
            url="https://ark.cn-beijing.volces.com/api/v3/chat/completions",
            api_key=API_KEY,
            model="doubao-1-5-lite-32k-250115",
            system_prompt="You are helpful.",
            params=llm_params,
        ),
        tts=pb.TtsConfig(vendor="ByteDance", app=app, params=params),
        asr=pb.AsrConfig(vendor="Tencent"),
    )
    for key, value in kwargs.items():
        setattr(agent, key, value)
    return agent


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> rpc.AgentServiceStub:
    return rpc.AgentServiceStub(channel)  # type: ignore[no-untyped-call]


async def test_create_get_list_update_delete_round_trip(
    stub: rpc.AgentServiceStub, emulator: Emulator
) -> None:
    created = await stub.CreateAgent(api.CreateAgentRequest(agent=make_agent()), timeout=5)
    assert created.agent.agent_id == "xiaozhi"
    # Secrets are write-only.
    assert created.agent.llm.api_key == "" and created.agent.llm.api_key_set
    assert not created.agent.tts.HasField("app") and created.agent.tts.app_set

    got = (await stub.GetAgent(api.GetAgentRequest(agent_id="xiaozhi"), timeout=5)).agent
    assert got.display_name == "Xiao Zhi"
    assert got.llm.model == "doubao-1-5-lite-32k-250115"
    assert got.llm.api_key == "" and got.llm.api_key_set
    assert got.tts.vendor == "ByteDance" and got.tts.app_set and not got.tts.HasField("app")
    assert got.tts.params["audio"]["voice_type"] == "zh_female_vv_uranus_bigtts"
    assert got.asr.vendor == "Tencent"

    # ZEGO stores exactly what ZEGO expects: Params.app inside TTS, integral numbers as ints.
    stored = await emulator.stored_agent("xiaozhi")
    assert stored["TTS"]["Params"]["app"]["token"] == TTS_TOKEN
    assert stored["LLM"]["Params"] == {"max_tokens": 1024}
    assert stored["LLM"]["ApiKey"] == API_KEY

    listed = await stub.ListAgents(api.ListAgentsRequest(), timeout=5)
    assert [a.agent_id for a in listed.agents] == ["xiaozhi"]
    assert listed.next_page_token == "" and listed.total_size == 1
    assert all(a.llm.api_key == "" for a in listed.agents)

    updated = await stub.UpdateAgent(
        api.UpdateAgentRequest(
            agent=pb.Agent(agent_id="xiaozhi", llm=pb.LlmConfig(model="doubao-1-5-pro-32k-250115")),
            update_mask=field_mask_pb2.FieldMask(paths=["llm.model"]),
        ),
        timeout=5,
    )
    assert updated.agent.llm.model == "doubao-1-5-pro-32k-250115"
    stored = await emulator.stored_agent("xiaozhi")
    # The merge kept everything else of the LLM, the write-only ApiKey included.
    assert stored["LLM"]["Model"] == "doubao-1-5-pro-32k-250115"
    assert stored["LLM"]["ApiKey"] == API_KEY
    assert stored["LLM"]["SystemPrompt"] == "You are helpful."

    await stub.DeleteAgent(api.DeleteAgentRequest(agent_id="xiaozhi"), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetAgent(api.GetAgentRequest(agent_id="xiaozhi"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert rich_error(info.value).reason == "AGENT_NOT_FOUND"


async def test_duplicate_create_is_already_exists_with_error_info(stub: rpc.AgentServiceStub) -> None:
    await stub.CreateAgent(api.CreateAgentRequest(agent=make_agent()), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateAgent(api.CreateAgentRequest(agent=make_agent()), timeout=5)
    err = rich_error(info.value)
    assert err.code == grpc.StatusCode.ALREADY_EXISTS
    error_info = err.get(error_details_pb2.ErrorInfo)
    assert error_info.reason == "AGENT_ALREADY_EXISTS"
    assert error_info.domain == "agentgw"
    assert error_info.metadata["zego_code"] == "410001008"
    assert len(error_info.metadata["zego_request_id"]) == 19
    assert err.get(error_details_pb2.RequestInfo).request_id


async def test_create_with_request_id_is_idempotent(stub: rpc.AgentServiceStub, emulator: Emulator) -> None:
    request = api.CreateAgentRequest(agent=make_agent(), request_id=str(uuid.uuid4()))
    first, second = await asyncio.gather(
        stub.CreateAgent(request, timeout=5), stub.CreateAgent(request, timeout=5)
    )
    assert first.agent.agent_id == second.agent.agent_id == "xiaozhi"
    third = await stub.CreateAgent(request, timeout=5)
    assert third.agent.llm.model == first.agent.llm.model
    assert len((await emulator.state())["agents"]) == 1

    changed = api.CreateAgentRequest(agent=make_agent(display_name="Other"), request_id=request.request_id)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateAgent(changed, timeout=5)
    err = rich_error(info.value)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == "REQUEST_ID_REUSED"
    assert err.field_paths == ["request_id"]


async def test_list_pages_through_zego_cursor(stub: rpc.AgentServiceStub) -> None:
    for i in range(7):
        await stub.CreateAgent(api.CreateAgentRequest(agent=make_agent(f"agent-{i}")), timeout=5)
    seen: list[str] = []
    token = ""
    for _ in range(10):  # bounded: 7 agents in pages of 3 need 3 calls
        page = await stub.ListAgents(api.ListAgentsRequest(page_size=3, page_token=token), timeout=5)
        assert len(page.agents) <= 3
        seen.extend(a.agent_id for a in page.agents)
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == [f"agent-{i}" for i in range(7)]

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListAgents(api.ListAgentsRequest(page_token="forged"), timeout=5)
    assert rich_error(info.value).field_paths == ["page_token"]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListAgents(api.ListAgentsRequest(page_size=-1), timeout=5)
    assert rich_error(info.value).field_paths == ["page_size"]


async def test_update_replacing_a_config_keeps_write_only_secrets(
    stub: rpc.AgentServiceStub, emulator: Emulator
) -> None:
    await stub.CreateAgent(api.CreateAgentRequest(agent=make_agent()), timeout=5)
    new_tts = pb.TtsConfig(vendor="ByteDance")
    new_tts.params.update({"audio": {"voice_type": "other"}})
    await stub.UpdateAgent(
        api.UpdateAgentRequest(
            agent=pb.Agent(agent_id="xiaozhi", tts=new_tts, display_name="New"),
            update_mask=field_mask_pb2.FieldMask(paths=["tts", "display_name"]),
        ),
        timeout=5,
    )
    stored = await emulator.stored_agent("xiaozhi")
    assert stored["Name"] == "New"
    assert stored["TTS"]["Params"]["audio"] == {"voice_type": "other"}
    assert stored["TTS"]["Params"]["app"]["token"] == TTS_TOKEN


@pytest.mark.parametrize(
    ("agent", "paths"),
    [
        (pb.Agent(), ["agent.agent_id"]),
        (pb.Agent(agent_id="x" * 129), ["agent.agent_id"]),
        (pb.Agent(agent_id="bad id*"), ["agent.agent_id"]),
        (pb.Agent(agent_id="ok", display_name="n" * 257), ["agent.display_name"]),
        (
            pb.Agent(agent_id="ok", llm=pb.LlmConfig(url="ftp://x")),
            ["agent.llm.url", "agent.llm.api_key", "agent.llm.model"],
        ),
        (
            pb.Agent(agent_id="ok", llm=pb.LlmConfig(url="https://x", api_key="k", model="m", temperature=3)),
            ["agent.llm.temperature"],
        ),
        (pb.Agent(agent_id="ok", tts=pb.TtsConfig()), ["agent.tts.vendor", "agent.tts.app"]),
    ],
)
async def test_bad_create_input_is_rejected_before_zego(
    stub: rpc.AgentServiceStub, emulator: Emulator, agent: pb.Agent, paths: list[str]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateAgent(api.CreateAgentRequest(agent=agent), timeout=5)
    err = rich_error(info.value)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.field_paths == paths
    assert (await emulator.state())["agents"] == []


async def test_missing_agent_and_bad_mask(stub: rpc.AgentServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateAgent(api.CreateAgentRequest(), timeout=5)
    assert rich_error(info.value).field_paths == ["agent"]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.UpdateAgent(
            api.UpdateAgentRequest(
                agent=pb.Agent(agent_id="a"),
                update_mask=field_mask_pb2.FieldMask(paths=["agent_id", "llm.nope"]),
            ),
            timeout=5,
        )
    assert rich_error(info.value).field_paths == ["update_mask.paths[0]", "update_mask.paths[1]"]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.DeleteAgent(api.DeleteAgentRequest(agent_id="nobody"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_secrets_never_reach_logs(stub: rpc.AgentServiceStub, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    await stub.CreateAgent(api.CreateAgentRequest(agent=make_agent()), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.CreateAgent(api.CreateAgentRequest(agent=make_agent()), timeout=5)
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert API_KEY not in text and TTS_TOKEN not in text


async def test_a_client_request_id_is_echoed_in_errors_and_trailers(stub: rpc.AgentServiceStub) -> None:
    call = stub.GetAgent(
        api.GetAgentRequest(agent_id="missing"), timeout=5, metadata=(("x-request-id", "trace-42"),)
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert rich_error(info.value).get(error_details_pb2.RequestInfo).request_id == "trace-42"
    ok = stub.ListAgents(api.ListAgentsRequest(), timeout=5, metadata=(("x-request-id", "trace-43"),))
    await ok
    assert ("x-request-id", "trace-43") in tuple(await ok.trailing_metadata())
