"""``/_emulator/`` admin endpoints for server callbacks and simulated conversations (tests and demos).

Like every admin endpoint they are unauthenticated: never expose them beyond loopback. Bad input is HTTP 400
``{"message": ...}``; an unknown instance or room is 404; a turn the instance cannot take now is 409.

======  =======================================  ============================================================
Method  Path                                     Body / answer
======  =======================================  ============================================================
POST    /_emulator/callbacks                     ``{"url": "http://127.0.0.1:8080/zego/callbacks" | null}``
                                                 -> delivery stats (as GET)
GET     /_emulator/callbacks                     ``{"url", "generated", "sent", "retried", "dropped",
                                                 "duplicated", "pending", "attempts", "failed_attempts",
                                                 "recent_drops", "faults"}``
POST    /_emulator/callback-faults               ``{"mode": "drop"|"duplicate"|"reorder"|"delay"|
                                                 "bad_signature", "count": N, "delay_ms": X, "event": E}``
                                                 -> ``{"fault", "faults"}``
GET     /_emulator/callback-faults               ``{"faults": [...]}``
DELETE  /_emulator/callback-faults               ``{"cleared": n}``
POST    /_emulator/instances/{id}/turns          ``{"text", "user_id"?, "speech_ms"?, "asr_ms"?,
                                                 "llm_ttft_ms"?, "tts_first_frame_ms"?}`` ->
                                                 ``{"AgentInstanceId", "Round", "UserId", "latency"}``
POST    /_emulator/rooms/{room_id}/turns         the same body (``user_id`` picks that user's instances)
                                                 -> ``{"turns": [...]}``
POST    /_emulator/instances/{id}/exception      ``{"code": 2203, "message"?, "round"?}`` ->
                                                 ``{"AgentInstanceId", "Data": {"Code", "Message", "Round"}}``
======  =======================================  ============================================================

Latency fields are emulated milliseconds; omitted ones are drawn from the configured distributions.
"""

from __future__ import annotations

from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from .admin_io import AdminInputError, emulator_of, error, json_object, optional_int
from .callback_faults import CallbackFaultError
from .conversation import TurnRefused
from .validation import INT64_MAX, RTC_ID_RE, USER_ID_RE

__all__ = ["conversation_routes"]

MAX_TURN_TEXT_CHARS = 2000
MAX_LATENCY_MS = 600_000
_TURN_KEYS = frozenset({"text", "user_id", "speech_ms", "asr_ms", "llm_ttft_ms", "tts_first_frame_ms"})


async def _set_callback_url(request: Request) -> JSONResponse:
    try:
        body = await json_object(request, frozenset({"url"}))
        if "url" not in body:
            raise AdminInputError("give url (a string, or null to stop delivering)")
        url = body["url"]
        if url is not None:
            if not isinstance(url, str):
                raise AdminInputError("url must be a string or null")
            try:
                parsed = httpx.URL(url)
            except (httpx.InvalidURL, TypeError):
                raise AdminInputError("url is not a valid URL") from None
            if parsed.scheme not in ("http", "https") or not parsed.host:
                raise AdminInputError("url must be an absolute http(s) URL")
    except AdminInputError as exc:
        return error(400, str(exc))
    callbacks = emulator_of(request).callbacks
    callbacks.url = url
    return JSONResponse(callbacks.snapshot())


async def _callback_stats(request: Request) -> JSONResponse:
    return JSONResponse(emulator_of(request).callbacks.snapshot())


async def _add_callback_fault(request: Request) -> JSONResponse:
    faults = emulator_of(request).callbacks.faults
    try:
        fault = faults.add(await json_object(request))
    except (AdminInputError, CallbackFaultError) as exc:
        return error(400, str(exc))
    return JSONResponse({"fault": fault.to_json(), "faults": faults.active()})


async def _list_callback_faults(request: Request) -> JSONResponse:
    return JSONResponse({"faults": emulator_of(request).callbacks.faults.active()})


