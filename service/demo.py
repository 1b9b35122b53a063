"""``make demo``: a live digital-human call on the bundled emulator, its events printed as they come.

It starts a gateway (with its emulator) in this process on free loopback ports, registers an agent,
lists the digital humans the app may use and picks one (with its voices), starts a digital-human
session, watches the session's event stream, has the simulated user speak a few times (the
emulator's admin client plays the user), makes the agent speak once through the API, ends the
session, and prints the session's turn latency. Nothing here is needed in production: it is a tour
of the API.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import grpc
from google.protobuf import struct_pb2

from agentgw_client.gen.agentgw.v1 import (
    agent_pb2,
    agent_service_pb2,
    agent_service_pb2_grpc,
    digital_human_service_pb2_grpc,
    event_service_pb2_grpc,
    session_service_pb2_grpc,
)
from agentgw_client.gen.agentgw.v1 import digital_human_service_pb2 as dapi
from agentgw_client.gen.agentgw.v1 import event_service_pb2 as eapi
from agentgw_client.gen.agentgw.v1 import session_event_pb2 as epb
from agentgw_client.gen.agentgw.v1 import session_pb2 as spb
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as sapi
from service.config import load_settings
from service.logs import configure_logging
from service.server import Gateway
from zego_emulator import EmulatorClient

AVATAR = "63c3aa64-1d80-4b04-a0be-1c65614eb7eb"  # ZEGO's public test digital human, preferred if listed
UTTERANCES = ("Hello, who are you?", "What can you do for me?", "Thanks, goodbye!")


def describe(event: epb.SessionEvent) -> str:
    """One line per event: cursor, round, type and what it says."""
    kind = event.WhichOneof("payload") or "?"
    detail = {
        "user_speech": lambda: epb.UserSpeechAction.Name(event.user_speech.action),
        "asr_result": lambda: repr(event.asr_result.text),
        "llm_result": lambda: repr(event.llm_result.text),
        "agent_status": lambda: epb.AgentState.Name(event.agent_status.status),
        "interrupted": lambda: epb.InterruptReason.Name(event.interrupted.reason),
        "ended": lambda: (
            f"{spb.EndReason.Name(event.ended.reason)} zego_code={event.ended.zego_code}"
            f" synthesized={event.ended.synthesized}"
            f" ZEGO TotalCost avg={event.ended.latency.total_cost_ms} ms"
        ),
        "latency_budget_exceeded": lambda: f"{event.latency_budget_exceeded.latency_seconds:.2f}s",
    }.get(kind, lambda: "")()
    return f"  #{event.cursor:<5} round {event.round:<12} {kind:<24} {detail}"


async def watch(
    stub: event_service_pb2_grpc.EventServiceAsyncStub, session_id: str, idle: asyncio.Queue[None]
) -> None:
    """Print the session's events until its ``ended`` event closes the stream.

    ``idle`` gets an item whenever the agent goes IDLE after speaking: a turn is over.
    """
    request = eapi.WatchEventsRequest(filter=eapi.EventFilter(session_ids=[session_id]))
    spoke = False
    async for message in stub.WatchEvents(request):
        if not message.HasField("event"):
            continue
        event = message.event
        print(describe(event), flush=True)
        if event.HasField("agent_status"):
            if event.agent_status.status == epb.AGENT_STATE_SPEAKING:
                spoke = True
            elif event.agent_status.status == epb.AGENT_STATE_IDLE and spoke:
                spoke = False
                idle.put_nowait(None)


async def turn_over(idle: asyncio.Queue[None]) -> None:
    """Wait (at most 30 s) until the agent has finished speaking, so the user does not barge in."""
    await asyncio.wait_for(idle.get(), timeout=30)


async def pick_avatar(stub: digital_human_service_pb2_grpc.DigitalHumanServiceAsyncStub) -> str:
    """List the digital humans (every page), print them, and pick ZEGO's public test avatar if present."""
    avatars: list[dapi.DigitalHuman] = []
    token = ""
    for _ in range(50):  # bounded: 50 pages of 20 is far more than any catalogue
        page = await stub.ListDigitalHumans(dapi.ListDigitalHumansRequest(page_token=token), timeout=10)
        avatars += page.digital_humans
        token = page.next_page_token
        if not token:
            break
    print(f"{len(avatars)} digital humans available:")
    for avatar in avatars:
        kind = "public" if avatar.public else "private"
        print(f"  {avatar.digital_human_id}  {kind:<7}  {avatar.name}")
    chosen = next((a for a in avatars if a.digital_human_id == AVATAR), avatars[0]).digital_human_id
    details = (
        await stub.GetDigitalHuman(dapi.GetDigitalHumanRequest(digital_human_id=chosen), timeout=10)
    ).digital_human
    voices = (await stub.ListVoices(dapi.ListVoicesRequest(), timeout=10)).voices
    actions = ", ".join(a.name for a in details.actions) or "none"
    print(f"picked {details.name!r} ({chosen}); actions: {actions}; {len(voices)} public voices")
    return chosen


