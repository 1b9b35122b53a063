"""Stored callback bodies lose their Signature and Nonce once verified."""

from __future__ import annotations

import json

import grpc
import httpx

from agentgw_client.gen.agentgw.v1 import event_service_pb2 as eapi
from agentgw_client.gen.agentgw.v1 import event_service_pb2_grpc as erpc
from service.server import Gateway
from tests.events.helpers import callback, post


async def test_a_stored_callback_keeps_neither_signature_nor_nonce(
    gateway: Gateway, channel: grpc.aio.Channel
) -> None:
    body = callback("AgentInstanceCreated", "inst-at-rest", {"CreatedTimestamp": 1})
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}", timeout=5) as http:
        assert (await post(http, body)).status_code == 200
    stub = erpc.EventServiceStub(channel)  # type: ignore[no-untyped-call]
    listed = await stub.ListEvents(eapi.ListEventsRequest(include_raw=True), timeout=5)
    assert len(listed.events) == 1
    raw = json.loads(listed.events[0].raw_json)
    assert "Signature" not in raw and "Nonce" not in raw
    assert raw["Sequence"] == body["Sequence"] and raw["Timestamp"] == body["Timestamp"]
    assert body["Signature"] not in listed.events[0].raw_json
