"""DigitalHumanService and CreateSession's avatar check, end to end over loopback:
gRPC -> gateway -> signed HTTP -> the emulator's Digital Human API and AI Agent API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2

from agentgw_client.gen.agentgw.v1 import digital_human_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import digital_human_service_pb2_grpc as rpc
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as sapi
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as srpc
from service.server import Gateway
from tests.api.sessions_helpers import PUBLIC_AVATAR, digital_human_request, register_agent
from tests.conftest import Emulator, gateway_settings, rich_error

PRIVATE_ID = "42f97c28-1124-4cb2-800a-44d028497027"
FOREIGN_ID = "7e1c9a40-3b2d-4f5e-8a6b-9c0d1e2f3a4b"


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> rpc.DigitalHumanServiceStub:
    return rpc.DigitalHumanServiceStub(channel)  # type: ignore[no-untyped-call]


@pytest.fixture
async def sessions(channel: grpc.aio.Channel, emulator: Emulator) -> srpc.SessionServiceStub:
    await register_agent(emulator)
    return srpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]


def dh_request(digital_human_id: str, *, live: bool = False) -> sapi.CreateSessionRequest:
    request = digital_human_request()
    if live:
        request.ClearField("digital_human")
        request.live_digital_human.digital_human_id = digital_human_id
        request.rtc.ClearField("user_stream_id")
    else:
        request.digital_human.digital_human_id = digital_human_id
    return request


async def faults(emulator: Emulator) -> list[dict[str, Any]]:
    return await emulator.faults()


# --- DigitalHumanService ---------------------------------------------------------------------------


async def test_list_pages_through_every_avatar(stub: rpc.DigitalHumanServiceStub) -> None:
    seen: list[str] = []
    token = ""
    for _ in range(10):  # bounded: the catalogue has 5
        page = await stub.ListDigitalHumans(
            api.ListDigitalHumansRequest(page_size=2, page_token=token), timeout=5
        )
        assert page.total_size == 5 and len(page.digital_humans) <= 2
        seen += [d.digital_human_id for d in page.digital_humans]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 5
    assert PUBLIC_AVATAR in seen and PRIVATE_ID in seen and FOREIGN_ID not in seen


async def test_list_by_scope_and_inference_mode(stub: rpc.DigitalHumanServiceStub) -> None:
    public = await stub.ListDigitalHumans(
        api.ListDigitalHumansRequest(scope=api.DIGITAL_HUMAN_SCOPE_PUBLIC), timeout=5
    )
    private = await stub.ListDigitalHumans(
        api.ListDigitalHumansRequest(scope=api.DIGITAL_HUMAN_SCOPE_PRIVATE), timeout=5
    )
    assert all(d.public and d.public_known for d in public.digital_humans)
    assert all(not d.public and d.public_known for d in private.digital_humans)
    assert {d.digital_human_id for d in private.digital_humans} == {
        PRIVATE_ID,
        "0d6f3b1e-6a7c-4c1e-9d0b-5b1f2a3c4d5e",
    }
    advanced = await stub.ListDigitalHumans(
        api.ListDigitalHumansRequest(inference_mode=api.INFERENCE_MODE_ADVANCED), timeout=5
    )
    assert {d.digital_human_id for d in advanced.digital_humans} == {PUBLIC_AVATAR, PRIVATE_ID}
    assert all(api.INFERENCE_MODE_ADVANCED in d.inference_modes for d in advanced.digital_humans)


async def test_page_token_is_bound_to_its_filters(stub: rpc.DigitalHumanServiceStub) -> None:
    page = await stub.ListDigitalHumans(api.ListDigitalHumansRequest(page_size=1), timeout=5)
    for request in (
        api.ListDigitalHumansRequest(page_token=page.next_page_token, scope=api.DIGITAL_HUMAN_SCOPE_PUBLIC),
        api.ListDigitalHumansRequest(page_token=page.next_page_token + "x"),
        api.ListDigitalHumansRequest(page_size=-1),
        api.ListDigitalHumansRequest(scope=99),  # type: ignore[arg-type]
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ListDigitalHumans(request, timeout=5)
        err = rich_error(info.value)
        assert err.code == grpc.StatusCode.INVALID_ARGUMENT
        assert err.field_paths[0] in {"page_token", "page_size", "scope"}


async def test_get_digital_human(stub: rpc.DigitalHumanServiceStub) -> None:
    got = (
        await stub.GetDigitalHuman(api.GetDigitalHumanRequest(digital_human_id=PUBLIC_AVATAR), timeout=5)
    ).digital_human
    assert got.digital_human_id == PUBLIC_AVATAR and got.public and got.public_known
    assert [a.name for a in got.actions] == ["wave", "nod"]
    assert got.avatar_url.startswith("https://")
    # ZEGO keeps the image URL valid for 24 hours after it answered.
    assert abs(got.avatar_url_expire_time.seconds - (time.time() + 86400)) < 60
    assert list(got.inference_modes) == [api.INFERENCE_MODE_NORMAL, api.INFERENCE_MODE_ADVANCED]


@pytest.mark.parametrize("dh_id", ["no-such-avatar", FOREIGN_ID])
async def test_get_unknown_digital_human_is_not_found(stub: rpc.DigitalHumanServiceStub, dh_id: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetDigitalHuman(api.GetDigitalHumanRequest(digital_human_id=dh_id), timeout=5)
    err = rich_error(info.value)
    assert err.code == grpc.StatusCode.NOT_FOUND and err.reason == "DIGITAL_HUMAN_NOT_FOUND"
    resource = err.get(error_details_pb2.ResourceInfo)
    assert (resource.resource_type, resource.resource_name) == ("digital_human", dh_id)


@pytest.mark.parametrize(("dh_id", "message"), [("", "is required"), ("x" * 129, "at most 128")])
async def test_get_validates_the_id(stub: rpc.DigitalHumanServiceStub, dh_id: str, message: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetDigitalHuman(api.GetDigitalHumanRequest(digital_human_id=dh_id), timeout=5)
    err = rich_error(info.value)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.field_paths == ["digital_human_id"]
    assert message in err.message


async def test_get_is_cached(stub: rpc.DigitalHumanServiceStub, gateway: Gateway, emulator: Emulator) -> None:
    catalog = gateway.core.digital_humans
    before = catalog.upstream_calls
    for _ in range(5):
        await stub.GetDigitalHuman(api.GetDigitalHumanRequest(digital_human_id=PUBLIC_AVATAR), timeout=5)
    assert catalog.upstream_calls == before + 1
    # A fault on the upstream action would fail a call that reached it; the cache answers instead.
    await emulator.fault(action="GetDigitalHumanInfo", code=400010000)
    await stub.GetDigitalHuman(api.GetDigitalHumanRequest(digital_human_id=PUBLIC_AVATAR), timeout=5)
    assert len(await faults(emulator)) == 1


async def test_list_voices(stub: rpc.DigitalHumanServiceStub) -> None:
    public = await stub.ListVoices(api.ListVoicesRequest(), timeout=5)
    assert public.total_size == 3 and all(v.public and not v.digital_human_id for v in public.voices)
    bound = await stub.ListVoices(api.ListVoicesRequest(digital_human_id=PRIVATE_ID), timeout=5)
    assert [(v.voice_id, v.public, v.digital_human_id) for v in bound.voices] == [
        ("my_cloned_voice", False, PRIVATE_ID)
    ]
    paged = await stub.ListVoices(api.ListVoicesRequest(page_size=2), timeout=5)
    rest = await stub.ListVoices(
        api.ListVoicesRequest(page_size=2, page_token=paged.next_page_token), timeout=5
    )
    assert len(paged.voices) == 2 and len(rest.voices) == 1 and not rest.next_page_token
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListVoices(api.ListVoicesRequest(digital_human_id="nope"), timeout=5)
    assert rich_error(info.value).reason == "DIGITAL_HUMAN_NOT_FOUND"


async def test_digital_human_api_failure_is_unavailable(
    stub: rpc.DigitalHumanServiceStub, emulator: Emulator
) -> None:
    await emulator.fault(action="GetDigitalHumanList", code=400010000)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListDigitalHumans(api.ListDigitalHumansRequest(), timeout=5)
    err = rich_error(info.value)
    assert err.code == grpc.StatusCode.UNAVAILABLE
    assert err.get(error_details_pb2.ErrorInfo).metadata["zego_code"] == "400010000"


# --- CreateSession refuses unknown avatars before any create ----------------------------------------


@pytest.mark.parametrize("live", [False, True])
async def test_unknown_avatar_is_refused_before_any_create(
    sessions: srpc.SessionServiceStub, emulator: Emulator, live: bool
) -> None:
    # Armed on the create: were any create to reach the emulator, it would consume this fault.
    action = "CreateLiveDigitalHumanAgentInstance" if live else "CreateDigitalHumanAgentInstance"
    await emulator.fault(action=action, code=410000001)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await sessions.CreateSession(dh_request("typo-avatar", live=live), timeout=5)
    err = rich_error(info.value)
    assert err.code == grpc.StatusCode.NOT_FOUND and err.reason == "DIGITAL_HUMAN_NOT_FOUND"
    assert err.get(error_details_pb2.ResourceInfo).resource_name == "typo-avatar"
    assert [f["action"] for f in await faults(emulator)] == [action]
    assert (await emulator.state())["instances"] == []
    # Nothing was reserved: the ledger holds no session.
    listed = await sessions.ListSessions(sapi.ListSessionsRequest(), timeout=5)
    assert list(listed.sessions) == []


async def test_known_avatar_is_created(sessions: srpc.SessionServiceStub, emulator: Emulator) -> None:
    created = (await sessions.CreateSession(dh_request(PRIVATE_ID), timeout=5)).session
    assert created.agent_instance_id
    [upstream] = (await emulator.state())["instances"]
    assert upstream["AgentInstanceId"] == created.agent_instance_id


@pytest.fixture
def gateway_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(getattr(request, "param", {}))


@pytest.mark.parametrize("gateway_overrides", [{"digital_human_validation": "off"}], indirect=True)
@pytest.mark.parametrize(("dh_id", "zego_code"), [("typo-avatar", "410001027"), (FOREIGN_ID, "410001048")])
async def test_zego_own_codes_map_to_not_found(
    sessions: srpc.SessionServiceStub, emulator: Emulator, dh_id: str, zego_code: str
) -> None:
    """With the gateway's check off, the emulator's create refuses the id on the wire, and ZEGO's code
    goes through the one error table to the same NOT_FOUND."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await sessions.CreateSession(dh_request(dh_id), timeout=5)
    err = rich_error(info.value)
    assert err.code == grpc.StatusCode.NOT_FOUND and err.reason == "DIGITAL_HUMAN_NOT_FOUND"
    assert err.get(error_details_pb2.ErrorInfo).metadata["zego_code"] == zego_code
    assert err.get(error_details_pb2.ErrorInfo).metadata["zego_action"] == "CreateDigitalHumanAgentInstance"
    [failed] = (await sessions.ListSessions(sapi.ListSessionsRequest(), timeout=5)).sessions
    assert failed.zego_code == int(zego_code) and not failed.possible_leak


