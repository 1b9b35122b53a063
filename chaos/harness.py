"""One scenario's world: the journaled emulator and agentgw as separate processes, and the clients.

A :class:`World` has one emulator process (kept for the whole scenario: it is ZEGO, and ZEGO does
not restart with us) and one agentgw at a time on fixed loopback ports and one ledger file, so a
restarted gateway is the same deployment: same callback URL, same gRPC target, same ledger.
Processes come from ``bench.processes`` (own process group, killed on exit, on SIGINT/SIGTERM of
the orchestrator and when it dies).

The clients behave as a well-written caller would: every create has a ``request_id`` and its own
room, and is retried with the same ``request_id`` on a retryable answer (UNAVAILABLE,
DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, a dead gateway) until its deadline; ends are retried the
same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
from google.protobuf import duration_pb2, struct_pb2

from agentgw_client.gen.agentgw.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc, session_pb2
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as api_grpc
from bench.config import APP_ID, CALLBACK_SECRET, SERVER_SECRET
from bench.processes import Proc, Processes, free_port
from chaos.measure import Acked
from zego_emulator import EmulatorClient

__all__ = ["Intent", "World", "open_world"]

AGENT_ID = "chaos-agent"
READY_SECONDS = 30.0
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,  # the gateway died under the call
    }
)
LIVE = frozenset({session_pb2.SESSION_STATE_STARTING, session_pb2.SESSION_STATE_ACTIVE})
NON_TERMINAL = frozenset(
    {
        session_pb2.SESSION_STATE_PENDING,
        session_pb2.SESSION_STATE_STARTING,
        session_pb2.SESSION_STATE_ACTIVE,
        session_pb2.SESSION_STATE_ENDING,
    }
)


def channel_options() -> list[tuple[str, int]]:
    # A restarted gateway must be found at once, not after gRPC's default backoff (up to 120 s).
    return [
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 300),
        ("grpc.use_local_subchannel_pool", 1),
    ]


@dataclass
class Intent:
    """One thing a client wants created, with what happened to it."""

    n: int
    scenario: str
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    attempts: int = 0
    acked: Acked | None = None
    final_state: str = ""
    """The session state of the final OK answer (e.g. FAILED after a retry), or ''."""
    error: str = ""
    """The final error code name when no OK answer came."""
    retried_into_failed: bool = False
    """A retry of a retryable failure was answered with the stored FAILED session (§6 of issue 16)."""

    @property
    def room_id(self) -> str:
        return f"chaos_{self.scenario}_{self.n}"

    @property
    def user_id(self) -> str:
        return f"u_{self.n}"


@dataclass
class World:
    """The processes and clients of one scenario."""

    name: str
    procs: Processes
    workdir: Path
    emulator: Proc
    emulator_url: str
    grpc_port: int
    http_port: int
    db_path: Path
    cap: int
    gateway_env: dict[str, str]
    admin: httpx.AsyncClient
    channel: grpc.aio.Channel
    gateway: Proc | None = None
    starts: int = 0

    @property
    def sessions(self) -> api_grpc.SessionServiceStub:
        return api_grpc.SessionServiceStub(self.channel)

    @property
    def zego(self) -> EmulatorClient:
        """The emulator's own client, over the world's admin connection (``/_chaos/`` is ours)."""
        return EmulatorClient(self.emulator_url, app_id=APP_ID, server_secret=SERVER_SECRET, http=self.admin)

    # -- the gateway ------------------------------------------------------------------------------

    async def start_gateway(self) -> None:
        """Start agentgw on the world's ports and ledger; wait until /readyz says so."""
        env = {
            "AGENTGW_ZEGO_APP_ID": str(APP_ID),
            "AGENTGW_ZEGO_SERVER_SECRET": SERVER_SECRET,
            "AGENTGW_ZEGO_CALLBACK_SECRET": CALLBACK_SECRET,
            "AGENTGW_ZEGO_API_BASE": self.emulator_url,
            "AGENTGW_ZEGO_RATE_PER_SECOND": "200",
            "AGENTGW_ZEGO_TIMEOUT_SECONDS": "2",
            "AGENTGW_GRPC_LISTEN": f"127.0.0.1:{self.grpc_port}",
            "AGENTGW_HTTP_LISTEN": f"127.0.0.1:{self.http_port}",
            "AGENTGW_DB_PATH": str(self.db_path),
            "AGENTGW_VOICE_LIMIT": str(self.cap),
            "AGENTGW_DIGITAL_HUMAN_LIMIT": str(self.cap),
            "AGENTGW_SHUTDOWN_GRACE_SECONDS": "2",
            "AGENTGW_END_CONFIRM_SECONDS": "0.5",
            "AGENTGW_HEARTBEAT_SECONDS": "1",
            "AGENTGW_LOG_LEVEL": "INFO",
            **self.gateway_env,
        }
        self.starts += 1
        proc = await self.procs.spawn(f"{self.name}-agentgw{self.starts}", ["-m", "service"], env=env)
        self.gateway = proc
        deadline = time.monotonic() + READY_SECONDS
        url = f"http://127.0.0.1:{self.http_port}/readyz"
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"agentgw exited with {proc.process.returncode}:\n{proc.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                async with httpx.AsyncClient(timeout=1.0, trust_env=False) as client:
                    if (await client.get(url)).status_code == 200:
                        return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"agentgw not ready after {READY_SECONDS:.0f} s:\n{proc.log_tail()}")

    async def stop_gateway(self, sig: signal.Signals) -> int | None:
        """Send ``sig`` to agentgw (SIGKILL: no warning at all) and wait for it; its exit code."""
        proc, self.gateway = self.gateway, None
        if proc is None:
            return None
        return await self.procs.signal_and_wait(proc, sig)

    # -- the emulator's view ----------------------------------------------------------------------

    async def emulator_json(self, method: str, path: str, body: Any = None) -> Any:
        response = await self.admin.request(method, path, json=body)
        response.raise_for_status()
        return response.json()

    async def running(self) -> list[str]:
        state = await self.zego.state()
        return [str(i["AgentInstanceId"]) for i in state["instances"]]

    async def leave(self, intent: Intent) -> None:
        """The intent's user leaves its room (ZEGO's MaxIdleTime starts counting)."""
        await self.zego.set_room_user(intent.room_id, intent.user_id, present=False)

    def save_journal(self, calls: list[dict[str, Any]], callbacks: list[dict[str, Any]]) -> Path:
        """Keep ZEGO's journal beside the ledger (``--workdir`` keeps both), to trace any number."""
        path = self.workdir / "zego-journal.json"
        path.write_text(json.dumps({"calls": calls, "callbacks": callbacks}, indent=1) + "\n")
        return path

    async def calls(self) -> list[dict[str, Any]]:
        return list((await self.emulator_json("GET", "/_chaos/journal"))["calls"])

    async def callbacks(self) -> list[dict[str, Any]]:
        return list((await self.emulator_json("GET", "/_chaos/callbacks"))["callbacks"])

    async def fault(self, action: str, *, count: int = 1, **spec: Any) -> None:
        """An emulator fault (``code``, ``mode`` timeout/drop, ``latency_ms``) or a chaos one
        (``mode`` lose_answer/http_503)."""
        if spec.get("mode") in ("lose_answer", "http_503"):
            await self.emulator_json("POST", "/_chaos/faults", {"action": action, "count": count, **spec})
        else:
            await self.zego.fault(action, count=count, **spec)

    async def clear_faults(self) -> None:
        await self.zego.clear_faults()
        await self.emulator_json("DELETE", "/_chaos/faults")

    # -- the gateway's view and the clients -------------------------------------------------------

    async def register_agent(self) -> None:
        agents = agent_service_pb2_grpc.AgentServiceStub(self.channel)
        app = struct_pb2.Struct()
        app.update({"appid": "a", "token": "t", "cluster": "c"})
        agent = agent_pb2.Agent(
            agent_id=AGENT_ID,
            llm=agent_pb2.LlmConfig(url="https://llm.example/v1", api_key="k", model="m"),
            tts=agent_pb2.TtsConfig(vendor="ByteDance", app=app),
        )
        await agents.CreateAgent(agent_service_pb2.CreateAgentRequest(agent=agent), timeout=10)

    def create_request(self, intent: Intent, *, events: bool = False, idle_seconds: int = 0) -> Any:
        request = api.CreateSessionRequest(
            agent_id=AGENT_ID,
            user_id=intent.user_id,
            voice=api.VoiceSpec(),
            rtc=api.RtcSpec(room_id=intent.room_id, user_stream_id=f"{intent.user_id}_s"),
            labels={"chaos": intent.scenario},
            request_id=intent.request_id,
        )
        if events:
            request.callback_config.CopyFrom(
                api.CallbackConfig(
                    asr_result=True,
                    llm_result=True,
                    interrupted=True,
                    user_speak_action=True,
                    agent_instance_status=True,
                )
            )
        if idle_seconds:
            request.advanced_config.max_idle_time.CopyFrom(duration_pb2.Duration(seconds=idle_seconds))
        return request

    async def create(self, intent: Intent, *, deadline_seconds: float, **options: Any) -> Intent:
        """CreateSession, retried with the same request_id on retryable answers until the deadline."""
        request = self.create_request(intent, **options)
        deadline = time.monotonic() + deadline_seconds
        retried = False
        while True:
            intent.attempts += 1
            try:
                answer = await self.sessions.CreateSession(request, timeout=8)
            except grpc.aio.AioRpcError as e:
                intent.error = e.code().name
                if e.code() in RETRYABLE and time.monotonic() < deadline:
                    retried = True
                    await asyncio.sleep(0.2)
                    continue
                return intent
            session = answer.session
            intent.error = ""
            intent.final_state = session_pb2.SessionState.Name(session.state)
            if session.state in LIVE and session.agent_instance_id:
                intent.acked = Acked(session.session_id, session.agent_instance_id, intent.room_id)
            elif retried:
                intent.retried_into_failed = True
            return intent

    async def end(self, session_id: str, *, deadline_seconds: float) -> str:
        """EndSession, retried until it answers or the deadline passes; the final state or error."""
        deadline = time.monotonic() + deadline_seconds
        while True:
            try:
                answer = await self.sessions.EndSession(
                    api.EndSessionRequest(session_id=session_id), timeout=8
                )
                return session_pb2.SessionState.Name(answer.session.state)
            except grpc.aio.AioRpcError as e:
                # FAILED_PRECONDITION: still PENDING (being created); retry like UNAVAILABLE.
                retry = e.code() in RETRYABLE or e.code() is grpc.StatusCode.FAILED_PRECONDITION
                if not retry or time.monotonic() >= deadline:
                    return e.code().name
                await asyncio.sleep(0.3)

    async def list_sessions(self) -> list[dict[str, Any]]:
        """Every session in the ledger (ListSessions, all pages)."""
        rows: list[dict[str, Any]] = []
        token = ""
        for _ in range(1000):  # bounded: 1000 pages of 1000
            answer = await self.sessions.ListSessions(
                api.ListSessionsRequest(page_size=1000, page_token=token), timeout=10
            )
            rows.extend(_row(s) for s in answer.sessions)
            token = answer.next_page_token
            if not token:
                break
        return rows


