"""Serving: run_emulator in the current loop, the command line, and the config's guarantees."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.zego.signing import api_signature, new_nonce
from zego_emulator import EmulatorConfig, EmulatorStartupError, RecordingEventSink, run_emulator

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


def test_command_line_logs_json_and_writes_its_secrets_to_a_private_file(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGW_EMULATOR_")}
    env["AGENTGW_EMULATOR_APP_ID"] = "777"
    secrets_file = tmp_path / "secrets.env"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zego_emulator",
            "--port",
            "0",
            "--time-scale",
            "0.5",
            "--secrets-file",
            str(secrets_file),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        listening = json.loads(proc.stderr.readline())
        assert listening["message"] == "ZEGO emulator listening" and listening["app_id"] == 777
        assert listening["secrets_file"] == str(secrets_file)
        url = re.fullmatch(r"http://127\.0\.0\.1:\d+", listening["url"])
        assert url, listening
        assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
        written = dict(line.split("=", 1) for line in secrets_file.read_text().splitlines())
        assert written["AGENTGW_ZEGO_APP_ID"] == "777" and written["AGENTGW_ZEGO_API_BASE"] == url.group(0)
        secret = re.fullmatch(r"[0-9a-f]{32}", written["AGENTGW_ZEGO_SERVER_SECRET"])
        assert secret and written["AGENTGW_ZEGO_CALLBACK_SECRET"]
        assert _signed(written, "ListAgents", {})["Code"] == 0
    finally:
        proc.terminate()
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            out, err = proc.communicate()
    # Nothing it printed or logged shows a secret.
    assert secret.group(0) not in out + err and written["AGENTGW_ZEGO_CALLBACK_SECRET"] not in out + err


def _start_standalone(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGW_EMULATOR_")}
    secrets_file = tmp_path / "secrets.env"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zego_emulator",
            "--port",
            "0",
            "--secrets-file",
            str(secrets_file),
            *extra,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    while True:
        line = json.loads(proc.stderr.readline())
        if line["message"] == "ZEGO emulator listening":
            break
    written = dict(row.split("=", 1) for row in secrets_file.read_text().splitlines())
    return proc, written


def _signed(written: dict[str, str], action: str, body: dict[str, Any]) -> dict[str, Any]:
    app_id, secret = int(written["AGENTGW_ZEGO_APP_ID"]), written["AGENTGW_ZEGO_SERVER_SECRET"]
    ts, nonce = int(time.time()), new_nonce()
    params = {
        "Action": action,
        "AppId": str(app_id),
        "SignatureNonce": nonce,
        "Timestamp": str(ts),
        "Signature": api_signature(app_id, nonce, secret, ts),
        "SignatureVersion": "2.0",
    }
    response = httpx.post(written["AGENTGW_ZEGO_API_BASE"] + "/", params=params, json=body, timeout=5)
    return dict(response.json())


def test_command_line_state_file_keeps_agents_and_secrets_across_restarts(tmp_path: Path) -> None:
    state = tmp_path / "emulator.json"
    proc, first = _start_standalone(tmp_path, "--state-file", str(state))
    try:
        agent = {
            "AgentId": "kept",
            "LLM": {"Url": "https://llm.example/v1", "ApiKey": "k", "Model": "m"},
            "TTS": {"Vendor": "ByteDance", "Params": {"app": {"appid": "a", "token": "t", "cluster": "c"}}},
        }
        assert _signed(first, "RegisterAgent", agent)["Code"] == 0
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert stat.S_IMODE(state.stat().st_mode) == 0o600

    proc, second = _start_standalone(tmp_path, "--state-file", str(state))
    try:
        assert second["AGENTGW_ZEGO_SERVER_SECRET"] == first["AGENTGW_ZEGO_SERVER_SECRET"]
        listed = _signed(second, "ListAgents", {})
        assert [a["AgentId"] for a in listed["Data"]["Agents"]] == ["kept"]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)

    proc, fresh = _start_standalone(tmp_path, "--state-file", str(state), "--fresh")
    try:
        assert fresh["AGENTGW_ZEGO_SERVER_SECRET"] != first["AGENTGW_ZEGO_SERVER_SECRET"]
        assert _signed(fresh, "ListAgents", {})["Data"]["Agents"] == []
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
