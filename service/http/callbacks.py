"""``POST /v1/zego/callbacks``: the thin HTTP face of ``service.domain.ingest``.

2xx only once the event is durably stored (accepted or a duplicate), so ZEGO's retries cover any
failure before that. Rejections are 4xx with the reason in ``message``, counted and logged; a
failure to store is a 503 (ZEGO retries). No body gets a 500.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from service.domain.ingest import CallbackIngestor, IngestResult
from service.errors import StoreError

__all__ = ["callback_endpoint"]

log = logging.getLogger("agentgw.callbacks")

_STATUS = {
    IngestResult.ACCEPTED: 200,
    IngestResult.DUPLICATE: 200,
    IngestResult.MALFORMED: 400,
    IngestResult.STALE: 400,
    IngestResult.BAD_SIGNATURE: 401,
    IngestResult.REPLAYED: 409,
}


class Observer(Protocol):
    """The metrics hook: ZEGO event name, result, seconds, and why a malformed body was refused."""

    def __call__(self, event: str, result: str, seconds: float, problem: str = "") -> None:
        """Count one callback."""


class _TooLarge(Exception):
    pass


async def _read(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


def callback_endpoint(
    ingestor: CallbackIngestor, *, max_body_bytes: int, observe: Observer | None = None
) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint for ZEGO's server callbacks."""

    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        try:
            body = await _read(request, max_body_bytes)
        except _TooLarge:
            log.warning("callback rejected", extra={"reason": "body too large", "limit": max_body_bytes})
            if observe is not None:
                observe("unknown", IngestResult.MALFORMED.value, time.perf_counter() - started)
            return JSONResponse({"code": 1, "result": "too_large"}, status_code=413)
        except ClientDisconnect:
            return Response(status_code=400)
        try:
            outcome = await ingestor.ingest(body)
        except StoreError:
            # Not stored: a 5xx makes ZEGO retry (2, 4, 8, 16, 32 s) instead of losing the event.
            log.exception("callback could not be stored")
            return JSONResponse({"code": 1, "result": "unavailable"}, status_code=503)
        except Exception:
            # A bug, not the body (ingest refuses every bad body with a reason). Never a bare 500:
            # 503 says "not stored, try again", which is true.
            log.exception("callback handling failed")
            return JSONResponse({"code": 1, "result": "unavailable"}, status_code=503)
        if observe is not None:
            observe(outcome.event, outcome.result.value, time.perf_counter() - started, outcome.problem)
        if outcome.result.stored:
            return JSONResponse({"code": 0, "result": outcome.result.value})
        log.warning(
            "callback rejected",
            extra={"result": outcome.result.value, "zego_event": outcome.event, "reason": outcome.detail},
        )
        return JSONResponse(
            {"code": 1, "result": outcome.result.value, "message": outcome.detail},
            status_code=_STATUS[outcome.result],
        )

    return endpoint
