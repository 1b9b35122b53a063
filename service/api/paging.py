"""Opaque, tamper-evident page tokens (AIP-158).

A token is ``base64url(json payload) + "." + base64url(hmac)``. The MAC key is derived from the
gateway's own secret, so clients cannot forge positions, and a token is bound to the filter of
the request that produced it: reusing it with other filters is INVALID_ARGUMENT.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from service.errors import FieldViolation, InvalidArgument

__all__ = ["PageTokens", "page_size"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PageTokens:
    """Encodes and checks page tokens for one kind of listing."""

    def __init__(self, key: bytes, purpose: str) -> None:
        self._key = hmac.new(key, f"agentgw/page-token/{purpose}".encode(), hashlib.sha256).digest()

    def encode(self, position: Any, filter_hash: str = "") -> str:
        """A token for ``position`` (any JSON value) under ``filter_hash``."""
        payload = json.dumps({"p": position, "f": filter_hash}, separators=(",", ":")).encode()
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()[:16]
        return f"{_b64(payload)}.{_b64(mac)}"

    def decode(self, token: str, filter_hash: str = "", field: str = "page_token") -> Any:
        """The position in ``token``. Raises InvalidArgument if forged, corrupt or for other filters."""
        try:
            body, _, mac = token.partition(".")
            payload = _unb64(body)
            expected = hmac.new(self._key, payload, hashlib.sha256).digest()[:16]
            if not hmac.compare_digest(expected, _unb64(mac)):
                raise ValueError("bad mac")
            data = json.loads(payload)
        except (ValueError, TypeError) as exc:
            raise InvalidArgument([FieldViolation(field, "is not a page token this server issued")]) from exc
        if data.get("f", "") != filter_hash:
            raise InvalidArgument([FieldViolation(field, "was issued for a request with other filters")])
        return data.get("p")


def page_size(requested: int, *, default: int, maximum: int, field: str = "page_size") -> int:
    """AIP-158: 0 means the default, larger than the maximum is coerced, negative is an error."""
    if requested < 0:
        raise InvalidArgument([FieldViolation(field, "must not be negative")])
    if requested == 0:
        return default
    return min(requested, maximum)
