"""`agentgw sessions list | show | end` and `agentgw capacity` against a real gateway."""

from __future__ import annotations

import asyncio
import json

from agentgw_client.gen.agentgw.v1 import session_service_pb2 as api
from tests.api.sessions_helpers import voice_request
from tests.cli.conftest import Wired

# 300 + 1500 + 400 emulated ms from SPEAK_END to SPEAKING: 2.2 s, over the 1.5 s budget.
SLOW = {"asr_ms": 300, "llm_ttft_ms": 1500, "tts_first_frame_ms": 400}
FAST = {"asr_ms": 200, "llm_ttft_ms": 300, "tts_first_frame_ms": 200}


async def test_list_filters_pages_and_prints_json_and_a_table(wired: Wired) -> None:
    care = await wired.active_session(voice_request(user="u1", room="r1", labels={"team": "care"}))
    sales = await wired.active_session(voice_request(user="u2", room="r2", labels={"team": "sales"}))

    result = await wired.run("-o", "json", "sessions", "list", "--state", "active")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert {s["session_id"] for s in listed["sessions"]} == {care.session_id, sales.session_id}
    assert all(s["state"] == "SESSION_STATE_ACTIVE" for s in listed["sessions"])

    result = await wired.run("-o", "json", "sessions", "list", "-l", "team=care")
    assert [s["session_id"] for s in json.loads(result.stdout)["sessions"]] == [care.session_id]
    result = await wired.run("-o", "json", "sessions", "list", "--room", "r2")
    assert [s["session_id"] for s in json.loads(result.stdout)["sessions"]] == [sales.session_id]
    result = await wired.run("-o", "json", "sessions", "list", "--state", "ended")
    assert json.loads(result.stdout)["sessions"] == []

    # Paged: one per page, the second page from the first page's token.
    first = json.loads((await wired.run("-o", "json", "sessions", "list", "--page-size", "1")).stdout)
    assert len(first["sessions"]) == 1 and first["next_page_token"]
    second = json.loads(
        (
            await wired.run(
                "-o", "json", "sessions", "list", "--page-size", "1", "--page-token", first["next_page_token"]
            )
        ).stdout
    )
    assert {first["sessions"][0]["session_id"], second["sessions"][0]["session_id"]} == {
        care.session_id,
        sales.session_id,
    }

    table = await wired.run("sessions", "list", "--page-size", "1")
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["SESSION", "KIND", "STATE", "AGENT", "USER", "ROOM", "AGE"]
    assert "VOICE" in lines[1] and "ACTIVE" in lines[1]
    assert lines[-1].startswith("more: --page-token ")

    yaml_out = await wired.run("-o", "yaml", "sessions", "list", "-l", "team=sales")
    assert f"session_id: {sales.session_id}" in yaml_out.stdout


async def test_show_is_a_timeline_with_turn_latencies_and_budget_breaches(wired: Wired) -> None:
    session = await wired.active_session(voice_request())
    await wired.turn(session, 1, **FAST)
    await wired.turn(session, 2, **SLOW)

    result = await wired.run("-o", "json", "sessions", "show", session.session_id)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["session"]["session_id"] == session.session_id
    assert [t["to_state"] for t in shown["transitions"]] == [
        "SESSION_STATE_PENDING",
        "SESSION_STATE_STARTING",
        "SESSION_STATE_ACTIVE",
    ]
    fast, slow = shown["turns"]
    assert (fast["latency_seconds"], fast["budget_exceeded"]) == (0.7, False)
    assert (slow["latency_seconds"], slow["budget_exceeded"]) == (2.2, True)
    kinds = [next(k for k in e if k in _PAYLOADS) for e in shown["events"]]
    assert kinds[0] == "created" and "latency_budget_exceeded" in kinds
    cursors = [int(e["cursor"]) for e in shown["events"]]
    assert cursors == sorted(cursors)

    table = (await wired.run("sessions", "show", session.session_id)).stdout
    assert f"{session.session_id}  VOICE  ACTIVE  created " in table
    assert "turns 2" in table and "breaches 1 (budget 1.5s)" in table
    assert "state -> PENDING" in table and "state PENDING -> STARTING" in table
    assert "0.700s" in table
    [breach] = [line for line in table.splitlines() if "2.200s" in line and "agent_status" in line]
    assert "SPEAKING" in breach and "! over budget" in breach
    [gateway_says] = [line for line in table.splitlines() if "latency_budget_exceeded" in line]
    assert "user_speech 2.200s > 1.5s" in gateway_says


