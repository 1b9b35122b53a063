"""The CLI's connection to a gateway: one gRPC channel, the public stubs, and errors as exit codes.

The CLI is a client of the public API only (the same stubs any other service uses), so it works
against one process or a load-balanced fleet. Credentials (a bearer token, TLS files) will be
added here, in :class:`Connection`, once the gateway authenticates callers: every command builds
its channel through :meth:`Connection.channel`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from agentgw_client.gen.agentgw.v1 import (
    agent_service_pb2_grpc,
    event_service_pb2_grpc,
    room_token_service_pb2_grpc,
    session_service_pb2_grpc,
)

__all__ = [
    "EXIT_ERROR",
    "EXIT_NOT_FOUND",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "Connection",
    "RpcFailure",
    "Stubs",
    "describe_rpc_error",
    "exit_code_for",
]

DEFAULT_TARGET = "127.0.0.1:50051"

EXIT_ERROR = 1
"""Any other failed RPC (INVALID_ARGUMENT, FAILED_PRECONDITION, ...)."""
EXIT_USAGE = 2
"""Bad command line or input file (Click's own code for usage errors)."""
EXIT_NOT_FOUND = 3
"""NOT_FOUND: the session or agent does not exist."""
EXIT_UNAVAILABLE = 4
"""UNAVAILABLE or DEADLINE_EXCEEDED: no gateway answered at the target in time."""

_EXIT_CODES = {
    grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND,
    grpc.StatusCode.UNAVAILABLE: EXIT_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_UNAVAILABLE,
}


def exit_code_for(code: grpc.StatusCode) -> int:
    """The process exit code for a failed RPC's status code."""
    return _EXIT_CODES.get(code, EXIT_ERROR)


def describe_rpc_error(exc: grpc.RpcError) -> str:
    """One line: the gRPC code, the ErrorInfo reason (when the gateway sent one) and the message."""
    code: grpc.StatusCode = exc.code()
    message = str(exc.details() or "")
    reason = ""
    try:
        status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    except ValueError:
        status = None
    if status is not None:
        for packed in status.details:
            if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                packed.Unpack(info)
                reason = info.reason
    parts = [code.name]
    if reason:
        parts.append(reason)
    return ": ".join([" ".join(parts), message]) if message else " ".join(parts)


class RpcFailure(Exception):
    """A failed RPC, already described in one line, with the exit code it maps to."""

    def __init__(self, exc: grpc.RpcError) -> None:
        super().__init__(describe_rpc_error(exc))
        self.code: grpc.StatusCode = exc.code()
        self.exit_code = exit_code_for(self.code)


@dataclass(frozen=True)
class Stubs:
    """The four public services on one channel."""

    agents: Any
    sessions: Any
    events: Any
    tokens: Any


@dataclass(frozen=True)
class Connection:
    """Where and how to reach a gateway: the target, and the deadline of each unary call."""

    target: str = DEFAULT_TARGET
    timeout: float = 10.0

    def channel(self) -> grpc.Channel:
        """A plaintext channel to :attr:`target` (TLS and call credentials will plug in here)."""
        return grpc.insecure_channel(self.target)

    @staticmethod
    def stubs(channel: grpc.Channel) -> Stubs:
        """The public stubs bound to ``channel``."""
        return Stubs(
            agents=agent_service_pb2_grpc.AgentServiceStub(channel),
            sessions=session_service_pb2_grpc.SessionServiceStub(channel),
            events=event_service_pb2_grpc.EventServiceStub(channel),
            tokens=room_token_service_pb2_grpc.RoomTokenServiceStub(channel),
        )

    def call(self, method: Any, request: Any) -> Any:
        """One unary call with this connection's deadline; a failure becomes :class:`RpcFailure`."""
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise RpcFailure(exc) from None
