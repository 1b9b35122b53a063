"""Serving: run_emulator in the current loop, the command line, and the config's guarantees."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.zego.emulator import EmulatorConfig, EmulatorStartupError, RecordingEventSink, run_emulator
from service.zego.signing import api_signature, new_nonce

from .conftest import APP_ID, CALLBACK_SECRET, SECRET, make_config

ROOT = Path(__file__).resolve().parents[2]


async def test_run_emulator_binds_a_real_port_and_shuts_down() -> None:
    before = asyncio.all_tasks()
    async with run_emulator(make_config()) as url:
        port = int(url.rsplit(":", 1)[1])
        assert url.startswith("http://127.0.0.1:") and port > 0
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{url}/_emulator/state")).status_code == 200
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(f"{url}/_emulator/state")
    # The server task and its ticker are gone (other tests' shared emulator may still be running).
    assert not [t for t in asyncio.all_tasks() - before if t.get_name().startswith("zego-emulator")]


async def test_port_in_use_raises_a_startup_error() -> None:
    async with run_emulator(make_config()) as url:
        port = int(url.rsplit(":", 1)[1])
        with pytest.raises(EmulatorStartupError):
            async with run_emulator(make_config(), port=port):
                pass  # pragma: no cover


async def test_event_sink_receives_events() -> None:
    class Collect:
        def __init__(self) -> None:
            self.seen: list[tuple[str, str, dict[str, Any], int]] = []

        def emit(self, instance_id: str, event: str, data: dict[str, Any], timestamp_ms: int) -> None:
            self.seen.append((instance_id, event, data, timestamp_ms))

    sink = Collect()
    recorder = RecordingEventSink(max_events=2)
    async with run_emulator(make_config(), event_sink=sink) as url, httpx.AsyncClient() as http:
        ts, nonce = int(time.time()), new_nonce()
        params = {
            "Action": "RegisterAgent",
            "AppId": str(APP_ID),
            "SignatureNonce": nonce,
            "Timestamp": str(ts),
            "Signature": api_signature(APP_ID, nonce, SECRET, ts),
            "SignatureVersion": "2.0",
        }
        response = await http.post(f"{url}/", params=params, json={"AgentId": "a"})
        assert response.json()["Code"] == 0
    assert sink.seen == []  # agents have no events; instances do (covered over HTTP elsewhere)
    for i in range(3):
        recorder.emit(str(i), "AgentInstanceCreated", {"CreatedTimestamp": i}, i)
    assert [e["instance_id"] for e in recorder.events()] == ["1", "2"]


def test_config_repr_masks_secrets() -> None:
    config = make_config(callback_url="http://127.0.0.1:9/cb")
    text = repr(config)
    assert SECRET not in text and CALLBACK_SECRET not in text
    assert "server_secret='***'" in text and f"app_id={APP_ID}" in text


@pytest.mark.parametrize(
    "overrides",
    [
        {"server_secret": "short"},
        {"app_id": 0},
        {"app_id": 2**32},
        {"time_scale": 0},
        {"rate_limit_per_second": 0},
    ],
)
def test_config_rejects_impossible_values(overrides: dict[str, Any]) -> None:
    values: dict[str, Any] = {"app_id": 1, "server_secret": SECRET, "callback_secret": "c", **overrides}
    with pytest.raises(ValueError) as info:
        EmulatorConfig(**values)
    assert SECRET not in str(info.value)


def test_command_line_serves_and_prints_the_generated_secret() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGW_EMULATOR_")}
    env["AGENTGW_EMULATOR_APP_ID"] = "777"
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.zego.emulator", "--port", "0", "--time-scale", "0.5"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        secret_line = proc.stdout.readline()
        secret = re.fullmatch(r"generated server secret: ([0-9a-f]{32})\n", secret_line)
        assert secret, secret_line
        assert proc.stdout.readline().startswith("generated callback secret: ")
        listen_line = proc.stderr.readline()
        url = re.search(r"listening on (http://127\.0\.0\.1:\d+) \(AppId 777\)", listen_line)
        assert url, listen_line
        ts, nonce = int(time.time()), new_nonce()
        params = {
            "Action": "ListAgents",
            "AppId": "777",
            "SignatureNonce": nonce,
            "Timestamp": str(ts),
            "Signature": api_signature(777, nonce, secret.group(1), ts),
            "SignatureVersion": "2.0",
        }
        response = httpx.post(url.group(1) + "/", params=params, json={}, timeout=5)
        assert response.json()["Code"] == 0
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.communicate()
