"""Dev mode as a developer lives it: `python -m service` restarted keeps its emulator's agents and
live sessions (SIGTERM and SIGKILL alike), `--fresh` starts empty, and a busy address fails in one
JSON line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc

from agentgw_client.gen.agentgw.v1 import (
    agent_pb2,
    agent_service_pb2,
    agent_service_pb2_grpc,
    session_event_pb2,
)
from agentgw_client.gen.agentgw.v1 import session_pb2 as spb
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as rpc
from tests.test_main import free_port


def environment(tmp_path: Path, grpc_port: int, http_port: int) -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("AGENTGW_")} | {
        "AGENTGW_GRPC_LISTEN": f"127.0.0.1:{grpc_port}",
        "AGENTGW_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "AGENTGW_DB_PATH": str(tmp_path / "var" / "agentgw.db"),
        "AGENTGW_SHUTDOWN_GRACE_SECONDS": "1",
    }


@asynccontextmanager
async def gateway(env: dict[str, str], *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m service ARGS` until it logs "agentgw serving"; killed if still running at exit."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", *args, env=env, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(30):
            while not any('"agentgw serving"' in line for line in seen):
                raw = await proc.stderr.readline()
                assert raw, f"agentgw exited early: {seen}"
                seen.append(raw.decode())
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def stop(proc: asyncio.subprocess.Process, how: signal.Signals) -> None:
    proc.send_signal(how)
    async with asyncio.timeout(15):
        await proc.wait()


def stubs(channel: grpc.aio.Channel) -> tuple[Any, Any]:
    return (
        agent_service_pb2_grpc.AgentServiceStub(channel),  # type: ignore[no-untyped-call]
        rpc.SessionServiceStub(channel),  # type: ignore[no-untyped-call]
    )


async def until_state(sessions: Any, session_id: str, state: int) -> spb.Session:
    async with asyncio.timeout(10):
        while True:
            got = (await sessions.GetSession(api.GetSessionRequest(session_id=session_id), timeout=5)).session
            if got.state == state:
                return got  # type: ignore[no-any-return]
            await asyncio.sleep(0.05)


async def test_restarts_keep_agents_and_live_sessions_until_fresh(tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    env = environment(tmp_path, grpc_port, http_port)
    target = f"127.0.0.1:{grpc_port}"
    state_file = tmp_path / "var" / "emulator.json"

    async with gateway(env) as first:
        async with grpc.aio.insecure_channel(target) as channel:
            agents, sessions = stubs(channel)
            agent = agent_pb2.Agent(
                agent_id="dev-agent",
                llm=agent_pb2.LlmConfig(url="https://llm.example/v1", api_key="sk-dev", model="m"),
                tts=agent_pb2.TtsConfig(vendor="ByteDance"),
            )
            agent.tts.app.update({"appid": "a", "token": "t", "cluster": "c"})
            await agents.CreateAgent(agent_service_pb2.CreateAgentRequest(agent=agent), timeout=5)
            created = await sessions.CreateSession(
                api.CreateSessionRequest(
                    agent_id="dev-agent",
                    user_id="u1",
                    voice=api.VoiceSpec(),
                    rtc=api.RtcSpec(room_id="r1", user_stream_id="u1_s"),
                ),
                timeout=5,
            )
            session = await until_state(sessions, created.session.session_id, spb.SESSION_STATE_ACTIVE)
        await stop(first, signal.SIGTERM)
    assert first.returncode == 0

    # The state file holds secrets and LLM keys: the owner alone may read it.
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    saved = json.loads(state_file.read_text())
    assert [a["agent_id"] for a in saved["agents"]] == ["dev-agent"]
    assert [i["instance_id"] for i in saved["instances"]] == [session.agent_instance_id]

    for how in (signal.SIGKILL, signal.SIGTERM):  # a crash keeps it too (saved within 0.2 s)
        async with gateway(env) as again:
            async with grpc.aio.insecure_channel(target) as channel:
                agents, sessions = stubs(channel)
                got = await agents.GetAgent(
                    agent_service_pb2.GetAgentRequest(agent_id="dev-agent"), timeout=5
                )
                assert got.agent.llm.api_key_set
                kept = (
                    await sessions.GetSession(api.GetSessionRequest(session_id=session.session_id))
                ).session
                assert (
                    kept.state == spb.SESSION_STATE_ACTIVE
                    and kept.agent_instance_id == session.agent_instance_id
                )
                # ZEGO (the emulator) still runs the instance: a live call answers.
                status = await sessions.GetAgentStatus(
                    api.GetAgentStatusRequest(session_id=session.session_id)
                )
                assert status.status == session_event_pb2.AGENT_STATE_IDLE
                await asyncio.sleep(0.5)  # the saver has written whatever changed
            await stop(again, how)

    async with gateway(env, "--fresh") as fresh:
        async with grpc.aio.insecure_channel(target) as channel:
            agents, sessions = stubs(channel)
            listed = await agents.ListAgents(agent_service_pb2.ListAgentsRequest(), timeout=5)
            assert list(listed.agents) == []
            # The emulator forgot the instance, so start-up reconciliation ended the session.
            ended = (await sessions.GetSession(api.GetSessionRequest(session_id=session.session_id))).session
            assert ended.state == spb.SESSION_STATE_ENDED
        await stop(fresh, signal.SIGTERM)


async def failed_start(env: dict[str, str]) -> dict[str, Any]:
    """Run `python -m service`, which must fail at start-up: exit 1 and exactly one stderr line, JSON."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", env=env, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(30):
        _, err = await proc.communicate()
    assert proc.returncode == 1
    [line] = err.decode().splitlines()  # no traceback, no C-core line
    logged: dict[str, Any] = json.loads(line)
    assert logged["message"] == "cannot start" and logged["level"] == "ERROR"
    return logged