_PAYLOADS = {
    "created",
    "ended",
    "user_speech",
    "asr_result",
    "llm_result",
    "agent_status",
    "interrupted",
    "exception",
    "meta_info",
    "user_audio",
    "latency_budget_exceeded",
}


async def test_end_one_and_end_all_with_confirmation(wired: Wired) -> None:
    one = await wired.active_session(voice_request(user="u1", room="r1"))
    two = await wired.active_session(voice_request(user="u2", room="r2", labels={"batch": "x"}))
    three = await wired.active_session(voice_request(user="u3", room="r3", labels={"batch": "x"}))

    result = await wired.run("-o", "json", "sessions", "end", one.session_id)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["session"]["state"] == "SESSION_STATE_ENDED"

    # --all asks first; "n" ends nothing.
    declined = await wired.run("sessions", "end", "--all", "-l", "batch=x", input="n\n")
    assert declined.exit_code == 1 and "End 2 session(s)?" in declined.stderr
    for s in (two, three):
        got = await wired.sessions.GetSession(api.GetSessionRequest(session_id=s.session_id))
        assert got.session.state == session_state("ACTIVE")

    ended = await wired.run("-o", "json", "sessions", "end", "--all", "-l", "batch=x", "--yes")
    assert ended.exit_code == 0, ended.output
    assert sorted(json.loads(ended.stdout)["ended"]) == sorted([two.session_id, three.session_id])
    left = json.loads((await wired.run("-o", "json", "sessions", "list", "--state", "active")).stdout)
    assert left["sessions"] == []

    # Nothing left to end: says so, exits 0.
    nothing = await wired.run("sessions", "end", "--all", "--yes")
    assert nothing.exit_code == 0 and "ended 0 session(s)" in nothing.stdout

    usage = await wired.run("sessions", "end")
    assert usage.exit_code == 2 and "SESSION_ID or --all" in usage.stderr


def session_state(name: str) -> int:
    from agentgw_client.gen.agentgw.v1 import session_pb2

    return int(session_pb2.SessionState.Value(f"SESSION_STATE_{name}"))


async def test_capacity_counts_pools_in_json_and_a_table(wired: Wired) -> None:
    await wired.active_session(voice_request())
    result = await wired.run("-o", "json", "capacity")
    assert result.exit_code == 0, result.output
    pools = {p["pool"]: p for p in json.loads(result.stdout)["pools"]}
    assert pools["voice"]["in_use"] == 1 and pools["voice"]["limit"] == 10 and pools["voice"]["free"] == 9
    assert pools["digital_human"]["in_use"] == 0 and pools["digital_human"]["free"] == 10

    table = (await wired.run("capacity")).stdout.splitlines()
    assert table[0].split() == ["POOL", "IN", "USE", "PENDING", "SUSPECT", "FREE", "LIMIT"]
    [voice] = [line for line in table if line.startswith("voice")]
    # SUSPECT: slots of sessions whose instance may still run at ZEGO (none here).
    assert voice.split() == ["voice", "1", "0", "0", "9", "10"]


async def test_hostile_text_is_shown_escaped_never_as_markup_or_terminal_control(wired: Wired) -> None:
    session = await wired.active_session(voice_request())
    hostile = "[/] [bold red]owned\x1b[2J\x1b]0;title\x07"
    await wired.emulator.user_turn(session.agent_instance_id, hostile, **FAST)
    async with asyncio.timeout(10):  # the turn reached SPEAKING: its ASR result is in the ledger
        while (
            await wired.sessions.GetSession(api.GetSessionRequest(session_id=session.session_id))
        ).session.turn_stats.turns < 1:
            await asyncio.sleep(0.02)
    for args in (
        ("sessions", "show", session.session_id),
        ("events", "tail", "--oldest", "--type", "asr_result", "-n", "1"),
    ):
        result = await wired.run(*args)
        assert result.exit_code == 0, result.output  # "[/]" would be a MarkupError if parsed
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout
        assert "[bold red]owned" in result.stdout and "\\x1b[2J" in result.stdout
    # JSON keeps the text exactly (escaped by JSON itself).
    raw = await wired.run("-o", "json", "events", "tail", "--oldest", "--type", "asr_result", "-n", "1")
    assert json.loads(raw.stdout)["asr_result"]["text"] == hostile
