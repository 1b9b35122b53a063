"""Serve an ASGI app with uvicorn inside the current event loop, with an explicit lifecycle.

The gateway's HTTP side and the embedded ZEGO emulator both use this, so they share the gRPC
server's event loop, and tests can start either on port 0 and learn the real port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal

import uvicorn

__all__ = ["serve_asgi"]

STARTUP_TIMEOUT_SECONDS = 10.0
SHUTDOWN_TIMEOUT_SECONDS = 10.0


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals to its host process and stops without polling delay."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit_requested = asyncio.Event()

    # The process owner (agentgw's main, or a test) handles signals, not the embedded server:
    # uvicorn would otherwise replace our SIGTERM handler for as long as it serves.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def request_exit(self) -> None:
        """Ask the server to shut down now."""
        self.should_exit = True
        self._exit_requested.set()

    async def main_loop(self) -> None:
        # uvicorn sleeps 0.1 s between checks of should_exit; waking on an event instead lets a
        # server started and stopped per test shut down at once.
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit_requested.wait(), 0.1)


def _bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port``; OSError when the address cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets created with it, and Nagle's
    # algorithm otherwise holds every response on a kept-alive connection for ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


async def _started(server: uvicorn.Server, task: asyncio.Task[None], name: str) -> None:
    """Return once uvicorn serves; RuntimeError if it stopped or did not start in time."""
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT_SECONDS):
            while not server.started:
                if task.done():
                    task.result()  # surfaces the start-up error
                    raise RuntimeError(f"{name} server stopped during start-up")
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise RuntimeError(f"{name} server did not start in {STARTUP_TIMEOUT_SECONDS} s") from None


@contextlib.asynccontextmanager
async def serve_asgi(
    app: Any,
    host: str,
    port: int,
    *,
    name: str = "http",
    lifespan: Literal["auto", "on", "off"] = "off",
    graceful_shutdown_seconds: int = 5,
    on_started: Callable[[uvicorn.Server], None] | None = None,
) -> AsyncIterator[int]:
    """Serve ``app`` on ``host:port`` (0 picks a free port) until the block exits; yields the port.

    ``on_started`` receives the running ``uvicorn.Server`` (the emulator uses it to abort client
    connections on purpose). Logging is left as the host configured it.

    Raises:
        OSError: the address cannot be bound.
        RuntimeError: the server stopped, or did not start within 10 s.
    """
    # Bind first, so a busy port fails here with a clear OSError instead of inside uvicorn's task.
    sock = _bind(host, port)
    bound_port: int = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        log_config=None,  # never reconfigure the host process's loggers
        lifespan=lifespan,
        access_log=False,
        timeout_graceful_shutdown=graceful_shutdown_seconds,
    )
    server = _EmbeddedServer(config)

    async def serve() -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits the process when start-up fails: not ours to exit
            raise RuntimeError(f"{name} server could not start") from exc

    task = asyncio.create_task(serve(), name=f"uvicorn-{name}")
    try:
        await _started(server, task, name)
        if on_started is not None:
            on_started(server)
        yield bound_port
    finally:
        server.request_exit()
        try:
            await asyncio.wait_for(asyncio.shield(task), SHUTDOWN_TIMEOUT_SECONDS)
        except TimeoutError:
            server.force_exit = True
            await task
        except (RuntimeError, asyncio.CancelledError):
            pass
        sock.close()
