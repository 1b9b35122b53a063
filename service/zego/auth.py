"""ZEGO's request signing as an ``httpx.Auth``, and the log filter that keeps signatures out of
httpx's request log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator

import httpx

from service.zego.signing import api_signature, new_nonce

__all__ = ["ZegoSignatureAuth", "install_httpx_log_filter"]


class ZegoSignatureAuth(httpx.Auth):
    """Adds ZEGO's signed common query parameters (spec §1.3, §1.4) to each request it sees.

    httpx runs this once per ``send``, so every attempt, retries included, gets a fresh nonce and
    timestamp. The query order follows ZEGO's samples: ``Action`` (set by the caller), then ``AppId``,
    ``SignatureNonce``, ``Timestamp``, ``Signature``, ``SignatureVersion``.
    """

    def __init__(self, app_id: int, server_secret: str, clock: Callable[[], float] = time.time) -> None:
        self._app_id = app_id
        self._server_secret = server_secret
        self._clock = clock

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Sign ``request`` in place and send it once."""
        nonce = new_nonce()
        timestamp = int(self._clock())
        signature = api_signature(self._app_id, nonce, self._server_secret, timestamp)
        request.url = request.url.copy_merge_params(
            {
                "AppId": str(self._app_id),
                "SignatureNonce": nonce,
                "Timestamp": str(timestamp),
                "Signature": signature,
                "SignatureVersion": "2.0",
            }
        )
        yield request

    def __repr__(self) -> str:
        return f"ZegoSignatureAuth(app_id={self._app_id}, server_secret='***')"


class _HideSignature(logging.Filter):
    """httpx logs every request URL at INFO; strip our ``Signature`` (a 10-minute replay token) from it."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(
            isinstance(a, httpx.URL) and "Signature" in a.params for a in args
        ):
            record.args = tuple(
                a.copy_remove_param("Signature") if isinstance(a, httpx.URL) else a for a in args
            )
        return True


def install_httpx_log_filter() -> None:
    """Hide the Signature in httpx's request log lines (installed once, by every client)."""
    httpx_logger = logging.getLogger("httpx")
    if not any(isinstance(f, _HideSignature) for f in httpx_logger.filters):
        httpx_logger.addFilter(_HideSignature())
