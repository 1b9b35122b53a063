"""``/_emulator/`` admin endpoints (JSON in, JSON out) for tests and demos.

They are unauthenticated by design: never expose them beyond loopback. Bad input is HTTP 400
``{"message": ...}``; an unknown admin path is HTTP 404 with the same shape.

=======  ===========================================  =====================================================
Method   Path                                         Body / answer
=======  ===========================================  =====================================================
GET      /_emulator/state                             agents, instances (kind/status/room/user), counts,
                                                      limits, rooms, faults
POST     /_emulator/rooms/{room_id}/users/{user_id}   ``{"present": bool, "publishing": bool}`` (either)
POST     /_emulator/faults                            ``{"action", "count", "code" | "mode", "latency_ms"}``
GET      /_emulator/faults                            active faults
DELETE   /_emulator/faults                            clear all faults
POST     /_emulator/tokens/verify                     ``{"token", "user_id"}`` -> ``{"valid", "layout",
                                                      "app_id", "user_id", "expire", "payload", "error"}``
GET      /_emulator/events[?instance_id=&event=]      recorded internal events (with emulated
                                                      ``timestamp_ms``), oldest first
POST     /_emulator/reset                             forget agents, instances, rooms, faults, events and
                                                      pending callbacks (the callback URL stays)
=======  ===========================================  =====================================================

Callbacks and simulated conversations are in :mod:`.admin_conversation`.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from .admin_conversation import conversation_routes
from .admin_io import AdminInputError
from .admin_io import emulator_of as _emulator
from .admin_io import error as _error
from .admin_io import json_object as _json_object
from .faults import FaultError
from .validation import RTC_ID_RE, USER_ID_RE

__all__ = ["admin_routes"]


async def _state(request: Request) -> JSONResponse:
    emulator = _emulator(request)
    emulator.state.advance()
    snapshot = emulator.state.snapshot()
    snapshot["faults"] = emulator.faults.active()
    return JSONResponse(snapshot)


async def _room_user(request: Request) -> JSONResponse:
    room_id, user_id = request.path_params["room_id"], request.path_params["user_id"]
    if RTC_ID_RE.fullmatch(room_id) is None or USER_ID_RE.fullmatch(user_id) is None:
        return _error(400, "room_id or user_id has characters ZEGO does not allow")
    try:
        body = await _json_object(request)
        unknown = set(body) - {"present", "publishing"}
        if unknown:
            raise AdminInputError(f"unknown keys: {', '.join(sorted(unknown))}")
        flags = {k: body.get(k) for k in ("present", "publishing")}
        if all(v is None for v in flags.values()):
            raise AdminInputError("give present and/or publishing")
        if any(v is not None and not isinstance(v, bool) for v in flags.values()):
            raise AdminInputError("present and publishing must be booleans")
    except AdminInputError as exc:
        return _error(400, str(exc))
    state = _emulator(request).state
    state.advance()
    return JSONResponse(
        state.set_room_user(room_id, user_id, present=flags["present"], publishing=flags["publishing"])
    )


async def _add_fault(request: Request) -> JSONResponse:
    faults = _emulator(request).faults
    try:
        fault = faults.add(await _json_object(request))
    except (AdminInputError, FaultError) as exc:
        return _error(400, str(exc))
    return JSONResponse({"fault": fault.to_json(), "faults": faults.active()})


async def _list_faults(request: Request) -> JSONResponse:
    return JSONResponse({"faults": _emulator(request).faults.active()})


async def _clear_faults(request: Request) -> JSONResponse:
    return JSONResponse({"cleared": _emulator(request).faults.clear()})


async def _verify_token(request: Request) -> JSONResponse:
    try:
        body = await _json_object(request)
        token, user_id = body.get("token"), body.get("user_id")
        if not isinstance(token, str) or not isinstance(user_id, str):
            raise AdminInputError("token and user_id are required strings")
    except AdminInputError as exc:
        return _error(400, str(exc))
    try:
        # Imported lazily: no other emulator feature needs the Token04 module.
        from service.zego.token04 import Token04Error, verify_token04
    except ImportError:
        return _error(501, "Token04 verification is not available in this build")

    config = _emulator(request).config
    result: dict[str, Any] = dict.fromkeys(("layout", "app_id", "user_id", "expire", "payload", "error"))
    try:
        claims = verify_token04(token, config.server_secret, app_id=config.app_id, user_id=user_id)
    except Token04Error as exc:
        # Token04Error messages never contain the secret (token04's contract).
        result.update(valid=False, error=str(exc))
        return JSONResponse(result)
    result.update(
        valid=True,
        layout=claims.layout.name,
        app_id=claims.app_id,
        user_id=claims.user_id,
        expire=claims.expire,
        payload=claims.payload,
    )
    return JSONResponse(result)


async def _events(request: Request) -> JSONResponse:
    state = _emulator(request).state
    state.advance()
    instance_id = request.query_params.get("instance_id")
    name = request.query_params.get("event")
    events = [e for e in state.recorder.events(instance_id) if name is None or e["event"] == name]
    return JSONResponse({"events": events})


async def _reset(request: Request) -> JSONResponse:
    _emulator(request).reset()
    return JSONResponse({"reset": True})


async def _not_found(request: Request) -> JSONResponse:
    return _error(404, f"unknown admin endpoint {request.method} {request.url.path}")


def admin_routes() -> list[BaseRoute]:
    """The admin routes, relative to the ``/_emulator`` mount."""
    return [
        Route("/state", _state, methods=["GET"]),
        Route("/rooms/{room_id}/users/{user_id}", _room_user, methods=["POST"]),
        Route("/faults", _add_fault, methods=["POST"]),
        Route("/faults", _list_faults, methods=["GET"]),
        Route("/faults", _clear_faults, methods=["DELETE"]),
        Route("/tokens/verify", _verify_token, methods=["POST"]),
        Route("/events", _events, methods=["GET"]),
        Route("/reset", _reset, methods=["POST"]),
        *conversation_routes(),
        Route("/{rest:path}", _not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]
