"""The worker side of the orchestrator <-> worker protocol: JSON lines.

A worker writes one JSON object per line on stdout (``{"event": "ready"}``, ``{"event":
"result", ...}``) and reads commands as JSON lines on stdin (``{"cmd": "go"}``, ``{"cmd":
"stop"}`` ...). End of stdin (the orchestrator is gone) reads as ``stop``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from typing import Any

__all__ = ["Control", "emit"]


def emit(message: dict[str, Any]) -> None:
    """Send one message to the orchestrator."""
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class Control:
    """Commands from the orchestrator, read by a daemon thread and handed to the event loop."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def reader() -> None:
            for line in sys.stdin:
                line = line.strip()
                if line:
                    loop.call_soon_threadsafe(self._queue.put_nowait, json.loads(line))
            loop.call_soon_threadsafe(self._queue.put_nowait, {"cmd": "stop"})

        threading.Thread(target=reader, name="control", daemon=True).start()

    async def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next command, or None after ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def wait(self, cmd: str, timeout: float) -> dict[str, Any]:
        """Wait for ``cmd``; ``stop`` (or the timeout) raises ``SystemExit``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            message = await self.get(max(0.0, deadline - loop.time()))
            if message is None or message.get("cmd") == "stop":
                if cmd == "stop" and message is not None:
                    return message
                raise SystemExit(f"worker: expected {cmd!r}, got {message!r}")
            if message.get("cmd") == cmd:
                return message
