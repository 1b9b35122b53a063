"""``GET /metrics``: the :class:`service.metrics.Metrics` registry in Prometheus's text format, or in
OpenMetrics when the scraper's ``Accept`` header asks for it (conventions §4.7).

Before encoding, the endpoint awaits ``refresh`` (typically ``Metrics.refresh_from_ledger``) so the
ledger gauges are exact at scrape time. A refresh that fails or hangs is logged and the scrape is served
with the previous values: losing every metric because the ledger is slow would blind the very alerts
that should fire.

Usage::

    refresh = functools.partial(metrics.refresh_from_ledger, ledger, limits)
    Route("/metrics", metrics_endpoint(metrics, refresh))
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import Response

from service.metrics import Metrics

__all__ = ["REFRESH_TIMEOUT_SECONDS", "metrics_endpoint"]

log = logging.getLogger("agentgw.metrics")

#: Prometheus's default scrape timeout is 10 s; leave most of it for encoding and the network.
REFRESH_TIMEOUT_SECONDS: Final = 2.0

Endpoint = Callable[[Request], Awaitable[Response]]


def metrics_endpoint(
    metrics: Metrics,
    refresh: Callable[[], Awaitable[None]] | None,
    *,
    refresh_timeout: float = REFRESH_TIMEOUT_SECONDS,
) -> Endpoint:
    """A Starlette endpoint serving ``metrics.registry``.

    Args:
        metrics: the registry owner.
        refresh: awaited before every scrape (e.g. to set gauges from the ledger); ``None`` to skip.
        refresh_timeout: how long a scrape waits for ``refresh`` before serving the previous values.
    """

    async def endpoint(request: Request) -> Response:
        if refresh is not None:
            try:
                async with asyncio.timeout(refresh_timeout):
                    await refresh()
            except Exception:  # TimeoutError included; serve the rest rather than fail the scrape
                log.warning("metrics refresh failed; serving the previous gauge values", exc_info=True)
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(
            encoder(metrics.registry),
            headers={"Content-Type": content_type, "Cache-Control": "no-store"},
        )

    return endpoint