async def test_fail_open_when_the_digital_human_api_is_down(
    sessions: srpc.SessionServiceStub, emulator: Emulator
) -> None:
    await emulator.fault(action="GetDigitalHumanInfo", code=400010000)
    created = (await sessions.CreateSession(dh_request(PUBLIC_AVATAR), timeout=5)).session
    assert created.agent_instance_id


@pytest.mark.parametrize("gateway_overrides", [{"digital_human_validation": "strict"}], indirect=True)
async def test_strict_fails_when_the_digital_human_api_is_down(
    sessions: srpc.SessionServiceStub, emulator: Emulator
) -> None:
    await emulator.fault(action="GetDigitalHumanInfo", code=400010000)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await sessions.CreateSession(dh_request(PUBLIC_AVATAR), timeout=5)
    assert rich_error(info.value).code == grpc.StatusCode.UNAVAILABLE
    assert (await emulator.state())["instances"] == []


async def test_explicit_digital_human_host_setting(emulator: Emulator, tmp_path: Path) -> None:
    settings = gateway_settings(
        emulator, tmp_path / "l.db", zego_digital_human_api_base=emulator.url + "/digitalhuman/"
    )
    async with Gateway(settings) as gw:
        assert gw.core.zego.digital_human_base_url == emulator.url + "/digitalhuman"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as ch:
            stub = rpc.DigitalHumanServiceStub(ch)  # type: ignore[no-untyped-call]
            page = await stub.ListVoices(api.ListVoicesRequest(), timeout=5)
            assert page.total_size == 3


@pytest.fixture
def emulator_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(getattr(request, "param", {}))


@pytest.mark.parametrize(
    "emulator_overrides",
    [
        {"digital_human_instance_limit": 0, "digital_human_concurrency_code": 410001031},
        {"digital_human_instance_limit": 0, "digital_human_concurrency_code": 410001025},
    ],
    indirect=True,
)
async def test_both_digital_human_concurrency_codes_map_to_resource_exhausted(
    sessions: srpc.SessionServiceStub, emulator_overrides: dict[str, Any]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await sessions.CreateSession(dh_request(PUBLIC_AVATAR), timeout=5)
    err = rich_error(info.value)
    assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED and err.reason == "UPSTREAM_CONCURRENCY_LIMIT"
    assert err.get(error_details_pb2.ErrorInfo).metadata["zego_code"] == str(
        emulator_overrides["digital_human_concurrency_code"]
    )
