"""`python -m service` as a user runs it: emulator mode, JSON logs, health, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentgw_client.gen.agentgw.v1 import (
    agent_pb2,
    agent_service_pb2,
    agent_service_pb2_grpc,
    event_service_pb2,
    event_service_pb2_grpc,
)
from tests.conftest import rich_error


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_serves_with_the_emulator_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTGW_")} | {
        "AGENTGW_GRPC_LISTEN": f"127.0.0.1:{grpc_port}",
        "AGENTGW_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "AGENTGW_DB_PATH": str(tmp_path / "ledger.db"),
        "AGENTGW_SHUTDOWN_GRACE_SECONDS": "1",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        env=env,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert proc.stderr is not None
    lines: list[dict[str, object]] = []
    try:
        async with asyncio.timeout(30):
            while not any(line.get("message") == "agentgw serving" for line in lines):
                raw = await proc.stderr.readline()
                assert raw, f"agentgw exited early: {lines}"
                lines.append(json.loads(raw))  # every log line is one JSON object
        assert "emulator" in str(lines[0]["message"])  # the first line says the emulator is in use
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            check = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert check.status == health_pb2.HealthCheckResponse.SERVING
            agents = agent_service_pb2_grpc.AgentServiceStub(channel)  # type: ignore[no-untyped-call]
            llm = agent_pb2.LlmConfig(url="https://llm.example/v1", api_key="k", model="m")
            await agents.CreateAgent(
                agent_service_pb2.CreateAgentRequest(agent=agent_pb2.Agent(agent_id="a1", llm=llm)), timeout=5
            )
            got = await agents.GetAgent(agent_service_pb2.GetAgentRequest(agent_id="a1"), timeout=5)
            assert got.agent.llm.api_key_set
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await proc.wait() == 0
        rest = [json.loads(line) for line in (await proc.stderr.read()).splitlines() if line.strip()]
        messages = [line["message"] for line in lines + rest]
        assert "shutting down" in messages and messages[-1] == "agentgw stopped"
        assert any(line.get("request_id") for line in lines + rest)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_sigterm_ends_open_streams_at_once_with_unavailable_and_the_resume_cursor(
    tmp_path: Path,
) -> None:
    """With a 30 s grace period, SIGTERM still ends a WatchEvents stream at once (not with grpc's
    bare "Cancelling all calls" 30 s later), and the process exits soon after."""
    grpc_port, http_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTGW_")} | {
        "AGENTGW_GRPC_LISTEN": f"127.0.0.1:{grpc_port}",
        "AGENTGW_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "AGENTGW_DB_PATH": str(tmp_path / "ledger.db"),
        "AGENTGW_SHUTDOWN_GRACE_SECONDS": "30",
        "AGENTGW_HEARTBEAT_SECONDS": "0.2",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        env=env,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(30):
            while True:
                raw = await proc.stderr.readline()
                assert raw, "agentgw exited early"
                if json.loads(raw).get("message") == "agentgw serving":
                    break
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            events = event_service_pb2_grpc.EventServiceStub(channel)  # type: ignore[no-untyped-call]
            call = events.WatchEvents(event_service_pb2.WatchEventsRequest())
            heartbeat = None
            async with asyncio.timeout(10):
                async for message in call:
                    heartbeat = message.heartbeat
                    break
            assert heartbeat is not None
            started = asyncio.get_running_loop().time()
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                async with asyncio.timeout(10):
                    async for _ in call:
                        pass
            ended = asyncio.get_running_loop().time() - started
        err = rich_error(failure.value)
        assert err.code == grpc.StatusCode.UNAVAILABLE and err.reason == "SHUTTING_DOWN", err.message
        assert err.get(error_details_pb2.RetryInfo).retry_delay.ToNanoseconds() > 0
        assert err.get(error_details_pb2.ErrorInfo).metadata["resume_after_cursor"] == str(heartbeat.cursor)
        assert ended < 5
        async with asyncio.timeout(15):
            assert await proc.wait() == 0
        rest = [json.loads(line) for line in (await proc.stderr.read()).splitlines() if line.strip()]
        assert not [
            line for line in rest if line.get("levelname", line.get("level")) in ("ERROR", "CRITICAL")
        ]
        assert rest[-1]["message"] == "agentgw stopped"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_settle_heap_freezes_what_is_alive() -> None:
    import gc

    from service.__main__ import settle_heap

    try:
        settle_heap()
        assert gc.get_freeze_count() > 1000  # modules, descriptors... all out of the collector's reach
    finally:
        gc.unfreeze()


async def test_serve_settles_the_heap_once_the_gateway_has_started(monkeypatch: pytest.MonkeyPatch) -> None:
    import service.__main__ as entry

    calls: list[str] = []

    class FakeGateway:
        async def start(self) -> None:
            calls.append("start")

        async def stop(self) -> None:
            calls.append("stop")

    monkeypatch.setattr(entry, "settle_heap", lambda: calls.append("settle"))
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(entry.serve(FakeGateway()))  # type: ignore[arg-type]
    try:
        for _ in range(100):  # bounded: until serve() waits for its signal
            if calls:
                break
            await asyncio.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(task, 5)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    assert calls == ["start", "settle", "stop"]


def test_an_unusable_otel_exporter_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    from service.__main__ import main

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        code = main(
            [
                "--db-path",
                str(tmp_path / "l.db"),
                "--grpc-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ]
        )
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    assert code == 2
    assert "invalid configuration: OTEL_TRACES_EXPORTER: no exporter 'zipkin'" in capsys.readouterr().err
