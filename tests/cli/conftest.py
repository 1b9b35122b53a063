"""The `agentgw` CLI against a real gateway on loopback, the emulator calling back into it."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import grpc
import pytest
from click.testing import CliRunner, Result

from agentgw_client.gen.agentgw.v1 import session_pb2 as spb
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as rpc
from service.cli.app import cli
from service.server import Gateway
from tests.api.sessions_helpers import register_agent
from tests.conftest import Emulator


@pytest.fixture
def emulator_overrides() -> dict[str, Any]:
    # Emulated delays run 100x faster; callback Timestamps still carry the emulated times.
    return {"time_scale": 0.01, "latency_seed": 7}


async def invoke(port: int, *args: str, input: str | None = None, columns: int = 200) -> Result:
    """Run `agentgw --target 127.0.0.1:PORT ARGS` in a thread (the CLI is blocking gRPC)."""
    runner = CliRunner()
    return await asyncio.to_thread(
        runner.invoke,
        cli,
        ["--target", f"127.0.0.1:{port}", "--timeout", "5", *args],
        input=input,
        env={"COLUMNS": str(columns), "AGENTGW_TARGET": None},
        catch_exceptions=False,
    )


@dataclasses.dataclass
class Wired:
    """A gateway with the emulator's callbacks pointed at it and an agent registered."""

    gateway: Gateway
    emulator: Emulator
    sessions: rpc.SessionServiceStub

    @property
    def port(self) -> int:
        return self.gateway.grpc_port

    async def run(self, *args: str, input: str | None = None, columns: int = 200) -> Result:
        return await invoke(self.port, *args, input=input, columns=columns)

    async def active_session(self, request: api.CreateSessionRequest) -> spb.Session:
        session = (await self.sessions.CreateSession(request, timeout=5)).session
        async with asyncio.timeout(10):
            while True:
                got = await self.sessions.GetSession(api.GetSessionRequest(session_id=session.session_id))
                if got.session.state == spb.SESSION_STATE_ACTIVE:
                    return got.session
                await asyncio.sleep(0.02)

    async def turn(self, session: spb.Session, turns_after: int, **latencies: int) -> None:
        """A simulated user turn; waits until the gateway has measured it."""
        await self.emulator.user_turn(session.agent_instance_id, "How are you?", **latencies)
        async with asyncio.timeout(10):
            while True:
                got = await self.sessions.GetSession(api.GetSessionRequest(session_id=session.session_id))
                if got.session.turn_stats.turns >= turns_after:
                    return
                await asyncio.sleep(0.02)


@pytest.fixture
async def wired(emulator: Emulator, gateway: Gateway, channel: grpc.aio.Channel) -> Wired:
    url = f"http://127.0.0.1:{gateway.http_port}/v1/zego/callbacks"
    await emulator.set_callback_url(url)
    await register_agent(emulator)
    return Wired(gateway, emulator, rpc.SessionServiceStub(channel))  # type: ignore[no-untyped-call]
