"""``make chaos`` must not rot: one tiny scenario end to end, and the journaled emulator's faults.

The full suite runs in ``make chaos`` (minutes); here a kill -9 during two creates (a few
seconds) goes through the same processes, clients and measurements.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.config import APP_ID, SERVER_SECRET
from bench.processes import Processes, free_port
from chaos.report import TARGETS
from service.zego.signing import api_signature, new_nonce

REPO = Path(__file__).resolve().parents[2]


async def test_the_smoke_run_measures_a_kill_during_creates(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chaos", "--smoke", "--only", "1", "--output", str(out),
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), 50)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text
    report = json.loads(out.read_text())
    assert report["errors"] == []
    (world,) = report["raw"].values()
    # Every target of the scenario is reported, as a number, with its verdict.
    rows = {r["metric"]: r for r in report["rows"]}
    assert {"double_creates", "lost_acked", "leaked", "over_cap"} <= set(rows) <= set(TARGETS) | set(rows)
    for metric in ("double_creates", "lost_acked", "leaked", "over_cap"):
        assert rows[metric]["verdict"] == ("PASS" if world[metric] == 0 else "FAIL")
    # The numbers come from the emulator's journal and the ledger, not from the harness's hopes:
    # the two creates were held at ZEGO when the gateway died, and ZEGO finished them.
    assert world["intents"] == 2 == world["acked"] + world["failed_or_refused"]
    assert world["creates_at_zego"] >= 1
    assert world["unknown_creates"] == 0  # every instance ZEGO made has its ledger row
    assert world["double_creates"] == 0 and world["lost_acked"] == 0
    assert "kill9_100ms" in text and "result" in text  # the table was printed


def signed(action: str) -> dict[str, str | int]:
    nonce, ts = new_nonce(), int(time.time())
    return {
        "Action": action,
        "AppId": APP_ID,
        "SignatureNonce": nonce,
        "Timestamp": ts,
        "Signature": api_signature(APP_ID, nonce, SERVER_SECRET, ts),
        "SignatureVersion": "2.0",
    }


CREATE = {
    "AgentId": "a",
    "UserId": "u1",
    "RTC": {"RoomId": "r1", "AgentUserId": "ag1", "AgentStreamId": "ag1_s", "UserStreamId": "u1_s"},
}


async def test_chaos_faults_lose_the_answer_after_zego_acted_and_503_before(tmp_path: Path) -> None:
    procs = Processes(tmp_path)
    port = free_port()
    emulator = await procs.spawn("emulator", ["-m", "chaos.emulator", "--port", str(port), "--cap", "2"])
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5, trust_env=False) as http:
            for _ in range(200):  # bounded: 10 s
                try:
                    await http.get("/_emulator/state")
                    break
                except httpx.HTTPError:
                    assert emulator.alive(), emulator.log_tail()
                    await asyncio.sleep(0.05)
            register = {
                "AgentId": "a",
                "Name": "a",
                "LLM": {"Url": "https://llm.example/v1", "ApiKey": "k", "Model": "m"},
                "TTS": {"Vendor": "ByteDance", "Params": {"app": {"appid": "a", "token": "t"}}},
            }
            assert (await http.post("/", params=signed("RegisterAgent"), json=register)).json()["Code"] == 0

            async def state() -> dict[str, Any]:
                return dict((await http.get("/_emulator/state")).json())

            await http.post("/_chaos/faults", json={"action": "CreateAgentInstance", "mode": "http_503"})
            answer = await http.post("/", params=signed("CreateAgentInstance"), json=CREATE)
            assert answer.status_code == 503 and (await state())["counts"]["instances"] == 0

            await http.post("/_chaos/faults", json={"action": "CreateAgentInstance", "mode": "lose_answer"})
            with pytest.raises(httpx.RemoteProtocolError):
                await http.post("/", params=signed("CreateAgentInstance"), json=CREATE)
            (instance,) = (await state())["instances"]  # ZEGO created it; the caller cannot know

            calls = (await http.get("/_chaos/journal")).json()["calls"]
            creates = [c for c in calls if c["action"] == "CreateAgentInstance"]
            assert [(c["fault"], c["code"], c["room_id"]) for c in creates] == [
                ("http_503", None, "r1"),
                ("lose_answer", 0, "r1"),
            ]
            assert creates[1]["instance_id"] == instance["AgentInstanceId"]
    finally:
        await procs.close()
