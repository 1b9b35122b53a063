"""A real gateway (its emulator calling back over HTTP) and an ``AgentGw`` client connected to it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentgw_client import AgentGw, RetryPolicy
from service.server import Gateway
from tests.conftest import Emulator


@pytest.fixture
def emulator_overrides() -> dict[str, Any]:
    # Emulated delays run 100x faster, so a call's events come quickly.
    return {"time_scale": 0.01, "latency_seed": 7}


@pytest.fixture
async def wired(emulator: Emulator, gateway: Gateway) -> Gateway:
    """The gateway with the emulator's callbacks pointed at it."""
    url = f"http://127.0.0.1:{gateway.http_port}/v1/zego/callbacks"
    await emulator.set_callback_url(url)
    return gateway


@pytest.fixture
async def gw(wired: Gateway) -> AsyncIterator[AgentGw]:
    fast = RetryPolicy(initial_backoff=0.02, max_backoff=0.2)
    async with AgentGw(f"127.0.0.1:{wired.grpc_port}", retry=fast, timeout=10) as client:
        yield client


class Proxy:
    """A loopback TCP proxy whose connections a test can cut, and which can refuse new ones."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.refusing = False
        self.accepted = 0
        self._links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._links.append((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.transport.abort()

    def cut(self) -> None:
        """Drop every open connection at once (RST), as a crashed load balancer would."""
        for a, b in self._links:
            a.transport.abort()
            b.transport.abort()
        self._links.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
