"""One ledger, one owner, between real processes: two ``python -m service`` on one SQLite file.

Before the lock, the second process reconciled the ledger at start-up against its own (embedded)
emulator, which knew none of the first one's instances, and ended the first one's live sessions.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import struct_pb2

from agentgw_client.gen.agentgw.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc, session_pb2
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as api_grpc
from service.store.lock import lock_path_for
from tests.test_main import free_port


@dataclass
class Agentgw:
    proc: asyncio.subprocess.Process
    grpc_port: int
    lines: list[dict[str, object]] = field(default_factory=list)

    async def read_until(self, message: str, seconds: float = 30) -> None:
        assert self.proc.stderr is not None
        async with asyncio.timeout(seconds):
            while not any(line.get("message") == message for line in self.lines):
                raw = await self.proc.stderr.readline()
                assert raw, f"agentgw exited early: {self.lines}"
                self.lines.append(json.loads(raw))

    async def rest(self) -> list[dict[str, object]]:
        assert self.proc.stderr is not None
        return [json.loads(line) for line in (await self.proc.stderr.read()).splitlines() if line.strip()]


@asynccontextmanager
async def agentgw(db: Path) -> AsyncIterator[Agentgw]:
    grpc_port, http_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTGW_")} | {
        "AGENTGW_GRPC_LISTEN": f"127.0.0.1:{grpc_port}",
        "AGENTGW_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "AGENTGW_DB_PATH": str(db),
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
    try:
        yield Agentgw(proc, grpc_port)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def start_a_session(grpc_port: int) -> str:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        agents = agent_service_pb2_grpc.AgentServiceStub(channel)  # type: ignore[no-untyped-call]
        llm = agent_pb2.LlmConfig(url="https://llm.example/v1", api_key="k", model="m")
        app = struct_pb2.Struct()
        app.update({"appid": "a", "token": "t", "cluster": "c"})
        tts = agent_pb2.TtsConfig(vendor="ByteDance", app=app)
        agent = agent_pb2.Agent(agent_id="a1", llm=llm, tts=tts)
        await agents.CreateAgent(agent_service_pb2.CreateAgentRequest(agent=agent), timeout=5)
        sessions = api_grpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]
        created = await sessions.CreateSession(
            api.CreateSessionRequest(
                agent_id="a1",
                user_id="user_1",
                voice=api.VoiceSpec(),
                rtc=api.RtcSpec(room_id="room_1", user_stream_id="user_1_stream"),
            ),
            timeout=10,
        )
        return str(created.session.session_id)


async def session_state(grpc_port: int, session_id: str) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        sessions = api_grpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]
        got = await sessions.GetSession(api.GetSessionRequest(session_id=session_id), timeout=5)
        return int(got.session.state)


LIVE = {session_pb2.SESSION_STATE_STARTING, session_pb2.SESSION_STATE_ACTIVE}


async def test_a_second_gateway_on_the_same_ledger_refuses_to_start_with_one_line(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    async with agentgw(db) as first:
        await first.read_until("agentgw serving")
        session_id = await start_a_session(first.grpc_port)
        assert await session_state(first.grpc_port, session_id) in LIVE

        async with agentgw(db) as second:
            async with asyncio.timeout(30):
                assert await second.proc.wait() == 1
            lines = await second.rest()
        # Exactly one line, JSON, before anything else started (not even the embedded emulator).
        assert len(lines) == 1, lines
        (line,) = lines
        assert line["level"] == "ERROR" and line["message"] == "cannot start: the ledger is in use"
        assert line["holder_pid"] == first.proc.pid
        assert line["db"] == str(db) and line["lock"] == str(lock_path_for(db))
        assert f"pid {first.proc.pid}" in str(line["error"])

        # The owner noticed nothing: still serving, its session still live (nobody reconciled it).
        assert first.proc.returncode is None
        assert await session_state(first.grpc_port, session_id) in LIVE

        first.proc.send_signal(signal.SIGKILL)
        await first.proc.wait()

    # SIGKILL released the lock: the next process starts on the same ledger and finds the session.
    async with agentgw(db) as third:
        await third.read_until("agentgw serving")
        assert await session_state(third.grpc_port, session_id) is not None
        third.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await third.proc.wait() == 0


async def test_the_lock_is_released_on_a_clean_exit(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    for _ in range(2):  # the second start would be refused if the first had kept the lock
        async with agentgw(db) as gw:
            await gw.read_until("agentgw serving")
            gw.proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(15):
                assert await gw.proc.wait() == 0
    assert lock_path_for(db).read_text() == ""
