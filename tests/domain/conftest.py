"""Domain-level fixtures: a real ledger file, the real ZEGO client and the emulator, no gRPC.

Time that matters to the domain (deadlines, timeouts) runs on :class:`FakeClock`; the ZEGO client
keeps the real clock because the emulator checks request timestamps against its own.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from service.domain.model import SessionKind
from service.domain.sessions import CreateSpec, SessionService
from service.store.sqlite import SqliteLedger
from service.zego import models as m
from service.zego.client import ZegoClient
from tests.backends import LedgerFactory
from tests.conftest import APP_ID, SERVER_SECRET, Emulator

AGENT_ID = "agent_domain"
DH_ID = "63c3aa64-1d80-4b04-a0be-1c65614eb7eb"
LIMIT = 10
_users = itertools.count(1)


class FakeClock:
    """A wall clock that only moves when a test says so."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def emulator_overrides() -> dict[str, Any]:
    # ZEGO's own caps well above the gateway's, so admission control is what the tests see.
    return {"voice_instance_limit": 100, "digital_human_instance_limit": 100}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "l.db"


@pytest.fixture
async def zego(emulator: Emulator) -> AsyncIterator[ZegoClient]:
    client = ZegoClient(
        app_id=APP_ID,
        server_secret=SERVER_SECRET,
        base_url=emulator.url,
        rate_per_second=1000,
        timeout_seconds=2.0,
        backoff_initial=0.01,
        backoff_max=0.02,
    )
    async with client:
        await client.register_agent(
            m.RegisterAgentRequest(
                agent_id=AGENT_ID,
                name="Domain tests",
                llm=m.LLM(
                    url="https://api.openai.com/v1/chat/completions", api_key="sk-test", model="gpt-4o"
                ),
                tts=m.TTS(
                    vendor="ByteDance", params={"app": {"appid": "a", "token": "t", "cluster": "volcano_tts"}}
                ),
            )
        )
        yield client


@pytest.fixture
async def ledger(db_path: Path, make_ledger: LedgerFactory) -> AsyncIterator[SqliteLedger]:
    store = make_ledger(db_path)
    await store.open()
    yield store
    await store.close()


@pytest.fixture
def sessions(zego: ZegoClient, ledger: SqliteLedger, clock: FakeClock) -> SessionService:
    return make_service(zego, ledger, clock)


def make_service(zego: ZegoClient, ledger: Any, clock: FakeClock, limit: int = LIMIT) -> SessionService:
    """A SessionService as the gateway builds it, with small pools and the fake clock."""
    return SessionService(
        zego,
        ledger,
        limits={"voice": limit, "digital_human": limit},
        default_max_duration_seconds=3600,
        clock=clock,
    )


def voice_spec(**overrides: Any) -> CreateSpec:
    """A voice session in a room of its own (the agent's LLM and TTS come from the registration)."""
    n = next(_users)
    fields: dict[str, Any] = {
        "kind": SessionKind.VOICE,
        "agent_id": AGENT_ID,
        "user_id": f"user_{n}",
        "room_id": f"room_{n}",
        "user_stream_id": f"user_{n}_main",
    }
    fields.update(overrides)
    return CreateSpec(**fields)


def dh_spec(**overrides: Any) -> CreateSpec:
    """An interactive digital-human session."""
    return voice_spec(
        kind=SessionKind.DIGITAL_HUMAN, digital_human=m.DigitalHuman(digital_human_id=DH_ID), **overrides
    )


def live_spec(*, cdn_url: str | None = None, **overrides: Any) -> CreateSpec:
    """A live (broadcast) digital human, over RTC, or CDN when ``cdn_url`` is given."""
    return voice_spec(
        kind=SessionKind.LIVE_DIGITAL_HUMAN,
        digital_human=m.DigitalHuman(digital_human_id=DH_ID),
        cdn_url=cdn_url,
        **overrides,
    )


async def upstream_ids(emulator: Emulator) -> set[str]:
    """AgentInstanceIds the emulator is running."""
    return {str(i["AgentInstanceId"]) for i in (await emulator.state())["instances"]}


async def delete_behind_our_back(emulator: Emulator, instance_id: str) -> None:
    """Remove an instance upstream without telling the gateway (as ZEGO's idle timeout would)."""
    envelope = await emulator.call("DeleteAgentInstance", {"AgentInstanceId": instance_id})
    assert envelope["Code"] == 0, envelope
