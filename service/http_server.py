"""The HTTP side of the gateway: ZEGO's callback route, and /metrics, /healthz and /readyz.

Callbacks are served on ``callback_listen`` and the admin routes on ``admin_listen`` (the one
unset defaults to ``http_listen``); everything on ``http_listen`` when neither is set, or when both
name the same fixed address. The internet-facing callback side answers that one route only.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.routing import Route

from service.config import Settings
from service.core import Core
from service.http.app import create_http_app
from service.http.asgi import serve_asgi
from service.http.callbacks import callback_endpoint
from service.http.metrics import metrics_endpoint
from service.listeners import split_address
from service.metrics import Metrics

__all__ = ["HttpPorts", "serve_http"]


@dataclass(frozen=True)
class HttpPorts:
    """The bound ports: ``callbacks`` serves ZEGO's callbacks, ``admin`` the health and metrics."""

    callbacks: int
    admin: int


async def serve_http(
    stack: contextlib.AsyncExitStack,
    settings: Settings,
    core: Core,
    metrics: Metrics,
    ready: Callable[[], bool],
) -> HttpPorts:
    """Start the HTTP servers; they stop with ``stack``. ``ready`` answers /readyz."""
    listen = settings.listen
    refresh = functools.partial(
        metrics.refresh_from_ledger,
        core.ledger,
        core.limits,
        leak_give_up_seconds=settings.leaks.give_up_seconds,
    )
    callbacks = Route(
        "/v1/zego/callbacks",
        callback_endpoint(
            core.ingestor, max_body_bytes=settings.callbacks.max_body_bytes, observe=metrics.callback
        ),
        methods=["POST"],
    )
    metrics_route = Route("/metrics", metrics_endpoint(metrics, refresh))
    callback_listen, admin_listen = listen.callback_address, listen.admin_address
    if not listen.split or (callback_listen == admin_listen and not callback_listen.endswith(":0")):
        both = create_http_app(ready, [callbacks, metrics_route])
        port = await stack.enter_async_context(serve_asgi(both, *split_address(callback_listen)))
        return HttpPorts(port, port)
    callback_port = await stack.enter_async_context(
        serve_asgi(Starlette(routes=[callbacks]), *split_address(callback_listen), name="callbacks")
    )
    admin = create_http_app(ready, [metrics_route])
    admin_port = await stack.enter_async_context(
        serve_asgi(admin, *split_address(admin_listen), name="admin")
    )
    return HttpPorts(callback_port, admin_port)
