"""RoomTokenService: minted Token04s are accepted by the emulator's verifier, in both layouts."""

from __future__ import annotations

import json
import time

import grpc
import pytest
from google.protobuf import duration_pb2

from agentgw_client.gen.agentgw.v1 import room_token_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import room_token_service_pb2_grpc as rpc
from service.zego.token04 import decode_token04
from tests.conftest import APP_ID, SERVER_SECRET, Emulator, rich_error


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> rpc.RoomTokenServiceStub:
    return rpc.RoomTokenServiceStub(channel)  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(
    ("layout", "name"),
    [(api.TOKEN_LAYOUT_UNSPECIFIED, "GCM"), (api.TOKEN_LAYOUT_GCM, "GCM"), (api.TOKEN_LAYOUT_CBC, "CBC")],
)
async def test_minted_tokens_verify_at_the_emulator(
    stub: rpc.RoomTokenServiceStub, emulator: Emulator, layout: int, name: str
) -> None:
    before = int(time.time())
    minted = await stub.CreateRoomToken(
        api.CreateRoomTokenRequest(user_id="user_1", layout=layout), timeout=5
    )  # type: ignore[arg-type]
    assert minted.token.startswith("04") and minted.app_id == APP_ID
    assert before + 3600 <= minted.expire_time.seconds <= int(time.time()) + 3600
    verdict = await emulator.verify_token(minted.token, "user_1")
    assert verdict.valid is True, verdict
    assert (verdict.layout, verdict.app_id, verdict.user_id) == (name, APP_ID, "user_1")
    wrong_user = await emulator.verify_token(minted.token, "x")
    assert wrong_user.valid is False


async def test_privilege_payload_and_ttl(stub: rpc.RoomTokenServiceStub) -> None:
    request = api.CreateRoomTokenRequest(
        user_id="user_1",
        ttl=duration_pb2.Duration(seconds=600),
        privilege=api.RoomPrivilege(room_id="room_1", can_login=True, can_publish=False, stream_ids=["s1"]),
    )
    minted = await stub.CreateRoomToken(request, timeout=5)
    claims = decode_token04(minted.token, SERVER_SECRET)
    assert claims.expire - claims.ctime == 600
    assert json.loads(claims.payload) == {
        "room_id": "room_1",
        "privilege": {"1": 1, "2": 0},
        "stream_id_list": ["s1"],
    }


@pytest.mark.parametrize(
    ("request_", "paths"),
    [
        (api.CreateRoomTokenRequest(), ["user_id"]),
        (api.CreateRoomTokenRequest(user_id="u" * 65), ["user_id"]),
        (api.CreateRoomTokenRequest(user_id="u", ttl=duration_pb2.Duration(seconds=59)), ["ttl"]),
        (api.CreateRoomTokenRequest(user_id="u", ttl=duration_pb2.Duration(seconds=86401)), ["ttl"]),
        (api.CreateRoomTokenRequest(user_id="u", ttl=duration_pb2.Duration(seconds=600, nanos=5)), ["ttl"]),
        (api.CreateRoomTokenRequest(user_id="u", layout=7), ["layout"]),  # type: ignore[arg-type]
        (api.CreateRoomTokenRequest(user_id="u", privilege=api.RoomPrivilege()), ["privilege.room_id"]),
    ],
)
async def test_bad_token_requests(
    stub: rpc.RoomTokenServiceStub, request_: api.CreateRoomTokenRequest, paths: list[str]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateRoomToken(request_, timeout=5)
    err = rich_error(info.value)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.field_paths == paths
