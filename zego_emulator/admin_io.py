"""Shared plumbing of the ``/_emulator/`` admin endpoints: JSON bodies, errors, the runtime."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse

if TYPE_CHECKING:
    from .runtime import Emulator

__all__ = ["AdminInputError", "emulator_of", "error", "json_object", "optional_int"]


class AdminInputError(ValueError):
    """Bad admin input; answered with HTTP 400."""


def emulator_of(request: Request) -> Emulator:
    """The runtime behind the app that serves ``request``."""
    emulator: Emulator = request.app.state.emulator
    return emulator


def error(status: int, message: str) -> JSONResponse:
    """An admin error answer: ``{"message": ...}`` with ``status``."""
    return JSONResponse({"message": message}, status_code=status)


async def json_object(request: Request, allowed: frozenset[str] | None = None) -> dict[str, Any]:
    """The request body as a JSON object (empty body: ``{}``), optionally refusing unknown keys."""
    raw = await request.body()
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise AdminInputError("the body must be JSON") from None
    if not isinstance(data, dict):
        raise AdminInputError("the body must be a JSON object")
    if allowed is not None:
        unknown = set(data) - allowed
        if unknown:
            raise AdminInputError(f"unknown keys: {', '.join(sorted(unknown))}")
    return data


def optional_int(body: dict[str, Any], key: str, lo: int, hi: int) -> int | None:
    """An optional integer field within ``lo..hi`` (``null`` counts as absent)."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise AdminInputError(f"{key} must be an integer between {lo} and {hi}")
    return value
