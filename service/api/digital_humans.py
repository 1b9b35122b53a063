"""DigitalHumanService: a thin adapter from gRPC to ``service.domain.digital_humans``.

Page tokens carry ZEGO's ``Offset`` (MACed, bound to the request's filters); page sizes map to
ZEGO's ``Limit`` 1..20. Errors are raised and mapped by the interceptor through ``service.api.status``.
"""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from agentgw_client.gen.agentgw.v1 import digital_human_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import digital_human_service_pb2_grpc as rpc
from service.api.common import Context, time_budget
from service.api.paging import PageTokens, page_size
from service.domain import zego_port as dh
from service.domain.digital_humans import DigitalHumanAsset, DigitalHumanCatalog, Scope, Voice
from service.domain.validation import Violations

__all__ = ["DigitalHumanServicer", "digital_human_to_proto", "voice_to_proto"]

ID_MAX_CHARS = 128
"""Same bound as CreateSession's digital_human_id (ZEGO documents none) [INFER]."""

_SCOPE = {
    api.DIGITAL_HUMAN_SCOPE_UNSPECIFIED: Scope.ALL,
    api.DIGITAL_HUMAN_SCOPE_ALL: Scope.ALL,
    api.DIGITAL_HUMAN_SCOPE_PUBLIC: Scope.PUBLIC,
    api.DIGITAL_HUMAN_SCOPE_PRIVATE: Scope.PRIVATE,
}
_MODE_FROM_PROTO = {
    api.INFERENCE_MODE_UNSPECIFIED: None,
    api.INFERENCE_MODE_NORMAL: dh.INFERENCE_NORMAL,
    api.INFERENCE_MODE_ADVANCED: dh.INFERENCE_ADVANCED,
}
_MODE_TO_PROTO = {
    dh.INFERENCE_NORMAL: api.INFERENCE_MODE_NORMAL,
    dh.INFERENCE_ADVANCED: api.INFERENCE_MODE_ADVANCED,
}


def digital_human_to_proto(asset: DigitalHumanAsset) -> api.DigitalHuman:
    """The wire form of an avatar; inference modes ZEGO may add later are left out."""
    expire = None
    if asset.avatar_url_expires_at is not None:
        expire = timestamp_pb2.Timestamp()
        expire.FromNanoseconds(int(asset.avatar_url_expires_at * 1e9))
    return api.DigitalHuman(
        digital_human_id=asset.digital_human_id,
        name=asset.name,
        avatar_url=asset.avatar_url,
        avatar_url_expire_time=expire,
        public=bool(asset.is_public),
        public_known=asset.is_public is not None,
        actions=[api.DigitalHumanAction(name=a.name, preview_url=a.preview_url) for a in asset.actions],
        inference_modes=[_MODE_TO_PROTO[m] for m in asset.inference_modes if m in _MODE_TO_PROTO],
    )


def voice_to_proto(voice: Voice) -> api.Voice:
    """The wire form of a voice."""
    return api.Voice(
        voice_id=voice.voice_id,
        name=voice.name,
        public=bool(voice.is_public),
        digital_human_id=voice.digital_human_id,
    )


class DigitalHumanServicer(rpc.DigitalHumanServiceServicer):
    """gRPC face of the digital-human catalogue."""

    def __init__(self, catalog: DigitalHumanCatalog, page_tokens: PageTokens) -> None:
        self._catalog = catalog
        self._tokens = page_tokens

    def _offset(self, token: str, filter_hash: str) -> int:
        if not token:
            return 0
        offset = self._tokens.decode(token, filter_hash)
        if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= dh.MAX_AVATAR_OFFSET:
            # A MACed token always holds what we put in; this guards a key shared with older builds.
            v = Violations()
            v.add("page_token", "is not a page token this server issued")
            v.raise_if_any()
        return int(offset)

    async def ListDigitalHumans(
        self, request: api.ListDigitalHumansRequest, context: Context
    ) -> api.ListDigitalHumansResponse:
        v = Violations()
        v.check(request.scope in _SCOPE, "scope", "is not a known scope")
        v.check(request.inference_mode in _MODE_FROM_PROTO, "inference_mode", "is not a known mode")
        v.raise_if_any()
        size = page_size(request.page_size, default=dh.MAX_AVATAR_LIMIT, maximum=dh.MAX_AVATAR_LIMIT)
        scope, mode = _SCOPE[request.scope], _MODE_FROM_PROTO[request.inference_mode]
        filter_hash = f"{scope.value}:{mode}"
        offset = self._offset(request.page_token, filter_hash)
        page = await self._catalog.list(
            scope, inference_mode=mode, offset=offset, limit=size, timeout=time_budget(context)
        )
        return api.ListDigitalHumansResponse(
            digital_humans=[digital_human_to_proto(a) for a in page.items],
            next_page_token=""
            if page.next_offset is None
            else self._tokens.encode(page.next_offset, filter_hash),
            total_size=min(page.total, 2**31 - 1),
        )

    async def GetDigitalHuman(
        self, request: api.GetDigitalHumanRequest, context: Context
    ) -> api.GetDigitalHumanResponse:
        v = Violations()
        if v.required("digital_human_id", request.digital_human_id):
            v.max_chars("digital_human_id", request.digital_human_id, ID_MAX_CHARS)
        v.raise_if_any()
        asset = await self._catalog.get(request.digital_human_id, timeout=time_budget(context))
        return api.GetDigitalHumanResponse(digital_human=digital_human_to_proto(asset))

    async def ListVoices(self, request: api.ListVoicesRequest, context: Context) -> api.ListVoicesResponse:
        v = Violations()
        v.max_chars("digital_human_id", request.digital_human_id, ID_MAX_CHARS)
        v.raise_if_any()
        size = page_size(request.page_size, default=dh.MAX_AVATAR_LIMIT, maximum=dh.MAX_AVATAR_LIMIT)
        filter_hash = f"voices:{request.digital_human_id}"
        offset = self._offset(request.page_token, filter_hash)
        page = await self._catalog.voices(
            request.digital_human_id, offset=offset, limit=size, timeout=time_budget(context)
        )
        return api.ListVoicesResponse(
            voices=[voice_to_proto(x) for x in page.items],
            next_page_token=""
            if page.next_offset is None
            else self._tokens.encode(page.next_offset, filter_hash),
            total_size=min(page.total, 2**31 - 1),
        )
