"""Dev mode: an emulator with a state file keeps agents, instances, context, rooms and counters."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from zego_emulator import run_emulator
from zego_emulator.persist import StateFile

from .conftest import Zego, make_config


@contextlib.asynccontextmanager
async def emulator(state: Path, **overrides: Any) -> AsyncIterator[Zego]:
    async with run_emulator(make_config(**overrides), state_file=state) as url:
        async with httpx.AsyncClient(timeout=5.0) as http:
            yield Zego(url, http)


async def test_a_restart_finds_agents_instances_context_and_rising_rounds(tmp_path: Path) -> None:
    state = tmp_path / "var" / "emulator.json"
    async with emulator(state) as zego:
        await zego.register("kept_agent")
        iid = await zego.create_voice("kept_agent", user="u1")
        await zego.ok(
            "AddAgentInstanceMsg",
            {"AgentInstanceId": iid, "Messages": [{"Role": "user", "Content": "remember me"}]},
        )
        first_round = (await zego.ok("SendAgentInstanceTTS", {"AgentInstanceId": iid, "Text": "hi"}))["Round"]
        await zego.admin("POST", "/rooms/room_1/users/u1", {"publishing": False})
    # A clean stop saves; the file is the owner's alone and no temporary file is left behind.
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert [p.name for p in state.parent.iterdir()] == ["emulator.json"]

    async with emulator(state) as zego:
        agents = (await zego.ok("ListAgents", {"Limit": 10}))["Agents"]
        assert [a["AgentId"] for a in agents] == ["kept_agent"]
        assert agents[0]["LLM"]["ApiKey"] == "sk-test"  # kept whole, as ZEGO keeps it
        assert (await zego.ok("QueryAgentInstanceStatus", {"AgentInstanceId": iid}))["Status"] == "IDLE"
        messages = (await zego.ok("GetAgentInstanceMsgList", {"AgentInstanceId": iid}))["MessageList"]
        assert {"Role": "user", "Content": "remember me"} in messages
        again = (await zego.ok("SendAgentInstanceTTS", {"AgentInstanceId": iid, "Text": "back"}))["Round"]
        assert again > first_round
        rooms = (
            await (await zego.admin("GET", "/state")).aclose() or await zego.admin("GET", "/state")
        ).json()
        assert {"room_id": "room_1", "user_id": "u1", "present": True, "publishing": False} in rooms["rooms"]
        await zego.ok("DeleteAgentInstance", {"AgentInstanceId": iid})

    async with emulator(state) as zego:
        assert (await zego.call("QueryAgentInstanceStatus", {"AgentInstanceId": iid}))["Code"] == 410001002


async def test_changes_are_saved_while_running_not_only_at_shutdown(tmp_path: Path) -> None:
    state = tmp_path / "emulator.json"
    async with emulator(state) as zego:
        await zego.register("early")
        for _ in range(100):
            if state.exists() and "early" in state.read_text():
                break
            await asyncio.sleep(0.05)
        saved = json.loads(state.read_text())
        assert [a["agent_id"] for a in saved["agents"]] == ["early"]
        assert saved["server_secret"] == make_config().server_secret


async def test_an_unreadable_file_is_moved_aside_and_the_emulator_starts_empty(tmp_path: Path) -> None:
    state = tmp_path / "emulator.json"
    state.write_text("{not json")
    async with emulator(state) as zego:
        assert (await zego.ok("ListAgents", {"Limit": 10}))["Agents"] == []
    aside = [name for name in os.listdir(tmp_path) if name.startswith("emulator.json.unreadable-")]
    assert len(aside) == 1 and (tmp_path / aside[0]).read_text() == "{not json"


async def test_another_app_ids_state_is_not_restored(tmp_path: Path) -> None:
    state = tmp_path / "emulator.json"
    async with emulator(state) as zego:
        await zego.register("theirs")
    async with emulator(state, app_id=7654321):
        pass
    # The other AppId's emulator started empty and saved its own (empty) state over the file.
    doc = StateFile(state).load()
    assert doc is not None and doc["app_id"] == 7654321 and doc["agents"] == []
