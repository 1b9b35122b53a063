"""A gateway with JWT authentication and four identities: two callers, a viewer and an admin."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from agentgw_client.gen.agentgw.v1 import (
    agent_service_pb2_grpc,
    audit_service_pb2_grpc,
    event_service_pb2_grpc,
    room_token_service_pb2_grpc,
    session_service_pb2_grpc,
)
from service.server import Gateway
from tests.auth.keys import SigningKey, rsa_key, write_jwks
from tests.conftest import Emulator, gateway_settings

ROLES = {"alice": "caller", "bob": "caller", "sre": "viewer", "ops": "admin"}


@dataclass
class Client:
    """Stubs that send one identity's bearer token on every call."""

    name: str
    metadata: tuple[tuple[str, str], ...]
    channel: grpc.aio.Channel

    def _stub(self, factory: Any) -> Any:
        stub = factory(self.channel)
        metadata = self.metadata

        class Authenticated:
            def __getattr__(self, method: str) -> Any:
                call = getattr(stub, method)

                def invoke(request: Any, **kwargs: Any) -> Any:
                    return call(request, metadata=metadata, timeout=kwargs.pop("timeout", 10), **kwargs)

                return invoke

        return Authenticated()

    @property
    def sessions(self) -> Any:
        return self._stub(session_service_pb2_grpc.SessionServiceStub)

    @property
    def agents(self) -> Any:
        return self._stub(agent_service_pb2_grpc.AgentServiceStub)

    @property
    def events(self) -> Any:
        return self._stub(event_service_pb2_grpc.EventServiceStub)

    @property
    def tokens(self) -> Any:
        return self._stub(room_token_service_pb2_grpc.RoomTokenServiceStub)

    @property
    def audit(self) -> Any:
        return self._stub(audit_service_pb2_grpc.AuditServiceStub)


@dataclass
class Identities:
    gateway: Gateway
    key: SigningKey
    clients: dict[str, Client]

    def __getitem__(self, name: str) -> Client:
        return self.clients[name]


@contextlib.asynccontextmanager
async def identity_gateway(
    emulator: Emulator, tmp_path: Path, database_url: str | None = None, **overrides: Any
) -> AsyncIterator[Identities]:
    key = rsa_key()
    settings = gateway_settings(
        emulator,
        tmp_path / "ledger.db",
        database_url,
        auth_mode=frozenset({"jwt"}),
        auth_jwks_file=write_jwks(tmp_path / "jwks.json", key),
        **overrides,
    )
    async with Gateway(settings) as gw:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
            clients = {
                name: Client(
                    name,
                    (("authorization", f"Bearer {key.token(sub=name, agentgw_role=role)}"),),
                    channel,
                )
                for name, role in ROLES.items()
            }
            yield Identities(gw, key, clients)
