"""The emulator's ASGI application: ZEGO's wire protocol on ``POST /?Action=...`` plus ``/_emulator/`` admin.

Request handling follows spec §16 exactly, and every API answer is HTTP 200 with the envelope
``{"Code", "Message", "RequestId"[, "Data"]}``:

1. query: Action (100000006/100000007), AppId (100000001/100000010), Timestamp (100000002/100000003),
   SignatureNonce (100000008), Signature (100000009), SignatureVersion (100000013/100000014), clock skew
   (100000004), md5 signature (100000005);
2. injected faults (admin API), only for correctly signed requests;
3. body: JSON object (410000004), then the action's schema (410000003 naming the field);
4. the per-action token bucket (``rate_limit_code``);
5. the state model (business codes).

The admin endpoints are for tests and demos only. They are unauthenticated and can read agent state and
drop connections, so they must never be exposed beyond the loopback interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Collection
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from service.zego.signing import verify_api_signature

from . import errors, persist
from .actions import ACTIONS
from .admin import admin_routes
from .config import EmulatorConfig
from .digital_humans import DH_ACTIONS, DIGITAL_HUMAN_PATH
from .errors import ZegoError
from .events import EventSink
from .faults import Fault
from .runtime import ConnectionAborter, Emulator
from .state import run_ticker
from .validation import Fields

__all__ = ["ConnectionAborter", "Emulator", "check_gateway", "create_app"]

MAX_BODY_BYTES = 1 << 20
FAULT_TIMEOUT_SECONDS = 30.0
"""How long a ``timeout`` fault holds a request: longer than any sane client timeout, yet bounded."""

_APP_ID_RE = re.compile(r"[0-9]{1,10}")
_TIMESTAMP_RE = re.compile(r"-?[0-9]{1,19}")


def _envelope(
    code: int, message: str, request_id: str, data: Any = None, *, with_data: bool = False
) -> Response:
    payload: dict[str, Any] = {"Code": code, "Message": message, "RequestId": request_id}
    if with_data:
        payload["Data"] = data
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return Response(body, media_type="application/json")


def _query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    # Tolerate a doubled "?" ("https://host/??Action=..."), seen when a base URL already ends in "?".
    params: dict[str, str] = {}
    for key, value in parse_qsl(raw.lstrip("?"), keep_blank_values=True):
        params.setdefault(key, value)
    return params


def check_gateway(
    query: dict[str, str], config: EmulatorConfig, now: int, actions: Collection[str] = ACTIONS
) -> str:
    """ZEGO's gateway checks, in its order; returns the Action. Empty values count as missing."""
    action = query.get("Action", "")
    if not action:
        raise ZegoError(errors.ACTION_EMPTY, "Action is empty")
    if action not in actions:
        raise ZegoError(errors.ACTION_UNSUPPORTED, f"unsupported Action {action[:64]}")
    raw_app_id = query.get("AppId", "")
    if _APP_ID_RE.fullmatch(raw_app_id) is None or not 0 < int(raw_app_id) < 2**32:
        raise ZegoError(errors.APPID_FORMAT, "AppId must be a uint32 decimal number")
    app_id = int(raw_app_id)
    if app_id != config.app_id:
        raise ZegoError(errors.SECRET_NOT_FOUND, f"failed to get ServerSecret for AppId {app_id}")
    raw_ts = query.get("Timestamp", "")
    if not raw_ts:
        raise ZegoError(errors.TIMESTAMP_EMPTY, "Timestamp is empty")
    if _TIMESTAMP_RE.fullmatch(raw_ts) is None:
        raise ZegoError(errors.TIMESTAMP_FORMAT, "Timestamp must be a Unix time in seconds")
    timestamp = int(raw_ts)
    nonce = query.get("SignatureNonce", "")
    if not nonce:
        raise ZegoError(errors.NONCE_EMPTY, "SignatureNonce is empty")
    signature = query.get("Signature", "")
    if not signature:
        raise ZegoError(errors.SIGNATURE_EMPTY, "Signature is empty")
    version = query.get("SignatureVersion", "")
    if not version:
        raise ZegoError(errors.SIGNATURE_VERSION_EMPTY, "SignatureVersion is empty")
    if version != "2.0":
        raise ZegoError(errors.SIGNATURE_VERSION_UNSUPPORTED, "SignatureVersion must be 2.0")
    if abs(now - timestamp) > config.signature_skew_seconds:
        raise ZegoError(errors.SIGNATURE_EXPIRED, "signature expired: Timestamp is too far from now")
    # The nonce format is not checked: ZEGO's own sample sends base36, not 16 hex characters (§1.3).
    if not verify_api_signature(
        app_id,
        nonce,
        config.server_secret,
        timestamp,
        signature,
        case_sensitive=config.signature_case_sensitive,
    ):
        raise ZegoError(errors.SIGNATURE_WRONG, "signature error")
    return action


async def _read_body(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ZegoError(errors.BODY_READ_FAILED, f"HTTP body larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_json(raw: bytes) -> dict[str, Any]:
    def reject_constant(name: str) -> Any:
        raise ValueError(name)

    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=reject_constant)
    except (UnicodeDecodeError, ValueError):
        raise ZegoError(errors.JSON_PARSE_FAILED, "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ZegoError(errors.JSON_PARSE_FAILED, "the request body must be a JSON object")
    return data


class _DropConnection(Response):
    """Closes the connection without any HTTP response (a ``drop`` fault)."""

    def __init__(self, aborter: ConnectionAborter | None) -> None:
        super().__init__()
        self._aborter = aborter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._aborter is not None and self._aborter(scope.get("client")):
            # Wait until the server has seen the connection go, so it does not try to answer with a 500.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    while (await receive())["type"] != "http.disconnect":
                        pass
            return
        # Served by something other than run_emulator: start a response and stop before the body, which
        # makes any ASGI server close the connection mid-response (the client still sees a protocol error).
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"64")]})


