"""What every scenario needs: the run context, servers per scenario, a live session, profiling."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx

from agentgw_client.gen.agentgw.v1 import session_service_pb2 as sessions_api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as sessions_rpc
from bench.clients import CALLBACK_PATH, PUSH_PATH, callback_body, channel_options
from bench.config import AGENT_ID, APP_ID, RESULTS_DIR, SERVER_SECRET, Params
from bench.processes import PY_SPY, Baseline, Gateway, Processes, start_baseline, start_gateway
from bench.report import Report
from bench.workers import WorkerPool
from service.zego import models as m
from service.zego.client import ZegoClient

__all__ = ["Context", "LiveSession", "baseline", "gateway", "post_until_ready", "profiled", "split"]

_sequence = itertools.count(1_000_000)


@dataclass
class Context:
    """One run."""

    params: Params
    procs: Processes
    emulator_url: str
    workdir: Path
    report: Report
    profile: bool = False
    profiles: list[str] = field(default_factory=list)
    emulator_pid: int | None = None


def split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as possible (no zero shares)."""
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


@contextlib.asynccontextmanager
async def gateway(ctx: Context, name: str, **env: str) -> AsyncIterator[Gateway]:
    """A fresh agentgw for one scenario, stopped at the end, its ledger then deleted.

    Its ledger is ``<workdir>/db-<name>/ledger.db``: new, unless the scenario filled it first.
    """
    db_dir = ctx.workdir / f"db-{name}"
    db_dir.mkdir(exist_ok=True)
    gw = await start_gateway(ctx.procs, ctx.emulator_url, db_dir / "ledger.db", env)
    try:
        yield gw
    finally:
        await ctx.procs.stop(gw.proc)
        shutil.rmtree(db_dir, ignore_errors=True)


@contextlib.asynccontextmanager
async def baseline(ctx: Context, heartbeat_seconds: float = 15.0) -> AsyncIterator[Baseline]:
    """A fresh bare baseline for one scenario."""
    bl = await start_baseline(ctx.procs, heartbeat_seconds)
    try:
        yield bl
    finally:
        await ctx.procs.stop(bl.proc)


async def register_agent(emulator_url: str) -> None:
    """The agent every session uses, registered straight at the emulator."""
    async with ZegoClient(app_id=APP_ID, server_secret=SERVER_SECRET, base_url=emulator_url) as zego:
        await zego.register_agent(
            m.RegisterAgentRequest(
                agent_id=AGENT_ID,
                name="bench",
                llm=m.LLM(url="https://llm.example/v1/chat/completions", api_key="k", model="m"),
                tts=m.TTS(vendor="ByteDance", params={"app": {"appid": "a", "token": "t", "cluster": "c"}}),
            ),
            timeout=10,
        )


@dataclass(frozen=True)
class LiveSession:
    """An ACTIVE session of a gateway: callbacks for its instance are matched to it."""

    session_id: str
    instance_id: str
    agent_user_id: str
    room_id: str

    def body(self, text: str, event: str = "LLMResult") -> bytes:
        return callback_body(
            instance_id=self.instance_id,
            agent_user_id=self.agent_user_id,
            room_id=self.room_id,
            sequence=next(_sequence),
            text=text,
            event=event,
        )


async def create_session(gw: Gateway, user: str = "bench_user") -> LiveSession:
    """CreateSession through agentgw, then ZEGO's AgentInstanceCreated callback (now ACTIVE)."""
    async with grpc.aio.insecure_channel(gw.grpc_target, options=channel_options()) as channel:
        stub = sessions_rpc.SessionServiceStub(channel)
        created = await stub.CreateSession(
            sessions_api.CreateSessionRequest(
                agent_id=AGENT_ID,
                user_id=user,
                voice=sessions_api.VoiceSpec(),
                rtc=sessions_api.RtcSpec(room_id=f"room_{user}", user_stream_id=f"{user}_stream"),
                labels={"team": "bench"},
            ),
            timeout=10,
        )
    s = created.session
    live = LiveSession(s.session_id, s.agent_instance_id, s.agent_user_id, s.room_id)
    async with httpx.AsyncClient(base_url=gw.http_url, timeout=10) as client:
        response = await client.post(CALLBACK_PATH, content=live.body("", "AgentInstanceCreated"))
        response.raise_for_status()
    return live


async def post(client: httpx.AsyncClient, kind: str, body: bytes) -> None:
    """One callback to agentgw, or the same body to the baseline's /push."""
    path = CALLBACK_PATH if kind == "agentgw" else PUSH_PATH
    response = await client.post(path, content=body, headers={"Content-Type": "application/json"})
    if response.status_code != 200:
        raise RuntimeError(f"{kind} {path}: HTTP {response.status_code} {response.text[:200]}")


async def post_until_ready(
    pool: WorkerPool, client: httpx.AsyncClient, kind: str, session: LiveSession, timeout: float = 90.0
) -> list[dict[str, Any]]:
    """Post warm-up events (number -1) until every worker's streams have all received one."""
    ready = asyncio.create_task(pool.ready(timeout))
    while not ready.done():
        await post(client, kind, session.body(f"warmup|-1|{time.time():.6f}"))
        await asyncio.wait({ready}, timeout=0.5)
    readies = ready.result()
    missing = sum(r["streams"] - r["ready"] for r in readies)
    if missing:
        raise RuntimeError(f"{missing} {kind} streams never received a message")
    return readies


async def collect(pool: WorkerPool, drain: float) -> list[dict[str, Any]]:
    """Results of workers that finish by themselves, or after ``stop`` once ``drain`` has passed."""
    task = asyncio.ensure_future(pool.results(drain + 60))
    try:
        return await asyncio.wait_for(asyncio.shield(task), drain)
    except TimeoutError:
        pool.broadcast("stop")
        return await task


@contextlib.asynccontextmanager
async def profiled(ctx: Context, pid: int, name: str) -> AsyncIterator[None]:
    """With ``--profile``: py-spy samples ``pid`` for the block (collapsed stacks under results/)."""
    if not ctx.profile:
        yield
        return
    out = RESULTS_DIR / f"profile-{name}.txt"
    proc = await asyncio.create_subprocess_exec(
        str(PY_SPY),
        "record",
        "--pid",
        str(pid),
        "--rate",
        "250",
        "--format",
        "raw",
        "--output",
        str(out),
        "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await asyncio.sleep(0.5)
        yield
    finally:
        proc.send_signal(2)  # SIGINT: py-spy writes its output and exits
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 20)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        ctx.profiles.append(str(out))
