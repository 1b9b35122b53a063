"""RoomTokenService: mints ZEGO Token04 RTC login tokens (spec §13) for end users."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable

from google.protobuf import timestamp_pb2

from agentgw_client.gen.agentgw.v1 import room_token_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import room_token_service_pb2_grpc as rpc
from service.api.common import Context
from service.config import Secret
from service.domain.validation import Violations
from service.zego.token04 import TokenLayout, mint_token04

__all__ = ["RoomTokenServicer"]

DEFAULT_TTL_SECONDS = 3600
MIN_TTL_SECONDS = 60
MAX_TTL_SECONDS = 86400
_LAYOUTS = {
    api.TOKEN_LAYOUT_UNSPECIFIED: TokenLayout.GCM,
    api.TOKEN_LAYOUT_GCM: TokenLayout.GCM,
    api.TOKEN_LAYOUT_CBC: TokenLayout.CBC,
}


def privilege_payload(privilege: api.RoomPrivilege) -> str:
    """The Token04 payload for room privileges: key "1" is login, "2" is publish (spec §13)."""
    return json.dumps(
        {
            "room_id": privilege.room_id,
            "privilege": {"1": int(privilege.can_login), "2": int(privilege.can_publish)},
            "stream_id_list": list(privilege.stream_ids) or None,
        },
        separators=(",", ":"),
    )


class RoomTokenServicer(rpc.RoomTokenServiceServicer):
    """Mints tokens with the configured AppId and ServerSecret; the secret never leaves."""

    def __init__(
        self,
        app_id: int,
        server_secret: Secret,
        *,
        authorize: Callable[[str, str | None], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._app_id = app_id
        self._secret = server_secret
        self._authorize = authorize
        self._clock = clock

    async def CreateRoomToken(
        self, request: api.CreateRoomTokenRequest, context: Context
    ) -> api.CreateRoomTokenResponse:
        v = Violations()
        if v.required("user_id", request.user_id):
            v.max_chars("user_id", request.user_id, 64)
        ttl = DEFAULT_TTL_SECONDS
        if request.HasField("ttl"):
            v.check(request.ttl.nanos == 0, "ttl", "must be whole seconds")
            ttl = request.ttl.seconds
            v.in_range("ttl", ttl, MIN_TTL_SECONDS, MAX_TTL_SECONDS)
        v.check(request.layout in _LAYOUTS, "layout", "is not a known TokenLayout")
        payload = ""
        if request.HasField("privilege"):
            v.rtc_id("privilege.room_id", request.privilege.room_id)
            for i, stream_id in enumerate(request.privilege.stream_ids):
                v.rtc_id(f"privilege.stream_ids[{i}]", stream_id)
            payload = privilege_payload(request.privilege)
        v.raise_if_any()
        if self._authorize is not None:
            room_id = request.privilege.room_id if request.HasField("privilege") else None
            await self._authorize(request.user_id, room_id)
        layout = _LAYOUTS[request.layout]
        now = int(self._clock())
        token = mint_token04(
            app_id=self._app_id,
            user_id=request.user_id,
            secret=self._secret.reveal(),
            effective_seconds=ttl,
            payload=payload,
            layout=layout,
            now=now,
        )
        return api.CreateRoomTokenResponse(
            token=token,
            expire_time=timestamp_pb2.Timestamp(seconds=now + ttl),
            app_id=self._app_id,
            layout=api.TOKEN_LAYOUT_CBC if layout is TokenLayout.CBC else api.TOKEN_LAYOUT_GCM,
        )
