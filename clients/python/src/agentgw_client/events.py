"""``EventService``: the resumable watch and the event listing."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterable

import grpc

from agentgw_client._invoke import Invoker, new_request_id
from agentgw_client._pb import event_service_pb2 as eapi
from agentgw_client._pb import event_service_pb2_grpc as erpc
from agentgw_client._pb import session_event_pb2 as epb
from agentgw_client.errors import AgentGwError, SubscriberTooSlow, Unavailable, from_rpc_error

__all__ = ["Events"]

_RESUMABLE: tuple[type[AgentGwError], ...] = (Unavailable, SubscriberTooSlow)


class Events:
    """Session events: ``watch()`` (live, resumable) and ``list()`` (pages of the log)."""

    def __init__(self, channel: grpc.aio.Channel, invoker: Invoker) -> None:
        self._stub = erpc.EventServiceStub(channel)
        self._invoker = invoker

    async def list(
        self, filter: eapi.EventFilter | None = None, *, after_cursor: int = 0, page_size: int = 0,
        include_raw: bool = False, timeout: float | None = None,
    ) -> eapi.ListEventsResponse:  # fmt: skip
        """One page of logged events after ``after_cursor`` (pass ``next_cursor`` to continue)."""
        request = eapi.ListEventsRequest(
            filter=filter, after_cursor=after_cursor, page_size=page_size, include_raw=include_raw
        )
        return await self._invoker.unary(self._stub.ListEvents, request, idempotent=True, timeout=timeout)

    async def head_cursor(self, *, timeout: float | None = None) -> int:
        """The newest cursor in the gateway's log now."""
        return (await self.list(page_size=1, timeout=timeout)).head_cursor

    async def watch(
        self,
        *,
        session_ids: Iterable[str] = (),
        agent_id: str = "",
        room_id: str = "",
        event_types: Iterable[epb.EventType.ValueType] = (),
        label_selector: str = "",
        after_cursor: int | None = None,
        from_oldest: bool = False,
        include_raw: bool = False,
        max_batch_size: int = 0,
        resume_for: float = 60.0,
    ) -> AsyncIterator[epb.SessionEvent]:
        """Matching events in cursor order, live, resuming by cursor by itself.

        Starts after ``after_cursor`` if given, at the oldest retained event with ``from_oldest``,
        else now (the log's head cursor is read first, so nothing that arrives while the stream
        connects, or while it reconnects, is lost). After UNAVAILABLE (a dropped connection, a
        restarting gateway) or SUBSCRIBER_TOO_SLOW it reconnects after the last cursor it saw (an
        event's or a heartbeat's) and skips any cursor it has already yielded: no gap, no duplicate.
        It gives up, raising the last error, after ``resume_for`` seconds of failed reconnects with
        no message in between. Watching exactly one session ends after that session's ``ended``
        event. Other errors (``CursorExpired``, ``InvalidArgument``, …) are raised as they are.
        """
        flt = eapi.EventFilter(
            session_ids=list(session_ids), agent_id=agent_id, room_id=room_id,
            event_types=list(event_types), label_selector=label_selector,
        )  # fmt: skip
        single = len(flt.session_ids) == 1
        cursor: int | None = after_cursor
        if cursor is None and not from_oldest:
            cursor = await self.head_cursor()
        loop = asyncio.get_running_loop()
        failing_since: float | None = None
        failures = 0
        while True:
            request = eapi.WatchEventsRequest(
                filter=flt, include_raw=include_raw, max_batch_size=max_batch_size
            )
            if cursor is None:
                request.start = eapi.START_POSITION_OLDEST
            else:
                request.start = eapi.START_POSITION_AFTER_CURSOR
                request.after_cursor = cursor
            call = self._stub.WatchEvents(request, metadata=self._invoker.metadata(new_request_id()))
            try:
                async for message in call:
                    failing_since, failures = None, 0
                    kind = message.WhichOneof("item")
                    if kind == "heartbeat":
                        # Every matching event up to it has been sent: resume from there.
                        cursor = max(cursor or 0, message.heartbeat.cursor)
                        continue
                    batch = (message.event,) if kind == "event" else message.batch.events
                    for event in batch:
                        if cursor is not None and event.cursor <= cursor:
                            continue  # already yielded (a replay overlapping what we had)
                        cursor = event.cursor
                        yield event
                        if single and event.HasField("ended"):
                            return
                return  # completed with OK: a single-session watch after its end
            except grpc.aio.AioRpcError as exc:
                error = from_rpc_error(exc)
                if not isinstance(error, _RESUMABLE):
                    raise error from exc
                now = loop.time()
                failing_since = now if failing_since is None else failing_since
                if now - failing_since >= resume_for:
                    raise error from exc
                failures += 1
                retry = self._invoker.retry
                ceiling = min(retry.max_backoff, retry.initial_backoff * retry.multiplier ** (failures - 1))
                await asyncio.sleep(random.uniform(ceiling / 2, ceiling))
            finally:
                call.cancel()
