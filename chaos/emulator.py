"""``python -m chaos.emulator --port P``: the bundled ZEGO emulator with a journal, for ``make chaos``.

The chaos suite judges agentgw by what ZEGO saw, so this process keeps ZEGO's own view, complete
and unbounded for the run (the emulator's ``/_emulator/events`` keeps only the last 1,000):

* every API call that reached ZEGO: when it arrived (``t``) and when ZEGO had acted on it
  (``done``), action, room, agent user id, instance id, ZEGO's code, whether a delete was
  graceful, and whether an injected fault answered it (``GET /_chaos/journal``);
* every callback delivery attempt and whether the gateway acknowledged it with a 2xx
  (``GET /_chaos/callbacks``).

It also adds the faults the emulator's own ``/_emulator/faults`` cannot express, because those are
applied *before* the action runs (``POST /_chaos/faults`` ``{"action", "mode", "count"}``):

* ``lose_answer``: the action runs (an instance is created, or deleted), then the connection is
  cut before the answer: the caller cannot know what happened;
* ``http_503``: an HTTP 503 from ZEGO's front, the action not run.

Everything else (ZEGO error codes, ``timeout``, ``drop``, latency, callback faults, the instance
caps, time scale) is the emulator's own, configured here or through ``/_emulator/``. Served on
loopback by ``zego_emulator.server.serve_until_signalled`` (as ``bench.emulator``), the middleware
around the app through its ``wrap`` hook.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bench.config import APP_ID, CALLBACK_SECRET, SERVER_SECRET
from zego_emulator.config import EmulatorConfig
from zego_emulator.server import serve_until_signalled

CHAOS_MODES = ("lose_answer", "http_503")
MAX_JOURNAL = 200_000  # bounded; a chaos run makes a few thousand calls


class Journal:
    """What ZEGO saw and answered, and every callback it tried to deliver."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.callbacks: list[dict[str, Any]] = []
        self.faults: deque[dict[str, Any]] = deque()

    def take_fault(self, action: str) -> str | None:
        for fault in self.faults:
            if fault["action"] in (action, "*"):
                fault["count"] -= 1
                if fault["count"] <= 0:
                    self.faults.remove(fault)
                return str(fault["mode"])
        return None

    def call(self, entry: dict[str, Any]) -> None:
        if len(self.calls) < MAX_JOURNAL:
            self.calls.append(entry)

    def callback(self, entry: dict[str, Any]) -> None:
        if len(self.callbacks) < MAX_JOURNAL:
            self.callbacks.append(entry)


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _send_json(payload: Any) -> tuple[Message, Message]:
    body = json.dumps(payload).encode()
    start: Message = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    return start, {"type": "http.response.body", "body": body}


