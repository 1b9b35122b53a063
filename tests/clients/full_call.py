"""A full digital-human call with agentgw_client alone: run by test_wheel.py in a clean venv.

Usage: python full_call.py GRPC_TARGET EMULATOR_URL. Prints one JSON line with what it saw.
Only the standard library and agentgw_client are imported (urllib plays the user via the emulator).
"""

import asyncio
import json
import sys
import urllib.request

from google.protobuf import struct_pb2

import agentgw_client
from agentgw_client import (
    Agent,
    AgentGw,
    CreateSessionRequest,
    DigitalHumanSpec,
    LlmConfig,
    RtcSpec,
    TtsConfig,
)


def user_says(emulator: str, instance_id: str, text: str) -> None:
    body = json.dumps({"text": text}).encode()
    request = urllib.request.Request(
        f"{emulator}/_emulator/instances/{instance_id}/turns", data=body,
        headers={"Content-Type": "application/json"}, method="POST",
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


async def main(target: str, emulator: str) -> None:
    app = struct_pb2.Struct()
    app.update({"appid": "zego_test", "token": "zego_test", "cluster": "volcano_tts"})
    async with AgentGw(target) as gw:
        await gw.agents.create(
            Agent(
                agent_id="wheel-agent",
                llm=LlmConfig(url="https://llm.example/v1/chat/completions", api_key="k", model="m"),
                tts=TtsConfig(vendor="ByteDance", app=app),
            )
        )
        session = await gw.sessions.create(
            CreateSessionRequest(
                agent_id="wheel-agent", user_id="wheel_user",
                digital_human=DigitalHumanSpec(digital_human_id="63c3aa64-1d80-4b04-a0be-1c65614eb7eb"),
                rtc=RtcSpec(room_id="wheel_room", user_stream_id="wheel_user_stream"),
            )
        )  # fmt: skip
        kinds: list[str] = []
        async with asyncio.timeout(30):
            async for event in gw.events.watch(session_ids=[session.session_id], after_cursor=0):
                kind = event.WhichOneof("payload") or "?"
                kinds.append(kind)
                if kind == "created":
                    await asyncio.to_thread(user_says, emulator, session.agent_instance_id, "Hello?")
                if kind == "llm_result":
                    await gw.sessions.end(session.session_id)
    print(json.dumps({"module": agentgw_client.__file__, "kinds": kinds}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
