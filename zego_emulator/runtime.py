"""The runtime behind one emulator app (``app.state.emulator``): state, callbacks, faults, rate buckets.

It is its own module so that the admin endpoints (:mod:`.admin_io`) and the app (:mod:`.app`) both
depend on it, instead of on each other.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from .actions import ACTIONS
from .callbacks import CallbackDeliverer
from .config import EmulatorConfig
from .digital_humans import DH_ACTIONS
from .events import EventSink, FanOutSink
from .faults import FaultTable, TokenBuckets
from .state import EmulatorState

__all__ = ["ConnectionAborter", "Emulator"]

ConnectionAborter = Callable[[Any], bool]
"""Aborts the TCP connection of an ASGI ``scope["client"]`` address; returns whether it found one."""


class Emulator:
    """The runtime of one app (``app.state.emulator``): state, callbacks, injected faults, rate buckets."""

    def __init__(self, config: EmulatorConfig, sink: EventSink | None = None) -> None:
        self.config = config
        # The deliverer reads envelope facts from the state, which does not exist yet: bind late.
        self.callbacks = CallbackDeliverer(config, lambda instance_id: self.state.describe(instance_id))
        self.state = EmulatorState(config, FanOutSink(sink, self.callbacks))
        self.faults = FaultTable((*ACTIONS, *DH_ACTIONS))
        self.buckets = TokenBuckets(config.rate_limit_per_second)
        self.closing = asyncio.Event()
        """Set at shutdown so held requests (timeout faults, latency) return at once."""
        self.connection_aborter: ConnectionAborter | None = None
        """Installed by :func:`~.server.run_emulator`; lets ``drop`` faults close the socket outright."""

    def reset(self) -> None:
        """Back to a fresh emulator (admin ``POST /_emulator/reset``); the callback URL stays."""
        self.state.reset()
        self.callbacks.reset()
        self.faults.clear()
        self.buckets.clear()

    async def pause(self, seconds: float) -> None:
        """Sleep, but return early when the emulator shuts down."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), timeout=seconds)