class JournalMiddleware:
    """Records ZEGO API calls, applies the chaos faults, serves ``/_chaos/``."""

    def __init__(self, app: Starlette, journal: Journal) -> None:
        self.app = app
        self.journal = journal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path.startswith("/_chaos/"):
            await self._admin(scope, receive, send, path)
            return
        if path != "/":
            await self.app(scope, receive, send)
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1").lstrip("?")))
        action = query.get("Action", "")
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            more = bool(message.get("more_body"))
        raw = b"".join(chunks)
        request = _json(raw)
        rtc = request.get("RTC") if isinstance(request.get("RTC"), dict) else {}
        entry: dict[str, Any] = {
            "t": time.time(),
            "action": action,
            "room_id": rtc.get("RoomId") if isinstance(rtc, dict) else None,
            "agent_user_id": rtc.get("AgentUserId") if isinstance(rtc, dict) else None,
            "instance_id": request.get("AgentInstanceId"),
            "code": None,
            "fault": None,
            "graceful": bool(request.get("GracefulShutdown")),
            "done": None,
        }
        mode = self.journal.take_fault(action)
        if mode == "http_503":
            entry["fault"] = mode
            entry["done"] = time.time()
            self.journal.call(entry)
            body = b"service unavailable"
            await send(
                {"type": "http.response.start", "status": 503, "headers": [(b"content-length", b"19")]}
            )
            await send({"type": "http.response.body", "body": body})
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        held: list[Message] = []

        async def capture(message: Message) -> None:
            held.append(message)

        await self.app(scope, replay, capture)
        entry["done"] = time.time()  # ZEGO has acted (or refused): what it did is done by now
        answer = _json(b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body"))
        entry["code"] = answer.get("Code")
        said = str(answer.get("Message", ""))
        if said == "injected fault":
            entry["fault"] = f"code_{entry['code']}"
        elif said.startswith("injected timeout"):
            entry["fault"] = "timeout"
        data = answer.get("Data")
        if isinstance(data, dict) and data.get("AgentInstanceId"):
            entry["instance_id"] = data["AgentInstanceId"]
        if not any(m["type"] == "http.response.body" for m in held):
            entry["fault"] = "drop"  # the emulator's own drop fault: no answer at all
        if mode == "lose_answer":
            entry["fault"] = mode
            self.journal.call(entry)
            # Start a response and stop before its body: the server closes the connection, the
            # client gets a protocol error after ZEGO acted.
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4096")]}
            )
            return
        self.journal.call(entry)
        for message in held:
            await send(message)

    async def _admin(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        method = scope.get("method", "GET")
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = bool(message.get("more_body"))
        payload: Any
        if path == "/_chaos/journal":
            payload = {"calls": self.journal.calls}
        elif path == "/_chaos/callbacks":
            payload = {"callbacks": self.journal.callbacks}
        elif path == "/_chaos/faults" and method == "POST":
            fault = _json(body)
            if fault.get("mode") not in CHAOS_MODES or not isinstance(fault.get("action"), str):
                payload = {"error": f"mode must be one of {CHAOS_MODES} and action a string"}
            else:
                entry = {
                    "action": fault["action"],
                    "mode": fault["mode"],
                    "count": int(fault.get("count", 1)),
                }
                self.journal.faults.append(entry)
                payload = {"faults": list(self.journal.faults)}
        elif path == "/_chaos/faults" and method == "DELETE":
            self.journal.faults.clear()
            payload = {"faults": []}
        else:
            payload = {"error": f"unknown chaos endpoint {method} {path}"}
        start, end = _send_json(payload)
        await send(start)
        await send(end)


def journal_callbacks(app: Starlette, journal: Journal) -> None:
    """Record every callback delivery attempt (the deliverer's one HTTP seam) with its outcome."""
    deliverer = app.state.emulator.callbacks
    post = deliverer._post

    async def journaled(url: str, payload: bytes) -> bool:
        ok = bool(await post(url, payload))
        body = _json(payload)
        journal.callback(
            {
                "t": time.time(),
                "event": body.get("Event"),
                "instance_id": body.get("AgentInstanceId"),
                "sequence": body.get("Sequence"),
                "acked": ok,
            }
        )
        return ok

    deliverer._post = journaled


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m chaos.emulator")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cap", type=int, default=5, help="ZEGO's concurrent instance limit (each pool)")
    parser.add_argument("--time-scale", type=float, default=0.1, help="scales callback retries (62 s)")
    parser.add_argument("--auto-turn-interval", type=float, default=None, help="emulated seconds")
    parser.add_argument("--callback-url", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = EmulatorConfig(
        app_id=APP_ID,
        server_secret=SERVER_SECRET,
        callback_secret=CALLBACK_SECRET,
        callback_url=args.callback_url,
        voice_instance_limit=args.cap,
        digital_human_instance_limit=args.cap,
        rate_limit_per_second=1000.0,
        time_scale=args.time_scale,
        # Callback timeouts are real seconds: a dead gateway refuses at once, a hung one costs this.
        callback_timeout_seconds=2.0,
        auto_turn_interval_seconds=args.auto_turn_interval,
        latency_seed=7,
    )
    journal = Journal()

    def journaled(app: Starlette) -> ASGIApp:
        journal_callbacks(app, journal)
        return JournalMiddleware(app, journal)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_until_signalled(config, "127.0.0.1", args.port, wrap=journaled))


if __name__ == "__main__":
    main()
