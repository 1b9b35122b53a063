"""Serving the emulator with uvicorn inside the caller's event loop (embedded in the gateway, or in tests)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Generator
from typing import Any

import uvicorn

from .app import ConnectionAborter, Emulator, create_app
from .config import EmulatorConfig
from .events import EventSink

__all__ = ["EmulatorStartupError", "run_emulator"]

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_SECONDS = 10.0
SHUTDOWN_TIMEOUT_SECONDS = 10.0


class EmulatorStartupError(RuntimeError):
    """The emulator could not start (for example, the port is taken)."""


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the process that embeds it, and stops promptly."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit_requested = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    def request_exit(self) -> None:
        """Ask the server to shut down now."""
        self.should_exit = True
        self._exit_requested.set()

    async def main_loop(self) -> None:
        # uvicorn's loop sleeps 0.1 s between checks of should_exit; waking on an event instead makes an
        # embedded emulator (started and stopped per test) shut down without that polling delay.
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit_requested.wait(), 0.1)


def _aborter(server: uvicorn.Server) -> ConnectionAborter:
    """Find the connection of an ASGI client address among uvicorn's and abort it (RST, no response)."""

    def abort(client: Any) -> bool:
        if client is None:
            return False
        for connection in list(server.server_state.connections):
            if tuple(getattr(connection, "client", None) or ()) == tuple(client):
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    transport.abort()
                    return True
        return False

    return abort


@contextlib.asynccontextmanager
async def run_emulator(
    config: EmulatorConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    event_sink: EventSink | None = None,
) -> AsyncIterator[str]:
    """Serve the emulator on ``host:port`` (0 = any free port) and yield its base URL.

    Example::

        async with run_emulator(EmulatorConfig(app_id=1, server_secret=..., callback_secret=...)) as url:
            ...  # POST f"{url}/?Action=RegisterAgent&..."

    The server runs in the current event loop, installs no signal handlers, and is shut down (with its
    background ticker) when the block exits.
    """
    app = create_app(config, event_sink=event_sink)
    emulator: Emulator = app.state.emulator
    uv_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        log_config=None,  # do not reconfigure the embedding process's logging
        lifespan="on",
        access_log=False,
        # Held requests end when ``closing`` is set; this is only a backstop for stuck connections.
        timeout_graceful_shutdown=2,
    )
    server = _EmbeddedServer(uv_config)

    async def serve() -> None:
        try:
            await server.serve()
        except SystemExit as exc:
            # uvicorn calls sys.exit() when it cannot bind or start; never let that escape the host's loop.
            raise EmulatorStartupError(f"the emulator could not start on {host}:{port}") from exc

    task = asyncio.create_task(serve(), name="zego-emulator-server")
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT_SECONDS):
            while not server.started:
                if task.done():
                    task.result()  # raises the startup error
                    raise EmulatorStartupError("the emulator stopped during start-up")
                await asyncio.sleep(0.01)
    except BaseException:
        server.request_exit()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, SHUTDOWN_TIMEOUT_SECONDS)
        raise
    emulator.connection_aborter = _aborter(server)
    bound_host, bound_port = server.servers[0].sockets[0].getsockname()[:2]
    url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    try:
        yield f"http://{url_host}:{bound_port}"
    finally:
        # Release held requests first, so uvicorn's graceful shutdown does not wait for them.
        emulator.closing.set()
        server.request_exit()
        try:
            await asyncio.wait_for(asyncio.shield(task), SHUTDOWN_TIMEOUT_SECONDS)
        except TimeoutError:
            server.force_exit = True
            await task
