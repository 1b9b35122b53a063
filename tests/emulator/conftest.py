"""Emulator test helpers: start a real emulator on loopback and talk to it with signed httpx requests.

The gateway's own ZEGO client is deliberately not used, so these tests pin the wire protocol on their own;
``Zego`` is the emulator's shipped client (:mod:`zego_emulator.client`) plus raw posts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from service.http.asgi import serve_asgi
from zego_emulator import EmulatorClient, EmulatorConfig, run_emulator

from .receiver import CallbackReceiver

APP_ID = 1234567
SECRET = "0123456789abcdef0123456789abcdef"
CALLBACK_SECRET = "emulator-callback-secret"

LLM = {"Url": "https://api.openai.com/v1/chat/completions", "ApiKey": "sk-test", "Model": "gpt-4o-mini"}
TTS = {"Vendor": "ByteDance", "Params": {"app": {"appid": "a", "token": "t", "cluster": "volcano_tts"}}}
DH_ID = "63c3aa64-1d80-4b04-a0be-1c65614eb7eb"

ALL_CALLBACKS = {
    "ASRResult": 1,
    "LLMResult": 1,
    "Interrupted": 1,
    "UserSpeakAction": 1,
    "AgentInstanceStatus": 1,
    "UserAudioData": 1,
}
"""A CallbackConfig that turns every gated callback on."""


def make_config(**overrides: Any) -> EmulatorConfig:
    """A test config: fast emulated time and a rate limit high enough not to interfere."""
    values: dict[str, Any] = {
        "app_id": APP_ID,
        "server_secret": SECRET,
        "callback_secret": CALLBACK_SECRET,
        "rate_limit_per_second": 1000.0,
        "time_scale": 0.01,
    }
    values.update(overrides)
    return EmulatorConfig(**values)


class Zego(EmulatorClient):
    """The emulator's own client (signed calls, typed admin calls) plus raw posts and test conveniences."""

    def __init__(self, url: str, http: httpx.AsyncClient) -> None:
        super().__init__(url, app_id=APP_ID, server_secret=SECRET, callback_secret=CALLBACK_SECRET, http=http)
        self._counter = 0

    def query(self, action: str | None, *, timestamp: int | None = None) -> dict[str, str]:
        """A correctly signed query string for ``action``."""
        return self.signed_query(action, timestamp=timestamp)

    async def post_raw(
        self, params: dict[str, str], content: bytes = b"{}", *, path: str = "/", timeout: float | None = None
    ) -> dict[str, Any]:
        """POST exactly these query parameters and body; returns the decoded envelope (HTTP 200 asserted)."""
        kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        response = await self.http.post(
            self.url + path,
            params=params,
            content=content,
            headers={"Content-Type": "application/json"},
            **kwargs,
        )
        assert response.status_code == 200, response.text
        envelope: dict[str, Any] = response.json()
        return envelope

    async def call(self, action: str, body: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        """A signed call of ``action``; returns the whole envelope (``path``, ``timeout`` as post_raw)."""
        return await self.post_raw(self.query(action), json.dumps(body or {}).encode(), **kwargs)

    async def ok(self, action: str, body: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """A signed call that must succeed; returns ``Data``."""
        envelope = await self.call(action, body, **kwargs)
        assert envelope["Code"] == 0, envelope
        return envelope.get("Data")

    async def code(self, action: str, body: dict[str, Any] | None = None) -> int:
        """A signed call; returns just its ``Code``."""
        return int((await self.call(action, body))["Code"])

    # --- conveniences ---------------------------------------------------------------------------

    def unique(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}_{self._counter}"

    async def register(self, agent_id: str = "agent_1", **extra: Any) -> str:
        await self.ok("RegisterAgent", {"AgentId": agent_id, "Name": "Test", "LLM": LLM, "TTS": TTS, **extra})
        return agent_id

    def rtc(self, room: str = "room_1", *, live: bool = False) -> dict[str, str]:
        tag = self.unique("s")
        rtc = {"RoomId": room, "AgentStreamId": f"agent_{tag}", "AgentUserId": f"agent_user_{tag}"}
        if not live:
            rtc["UserStreamId"] = f"user_{tag}"
        return rtc

    async def create_voice(self, agent_id: str = "agent_1", user: str = "user_1", **extra: Any) -> str:
        body = {"AgentId": agent_id, "UserId": user, "RTC": self.rtc(), **extra}
        data = await self.ok("CreateAgentInstance", body)
        return str(data["AgentInstanceId"])

    async def create_dh(
        self, agent_id: str = "agent_1", user: str = "user_1", **extra: Any
    ) -> dict[str, Any]:
        body = {
            "AgentId": agent_id,
            "UserId": user,
            "RTC": self.rtc(),
            "DigitalHuman": {"DigitalHumanId": DH_ID},
        }
        data: dict[str, Any] = await self.ok("CreateDigitalHumanAgentInstance", {**body, **extra})
        return data

    async def status(self, instance_id: str) -> dict[str, Any]:
        return await self.call("QueryAgentInstanceStatus", {"AgentInstanceId": instance_id})

    async def wait_gone(self, instance_id: str, *, within: float = 3.0) -> None:
        """Poll (bounded) until the instance no longer exists (410001002)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if (await self.status(instance_id))["Code"] == 410001002:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"instance {instance_id} still exists after {within}s")

    async def wait_events(
        self, instance_id: str, event: str, *, count: int = 1, within: float = 3.0
    ) -> list[dict[str, Any]]:
        """Poll (bounded) until at least ``count`` recorded ``event`` events of the instance exist."""
        deadline = time.monotonic() + within
        while True:
            found = await self.events(instance_id, event)
            if len(found) >= count:
                return found
            assert time.monotonic() < deadline, f"{count} x {event} not seen within {within}s: {found}"
            await asyncio.sleep(0.01)


StartEmulator = Callable[..., Awaitable[Zego]]

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run this package's async tests in one event loop, so they can share one default emulator.

    Starting and stopping uvicorn costs about 0.1 s; sharing the emulator (reset before each test)
    keeps the package fast while every test still talks to it over loopback HTTP.
    """
    marker = pytest.mark.asyncio(loop_scope="package")
    for item in items:
        if pytest_asyncio.is_async_test(item) and _HERE in Path(str(item.path)).parents:
            item.add_marker(marker, append=False)


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def shared_emulator_url() -> AsyncIterator[str]:
    """One emulator with the default test config for the whole package."""
    async with run_emulator(make_config()) as url:
        yield url


@pytest_asyncio.fixture(loop_scope="package")
async def start_emulator() -> AsyncIterator[StartEmulator]:
    """Start dedicated emulators with config overrides; all are shut down after the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**overrides: Any) -> Zego:
            url = await stack.enter_async_context(run_emulator(make_config(**overrides)))
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=5.0))
            return Zego(url, http)

        yield start


@pytest_asyncio.fixture(loop_scope="package")
async def zego(shared_emulator_url: str) -> AsyncIterator[Zego]:
    """The shared emulator, freshly reset, with one registered agent, ``agent_1``."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        z = Zego(shared_emulator_url, http)
        response = await z.admin("POST", "/reset")
        assert response.status_code == 200
        await z.register()
        yield z


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def shared_receiver() -> AsyncIterator[CallbackReceiver]:
    """One loopback callback receiver for the whole package."""
    receiver = CallbackReceiver()
    async with serve_asgi(receiver.app, "127.0.0.1", 0, name="callback-receiver") as port:
        receiver.url = f"http://127.0.0.1:{port}/callbacks"
        yield receiver


@pytest_asyncio.fixture(loop_scope="package")
async def receiver(shared_receiver: CallbackReceiver, zego: Zego) -> AsyncIterator[CallbackReceiver]:
    """The receiver, emptied; the shared emulator delivers to it (URL set at runtime, like a gateway)."""
    shared_receiver.clear()
    response = await zego.admin("POST", "/callbacks", {"url": shared_receiver.url})
    assert response.status_code == 200, response.text
    yield shared_receiver
    # Other tests share the emulator: stop delivering to this receiver once the test is over.
    await zego.admin("POST", "/callbacks", {"url": None})
    shared_receiver.clear()
