"""The reaper's knobs are settings (``AGENTGW_REAPER_*``) and reach the gateway's reaper.

No callbacks reach the gateway here (the emulator has no callback URL), so a new session stays
STARTING until the reaper asks ZEGO about it. With the defaults that happens after 30 s; with
``reaper_starting_timeout_seconds=0`` and a 0.1 s interval it happens at once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from agentgw_client.gen.agentgw.v1 import session_pb2 as spb
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as rpc
from service.config import load_settings
from service.server import Gateway
from tests.api.sessions_helpers import register_agent, voice_request
from tests.conftest import Emulator, gateway_settings


async def state_of(stub: rpc.SessionServiceStub, session_id: str) -> int:
    return (await stub.GetSession(api.GetSessionRequest(session_id=session_id), timeout=5)).session.state


async def test_reaper_settings_from_the_environment_drive_the_gateways_reaper(
    emulator: Emulator, tmp_path: Path
) -> None:
    env = {"AGENTGW_REAPER_INTERVAL_SECONDS": "0.1", "AGENTGW_REAPER_STARTING_TIMEOUT_SECONDS": "0"}
    reaper = load_settings([], env).reaper
    assert (reaper.interval_seconds, reaper.starting_timeout_seconds) == (0.1, 0.0)
    settings = gateway_settings(
        emulator,
        tmp_path / "ledger.db",
        reaper_interval_seconds=reaper.interval_seconds,
        reaper_starting_timeout_seconds=reaper.starting_timeout_seconds,
    )
    assert settings.reaper == reaper
    await register_agent(emulator)
    async with Gateway(settings) as gw, grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as ch:
        stub = rpc.SessionServiceStub(ch)  # type: ignore[no-untyped-call]
        created = (await stub.CreateSession(voice_request(), timeout=5)).session
        assert created.state == spb.SESSION_STATE_STARTING
        async with asyncio.timeout(5):
            while await state_of(stub, created.session_id) != spb.SESSION_STATE_ACTIVE:
                await asyncio.sleep(0.05)


async def test_with_the_default_reaper_settings_a_starting_session_waits(
    emulator: Emulator, tmp_path: Path
) -> None:
    # The control: the same session is left STARTING by a reaper on its defaults (30 s, 5 s).
    await register_agent(emulator)
    settings = gateway_settings(emulator, tmp_path / "ledger.db")
    async with Gateway(settings) as gw, grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as ch:
        stub = rpc.SessionServiceStub(ch)  # type: ignore[no-untyped-call]
        created = (await stub.CreateSession(voice_request(), timeout=5)).session
        await asyncio.sleep(0.5)  # a bounded wait for something that must not happen
        assert await state_of(stub, created.session_id) == spb.SESSION_STATE_STARTING
