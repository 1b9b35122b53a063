"""Signed ZEGO callbacks for tests, built exactly as ZEGO documents them (spec §8.2, §8.4)."""

from __future__ import annotations

import itertools
import json
import secrets
import time
from typing import Any

import httpx

from service.zego.signing import callback_signature
from tests.conftest import APP_ID, CALLBACK_SECRET

_sequence = itertools.count(1921825797275873300, 7)  # above 2**53, as ZEGO's are


def callback(
    event: str,
    instance_id: str,
    data: dict[str, Any] | None = None,
    *,
    room_id: str = "room_1",
    agent_user_id: str = "",
    sequence: int | None = None,
    timestamp_ms: int | None = None,
    nonce: str | None = None,
    secret: str = CALLBACK_SECRET,
) -> dict[str, Any]:
    """One callback body with a valid signature."""
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    nonce = nonce or str(secrets.randbelow(10**19))
    return {
        "AppId": APP_ID,
        "Event": event,
        "Nonce": nonce,
        "Timestamp": ts,
        "Signature": callback_signature(secret, str(ts), nonce),
        "AgentInstanceId": instance_id,
        "AgentUserId": agent_user_id,
        "AgentId": "helper-agent",
        "RoomId": room_id,
        "Sequence": next(_sequence) if sequence is None else sequence,
        "Data": data or {},
    }


async def post(client: httpx.AsyncClient, body: dict[str, Any] | bytes) -> httpx.Response:
    """POST a callback to the gateway's HTTP side."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.post(
        "/v1/zego/callbacks", content=content, headers={"Content-Type": "application/json"}
    )