async def _hold(request: Request, emulator: Emulator) -> None:
    """A ``timeout`` fault: hold the request until the client gives up, shutdown, or the bound."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    waiters = {asyncio.ensure_future(disconnected()), asyncio.ensure_future(emulator.closing.wait())}
    try:
        await asyncio.wait(waiters, timeout=FAULT_TIMEOUT_SECONDS, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def _apply_fault(request: Request, emulator: Emulator, fault: Fault | None) -> Response | None:
    """Apply an injected fault: delay, then drop (returns the response), hold, or raise its code."""
    if fault is None:
        return None
    if fault.latency_ms:
        await emulator.pause(fault.latency_ms / 1000)
    if fault.mode == "drop":
        return _DropConnection(emulator.connection_aborter)
    if fault.mode == "timeout":
        await _hold(request, emulator)
        raise ZegoError(errors.SYSTEM_ERROR, "injected timeout fault ended")
    if fault.code is not None:
        raise ZegoError(fault.code, "injected fault")
    return None


def _check_rate(emulator: Emulator, action: str) -> None:
    if not emulator.buckets.allow(action):
        raise ZegoError(
            emulator.config.rate_limit_code,
            f"rate limit exceeded: at most {emulator.config.rate_limit_per_second:g} {action} calls/s",
        )


async def _api(request: Request) -> Response:
    emulator: Emulator = request.app.state.emulator
    state = emulator.state
    request_id = state.new_request_id()
    try:
        action = check_gateway(_query(request.scope), emulator.config, int(time.time()))
        fault = emulator.faults.take(action)
        raw = await _read_body(request)
        dropped = await _apply_fault(request, emulator, fault)
        if dropped is not None:
            return dropped
        operation = ACTIONS[action](Fields(_parse_json(raw)))
        _check_rate(emulator, action)
        state.advance()
        data = operation(state)
    except ZegoError as exc:
        return _envelope(exc.code, exc.message, request_id, with_data=emulator.config.error_envelope_data)
    return _envelope(0, "Succeed", request_id, data, with_data=True)


async def _digital_human_api(request: Request) -> Response:
    """The Digital Human API (``GetDigitalHumanList``/``Info``, ``GetTimbreList``): same gateway checks,
    faults and rate buckets as the AI Agent API, then the catalogue."""
    emulator: Emulator = request.app.state.emulator
    request_id = emulator.state.new_request_id()
    try:
        action = check_gateway(_query(request.scope), emulator.config, int(time.time()), DH_ACTIONS)
        fault = emulator.faults.take(action)
        raw = await _read_body(request)
        dropped = await _apply_fault(request, emulator, fault)
        if dropped is not None:
            return dropped
        body = Fields(_parse_json(raw))
        _check_rate(emulator, action)
        data = emulator.state.catalogue.run(action, body)
    except ZegoError as exc:
        return _envelope(exc.code, exc.message, request_id, with_data=emulator.config.error_envelope_data)
    return _envelope(0, "success", request_id, data, with_data=True)


def create_app(
    config: EmulatorConfig, *, event_sink: EventSink | None = None, state_file: Path | None = None
) -> Starlette:
    """The emulator as a Starlette app; the runtime is at ``app.state.emulator`` (:class:`Emulator`).

    ``event_sink`` additionally receives every internal event. Server callbacks go to
    ``config.callback_url`` (or the URL set at ``POST /_emulator/callbacks``). The app's lifespan runs the
    ticker that advances emulated time (conversations, graceful shutdown, MaxIdleTime, automatic turns) and
    closes callback delivery, so serve it with lifespan enabled, as :func:`~.server.run_emulator` does.

    With ``state_file`` (dev mode, :mod:`.persist`) the emulator starts from the agents and instances
    saved there and keeps the file up to date while it runs.
    """
    emulator = Emulator(config, event_sink)
    saved = persist.StateFile(state_file) if state_file is not None else None
    if saved is not None:
        persist.load_into(emulator, saved)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        emulator.closing.clear()
        emulator.callbacks.open()
        ticker = asyncio.create_task(run_ticker(emulator.state), name="zego-emulator-ticker")
        tasks = [ticker]
        if saved is not None:
            tasks.append(asyncio.create_task(persist.run_saver(emulator, saved), name="zego-emulator-saver"))
        try:
            yield
        finally:
            emulator.closing.set()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await emulator.callbacks.aclose()

    app = Starlette(
        routes=[
            # "https://host?Action=X" and "https://host/?Action=X" both arrive as path "/".
            Route("/", _api, methods=["POST", "GET"]),
            # The Digital Human API, a separate ZEGO host, is served under a path of the same server.
            Route(DIGITAL_HUMAN_PATH, _digital_human_api, methods=["POST"]),
            Route(DIGITAL_HUMAN_PATH + "/", _digital_human_api, methods=["POST"]),
            Mount("/_emulator", routes=admin_routes()),
        ],
        lifespan=lifespan,
    )
    app.state.emulator = emulator
    return app
