"""``python -m bench.worker KIND SPEC_JSON``: one load-generating process.

Kinds: ``unary``, ``upstream``, ``sender``, ``replay`` (here) and ``watch`` (bench.watcher).
Each connects, warms up, says ``ready``, waits for ``go``, runs bounded by a count and a time,
and prints one ``result`` line. A worker never outlives ``max_seconds``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
import uuid
from collections import Counter
from typing import Any

import grpc
import httpx

from agentgw_client.gen.agentgw.v1 import session_service_pb2 as sessions_api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as sessions_rpc
from bench.clients import (
    CALLBACK_PATH,
    PUSH_PATH,
    callback_body,
    channel_options,
    event_text,
    replay_count,
    unary_caller,
)
from bench.config import AGENT_ID, APP_ID, SERVER_SECRET
from bench.control import Control, emit
from service.zego import models as m
from service.zego.client import ZegoClient

Spec = dict[str, Any]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 4)


async def unary(spec: Spec, ctl: Control) -> None:
    """Closed-loop unary calls at ``concurrency`` for ``seconds`` or ``max_calls``."""
    async with grpc.aio.insecure_channel(spec["target"], options=channel_options()) as channel:
        await asyncio.wait_for(channel.channel_ready(), 10)
        call = unary_caller(channel, spec["kind"], spec.get("session_id", ""))
        for _ in range(spec.get("warmup", 100)):
            await call()
        emit({"event": "ready"})
        await ctl.wait("go", 120)
        latencies: list[float] = []
        errors: Counter[str] = Counter()
        budget = [int(spec["max_calls"])]
        deadline = time.perf_counter() + float(spec["seconds"])

        async def loop() -> None:
            while budget[0] > 0 and time.perf_counter() < deadline:
                budget[0] -= 1
                started = time.perf_counter()
                try:
                    await call()
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] += 1
                    continue
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(int(spec["concurrency"]))))
        elapsed = time.perf_counter() - started
    emit(
        {
            "event": "result",
            "count": len(latencies),
            "elapsed": elapsed,
            "errors": dict(errors),
            "latencies_ms": [_ms(x) for x in latencies],
        }
    )


def _session_request(user: str) -> sessions_api.CreateSessionRequest:
    return sessions_api.CreateSessionRequest(
        agent_id=AGENT_ID,
        user_id=user,
        voice=sessions_api.VoiceSpec(),
        rtc=sessions_api.RtcSpec(room_id=f"room_{user}", user_stream_id=f"{user}_stream"),
        request_id=uuid.uuid4().hex,
    )


async def upstream(spec: Spec, ctl: Control) -> None:
    """Create-then-end pairs, through agentgw (``mode=agentgw``) or straight at the emulator."""
    prefix = spec["prefix"]
    numbers = itertools.count()
    pairs: list[tuple[float, float]] = []
    errors: Counter[str] = Counter()
    if spec["mode"] == "agentgw":
        channel = grpc.aio.insecure_channel(spec["target"], options=channel_options())
        stub = sessions_rpc.SessionServiceStub(channel)

        async def pair() -> tuple[float, float]:
            user = f"{prefix}_{next(numbers)}"
            t0 = time.perf_counter()
            created = await stub.CreateSession(_session_request(user), timeout=10)
            t1 = time.perf_counter()
            ended = sessions_api.EndSessionRequest(session_id=created.session.session_id)
            await stub.EndSession(ended, timeout=10)
            return t1 - t0, time.perf_counter() - t1

        close: Any = channel.close
    else:
        zego = ZegoClient(
            app_id=APP_ID, server_secret=SERVER_SECRET, base_url=spec["emulator_url"], rate_per_second=1e6
        )

        async def pair() -> tuple[float, float]:
            user = f"{prefix}_{next(numbers)}"
            rtc = m.RTC(
                room_id=f"room_{user}",
                agent_stream_id=f"ag_{user}_main",
                agent_user_id=f"ag_{user}",
                user_stream_id=f"{user}_stream",
            )
            t0 = time.perf_counter()
            data = await zego.create_agent_instance(
                m.CreateAgentInstanceRequest(agent_id=AGENT_ID, user_id=user, rtc=rtc), timeout=10
            )
            t1 = time.perf_counter()
            await zego.delete_agent_instance(
                m.DeleteAgentInstanceRequest(agent_instance_id=data.agent_instance_id), timeout=10
            )
            return t1 - t0, time.perf_counter() - t1

        close = zego.aclose
    for _ in range(spec.get("warmup", 20)):
        await pair()
    emit({"event": "ready"})
    await ctl.wait("go", 120)
    budget = [int(spec["pairs"])]
    deadline = time.perf_counter() + float(spec["seconds"])

    async def loop() -> None:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            try:
                pairs.append(await pair())
            except Exception as exc:
                errors[type(exc).__name__] += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(int(spec["concurrency"]))))
    elapsed = time.perf_counter() - started
    await close()
    emit(
        {
            "event": "result",
            "elapsed": elapsed,
            "errors": dict(errors),
            "create_ms": [_ms(c) for c, _ in pairs],
            "end_ms": [_ms(e) for _, e in pairs],
        }
    )


async def sender(spec: Spec, ctl: Control) -> None:
    """POST signed LLMResult callbacks (agentgw) or the same bodies to /push (bare), flat out.

    Each of the ``concurrency`` loops has its own client and connection: one shared httpx pool
    slows down sharply with many requests waiting on it, and would measure httpx, not the server.
    """
    path = CALLBACK_PATH if spec["kind"] == "agentgw" else PUSH_PATH
    statuses: Counter[str] = Counter()
    accepted = [0]
    numbers = itertools.count()
    budget = int(spec["max_count"])
    clients = [
        httpx.AsyncClient(base_url=spec["url"], limits=httpx.Limits(max_connections=1), timeout=30)
        for _ in range(int(spec["concurrency"]))
    ]
    emit({"event": "ready"})
    await ctl.wait("go", 120)
    deadline = time.perf_counter() + float(spec["seconds"])

    async def loop(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            number = next(numbers)
            if number >= budget:
                return
            body = callback_body(
                instance_id=spec["instance_id"],
                agent_user_id=spec["agent_user_id"],
                room_id=spec["room_id"],
                sequence=int(spec["seq_base"]) + number,
                text=event_text(spec["tag"], number, time.time()),
            )
            try:
                response = await client.post(path, content=body, headers={"Content-Type": "application/json"})
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
                continue
            statuses[str(response.status_code)] += 1
            if response.status_code == 200 and (path == PUSH_PATH or b'"accepted"' in response.content):
                accepted[0] += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop(client) for client in clients))
    elapsed = time.perf_counter() - started
    await asyncio.gather(*(client.aclose() for client in clients))
    emit({"event": "result", "accepted": accepted[0], "elapsed": elapsed, "statuses": dict(statuses)})


async def replay(spec: Spec, ctl: Control) -> None:
    """One resuming subscriber: count ``count`` replayed events, timed from the call."""
    async with grpc.aio.insecure_channel(spec["target"], options=channel_options()) as channel:
        await asyncio.wait_for(channel.channel_ready(), 10)
        payload = bytes.fromhex(spec.get("payload_hex", ""))
        emit({"event": "ready"})
        await ctl.wait("go", 120)
        started = time.perf_counter()
        received = await replay_count(
            channel, spec["kind"], int(spec["count"]), payload, int(spec.get("max_batch_size", 0))
        )
        elapsed = time.perf_counter() - started
    emit({"event": "result", "received": received, "elapsed": elapsed})


async def _main(kind: str, spec: Spec) -> None:
    ctl = Control()
    if kind == "watch":
        from bench.watcher import watch_worker

        runner = watch_worker(spec, ctl)
    else:
        runner = {"unary": unary, "upstream": upstream, "sender": sender, "replay": replay}[kind](spec, ctl)
    await asyncio.wait_for(runner, float(spec.get("max_seconds", 300)))


def main() -> None:
    kind, spec = sys.argv[1], json.loads(sys.argv[2])
    asyncio.run(_main(kind, spec))


if __name__ == "__main__":
    main()
