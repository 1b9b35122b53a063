"""AuditService, and the hook the RPC wrapper calls after every mutating RPC.

Which RPCs are audited, and which ids of their request (or response) are their targets, is
decided here, from the protobuf messages; the record itself is the domain's
(:class:`~service.domain.audit.AuditTrail`).
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import timestamp_pb2

from agentgw_client.gen.agentgw.v1 import audit_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import audit_service_pb2_grpc as rpc
from service.api.common import Context, timestamp_seconds
from service.api.paging import PageTokens, page_size
from service.auth.principal import Principal, Role, current_principal, principal_var
from service.domain.access import owner_scope
from service.domain.audit import AuditFilter, AuditRecord, AuditTrail, PendingAudit
from service.domain.validation import Violations
from service.errors import PermissionDenied

__all__ = ["AUDITED_METHODS", "AuditHook", "AuditServicer"]


_V1 = "/agentgw.v1."
AUDITED_METHODS = frozenset(
    _V1 + name
    for name in (
        "AgentService/CreateAgent",
        "AgentService/UpdateAgent",
        "AgentService/DeleteAgent",
        "SessionService/CreateSession",
        "SessionService/UpdateSession",
        "SessionService/EndSession",
        "SessionService/SendText",
        "SessionService/Speak",
        "SessionService/Interrupt",
        "SessionService/ResetContext",
        "SessionService/AppendContext",
        "SessionService/StartListening",
        "SessionService/StopListening",
        "RoomTokenService/CreateRoomToken",
    )
)
"""Every mutating RPC: create/update/delete agent, create/update/end session, every in-call control
that changes the call, and token minting."""

DEFAULT_PAGE = 100
MAX_PAGE = 1000


def _targets(request: Any, response: Any) -> dict[str, str]:
    """The ids an audited call acted on; never a body (which may hold secrets)."""
    targets: dict[str, str] = {}
    session_id = getattr(request, "session_id", "")
    if not session_id and response is not None and hasattr(response, "session"):
        session_id = response.session.session_id
    if session_id:
        targets["session_id"] = session_id
    agent_id = getattr(request, "agent_id", "")
    if not agent_id and hasattr(request, "agent"):
        agent_id = request.agent.agent_id
    if agent_id:
        targets["agent_id"] = agent_id
    user_id = getattr(request, "user_id", "")
    if user_id and not hasattr(request, "agent_id"):  # a room token's user, not a session's
        targets["target"] = user_id
    return targets


_UNAUTHENTICATED = Principal(name="", role=Role.CALLER, method="none")


class AuditHook:
    """What the RPC wrapper calls around each audited (mutating) RPC: :meth:`begin` once the
    caller is authenticated and before the handler runs, :meth:`end` with the status it got.

    With ``authenticating``, a call that never got a principal (its credentials were refused) is
    recorded with an empty principal rather than as the anonymous admin of an unauthenticated
    gateway.
    """

    def __init__(self, trail: AuditTrail, *, authenticating: bool) -> None:
        self._trail = trail
        self._authenticating = authenticating

    def _principal(self) -> Principal:
        principal = principal_var.get()
        if principal is None:
            return _UNAUTHENTICATED if self._authenticating else current_principal()
        return principal

    def begin(self, method: str, request: Any, request_id: str) -> PendingAudit:
        """Start the record; the ledger writes it with the call's first change."""
        return self._trail.begin(self._principal(), method, request_id=request_id, **_targets(request, None))

    async def end(
        self,
        pending: PendingAudit | None,
        method: str,
        request: Any,
        response: Any,
        code: str,
        request_id: str,
    ) -> None:
        """The call ended with ``code`` (``pending`` is None when it failed before :meth:`begin`)."""
        targets = _targets(request, response)
        if pending is None:
            await self._trail.record(self._principal(), method, code, request_id=request_id, **targets)
        else:
            await self._trail.finish(pending, code, **targets)


def _record_to_proto(record: AuditRecord) -> api.AuditRecord:
    time = timestamp_pb2.Timestamp()
    time.FromNanoseconds(int(record.at * 1e9))
    return api.AuditRecord(
        id=record.id,
        time=time,
        principal=record.principal,
        role=record.role,
        rpc=record.rpc,
        session_id=record.session_id,
        agent_id=record.agent_id,
        target=record.target,
        request_id=record.request_id,
        code=record.code,
    )


class AuditServicer(rpc.AuditServiceServicer):
    """Reads the audit trail (viewers and admins)."""

    def __init__(self, trail: AuditTrail, page_tokens: PageTokens) -> None:
        self._trail = trail
        self._tokens = page_tokens

    async def ListAuditRecords(
        self, request: api.ListAuditRecordsRequest, context: Context
    ) -> api.ListAuditRecordsResponse:
        if owner_scope() is not None:
            raise PermissionDenied("the audit trail is for viewers and admins")
        v = Violations()
        flt = AuditFilter(
            principal=request.principal,
            session_id=request.session_id,
            since=timestamp_seconds(v, "start_time", request.start_time)
            if request.HasField("start_time")
            else None,
            until=timestamp_seconds(v, "end_time", request.end_time)
            if request.HasField("end_time")
            else None,
        )
        v.raise_if_any()
        filter_hash = json.dumps([flt.principal, flt.session_id, flt.since, flt.until])
        before = None
        if request.page_token:
            before = int(self._tokens.decode(request.page_token, filter_hash))
        size = page_size(request.page_size, default=DEFAULT_PAGE, maximum=MAX_PAGE)
        records = await self._trail.list(flt, size + 1, before)
        token = ""
        if len(records) > size:
            records = records[:size]
            token = self._tokens.encode(records[-1].id, filter_hash)
        return api.ListAuditRecordsResponse(
            records=[_record_to_proto(r) for r in records], next_page_token=token
        )
