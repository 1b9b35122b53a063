"""``AgentService``, ``SessionService`` and ``RoomTokenService``, one object each."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence

import grpc
from google.protobuf import duration_pb2, field_mask_pb2

from agentgw_client._invoke import Invoker, new_request_id
from agentgw_client._pb import agent_pb2, session_event_pb2
from agentgw_client._pb import agent_service_pb2 as aapi
from agentgw_client._pb import agent_service_pb2_grpc as arpc
from agentgw_client._pb import room_token_service_pb2 as tapi
from agentgw_client._pb import room_token_service_pb2_grpc as trpc
from agentgw_client._pb import session_pb2 as spb
from agentgw_client._pb import session_service_pb2 as sapi
from agentgw_client._pb import session_service_pb2_grpc as srpc

__all__ = ["Agents", "Sessions", "Tokens"]


class Agents:
    """Agent templates registered with ZEGO."""

    def __init__(self, channel: grpc.aio.Channel, invoker: Invoker) -> None:
        self._stub = arpc.AgentServiceStub(channel)
        self._call = invoker.unary

    async def create(
        self, agent: agent_pb2.Agent, *, request_id: str | None = None, timeout: float | None = None
    ) -> agent_pb2.Agent:
        """Register ``agent``. A generated ``request_id`` makes the retries idempotent."""
        rid = request_id or new_request_id()
        request = aapi.CreateAgentRequest(agent=agent, request_id=rid)
        response = await self._call(
            self._stub.CreateAgent, request, idempotent=True, timeout=timeout, request_id=rid
        )
        return response.agent

    async def get(self, agent_id: str, *, timeout: float | None = None) -> agent_pb2.Agent:
        """One agent; raises NotFound."""
        request = aapi.GetAgentRequest(agent_id=agent_id)
        return (await self._call(self._stub.GetAgent, request, idempotent=True, timeout=timeout)).agent

    async def list(
        self, *, page_size: int = 0, timeout: float | None = None
    ) -> AsyncIterator[agent_pb2.Agent]:
        """Every agent, page after page (``timeout`` bounds each page)."""
        token = ""
        while True:
            request = aapi.ListAgentsRequest(page_size=page_size, page_token=token)
            page = await self._call(self._stub.ListAgents, request, idempotent=True, timeout=timeout)
            for agent in page.agents:
                yield agent
            token = page.next_page_token
            if not token:
                return

    async def update(
        self, agent: agent_pb2.Agent, paths: Iterable[str], *, timeout: float | None = None
    ) -> agent_pb2.Agent:
        """Update the fields of ``agent`` named in ``paths`` (a field mask). Not retried."""
        request = aapi.UpdateAgentRequest(
            agent=agent, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
        )
        return (await self._call(self._stub.UpdateAgent, request, idempotent=False, timeout=timeout)).agent

    async def delete(self, agent_id: str, *, timeout: float | None = None) -> None:
        """Unregister an agent; raises NotFound. Retried: deleting twice deletes once."""
        request = aapi.DeleteAgentRequest(agent_id=agent_id)
        await self._call(self._stub.DeleteAgent, request, idempotent=True, timeout=timeout)


class Sessions:
    """Agent instances in RTC rooms: start, inspect, control and end them."""

    def __init__(self, channel: grpc.aio.Channel, invoker: Invoker) -> None:
        self._stub = srpc.SessionServiceStub(channel)
        self._call = invoker.unary

    async def create(
        self, request: sapi.CreateSessionRequest, *, timeout: float | None = None
    ) -> spb.Session:
        """Start a session. Its ``request_id`` (generated when empty) makes retries idempotent."""
        if not request.request_id:
            copy = sapi.CreateSessionRequest()
            copy.CopyFrom(request)
            copy.request_id = new_request_id()
            request = copy
        response = await self._call(
            self._stub.CreateSession, request, idempotent=True, timeout=timeout, request_id=request.request_id
        )
        return response.session

    async def get(self, session_id: str, *, timeout: float | None = None) -> sapi.GetSessionResponse:
        """The session with its recorded transitions."""
        request = sapi.GetSessionRequest(session_id=session_id)
        return await self._call(self._stub.GetSession, request, idempotent=True, timeout=timeout)

    async def list(
        self, request: sapi.ListSessionsRequest | None = None, *, timeout: float | None = None
    ) -> AsyncIterator[spb.Session]:
        """Every matching session, page after page (``timeout`` bounds each page)."""
        page_request = sapi.ListSessionsRequest()
        if request is not None:
            page_request.CopyFrom(request)
        while True:
            page = await self._call(self._stub.ListSessions, page_request, idempotent=True, timeout=timeout)
            for session in page.sessions:
                yield session
            if not page.next_page_token:
                return
            page_request.page_token = page.next_page_token

    async def end(
        self, session_id: str, *, graceful: bool = False, graceful_timeout: float | None = None,
        request_id: str | None = None, timeout: float | None = None,
    ) -> spb.Session:  # fmt: skip
        """End a session (ending an ended session returns it); idempotent."""
        rid = request_id or new_request_id()
        request = sapi.EndSessionRequest(session_id=session_id, graceful=graceful, request_id=rid)
        if graceful_timeout is not None:
            request.graceful_timeout.CopyFrom(_duration(graceful_timeout))
        response = await self._call(
            self._stub.EndSession, request, idempotent=True, timeout=timeout, request_id=rid
        )
        return response.session

    async def update(
        self, request: sapi.UpdateSessionRequest, *, timeout: float | None = None
    ) -> spb.Session:
        """Swap the session's LLM, TTS, ASR or user stream (``request.update_mask``). Not retried."""
        return (
            await self._call(self._stub.UpdateSession, request, idempotent=False, timeout=timeout)
        ).session

    async def send_text(self, session_id: str, text: str, *, timeout: float | None = None) -> int:
        """Send ``text`` to the LLM as if the user said it; returns the round."""
        request = sapi.SendTextRequest(session_id=session_id, text=text)
        return (await self._call(self._stub.SendText, request, idempotent=False, timeout=timeout)).round

    async def speak(self, session_id: str, text: str, *, timeout: float | None = None) -> int:
        """Have the agent say ``text`` (at most 300 characters); returns the round."""
        request = sapi.SpeakRequest(session_id=session_id, text=text)
        return (await self._call(self._stub.Speak, request, idempotent=False, timeout=timeout)).round

    async def interrupt(self, session_id: str, *, timeout: float | None = None) -> int:
        """Stop the agent speaking; returns the round. Retried: interrupting twice is harmless."""
        request = sapi.InterruptRequest(session_id=session_id)
        return (await self._call(self._stub.Interrupt, request, idempotent=True, timeout=timeout)).round

    async def agent_status(
        self, session_id: str, *, timeout: float | None = None
    ) -> session_event_pb2.AgentState.ValueType:
        """What the agent is doing now (ZEGO QueryAgentInstanceStatus), as an ``AgentState``."""
        request = sapi.GetAgentStatusRequest(session_id=session_id)
        return (await self._call(self._stub.GetAgentStatus, request, idempotent=True, timeout=timeout)).status

    async def context(self, session_id: str, *, timeout: float | None = None) -> Sequence[spb.ChatMessage]:
        """The LLM context (ZEGO GetAgentInstanceMsgList)."""
        request = sapi.GetContextRequest(session_id=session_id)
        response = await self._call(self._stub.GetContext, request, idempotent=True, timeout=timeout)
        return list(response.messages)

    async def reset_context(self, session_id: str, *, timeout: float | None = None) -> None:
        """Clear the LLM context; retried (clearing twice clears once)."""
        request = sapi.ResetContextRequest(session_id=session_id)
        await self._call(self._stub.ResetContext, request, idempotent=True, timeout=timeout)

    async def append_context(
        self, session_id: str, messages: Iterable[spb.ChatMessage], *, timeout: float | None = None
    ) -> None:
        """Append messages to the LLM context without a reply. Not retried (it would append twice)."""
        request = sapi.AppendContextRequest(session_id=session_id, messages=list(messages))
        await self._call(self._stub.AppendContext, request, idempotent=False, timeout=timeout)

    async def start_listening(self, session_id: str, sequence: int, *, timeout: float | None = None) -> int:
        """Walkie-talkie mode: the agent starts listening; returns the round."""
        request = sapi.StartListeningRequest(session_id=session_id, sequence=sequence)
        response = await self._call(self._stub.StartListening, request, idempotent=False, timeout=timeout)
        return response.round

    async def stop_listening(self, session_id: str, sequence: int, *, timeout: float | None = None) -> int:
        """Walkie-talkie mode: the agent stops listening and replies; returns the round."""
        request = sapi.StopListeningRequest(session_id=session_id, sequence=sequence)
        response = await self._call(self._stub.StopListening, request, idempotent=False, timeout=timeout)
        return response.round

    async def capacity(self, *, timeout: float | None = None) -> sapi.GetCapacityResponse:
        """The pools' limits and use."""
        request = sapi.GetCapacityRequest()
        return await self._call(self._stub.GetCapacity, request, idempotent=True, timeout=timeout)


class Tokens:
    """ZEGO Token04 room tokens for the end users' clients."""

    def __init__(self, channel: grpc.aio.Channel, invoker: Invoker) -> None:
        self._stub = trpc.RoomTokenServiceStub(channel)
        self._call = invoker.unary

    async def create(
        self, user_id: str, *, ttl: float | None = None, timeout: float | None = None
    ) -> tapi.CreateRoomTokenResponse:
        """A token for ``user_id`` to join rooms (``ttl`` seconds; the gateway's default when None)."""
        request = tapi.CreateRoomTokenRequest(user_id=user_id)
        if ttl is not None:
            request.ttl.CopyFrom(_duration(ttl))
        return await self._call(self._stub.CreateRoomToken, request, idempotent=True, timeout=timeout)


def _duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value
