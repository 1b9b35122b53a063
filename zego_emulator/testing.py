"""Start an emulator for a test, a demo or a benchmark, and get the client that drives it.

Like ``grpclib.testing.ChannelFor``: one ``async with`` gives a running emulator on a free loopback
port (uvicorn in the current event loop, its ticker and callback delivery running) and an
:class:`~.client.EmulatorClient` for it; leaving the block closes the client and stops the server::

    async with emulator_for(EmulatorConfig(app_id=1, server_secret=..., callback_secret=...)) as zego:
        await zego.ok("RegisterAgent", {...})

Without a config it serves AppId 1 with fresh random secrets (read them from ``client.config``).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp

from .client import EmulatorClient
from .config import EmulatorConfig
from .events import EventSink
from .server import run_emulator

__all__ = ["RunningEmulator", "emulator_for", "random_config"]


def random_config(**overrides: Any) -> EmulatorConfig:
    """AppId 1 with fresh random secrets, and ``overrides`` (any :class:`EmulatorConfig` field)."""
    values: dict[str, Any] = {
        "app_id": 1,
        "server_secret": secrets.token_hex(16),
        "callback_secret": secrets.token_hex(16),
    }
    values.update(overrides)
    return EmulatorConfig(**values)


class RunningEmulator(EmulatorClient):
    """The client of an emulator :func:`emulator_for` started, with the config it serves."""

    def __init__(self, url: str, config: EmulatorConfig, *, timeout: float) -> None:
        super().__init__(
            url,
            app_id=config.app_id,
            server_secret=config.server_secret,
            callback_secret=config.callback_secret,
            timeout=timeout,
        )
        self.config = config


@contextlib.asynccontextmanager
async def emulator_for(
    config: EmulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    event_sink: EventSink | None = None,
    state_file: Path | None = None,
    wrap: Callable[[Starlette], ASGIApp] | None = None,
    timeout: float = 5.0,
) -> AsyncIterator[RunningEmulator]:
    """Serve an emulator on ``host:port`` (0: a free port) for the block; yields its client.

    The arguments are :func:`~.server.run_emulator`'s; ``timeout`` is the client's, in seconds.

    Raises:
        EmulatorStartupError: the server could not start (for example, the port is taken).
    """
    config = config or random_config()
    async with run_emulator(
        config, host, port, event_sink=event_sink, state_file=state_file, wrap=wrap
    ) as url:
        async with RunningEmulator(url, config, timeout=timeout) as client:
            yield client
