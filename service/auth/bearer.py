"""JWT bearer tokens, verified with PyJWT against a :class:`~service.auth.jwks.JwksSource`.

What a token must be (conventions: LiveKit-style signed grants):

* signed with an asymmetric algorithm that matches the key it names: RSA keys verify RS*/PS*,
  EC keys the ES* of their curve, OKP keys EdDSA. ``alg: none`` and every HMAC algorithm are
  refused before any key is looked at, so a public key can never be used as an HMAC secret;
* carry ``exp`` and ``sub``; ``iss`` and ``aud`` are checked when configured; ``nbf``/``iat`` in
  the future and ``exp`` in the past are allowed ``leeway_seconds`` of clock skew (bounded by the
  settings);
* name its key with ``kid`` when the key set has more than one key.

The caller is ``sub``; its role is the ``agentgw_role`` claim (``caller`` when absent).
"""

from __future__ import annotations

from typing import Any

import jwt

from service.auth.jwks import JwksSource, VerificationKey
from service.auth.principal import Principal, Role
from service.errors import Unauthenticated

__all__ = ["ROLE_CLAIM", "JwtVerifier"]

ROLE_CLAIM = "agentgw_role"
MAX_TOKEN_BYTES = 8192
"""Longer bearer tokens are refused unparsed."""

_ALGORITHMS_BY_KEY: dict[tuple[str, str | None], tuple[str, ...]] = {
    ("RSA", None): ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    ("EC", "P-256"): ("ES256",),
    ("EC", "P-384"): ("ES384",),
    ("EC", "P-521"): ("ES512",),
    ("OKP", "Ed25519"): ("EdDSA",),
}
_ASYMMETRIC = frozenset(alg for algs in _ALGORITHMS_BY_KEY.values() for alg in algs)

_INVALID = "the bearer token is not valid"


def _key_algorithms(key: VerificationKey) -> tuple[str, ...]:
    allowed = _ALGORITHMS_BY_KEY.get((key.kty, key.crv if key.kty != "RSA" else None), ())
    pinned = key.alg
    if pinned:  # a key that names its algorithm verifies only that one
        return (pinned,) if pinned in allowed else ()
    return allowed


class JwtVerifier:
    """Turns a bearer token into a :class:`Principal`, or raises :class:`Unauthenticated`."""

    def __init__(
        self,
        keys: JwksSource,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        leeway_seconds: float = 30.0,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_seconds

    async def verify(self, token: str) -> Principal:
        """The principal the token names.

        Raises:
            Unauthenticated: ``TOKEN_EXPIRED`` or ``TOKEN_INVALID``.
        """
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthenticated("TOKEN_INVALID", _INVALID)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthenticated("TOKEN_INVALID", _INVALID) from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in _ASYMMETRIC:  # none, HS256, garbage
            raise Unauthenticated("TOKEN_INVALID", _INVALID)
        key = await self._key_for(kid, alg)
        claims = self._decode(token, key, alg)
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > 256 or not sub.isprintable():
            raise Unauthenticated("TOKEN_INVALID", _INVALID)
        raw_role = claims.get(ROLE_CLAIM, Role.CALLER.value)
        try:
            role = Role.parse(raw_role) if isinstance(raw_role, str) else Role.parse("")
        except ValueError:
            raise Unauthenticated("TOKEN_INVALID", _INVALID) from None
        return Principal(name=sub, role=role, method="jwt")

    async def _key_for(self, kid: Any, alg: str) -> VerificationKey:
        for refresh in (False, True):
            keys = await self._keys.keys(refresh=refresh)
            candidates = [k for k in keys if alg in _key_algorithms(k)]
            if kid is not None:
                candidates = [k for k in candidates if k.kid == kid]
            elif len(keys) > 1:
                candidates = []  # several keys and no kid: refuse rather than guess
            if len(candidates) == 1:
                return candidates[0]
            if kid is None:
                break  # a re-read cannot help a token without kid
        raise Unauthenticated("TOKEN_INVALID", _INVALID)

    def _decode(self, token: str, key: VerificationKey, alg: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.jwk.key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("TOKEN_EXPIRED", "the bearer token has expired") from None
        except (jwt.InvalidTokenError, jwt.PyJWKError, ValueError, TypeError):
            raise Unauthenticated("TOKEN_INVALID", _INVALID) from None
        return claims
