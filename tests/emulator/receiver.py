"""A loopback HTTP receiver for the emulator's server callbacks: records every POST, can fail the next K."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.zego.signing import verify_callback_signature


@dataclass(frozen=True)
class Received:
    """One POST as it arrived: monotonic arrival time, the raw bytes and the decoded body."""

    at: float
    raw: bytes
    body: dict[str, Any]

    @property
    def event(self) -> str:
        return str(self.body["Event"])

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = self.body["Data"]
        return data

    @property
    def timestamp(self) -> int:
        return int(self.body["Timestamp"])

    def signed(self, secret: str) -> bool:
        """Whether the Signature verifies against ``secret`` (spec §8.4), with the Timestamp as sent."""
        b = self.body
        return verify_callback_signature(secret, str(b["Timestamp"]), b["Nonce"], b["Signature"])


class CallbackReceiver:
    """The receiving end: ``app`` answers 200, or 500 while ``fail_next`` is positive."""

    def __init__(self) -> None:
        self.url = ""
        self.received: list[Received] = []
        self.fail_next = 0
        self.app = Starlette(routes=[Route("/callbacks", self._receive, methods=["POST"])])

    async def _receive(self, request: Request) -> Response:
        raw = await request.body()
        # json.loads keeps every integer exact, as a consumer of a >2**53 Sequence must.
        self.received.append(Received(time.monotonic(), raw, json.loads(raw)))
        if self.fail_next > 0:
            self.fail_next -= 1
            return Response(status_code=500)
        return Response(status_code=200)

    def clear(self) -> None:
        self.received.clear()
        self.fail_next = 0

    def of(self, instance_id: str, event: str | None = None) -> list[Received]:
        """What arrived for one instance (optionally one Event), in arrival order."""
        return [
            r
            for r in self.received
            if r.body.get("AgentInstanceId") == instance_id and (event is None or r.event == event)
        ]

    def steps(self, instance_id: str) -> list[tuple[Any, ...]]:
        """``(Event, detail..., Round)`` tuples in arrival order, for comparing with spec §9's sequences."""
        out: list[tuple[Any, ...]] = []
        for r in self.of(instance_id):
            d = r.data
            if r.event == "AgentInstanceStatus":
                out.append((r.event, d["Status"], d["Round"]))
            elif r.event == "UserSpeakAction":
                out.append((r.event, d["Action"], d["Round"]))
            elif r.event == "Interrupted":
                out.append((r.event, d["Reason"], d["Round"]))
            elif "Round" in d:
                out.append((r.event, d["Round"]))
            else:
                out.append((r.event,))
        return out

    async def wait_for(
        self, check: Callable[[], bool], *, within: float = 3.0, what: str = "callbacks"
    ) -> None:
        """Poll (bounded) until ``check()`` holds."""
        deadline = time.monotonic() + within
        while not check():
            assert time.monotonic() < deadline, f"{what} not received within {within}s: {self.received}"
            await asyncio.sleep(0.005)

    async def wait_event(
        self, instance_id: str, event: str, *, count: int = 1, within: float = 3.0, **data: Any
    ) -> list[Received]:
        """Wait until ``count`` callbacks of ``event`` whose Data contains ``data`` arrived."""

        def matching() -> list[Received]:
            return [
                r for r in self.of(instance_id, event) if all(r.data.get(k) == v for k, v in data.items())
            ]

        await self.wait_for(lambda: len(matching()) >= count, within=within, what=f"{count} x {event} {data}")
        return matching()
