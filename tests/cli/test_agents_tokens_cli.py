"""`agentgw agents ...`, `agentgw token create` and the CLI's errors and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Wired, invoke
from tests.conftest import APP_ID
from tests.test_main import free_port

AGENT_YAML = """\
agent_id: support-bot
display_name: Support
llm:
  url: https://llm.example/v1/chat/completions
  api_key: sk-never-shown
  model: gpt-4o-mini
tts:
  vendor: ByteDance
  app: {appid: a, token: t, cluster: c}
"""


async def test_agents_create_list_get_update_delete(wired: Wired, tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(AGENT_YAML)
    created = await wired.run("-o", "json", "agents", "create", "-f", str(path))
    assert created.exit_code == 0, created.output
    agent = json.loads(created.stdout)
    assert agent["agent_id"] == "support-bot" and agent["llm"]["api_key_set"] is True
    assert "sk-never-shown" not in created.stdout

    listed = json.loads((await wired.run("-o", "json", "agents", "list")).stdout)
    assert "support-bot" in [a["agent_id"] for a in listed["agents"]]
    table = (await wired.run("agents", "list")).stdout
    assert "support-bot" in table and "gpt-4o-mini @ https://llm.example/v1/chat/completions" in table

    # JSON in the proto's JSON form works as well as YAML, from stdin; only the named fields change.
    updated = await wired.run(
        "-o",
        "json",
        "agents",
        "update",
        "--id",
        "support-bot",
        "-f",
        "-",
        input='{"displayName": "Support EU"}',
    )
    assert updated.exit_code == 0, updated.output
    got = json.loads((await wired.run("-o", "json", "agents", "get", "support-bot")).stdout)
    assert got["display_name"] == "Support EU" and got["llm"]["model"] == "gpt-4o-mini"

    deleted = await wired.run("-o", "json", "agents", "delete", "support-bot", "--yes")
    assert deleted.exit_code == 0 and json.loads(deleted.stdout) == {"deleted": "support-bot"}
    missing = await wired.run("agents", "get", "support-bot")
    assert missing.exit_code == 3
    assert missing.stderr.startswith("agentgw: NOT_FOUND AGENT_NOT_FOUND: ")
    assert len(missing.stderr.splitlines()) == 1


async def test_bad_agent_files_are_usage_errors_and_send_nothing(wired: Wired, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("agent_id: [unclosed")
    result = await wired.run("agents", "create", "-f", str(broken))
    assert result.exit_code == 2 and "is not YAML or JSON" in result.stderr
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"agent_id": "x", "colour": "blue"}')
    result = await wired.run("agents", "create", "-f", str(unknown))
    assert result.exit_code == 2 and "colour" in result.stderr
    listed = json.loads((await wired.run("-o", "json", "agents", "list")).stdout)
    assert "x" not in [a["agent_id"] for a in listed.get("agents", [])]


async def test_invalid_argument_prints_code_reason_and_message(wired: Wired, tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("agent_id: 'has spaces and a slash /'\n")
    result = await wired.run("agents", "create", "-f", str(path))
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("agentgw: INVALID_ARGUMENT ") and "agent" in line


async def test_token_create_mints_a_token_the_emulator_accepts(wired: Wired) -> None:
    result = await wired.run(
        "-o", "json", "token", "create", "--user-id", "alice", "--room-id", "r1", "--publish", "--ttl", "15m"
    )
    assert result.exit_code == 0, result.output
    minted = json.loads(result.stdout)
    assert minted["app_id"] == APP_ID and minted["expire_time"]
    verified = await wired.emulator.verify_token(minted["token"], "alice")
    assert verified.valid is True

    table = (await wired.run("token", "create", "--user-id", "bob")).stdout
    assert "token" in table and "app_id" in table and str(APP_ID) in table

    usage = await wired.run("token", "create", "--user-id", "bob", "--publish")
    assert usage.exit_code == 2 and "--room-id" in usage.stderr
    bad_ttl = await wired.run("token", "create", "--user-id", "bob", "--ttl", "soon")
    assert bad_ttl.exit_code == 2 and "not a duration" in bad_ttl.stderr


async def test_no_gateway_at_the_target_is_unavailable_exit_4() -> None:
    result = await invoke(free_port(), "capacity")
    assert result.exit_code == 4
    [line] = result.stderr.splitlines()
    assert line.startswith(("agentgw: UNAVAILABLE", "agentgw: DEADLINE_EXCEEDED"))


async def test_help_everywhere_has_examples() -> None:
    for args in (
        [],
        ["sessions"],
        ["events"],
        ["agents"],
        ["token"],
        ["agents", "get"],
        ["agents", "delete"],
        ["sessions", "list"],
        ["sessions", "show"],
        ["sessions", "end"],
        ["events", "tail"],
        ["agents", "list"],
        ["agents", "create"],
        ["agents", "update"],
        ["capacity"],
        ["token", "create"],
        ["top"],
    ):
        result = await invoke(1, *args, "--help")
        assert result.exit_code == 0, args
        assert "Example" in result.stdout, args
    version = await invoke(1, "--version")
    assert version.exit_code == 0 and "0.1.0" in version.stdout