def _row(s: Any) -> dict[str, Any]:
    return {
        "session_id": s.session_id,
        "state": session_pb2.SessionState.Name(s.state),
        "live": s.state in NON_TERMINAL,
        "room_id": s.room_id,
        "agent_user_id": s.agent_user_id,
        "instance_id": s.agent_instance_id,
        "possible_leak": s.possible_leak,
        "end_reason": session_pb2.EndReason.Name(s.end_reason),
        "request_id": s.request_id,
        "end_time": s.end_time.seconds + s.end_time.nanos / 1e9 if s.HasField("end_time") else None,
    }


@contextlib.asynccontextmanager
async def open_world(
    name: str,
    procs: Processes,
    root: Path,
    *,
    cap: int,
    time_scale: float,
    auto_turn_interval: float | None = None,
    gateway_env: Mapping[str, str] | None = None,
) -> Any:
    """Start the emulator (callbacks to the world's fixed HTTP port) and yield the world (no
    gateway yet); everything is stopped on exit."""
    workdir = root / name
    workdir.mkdir(parents=True, exist_ok=True)
    grpc_port, http_port, emulator_port = free_port(), free_port(), free_port()
    args = [
        "-m", "chaos.emulator", "--port", str(emulator_port), "--cap", str(cap),
        "--time-scale", str(time_scale),
        "--callback-url", f"http://127.0.0.1:{http_port}/v1/zego/callbacks",
    ]  # fmt: skip
    if auto_turn_interval is not None:
        args += ["--auto-turn-interval", str(auto_turn_interval)]
    emulator = await procs.spawn(f"{name}-emulator", args)
    url = f"http://127.0.0.1:{emulator_port}"
    admin = httpx.AsyncClient(base_url=url, timeout=10, trust_env=False)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}", options=channel_options())
    world = World(
        name, procs, workdir, emulator, url, grpc_port, http_port, workdir / "ledger.db", cap,
        dict(gateway_env or {}), admin, channel,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            if not emulator.alive():
                raise RuntimeError(f"emulator exited:\n{emulator.log_tail()}")
            try:
                await world.zego.state()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        yield world
    finally:
        await channel.close()
        await admin.aclose()
        if world.gateway is not None:
            await world.stop_gateway(signal.SIGTERM)
        await procs.stop(emulator)
