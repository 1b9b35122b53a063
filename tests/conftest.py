"""Shared fixtures: a real emulator over loopback HTTP, a real gateway, a real aio channel."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from service.config import Secret, Settings
from service.server import Gateway
from service.zego.emulator.config import EmulatorConfig
from service.zego.emulator.server import run_emulator
from service.zego.signing import api_signature, new_nonce

pytest_plugins = ["tests.backends"]

APP_ID = 424242
SERVER_SECRET = "0123456789abcdef0123456789abcdef"
CALLBACK_SECRET = "callback-secret-for-tests"


@dataclasses.dataclass
class Emulator:
    """A running emulator: its base URL and an admin HTTP client."""

    url: str
    config: EmulatorConfig
    admin: httpx.AsyncClient

    async def state(self) -> dict[str, Any]:
        response = await self.admin.get("/_emulator/state")
        response.raise_for_status()
        return dict(response.json())

    async def call(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """A signed ZEGO API call, raw: returns the whole envelope as ZEGO sent it."""
        nonce, ts = new_nonce(), int(time.time())
        params: dict[str, str | int] = {
            "Action": action,
            "AppId": self.config.app_id,
            "SignatureNonce": nonce,
            "Timestamp": ts,
            "Signature": api_signature(self.config.app_id, nonce, SERVER_SECRET, ts),
            "SignatureVersion": "2.0",
        }
        response = await self.admin.post("/", params=params, json=body)
        response.raise_for_status()
        return dict(response.json())

    async def stored_agent(self, agent_id: str) -> dict[str, Any]:
        """The agent exactly as the emulator stored it (QueryAgents, raw JSON)."""
        envelope = await self.call("QueryAgents", {"AgentIds": [agent_id]})
        agents = envelope["Data"]["Agents"]
        assert len(agents) == 1, envelope
        return dict(agents[0])

    async def fault(self, **body: Any) -> None:
        response = await self.admin.post("/_emulator/faults", json=body)
        response.raise_for_status()


def emulator_config(**overrides: Any) -> EmulatorConfig:
    base: dict[str, Any] = {
        "app_id": APP_ID,
        "server_secret": SERVER_SECRET,
        "callback_secret": CALLBACK_SECRET,
        "rate_limit_per_second": 1000.0,
    }
    base.update(overrides)
    return EmulatorConfig(**base)


@pytest.fixture
def emulator_overrides() -> dict[str, Any]:
    """Override in a test module to configure the emulator differently."""
    return {}


@pytest.fixture
async def emulator(emulator_overrides: dict[str, Any]) -> AsyncIterator[Emulator]:
    config = emulator_config(**emulator_overrides)
    async with run_emulator(config, host="127.0.0.1", port=0) as url:
        async with httpx.AsyncClient(base_url=url, timeout=5) as admin:
            yield Emulator(url, config, admin)


def gateway_settings(
    emulator: Emulator, db_path: Path, database_url: str | None = None, **overrides: Any
) -> Settings:
    """The gateway's settings for tests; ``database_url`` (the ``database_url`` fixture) selects
    the PostgreSQL ledger, None the SQLite file at ``db_path``."""
    values: dict[str, Any] = {
        "zego_app_id": APP_ID,
        "zego_server_secret": Secret(SERVER_SECRET),
        "zego_callback_secret": Secret(CALLBACK_SECRET),
        "zego_api_base": emulator.url,
        "zego_rate_per_second": 1000.0,
        "grpc_listen": "127.0.0.1:0",
        "http_listen": "127.0.0.1:0",
        "db_path": db_path,
        "shutdown_grace_seconds": 0.5,
    }
    if database_url is not None:
        values["database_url"] = Secret(database_url)
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    """Override in a test module to configure the gateway differently."""
    return {}


@pytest.fixture
async def gateway(
    emulator: Emulator, tmp_path: Path, gateway_overrides: dict[str, Any], database_url: str | None
) -> AsyncIterator[Gateway]:
    settings = gateway_settings(emulator, tmp_path / "ledger.db", database_url, **gateway_overrides)
    async with Gateway(settings) as gw:
        yield gw


@pytest.fixture
async def channel(gateway: Gateway) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as ch:
        yield ch


@dataclasses.dataclass
class RichError:
    """A failed RPC's code with its unpacked google.rpc.Status details."""

    code: grpc.StatusCode
    message: str
    details: list[Message]

    def get(self, kind: type[Any]) -> Any:
        found = [d for d in self.details if isinstance(d, kind)]
        assert len(found) == 1, f"expected one {kind.__name__} in {self.details}"
        return found[0]

    @property
    def reason(self) -> str:
        return str(self.get(error_details_pb2.ErrorInfo).reason)

    @property
    def field_paths(self) -> list[str]:
        return [v.field for v in self.get(error_details_pb2.BadRequest).field_violations]


_DETAIL_TYPES = (
    error_details_pb2.ErrorInfo,
    error_details_pb2.BadRequest,
    error_details_pb2.QuotaFailure,
    error_details_pb2.RetryInfo,
    error_details_pb2.ResourceInfo,
    error_details_pb2.PreconditionFailure,
    error_details_pb2.RequestInfo,
)


def unpack_details(status: status_pb2.Status) -> list[Message]:
    """The known detail messages of a google.rpc.Status, unpacked."""
    details: list[Message] = []
    for packed in status.details:
        for kind in _DETAIL_TYPES:
            if packed.Is(kind.DESCRIPTOR):
                msg = kind()
                packed.Unpack(msg)
                details.append(msg)
    return details


def rich_error(exc: grpc.aio.AioRpcError) -> RichError:
    """Unpack the status details of an aio RPC error."""
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None, f"no rich status on {exc.code()}: {exc.details()}"
    return RichError(exc.code(), status.message, unpack_details(status))


@contextlib.asynccontextmanager
async def serve_handlers(handlers: grpc.GenericRpcHandler) -> AsyncIterator[grpc.aio.Channel]:  # type: ignore[type-arg]
    """A loopback grpc.aio server with these generic handlers, and a channel to it."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((handlers,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        await channel.close(None)
        await server.stop(None)


async def eventually(check: Callable[[], bool], seconds: float = 5.0) -> None:
    """Server-side bookkeeping that lands shortly after the client has its answer: after a
    cancellation, and after an abort, which sends the status before its AbortError leaves the
    handler. Polls ``check`` every 10 ms for up to ``seconds``."""
    for _ in range(int(seconds / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the server never recorded it")
