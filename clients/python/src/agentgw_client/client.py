"""``AgentGw``: one channel to the gateway and an object per service."""

from __future__ import annotations

from types import TracebackType

import grpc

from agentgw_client._invoke import Invoker
from agentgw_client.credentials import Credentials
from agentgw_client.events import Events
from agentgw_client.retry import RetryPolicy
from agentgw_client.services import Agents, Sessions, Tokens

__all__ = ["AgentGw"]

# Reconnect fast after a dropped connection (grpc's default first backoff is 1 s, up to 120 s), and
# keep idle watch streams' connections alive through NATs and proxies.
_CHANNEL_OPTIONS: list[tuple[str, str | int]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 5000),
    ("grpc.keepalive_time_ms", 30000),
    ("grpc.keepalive_timeout_ms", 10000),
]


class AgentGw:
    """A client of one agentgw: ``.agents``, ``.sessions``, ``.events``, ``.tokens``.

    Use it as an async context manager (or call :meth:`close`)::

        async with AgentGw("127.0.0.1:50051") as gw:
            agent = await gw.agents.get("xiaozhi")

    Args:
        target: ``host:port`` (any gRPC target string).
        credentials: TLS files and a bearer token; plaintext without a token by default.
        retry: which failures are retried, and how.
        timeout: each call's default budget in seconds, retries included (``timeout=`` per call).
        channel: an existing channel to use instead (its owner closes it).
        options: extra gRPC channel options.
    """

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        credentials: Credentials | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 10.0,
        channel: grpc.aio.Channel | None = None,
        options: list[tuple[str, str | int]] | None = None,
    ) -> None:
        self.credentials = credentials or Credentials()
        self._owns_channel = channel is None
        self.channel = channel or self.credentials.channel(target, [*_CHANNEL_OPTIONS, *(options or [])])
        invoker = Invoker(self.credentials, retry or RetryPolicy(), timeout)
        self.agents = Agents(self.channel, invoker)
        self.sessions = Sessions(self.channel, invoker)
        self.events = Events(self.channel, invoker)
        self.tokens = Tokens(self.channel, invoker)

    async def close(self) -> None:
        """Close the channel (if this client opened it); in-flight calls are cancelled."""
        if self._owns_channel:
            await self.channel.close(None)

    async def __aenter__(self) -> AgentGw:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
