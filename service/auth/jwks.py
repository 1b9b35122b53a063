"""Where the JWT verification keys come from: a JWKS file (reloaded when it changes) or a URL.

Both hold a :class:`jwt.PyJWKSet` parsed by PyJWT. Symmetric (``kty: oct``) keys are dropped at
load: a gateway that verifies with shared secrets could be fooled by a token signed with a public
key used as an HMAC secret (the classic algorithm confusion), so only asymmetric keys are kept.

A source that cannot be read keeps serving the last good key set and logs the failure once per
change, so a bad deploy of the key file does not lock every caller out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt

__all__ = ["JwksFile", "JwksSource", "JwksUrl", "VerificationKey", "parse_jwks"]

log = logging.getLogger("agentgw.auth")

FILE_CHECK_SECONDS = 1.0
"""How often, at most, the key file's modification time is looked at."""


@dataclass(frozen=True)
class VerificationKey:
    """One asymmetric key of a JWKS, with the JWK members the verifier matches tokens on."""

    kid: str | None
    kty: str
    crv: str | None
    alg: str | None
    jwk: jwt.PyJWK


class JwksSource(Protocol):
    """Something that yields the current verification keys."""

    async def keys(self, *, refresh: bool = False) -> list[VerificationKey]:
        """The current keys; ``refresh`` asks for a re-read (a token named an unknown key id)."""
        ...


def parse_jwks(raw: bytes | str) -> list[VerificationKey]:
    """The asymmetric keys of a JWKS document.

    Raises:
        ValueError: the document is not a JWKS, or holds no usable asymmetric key.
    """
    try:
        data: Any = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError('not a JWKS: expected an object with a "keys" array')
    keys: list[VerificationKey] = []
    for index, entry in enumerate(data["keys"]):
        if not isinstance(entry, dict) or entry.get("kty") == "oct":
            log.warning("JWKS key %d ignored: only asymmetric keys (RSA, EC, OKP) are accepted", index)
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            keys.append(
                VerificationKey(
                    kid=entry.get("kid") if isinstance(entry.get("kid"), str) else None,
                    kty=str(entry.get("kty", "")),
                    crv=entry.get("crv") if isinstance(entry.get("crv"), str) else None,
                    alg=entry.get("alg") if isinstance(entry.get("alg"), str) else None,
                    jwk=jwt.PyJWK(entry),
                )
            )
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
            # The error's text can quote the JWK itself: name its kind only.
            log.warning("JWKS key %d ignored: %s", index, type(exc).__name__)
    if not keys:
        raise ValueError("the JWKS holds no usable asymmetric signing key")
    return keys


class JwksFile:
    """Keys from a JWKS file, re-read when its modification time or size changes."""

    def __init__(self, path: Path, *, clock: Any = time.monotonic) -> None:
        self._path = path
        self._clock = clock
        self._stamp: tuple[int, int] | None = None
        self._keys: list[VerificationKey] = []
        self._checked_at = -FILE_CHECK_SECONDS
        self._load()
        if not self._keys:
            raise ValueError(f"{path}: no usable key")

    def _load(self) -> None:
        try:
            stat = os.stat(self._path)
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._stamp:
                return
            keys = parse_jwks(self._path.read_bytes())
        except (OSError, ValueError) as exc:
            if self._keys:
                log.warning(
                    "JWKS file %s could not be reloaded (%s); keeping the previous keys", self._path, exc
                )
                self._stamp = None
                return
            raise ValueError(f"{self._path}: {exc}") from None
        if self._stamp is not None:
            log.info("JWKS file reloaded", extra={"path": str(self._path), "keys": len(keys)})
        self._stamp, self._keys = stamp, keys

    async def keys(self, *, refresh: bool = False) -> list[VerificationKey]:
        now = self._clock()
        if refresh or now - self._checked_at >= FILE_CHECK_SECONDS:
            self._checked_at = now
            self._load()
        return self._keys


class JwksUrl:
    """Keys fetched from a JWKS URL, cached for ``ttl_seconds`` and re-fetched on an unknown key id
    at most once every ``min_refresh_seconds`` (so a flood of bad tokens cannot hammer the issuer)."""

    def __init__(
        self,
        url: str,
        *,
        ttl_seconds: float = 300.0,
        min_refresh_seconds: float = 10.0,
        timeout_seconds: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self._url = url
        self._ttl = ttl_seconds
        self._min_refresh = min_refresh_seconds
        self._client = httpx.AsyncClient(timeout=timeout_seconds, transport=transport)
        self._clock = clock
        self._keys: list[VerificationKey] = []
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def _fetch(self) -> None:
        try:
            response = await self._client.get(self._url)
            response.raise_for_status()
            self._keys = parse_jwks(response.content)
        except (httpx.HTTPError, ValueError) as exc:
            # The URL may carry credentials in its query: log the host only.
            log.warning("JWKS fetch from %s failed: %s", httpx.URL(self._url).host, type(exc).__name__)
        finally:
            self._fetched_at = self._clock()

    async def keys(self, *, refresh: bool = False) -> list[VerificationKey]:
        async with self._lock:
            now = self._clock()
            age = None if self._fetched_at is None else now - self._fetched_at
            if age is None or age >= self._ttl or (refresh and age >= self._min_refresh):
                await self._fetch()
            return self._keys