async def tour(gateway: Gateway) -> None:
    """The call itself, as a client would make it."""
    emulator = EmulatorClient(gateway.zego_base_url, timeout=10)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel, emulator:
        agents = agent_service_pb2_grpc.AgentServiceStub(channel)
        sessions = session_service_pb2_grpc.SessionServiceStub(channel)
        events = event_service_pb2_grpc.EventServiceStub(channel)
        app = struct_pb2.Struct()
        app.update({"appid": "zego_test", "token": "zego_test", "cluster": "volcano_tts"})
        agent = agent_pb2.Agent(
            agent_id="demo-agent",
            display_name="Demo",
            llm=agent_pb2.LlmConfig(
                url="https://llm.example/v1/chat/completions", api_key="demo", model="demo"
            ),
            tts=agent_pb2.TtsConfig(vendor="ByteDance", app=app),
        )
        await agents.CreateAgent(agent_service_pb2.CreateAgentRequest(agent=agent), timeout=10)
        print("registered agent demo-agent")
        avatar_id = await pick_avatar(digital_human_service_pb2_grpc.DigitalHumanServiceStub(channel))
        session = (
            await sessions.CreateSession(
                sapi.CreateSessionRequest(
                    agent_id="demo-agent",
                    user_id="demo_user",
                    digital_human=sapi.DigitalHumanSpec(digital_human_id=avatar_id),
                    rtc=sapi.RtcSpec(room_id="demo_room", user_stream_id="demo_user_stream"),
                    labels={"demo": "yes"},
                ),
                timeout=10,
            )
        ).session
        avatar = session.digital_human_config.digital_human_id
        print(f"session {session.session_id}: instance {session.agent_instance_id}, avatar {avatar}")
        idle: asyncio.Queue[None] = asyncio.Queue()
        watcher = asyncio.create_task(watch(events, session.session_id, idle))
        await asyncio.sleep(0.5)
        for text in UTTERANCES:
            print(f"the user says {text!r}")
            await emulator.user_turn(session.agent_instance_id, text)
            await turn_over(idle)
        spoken = await sessions.Speak(
            sapi.SpeakRequest(session_id=session.session_id, text="Goodbye from the API!"), timeout=10
        )
        print(f"Speak -> round {spoken.round}")
        await turn_over(idle)
        await sessions.EndSession(sapi.EndSessionRequest(session_id=session.session_id), timeout=10)
        await asyncio.wait_for(watcher, timeout=15)
        stats = (
            await sessions.GetSession(sapi.GetSessionRequest(session_id=session.session_id), timeout=10)
        ).session.turn_stats
        print(
            f"turns={stats.turns} p50={stats.p50_latency_seconds:.2f}s p95={stats.p95_latency_seconds:.2f}s "
            f"max={stats.max_latency_seconds:.2f}s over budget={stats.budget_breaches}"
            f" (budget {stats.budget_seconds}s)"
        )


async def main() -> int:
    """Run the tour against an in-process gateway with its emulator."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            [
                "--grpc-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
                "--db-path",
                str(Path(tmp) / "demo.db"),
            ],
            environ={},
        )
        async with Gateway(settings) as gateway:
            print(f"gateway on 127.0.0.1:{gateway.grpc_port} (gRPC), emulator at {gateway.zego_base_url}")
            await tour(gateway)
    return 0


if __name__ == "__main__":
    configure_logging("WARNING")
    sys.exit(asyncio.run(main()))