async def _clear_callback_faults(request: Request) -> JSONResponse:
    return JSONResponse({"cleared": emulator_of(request).callbacks.faults.clear()})


def _turn_args(body: dict[str, Any]) -> dict[str, Any]:
    text = body.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TURN_TEXT_CHARS:
        raise AdminInputError(f"text must be a non-empty string of at most {MAX_TURN_TEXT_CHARS} characters")
    user_id = body.get("user_id")
    if user_id is not None and (
        not isinstance(user_id, str) or len(user_id) > 32 or USER_ID_RE.fullmatch(user_id) is None
    ):
        raise AdminInputError("user_id must be a ZEGO UserId (up to 32 digits, letters, '-', '_')")
    return {
        "text": text,
        "user_id": user_id,
        "speech_ms": optional_int(body, "speech_ms", 0, MAX_LATENCY_MS),
        "asr_ms": optional_int(body, "asr_ms", 0, MAX_LATENCY_MS),
        "ttft_ms": optional_int(body, "llm_ttft_ms", 0, MAX_LATENCY_MS),
        "first_frame_ms": optional_int(body, "tts_first_frame_ms", 0, MAX_LATENCY_MS),
    }


async def _instance_turn(request: Request) -> JSONResponse:
    try:
        args = _turn_args(await json_object(request, _TURN_KEYS))
    except AdminInputError as exc:
        return error(400, str(exc))
    state = emulator_of(request).state
    state.advance()
    try:
        turn = state.conversation.user_turn(request.path_params["instance_id"], args.pop("text"), **args)
    except TurnRefused as exc:
        return error(exc.status, exc.message)
    return JSONResponse(turn)


async def _room_turn(request: Request) -> JSONResponse:
    room_id = request.path_params["room_id"]
    if RTC_ID_RE.fullmatch(room_id) is None:
        return error(400, "room_id has characters ZEGO does not allow")
    try:
        args = _turn_args(await json_object(request, _TURN_KEYS))
    except AdminInputError as exc:
        return error(400, str(exc))
    state = emulator_of(request).state
    state.advance()
    try:
        turns = state.conversation.room_turns(room_id, args.pop("text"), **args)
    except TurnRefused as exc:
        return error(exc.status, exc.message)
    return JSONResponse({"turns": turns})


async def _exception(request: Request) -> JSONResponse:
    try:
        body = await json_object(request, frozenset({"code", "message", "round"}))
        code = optional_int(body, "code", 1, 2**31 - 1)
        if code is None:
            raise AdminInputError("code is required (e.g. 2203)")
        message = body.get("message")
        if message is not None and not isinstance(message, str):
            raise AdminInputError("message must be a string")
        round_ = optional_int(body, "round", 0, INT64_MAX)
    except AdminInputError as exc:
        return error(400, str(exc))
    state = emulator_of(request).state
    state.advance()
    instance_id = request.path_params["instance_id"]
    try:
        data = state.conversation.report_exception(instance_id, code, message, round_)
    except TurnRefused as exc:
        return error(exc.status, exc.message)
    return JSONResponse({"AgentInstanceId": instance_id, "Data": data})


def conversation_routes() -> list[BaseRoute]:
    """The callback and conversation routes, relative to the ``/_emulator`` mount."""
    return [
        Route("/callbacks", _set_callback_url, methods=["POST"]),
        Route("/callbacks", _callback_stats, methods=["GET"]),
        Route("/callback-faults", _add_callback_fault, methods=["POST"]),
        Route("/callback-faults", _list_callback_faults, methods=["GET"]),
        Route("/callback-faults", _clear_callback_faults, methods=["DELETE"]),
        Route("/instances/{instance_id}/turns", _instance_turn, methods=["POST"]),
        Route("/rooms/{room_id}/turns", _room_turn, methods=["POST"]),
        Route("/instances/{instance_id}/exception", _exception, methods=["POST"]),
    ]
