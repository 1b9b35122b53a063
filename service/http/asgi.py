"""Serve an ASGI app with uvicorn inside the current event loop, with an explicit lifecycle.

Both the gateway's HTTP side and the embedded ZEGO emulator use this, so they share the gRPC
server's event loop, and tests can start either on port 0 and learn the real port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn

__all__ = ["serve_asgi"]


class _EmbeddedServer(uvicorn.Server):
    # The process owner (agentgw's main, or a test) handles signals, not the embedded server:
    # uvicorn would otherwise replace our SIGTERM handler for as long as it serves.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve_asgi(app: Any, host: str, port: int, *, name: str = "http") -> AsyncIterator[int]:
    """Serve ``app`` on ``host:port`` (0 picks a free port) until the block exits; yields the port.

    Raises:
        OSError: the address cannot be bound.
    """
    # Bind first, so a busy port fails here with a clear OSError instead of inside uvicorn's task.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    bound_port: int = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=5
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"uvicorn-{name}")
    try:
        while not server.started:
            if task.done():
                task.result()  # surfaces the start-up error
                raise RuntimeError(f"{name} server stopped during start-up")
            await asyncio.sleep(0.01)
        yield bound_port
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()
