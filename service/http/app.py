"""The gateway's HTTP side: liveness, readiness, ZEGO callbacks and /metrics, in one Starlette app."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

__all__ = ["create_http_app"]


def create_http_app(is_ready: Callable[[], bool], routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The Starlette app. ``is_ready`` says whether the gateway serves traffic right now."""

    async def healthz(_: Request) -> Response:
        # Liveness: the event loop answers. Nothing else is checked, so a slow ZEGO never gets
        # a healthy process restarted.
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        ready = is_ready()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz), *routes])
