"""Serving the emulator inside the caller's event loop (embedded in the gateway, or in tests).

It runs on :func:`service.http.asgi.serve_asgi`, the one embedded uvicorn of the code base, with
the app's lifespan on (it runs the ticker and stops callback delivery) and a hook that keeps the
uvicorn server at hand, because ``drop`` faults abort a client's TCP connection on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp

from service.http.asgi import serve_asgi

from .app import ConnectionAborter, Emulator, create_app
from .config import EmulatorConfig
from .events import EventSink

__all__ = ["EmulatorStartupError", "run_emulator", "serve_until_signalled"]

logger = logging.getLogger(__name__)


class EmulatorStartupError(RuntimeError):
    """The emulator could not start (for example, the port is taken)."""


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
    state_file: Path | None = None,
    wrap: Callable[[Starlette], ASGIApp] | None = None,
) -> AsyncIterator[str]:
    """Serve the emulator on ``host:port`` (0 = any free port) and yield its base URL.

    Example::

        async with run_emulator(EmulatorConfig(app_id=1, server_secret=..., callback_secret=...)) as url:
            ...  # POST f"{url}/?Action=RegisterAgent&..."

    The server runs in the current event loop, installs no signal handlers, and is shut down (with its
    background ticker) when the block exits. ``state_file`` keeps agents and instances across
    restarts (:mod:`.persist`). ``wrap`` receives the app and returns what is served instead, e.g. a
    middleware around it (``chaos.emulator`` journals every call that way); it must pass the lifespan on.
    """
    app = create_app(config, event_sink=event_sink, state_file=state_file)
    emulator: Emulator = app.state.emulator

    def started(server: uvicorn.Server) -> None:
        emulator.connection_aborter = _aborter(server)

    try:
        serving = serve_asgi(
            app if wrap is None else wrap(app),
            host,
            port,
            name="zego-emulator",
            lifespan="on",
            graceful_shutdown_seconds=2,
            on_started=started,
        )
        bound_port = await serving.__aenter__()
    except (OSError, RuntimeError) as exc:
        raise EmulatorStartupError(f"the emulator could not start on {host}:{port}: {exc}") from exc
    url_host = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{url_host}:{bound_port}"
    finally:
        # Release held requests first, so uvicorn's graceful shutdown does not wait for them.
        emulator.closing.set()
        await serving.__aexit__(None, None, None)


async def serve_until_signalled(
    config: EmulatorConfig,
    host: str,
    port: int,
    *,
    state_file: Path | None = None,
    wrap: Callable[[Starlette], ASGIApp] | None = None,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Serve the emulator (as :func:`run_emulator`) until SIGTERM or SIGINT, for a process of its own.

    ``on_listening`` gets the base URL once the port is bound. A clean stop runs the app's shutdown,
    which saves the state file one last time.
    """
    async with run_emulator(config, host, port, state_file=state_file, wrap=wrap) as url:
        if on_listening is not None:
            on_listening(url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            await stop.wait()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