async def test_a_busy_listen_address_fails_in_one_json_line_naming_it(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for setting, env in (
            ("grpc_listen", environment(tmp_path, port, free_port())),
            ("http_listen", environment(tmp_path, free_port(), port)),
        ):
            logged = await failed_start(env)
            assert logged["setting"] == setting and logged["address"] == f"127.0.0.1:{port}"
            assert f"cannot listen on 127.0.0.1:{port} ({setting})" in logged["error"]
            assert "in use" in logged["error"]


async def test_an_unresolvable_listen_host_fails_in_one_json_line(tmp_path: Path) -> None:
    env = environment(tmp_path, free_port(), free_port()) | {
        "AGENTGW_GRPC_LISTEN": "no-such-host.invalid:50051",
        # Not loopback: without this, start-up stops earlier, at the missing authentication.
        "AGENTGW_ALLOW_INSECURE": "true",
    }
    logged = await failed_start(env)
    assert logged["setting"] == "grpc_listen" and logged["address"] == "no-such-host.invalid:50051"


def test_help_names_every_default_and_variable_and_version_exists() -> None:
    import subprocess

    shown = subprocess.run(
        [sys.executable, "-m", "service", "--help"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    flat = " ".join(shown.split())
    assert (
        "--grpc-listen GRPC_LISTEN gRPC listen address. (default: 127.0.0.1:50051; env AGENTGW_GRPC_LISTEN)"
        in flat
    )
    assert "(default: unset; env AGENTGW_ZEGO_APP_ID)" in flat and "--fresh" in flat
    assert "(default: auto; env AGENTGW_EMULATOR_STATE_FILE)" in flat
    version = subprocess.run(
        [sys.executable, "-m", "service", "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    assert version.stdout.strip() == "agentgw 0.1.0"


async def test_agentgw_serve_runs_the_gateway_and_passes_its_flags_through(tmp_path: Path) -> None:
    shown = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "serve", "--help", stdout=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(30):
        out, _ = await shown.communicate()
    assert shown.returncode == 0 and b"usage: agentgw serve" in out and b"--grpc-listen" in out
    grpc_port = free_port()
    env = environment(tmp_path, free_port(), free_port())
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service.cli",
        "serve",
        "--grpc-listen",
        f"127.0.0.1:{grpc_port}",
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(30):
            while b'"agentgw serving"' not in (line := await proc.stderr.readline()):
                assert line, "agentgw serve exited early"
        assert f'"grpc": "127.0.0.1:{grpc_port}"' in line.decode()
        await stop(proc, signal.SIGTERM)
        assert proc.returncode == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
