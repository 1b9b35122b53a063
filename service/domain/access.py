"""Who may see and change what: the ownership rules, in one place.

* A session belongs to its creator. A ``caller`` sees and steers only its own sessions (and their
  events); anyone else's is NOT_FOUND, never PERMISSION_DENIED, which would confirm that it exists.
* ``viewer`` sees everything and changes nothing: a change it may see is PERMISSION_DENIED.
* ``admin`` sees and changes everything.
* Agents are shared templates: everyone reads them and creates sessions from them; only their
  creator or an admin updates or deletes them.

The principal comes from :func:`~service.auth.principal.current_principal`, set per RPC by the
wrapper; background work (the reaper, ingestion) runs outside any RPC as the anonymous admin.
"""

from __future__ import annotations

from service.auth.principal import Principal, Role, current_principal
from service.errors import NotFound, PermissionDenied

__all__ = [
    "check_agent_change",
    "check_may_change",
    "check_session_change",
    "check_session_read",
    "owner_scope",
    "session_visible",
]


def session_visible(owner: str, principal: Principal | None = None) -> bool:
    """Whether the principal may see a session owned by ``owner``."""
    principal = principal or current_principal()
    return principal.can_read_all or owner == principal.name


def owner_scope(principal: Principal | None = None) -> str | None:
    """The owner a listing is limited to: the caller's own name, or None (everything) for viewers
    and admins."""
    principal = principal or current_principal()
    return None if principal.can_read_all else principal.name


def check_may_change(what: str, principal: Principal | None = None) -> None:
    """Viewers change nothing: ``PermissionDenied`` for them."""
    principal = principal or current_principal()
    if principal.role is Role.VIEWER:
        raise PermissionDenied(f"{principal.name} is a viewer and may not {what}")


def check_session_read(session_id: str, owner: str) -> None:
    """``NotFound`` unless the principal may see the session."""
    if not session_visible(owner):
        raise NotFound("session", session_id, "SESSION_NOT_FOUND")


def check_session_change(session_id: str, owner: str, what: str) -> None:
    """``NotFound`` unless visible; ``PermissionDenied`` unless its owner or an admin."""
    principal = current_principal()
    check_session_read(session_id, owner)
    if not (principal.is_admin or owner == principal.name):
        raise PermissionDenied(f"only the session's owner or an admin may {what}")


def check_agent_change(agent_id: str, owner: str | None, what: str) -> None:
    """Only the agent's creator or an admin; agents registered outside the gateway (no owner
    recorded) only an admin. Agents are readable by all, so PERMISSION_DENIED reveals nothing."""
    principal = current_principal()
    if principal.is_admin or (owner is not None and owner == principal.name):
        return
    raise PermissionDenied(f"only the agent's creator or an admin may {what} agent {agent_id!r}")
