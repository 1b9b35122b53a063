"""The client's watch against a scripted EventService: it resumes after SUBSCRIBER_TOO_SLOW and
UNAVAILABLE from the right cursor (an event's or a heartbeat's), drops replayed duplicates, raises
what it must not resume, and gives up after ``resume_for``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from agentgw_client import AgentGw, RetryPolicy, errors
from agentgw_client.gen.agentgw.v1 import event_service_pb2 as eapi
from agentgw_client.gen.agentgw.v1 import event_service_pb2_grpc as erpc
from agentgw_client.gen.agentgw.v1 import session_event_pb2 as epb
from tests.conftest import serve_handlers

HEAD = 10


def status(code: grpc.StatusCode, reason: str) -> grpc.Status:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="agentgw"))
    return rpc_status.to_status(
        status_pb2.Status(code=getattr(code_pb2, code.name), message=reason, details=[info])
    )


def event(cursor: int, *, ended: bool = False) -> eapi.WatchEventsResponse:
    e = epb.SessionEvent(cursor=cursor, session_id="s1")
    if ended:
        e.ended.SetInParent()
    else:
        e.llm_result.text = f"t{cursor}"
    return eapi.WatchEventsResponse(event=e)


Script = list[Callable[[Any], AsyncIterator[eapi.WatchEventsResponse]]]


class Scripted(erpc.EventServiceServicer):
    """Each WatchEvents call plays the next scripted stream; every request is recorded."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[tuple[int, int]] = []

    async def ListEvents(self, request: Any, context: Any) -> eapi.ListEventsResponse:  # type: ignore[override]
        return eapi.ListEventsResponse(head_cursor=HEAD)

    async def WatchEvents(self, request: Any, context: Any) -> AsyncIterator[eapi.WatchEventsResponse]:  # type: ignore[override]
        self.requests.append((request.start, request.after_cursor))
        play = self.script[min(len(self.requests), len(self.script)) - 1]
        async for message in play(context):
            yield message


def generic(servicer: Scripted) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        "agentgw.v1.EventService",
        {
            "WatchEvents": grpc.unary_stream_rpc_method_handler(
                servicer.WatchEvents,
                request_deserializer=eapi.WatchEventsRequest.FromString,
                response_serializer=eapi.WatchEventsResponse.SerializeToString,
            ),
            "ListEvents": grpc.unary_unary_rpc_method_handler(
                servicer.ListEvents,
                request_deserializer=eapi.ListEventsRequest.FromString,
                response_serializer=eapi.ListEventsResponse.SerializeToString,
            ),
        },
    )


FAST = RetryPolicy(initial_backoff=0.01, max_backoff=0.05)


async def watch(script: Script, **kwargs: Any) -> tuple[list[int], Scripted]:
    servicer = Scripted(script)
    got: list[int] = []
    async with serve_handlers(generic(servicer)) as channel:
        gw = AgentGw(channel=channel, retry=FAST)
        async for e in gw.events.watch(**kwargs):
            got.append(e.cursor)
    return got, servicer


async def test_resumes_from_the_last_cursor_and_drops_replayed_duplicates() -> None:
    async def too_slow(context: Any) -> AsyncIterator[eapi.WatchEventsResponse]:
        for cursor in (11, 12, 13):
            yield event(cursor)
        await context.abort_with_status(status(grpc.StatusCode.RESOURCE_EXHAUSTED, "SUBSCRIBER_TOO_SLOW"))

    async def overlap_then_drop(context: Any) -> AsyncIterator[eapi.WatchEventsResponse]:
        for cursor in (12, 13, 14):  # a replay overlapping what was delivered
            yield event(cursor)
        yield eapi.WatchEventsResponse(heartbeat=eapi.Heartbeat(cursor=20))
        await context.abort_with_status(status(grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN"))

    async def finish(context: Any) -> AsyncIterator[eapi.WatchEventsResponse]:
        yield event(20)  # at or before the heartbeat's cursor: already covered
        yield event(21)
        yield event(22, ended=True)
        yield event(23)  # never read: the single-session watch ends at `ended`

    got, servicer = await watch([too_slow, overlap_then_drop, finish], session_ids=["s1"])
    assert got == [11, 12, 13, 14, 21, 22]
    after = eapi.START_POSITION_AFTER_CURSOR
    assert servicer.requests == [(after, HEAD), (after, 13), (after, 20)]


async def test_from_oldest_restarts_at_the_oldest_until_something_arrived() -> None:
    async def drop(context: Any) -> AsyncIterator[eapi.WatchEventsResponse]:
        await context.abort_with_status(status(grpc.StatusCode.UNAVAILABLE, "X"))
        yield event(0)  # pragma: no cover

    async def one(context: Any) -> AsyncIterator[eapi.WatchEventsResponse]:
        yield event(1, ended=True)

    got, servicer = await watch([drop, one], session_ids=["s1"], from_oldest=True)
    assert got == [1]
    assert servicer.requests == [(eapi.START_POSITION_OLDEST, 0)] * 2


@pytest.mark.parametrize(
    ("code", "reason", "raised"),
    [
        (grpc.StatusCode.FAILED_PRECONDITION, "CURSOR_EXPIRED", errors.CursorExpired),
        (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", errors.InvalidArgument),
        (grpc.StatusCode.PERMISSION_DENIED, "NO", errors.PermissionDenied),
    ],
)
async def test_what_cannot_be_resumed_is_raised(
    code: grpc.StatusCode, reason: str, raised: type[errors.AgentGwError]
) -> None:
    async def fail(context: Any) -> AsyncIterator[eapi.WatchEventsResponse]:
        yield event(11)
        await context.abort_with_status(status(code, reason))

    with pytest.raises(raised) as caught:
        await watch([fail], after_cursor=HEAD)
    assert caught.value.reason == reason


async def test_it_gives_up_after_resume_for() -> None:
    async def down(context: Any) -> AsyncIterator[eapi.WatchEventsResponse]:
        await context.abort_with_status(status(grpc.StatusCode.UNAVAILABLE, "DOWN"))
        yield event(0)  # pragma: no cover

    with pytest.raises(errors.Unavailable):
        await watch([down], after_cursor=HEAD, resume_for=0.3)
