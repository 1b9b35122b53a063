"""Who is calling: a :class:`Principal` (a name and a :class:`Role`), set once per RPC.

The RPC wrapper (``service.api.rpc_handlers``) authenticates every call to our services and sets
:data:`principal_var` for the rest of the call, so the domain, the audit trail and every log line
can read the caller without it being passed through every signature.

With authentication off (``AGENTGW_AUTH_MODE=none``, the embedded default on loopback) every call
runs as :data:`ANONYMOUS`, an admin: the gateway behaves exactly as it did before identities.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["ANONYMOUS", "Principal", "Role", "current_principal", "principal_var"]


class Role(StrEnum):
    """What a principal may do. ``caller`` is the default for every authenticated identity."""

    CALLER = "caller"
    """Creates sessions and steers its own; sees only what it owns."""
    VIEWER = "viewer"
    """Reads everything, changes nothing: SREs and dashboards."""
    ADMIN = "admin"
    """Reads and changes everything."""

    @classmethod
    def parse(cls, raw: str) -> Role:
        """The role named ``raw``; ``ValueError`` names the allowed values otherwise."""
        try:
            return cls(raw)
        except ValueError:
            allowed = ", ".join(r.value for r in cls)
            raise ValueError(f"unknown role {raw[:32]!r}; expected one of {allowed}") from None


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    name: str
    """The identity: a JWT ``sub``, a SPIFFE id or a certificate CN."""
    role: Role
    method: str
    """How it was authenticated: ``jwt``, ``mtls`` or ``none``."""

    @property
    def can_read_all(self) -> bool:
        """Viewers and admins see every caller's sessions and events."""
        return self.role is not Role.CALLER

    @property
    def is_admin(self) -> bool:
        """Admins may change what others own."""
        return self.role is Role.ADMIN


ANONYMOUS = Principal(name="anonymous", role=Role.ADMIN, method="none")
"""The principal of every call while authentication is off."""

principal_var: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "agentgw_principal", default=None
)


def current_principal() -> Principal:
    """The principal of the call being served; :data:`ANONYMOUS` outside an authenticated call."""
    return principal_var.get() or ANONYMOUS
