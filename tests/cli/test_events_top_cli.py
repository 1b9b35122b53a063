"""`agentgw events tail` (filters, cursors, resuming across a gateway restart) and `agentgw top`."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

from rich.console import Console

from agentgw_client.gen.agentgw.v1 import event_service_pb2 as eapi
from agentgw_client.gen.agentgw.v1 import event_service_pb2_grpc as erpc
from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from agentgw_client.gen.agentgw.v1 import session_service_pb2_grpc as rpc
from service.cli.top import TopModel, render
from service.server import Gateway
from tests.api.sessions_helpers import register_agent, voice_request
from tests.cli.conftest import Wired, invoke
from tests.cli.test_sessions_cli import FAST, SLOW
from tests.conftest import Emulator, eventually, gateway_settings
from tests.test_main import free_port


def lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


async def test_tail_from_oldest_and_from_a_cursor_with_filters(wired: Wired) -> None:
    one = await wired.active_session(voice_request(user="u1", room="r1"))
    two = await wired.active_session(voice_request(user="u2", room="r2", labels={"team": "care"}))
    await wired.turn(one, 1, **FAST)

    first = await wired.run("-o", "json", "events", "tail", "--oldest", "-n", "3")
    assert first.exit_code == 0, first.output
    got = lines(first.stdout)
    assert len(got) == 3 and got[0]["created"]
    cursors = [int(e["cursor"]) for e in got]
    assert cursors == sorted(cursors) and len(set(cursors)) == 3

    after = await wired.run("-o", "json", "events", "tail", "--from-cursor", str(cursors[0]), "-n", "2")
    assert [int(e["cursor"]) for e in lines(after.stdout)] == cursors[1:3]

    only_two = await wired.run("-o", "json", "events", "tail", "--oldest", "-l", "team=care", "-n", "1")
    assert [e["session_id"] for e in lines(only_two.stdout)] == [two.session_id]
    speech = await wired.run(
        "-o",
        "json",
        "events",
        "tail",
        "--oldest",
        "--session",
        one.session_id,
        "--type",
        "asr_result",
        "-n",
        "1",
    )
    [asr] = lines(speech.stdout)
    assert asr["session_id"] == one.session_id and asr["asr_result"]["text"] == "How are you?"

    table = await wired.run("events", "tail", "--oldest", "-n", "1")
    assert f"{cursors[0]:>8}" in table.stdout and "created" in table.stdout


async def test_tail_of_one_session_stops_after_its_end(wired: Wired) -> None:
    session = await wired.active_session(voice_request())
    await wired.turn(session, 1, **FAST)
    await wired.sessions.EndSession(api.EndSessionRequest(session_id=session.session_id))
    result = await wired.run("-o", "json", "events", "tail", "--oldest", "--session", session.session_id)
    assert result.exit_code == 0, result.output
    got = lines(result.stdout)
    assert got[0]["created"] and "ended" in got[-1] and "resuming" not in result.stderr
    assert {e["session_id"] for e in got} == {session.session_id}


async def test_tail_resumes_by_cursor_across_a_gateway_restart(
    emulator: Emulator, tmp_path: Path, database_url: str | None
) -> None:
    port = free_port()
    settings = gateway_settings(
        emulator, tmp_path / "ledger.db", database_url, grpc_listen=f"127.0.0.1:{port}"
    )
    await register_agent(emulator)

    async def start() -> Gateway:
        gw = Gateway(settings)
        await gw.start()
        url = f"http://127.0.0.1:{gw.http_port}/v1/zego/callbacks"
        (await emulator.admin.post("/_emulator/callbacks", json={"url": url})).raise_for_status()
        return gw

    async def turn(channel_port: int, session_id: str, instance_id: str, turns: int) -> None:
        await emulator.admin.post(f"/_emulator/instances/{instance_id}/turns", json={"text": "hi", **FAST})
        import grpc

        async with grpc.aio.insecure_channel(f"127.0.0.1:{channel_port}") as channel:
            stub = rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]
            async with asyncio.timeout(10):
                while (
                    await stub.GetSession(api.GetSessionRequest(session_id=session_id))
                ).session.turn_stats.turns < turns:
                    await asyncio.sleep(0.02)

    first = await start()
    try:
        import grpc

        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = rpc.SessionServiceStub(channel)  # type: ignore[no-untyped-call]
            session = (await stub.CreateSession(voice_request(), timeout=5)).session
        await turn(port, session.session_id, session.agent_instance_id, 1)
        before = await settled_count(port)
        # Until the restart, the tail sees `before` events; after it, one more turn's worth.
        tail = asyncio.create_task(
            invoke(port, "-o", "json", "events", "tail", "--oldest", "-n", str(before + 1))
        )
        await eventually(lambda: len(first.core.bus._subscribers) == 1, seconds=10)
    finally:
        await first.stop()
    second = await start()
    try:
        await turn(port, session.session_id, session.agent_instance_id, 2)
        async with asyncio.timeout(20):
            result = await tail
    finally:
        await second.stop()
    assert result.exit_code == 0, result.output
    cursors = [int(e["cursor"]) for e in lines(result.stdout)]
    assert len(cursors) == before + 1 and cursors == sorted(set(cursors))  # nothing lost, nothing twice
    # One notice per attempt: the break, then any reconnect made while the gateway was still down.
    notices = [line for line in result.stderr.splitlines() if "resuming" in line]
    assert notices and notices[0].startswith("agentgw: the stream broke (")
    assert all(f"resuming after cursor {cursors[before - 1]} in " in line for line in notices)


async def settled_count(port: int) -> int:
    """The number of events once no more arrive (the turn's trailing status events included)."""
    last = -1
    async with asyncio.timeout(10):
        while (count := await count_events(port)) != last:
            last = count
            await asyncio.sleep(0.3)
    return last


async def count_events(port: int) -> int:
    import grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = erpc.EventServiceStub(channel)  # type: ignore[no-untyped-call]
        page = await stub.ListEvents(eapi.ListEventsRequest(page_size=1000), timeout=5)
        return len(page.events)


async def test_top_once_shows_capacity_sessions_and_latency(wired: Wired) -> None:
    session = await wired.active_session(voice_request(labels={"team": "care"}))
    await wired.turn(session, 1, **FAST)
    await wired.turn(session, 2, **SLOW)

    result = await wired.run("top", "--once", "--oldest", "--refresh", "1", columns=160)
    assert result.exit_code == 0, result.output
    frame = result.stdout
    assert "capacity" in frame and "live sessions" in frame
    assert "1/10 in use" in frame and "0/10 in use" in frame
    assert "turns/min 2" in frame and "breaches 1" in frame, frame
    [row] = [line for line in frame.splitlines() if session.session_id in line]
    assert "VOICE" in row and "ACTIVE" in row and "2.20s" in row  # the last turn's latency

    summary = json.loads(
        (await wired.run("-o", "json", "top", "--once", "--oldest", "--refresh", "1")).stdout
    )
    assert summary["turns_per_minute"] == 2 and summary["breaches"] == 1
    assert summary["p50_seconds"] == 1.45 and summary["p95_seconds"] == 2.2
    [live] = summary["sessions"]
    assert live["session_id"] == session.session_id and live["last_turn_seconds"] == 2.2


async def test_top_renders_to_a_recorded_console_from_stream_events(wired: Wired) -> None:
    session = await wired.active_session(voice_request())
    await wired.turn(session, 1, **SLOW)
    import grpc

    model = TopModel()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{wired.port}") as channel:
        events = erpc.EventServiceStub(channel)  # type: ignore[no-untyped-call]
        for event in (await events.ListEvents(eapi.ListEventsRequest(page_size=100))).events:
            model.apply(event)
        model.set_capacity(await wired.sessions.GetCapacity(api.GetCapacityRequest()))
    console = Console(record=True, width=140, color_system="truecolor")
    console.print(render(model, "127.0.0.1:1"))
    styled = console.export_text(clear=False, styles=True)
    text = console.export_text(styles=False)
    assert "voice" in text and "1/10 in use" in text and "free 9" in text
    assert "p95 2.20s" in text and "breaches 1" in text and "budget 1.5s" in text
    assert session.session_id in text and "127.0.0.1:1" in text
    assert "\x1b[1;31m2.20s" in styled  # over the budget: bold red

    # The session's end removes it from the view.
    await wired.sessions.EndSession(api.EndSessionRequest(session_id=session.session_id))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{wired.port}") as channel:
        events = erpc.EventServiceStub(channel)  # type: ignore[no-untyped-call]
        async with asyncio.timeout(10):
            while session.session_id in model.sessions:
                page = await events.ListEvents(eapi.ListEventsRequest(page_size=100, after_cursor=0))
                for event in page.events:
                    if event.WhichOneof("payload") == "ended":
                        model.apply(event)
                await asyncio.sleep(0.05)
    assert model.summary()["sessions"] == []


async def test_top_live_loop_follows_new_events_as_they_arrive(wired: Wired) -> None:
    before = await wired.active_session(voice_request(user="u1", room="r1"))
    # The view starts with one live session; a second one and its slow turn arrive while it runs.
    view = asyncio.create_task(wired.run("top", "-n", "30", "--refresh", "0.2", columns=160))
    await asyncio.sleep(0.5)
    later = await wired.active_session(voice_request(user="u2", room="r2"))
    await wired.turn(later, 1, **SLOW)
    async with asyncio.timeout(30):
        result = await view
    assert result.exit_code == 0, result.output
    frame = result.stdout  # off a terminal, Rich's Live prints the last frame when it stops
    assert before.session_id in frame and later.session_id in frame
    assert "2/10 in use" in frame and "breaches 1" in frame and "turns/min 1" in frame
    [row] = [line for line in frame.splitlines() if later.session_id in line]
    assert "2.20s" in row


def _read_pty(fd: int, until: bytes, seconds: float) -> bytes:
    """Read a pseudo-terminal's output until ``until`` shows up, the child closes it, or time is up."""
    import select
    import time

    out = b""
    deadline = time.monotonic() + seconds
    while until not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed its side
                break
            if not chunk:
                break
            out += chunk
    return out


async def test_top_full_screen_in_a_terminal_until_ctrl_c(wired: Wired) -> None:
    import fcntl
    import pty
    import sys
    import termios

    session = await wired.active_session(voice_request())
    master, slave = pty.openpty()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTGW_")}
    env |= {"COLUMNS": "140", "LINES": "40", "TERM": "xterm-256color"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service.cli",
        "--target",
        f"127.0.0.1:{wired.port}",
        "top",
        "--refresh",
        "0.2",
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
        # In its new session, make the pty its controlling terminal, so Ctrl-C reaches it as SIGINT.
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    os.close(slave)
    try:
        shown = await asyncio.to_thread(_read_pty, master, b"1/10 in use", 20)
        assert b"\x1b[?1049h" in shown  # the alternate screen: full-screen, the shell's screen kept
        text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", shown).decode(errors="replace")
        assert "live sessions" in text and "1/10 in use" in text and session.session_id in text, text
        os.write(master, b"\x03")  # Ctrl-C, through the terminal's line discipline
        async with asyncio.timeout(15):
            rest = await asyncio.gather(asyncio.to_thread(_read_pty, master, b"\x1b[?1049l", 15), proc.wait())
        assert rest[1] == 0
        assert b"\x1b[?1049l" in rest[0]  # the shell's screen is restored
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        os.close(master)
