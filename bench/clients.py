"""Client-side building blocks shared by the workers and the scenarios.

Both targets are driven through the same helpers: ``kind`` is ``"agentgw"`` (typed stubs, signed
ZEGO callbacks) or ``"bare"`` (the baseline's raw-bytes methods and ``/push``).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from agentgw_client.gen.agentgw.v1 import event_service_pb2 as events_api
from agentgw_client.gen.agentgw.v1 import event_service_pb2_grpc as events_rpc
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as sessions_api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as sessions_rpc
from bench.baseline import HEARTBEAT, UNARY, WATCH
from bench.config import AGENT_ID, APP_ID, CALLBACK_SECRET
from service.zego.signing import callback_signature

__all__ = [
    "CALLBACK_PATH",
    "PUSH_PATH",
    "callback_body",
    "channel_options",
    "event_text",
    "parse_text",
    "unary_caller",
    "watch",
]

CALLBACK_PATH = "/v1/zego/callbacks"
PUSH_PATH = "/push"
Kind = str


def channel_options() -> list[tuple[str, int]]:
    """One TCP connection per channel, so streams spread over the channels asked for."""
    return [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 16 << 20)]


def event_text(tag: str, number: int, sent_at: float) -> str:
    """The LLMResult Text that carries an event's id and its send time (time.time())."""
    return f"{tag}|{number}|{sent_at:.6f}"


def parse_text(text: str) -> tuple[str, int, float]:
    """(tag, number, sent_at) of an ``event_text``."""
    tag, number, sent_at = text.split("|")
    return tag, int(number), float(sent_at)


def callback_body(
    *,
    instance_id: str,
    agent_user_id: str,
    room_id: str,
    sequence: int,
    text: str = "",
    event: str = "LLMResult",
) -> bytes:
    """A ZEGO server callback, signed as ZEGO signs it (spec §8.4)."""
    timestamp = int(time.time() * 1000)
    nonce = secrets.token_hex(8)
    data: dict[str, Any] = {"Text": text, "Round": 1} if event == "LLMResult" else {}
    if event == "AgentInstanceCreated":
        data = {"CreatedTimestamp": timestamp}
    body = {
        "AppId": APP_ID,
        "Event": event,
        "Nonce": nonce,
        "Timestamp": timestamp,
        "Signature": callback_signature(CALLBACK_SECRET, str(timestamp), nonce),
        "AgentInstanceId": instance_id,
        "AgentUserId": agent_user_id,
        "AgentId": AGENT_ID,
        "RoomId": room_id,
        "Sequence": sequence,
        "Data": data,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def unary_caller(channel: grpc.aio.Channel, kind: Kind, session_id: str) -> Callable[[], Awaitable[object]]:
    """A no-argument coroutine function making one unary call of the scenario."""
    if kind == "agentgw":
        stub = sessions_rpc.SessionServiceStub(channel)
        request = sessions_api.GetSessionRequest(session_id=session_id)

        def get_session() -> Awaitable[object]:
            return stub.GetSession(request, timeout=10)

        return get_session
    method = channel.unary_unary(UNARY, request_serializer=None, response_deserializer=None)
    payload = sessions_api.GetSessionRequest(session_id=session_id).SerializeToString()

    def bare() -> Awaitable[object]:
        return method(payload, timeout=10)

    return bare


def _bare_text(message: bytes) -> str:
    data = json.loads(message)["Data"]
    return str(data.get("Text", ""))


async def watch(
    channel: grpc.aio.Channel,
    kind: Kind,
    *,
    oldest: bool = False,
    max_batch_size: int = 0,
    after_cursor: int | None = None,
) -> AsyncIterator[tuple[str, str, int]]:
    """Yield ("event", LLMResult text, cursor) or ("heartbeat", "", cursor) for each event or
    heartbeat of one stream (the bare server has no cursors: 0). agentgw is asked for
    ``max_batch_size`` events per message (0: one each), and resumes after ``after_cursor`` when
    given; the events of a batch are yielded one by one. The bare server sends one per message."""
    if kind == "agentgw":
        stub = events_rpc.EventServiceStub(channel)
        request = events_api.WatchEventsRequest(max_batch_size=max_batch_size)
        if after_cursor is not None:
            request.start = events_api.START_POSITION_AFTER_CURSOR
            request.after_cursor = after_cursor
        else:
            request.start = events_api.START_POSITION_OLDEST if oldest else events_api.START_POSITION_NOW
        async for response in stub.WatchEvents(request):
            item = response.WhichOneof("item")
            if item == "heartbeat":
                yield "heartbeat", "", response.heartbeat.cursor
            elif item == "batch":
                for event in response.batch.events:
                    yield "event", event.llm_result.text, event.cursor
            else:
                yield "event", response.event.llm_result.text, response.event.cursor
        return
    bare = channel.unary_stream(WATCH, request_serializer=None, response_deserializer=None)(b"sub")
    async for message in bare:
        if message == HEARTBEAT:
            yield "heartbeat", "", 0
        else:
            yield "event", _bare_text(message), 0


async def replay_count(
    channel: grpc.aio.Channel, kind: Kind, count: int, payload: bytes, max_batch_size: int = 0
) -> int:
    """Receive ``count`` replayed events (agentgw: from the oldest; bare: ``payload`` from memory).

    Both sides parse every message as a ``WatchEventsResponse``, so the client's work per message is
    the same. agentgw is asked for ``max_batch_size`` events per message (0: one each) and the
    events inside its batches are counted one by one; the bare server always sends one per message.
    """
    received = 0
    if kind == "agentgw":
        stub = events_rpc.EventServiceStub(channel)
        call = stub.WatchEvents(
            events_api.WatchEventsRequest(
                start=events_api.START_POSITION_OLDEST, max_batch_size=max_batch_size
            )
        )
        async for response in call:
            item = response.WhichOneof("item")
            if item == "event":
                received += 1
            elif item == "batch":
                received += len(response.batch.events)
            if received >= count:
                call.cancel()
                break
        return received
    bare = channel.unary_stream(WATCH, request_serializer=None, response_deserializer=None)(
        b"replay:%d:%s" % (count, payload)
    )
    parse = events_api.WatchEventsResponse.FromString
    async for message in bare:
        if parse(message).WhichOneof("item") == "event":
            received += 1
    return received
