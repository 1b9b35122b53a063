"""One authenticator per gateway: which credentials are accepted, and who they name.

Modes (``AGENTGW_AUTH_MODE``): ``none`` (every call is :data:`~service.auth.principal.ANONYMOUS`),
``jwt`` (an ``authorization: Bearer`` token), ``mtls`` (a verified client certificate), or
``jwt,mtls`` (either; a bearer token, when sent, wins, since it names a finer identity than a
workload certificate).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from service.auth.bearer import JwtVerifier
from service.auth.certs import certificate_identity
from service.auth.principal import ANONYMOUS, Principal, Role
from service.errors import Unauthenticated

__all__ = ["AUTH_MODES", "Authenticator"]

AUTH_MODES = frozenset({"none", "jwt", "mtls"})
_BEARER = "bearer "
_CREDENTIALS = (("jwt", "an authorization: Bearer token"), ("mtls", "a client certificate"))


class Authenticator:
    """Authenticates one call from its metadata and transport auth context."""

    def __init__(
        self,
        modes: frozenset[str],
        *,
        verifier: JwtVerifier | None = None,
        certificate_roles: Mapping[str, Role] | None = None,
    ) -> None:
        if "jwt" in modes and verifier is None:
            raise ValueError("jwt mode needs a JwtVerifier")
        self.modes = modes
        self._verifier = verifier
        self._roles = dict(certificate_roles or {})

    @property
    def needs_auth_context(self) -> bool:
        """Whether calls must be asked for their transport auth context (mTLS only)."""
        return "mtls" in self.modes

    @property
    def enabled(self) -> bool:
        """False when every call is anonymous."""
        return self.modes != frozenset({"none"})

    async def authenticate(
        self, metadata: Iterable[tuple[str, Any]] | None, auth_context: Mapping[str, Iterable[bytes]] | None
    ) -> Principal:
        """The caller, or :class:`Unauthenticated`."""
        if not self.enabled:
            return ANONYMOUS
        token = _bearer(metadata)
        if token is not None and "jwt" in self.modes:
            assert self._verifier is not None
            return await self._verifier.verify(token)
        if "mtls" in self.modes and auth_context:
            identity = certificate_identity(auth_context)
            if identity is not None:
                return Principal(name=identity, role=self._roles.get(identity, Role.CALLER), method="mtls")
        if token is not None:  # a token where only certificates are accepted
            raise Unauthenticated(
                "CREDENTIALS_MISSING", "send a client certificate; bearer tokens are not accepted"
            )
        wanted = " or ".join(what for mode, what in _CREDENTIALS if mode in self.modes)
        raise Unauthenticated("CREDENTIALS_MISSING", f"this gateway requires {wanted}")


def _bearer(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value[: len(_BEARER)].lower() == _BEARER:
            return value[len(_BEARER) :].strip()
    return None
