"""Agent templates: register, update, unregister, list by cursor, query by ids (spec §5.1-§5.5)."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import LLM, TTS, Zego


async def test_duplicate_register_is_410001008(zego: Zego) -> None:
    assert await zego.code("RegisterAgent", {"AgentId": "agent_1"}) == 410001008


async def test_only_agent_id_is_required_and_null_is_absent(zego: Zego) -> None:
    await zego.ok("RegisterAgent", {"AgentId": "bare", "Name": None, "LLM": None, "TTS": None, "ASR": None})
    agents = (await zego.ok("QueryAgents", {"AgentIds": ["bare"]}))["Agents"]
    assert agents == [{"AgentId": "bare", "Name": "", "LLM": {}, "TTS": {}, "ASR": {}}]


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("UnregisterAgent", {"AgentId": "ghost"}),
        ("UpdateAgent", {"AgentId": "ghost", "Name": "x"}),
        (
            "CreateAgentInstance",
            {
                "AgentId": "ghost",
                "UserId": "u",
                "RTC": {"RoomId": "r", "AgentStreamId": "a", "AgentUserId": "au", "UserStreamId": "us"},
            },
        ),
    ],
)
async def test_missing_agent_is_410001009(zego: Zego, action: str, body: dict[str, Any]) -> None:
    assert await zego.code(action, body) == 410001009


async def test_unregister_then_register_again(zego: Zego) -> None:
    await zego.ok("UnregisterAgent", {"AgentId": "agent_1"})
    assert await zego.code("UnregisterAgent", {"AgentId": "agent_1"}) == 410001009
    await zego.register("agent_1")


async def test_update_replaces_objects_whole_and_name_only_if_passed(zego: Zego) -> None:
    await zego.ok(
        "RegisterAgent",
        {
            "AgentId": "a2",
            "Name": "Keep",
            "LLM": {**LLM, "SystemPrompt": "be brief"},
            "TTS": TTS,
            "ASR": {"Vendor": "Tencent", "Params": {"engine_model_type": "16k_zh"}},
        },
    )
    await zego.ok(
        "UpdateAgent", {"AgentId": "a2", "LLM": {**LLM, "Model": "gpt-4o"}, "ASR": {"Vendor": "Microsoft"}}
    )
    agent = (await zego.ok("QueryAgents", {"AgentIds": ["a2"]}))["Agents"][0]
    assert agent["Name"] == "Keep"
    assert agent["LLM"] == {**LLM, "Model": "gpt-4o"}  # SystemPrompt is gone: the object was replaced
    assert agent["TTS"] == TTS
    assert agent["ASR"] == {"Vendor": "Microsoft"}
    await zego.ok("UpdateAgent", {"AgentId": "a2", "Name": "Renamed"})
    assert (await zego.ok("QueryAgents", {"AgentIds": ["a2"]}))["Agents"][0]["Name"] == "Renamed"


async def test_name_limits_differ_between_register_and_update(zego: Zego) -> None:
    assert await zego.code("RegisterAgent", {"AgentId": "n1", "Name": "x" * 256}) == 0
    assert await zego.code("RegisterAgent", {"AgentId": "n2", "Name": "x" * 257}) == 410000003
    assert await zego.code("UpdateAgent", {"AgentId": "n1", "Name": "x" * 64}) == 0
    envelope = await zego.call("UpdateAgent", {"AgentId": "n1", "Name": "x" * 65})
    assert envelope["Code"] == 410000003
    assert "Name" in envelope["Message"]


@pytest.mark.parametrize(
    ("agent_id", "code"),
    [
        ("a" * 128, 0),
        ("a" * 129, 410000003),
        ("ok!#$%&()+-:;<=.>?@[]^_{}|~,", 0),
        ("has space", 410000003),
        ("slash/no", 410000003),
        ("", 410000003),
    ],
)
async def test_agent_id_charset_and_length(zego: Zego, agent_id: str, code: int) -> None:
    assert await zego.code("RegisterAgent", {"AgentId": agent_id}) == code


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"LLM": {"Url": "u", "Model": "m"}}, "LLM.ApiKey"),
        ({"LLM": {**LLM, "Temperature": 3}}, "LLM.Temperature"),
        ({"TTS": {"Vendor": "Nope", "Params": {"app": {}}}}, "TTS.Vendor"),
        ({"TTS": {"Vendor": "MiniMax", "Params": {}}}, "TTS.Params.app"),
        ({"TTS": {**TTS, "TerminatorText": "12345"}}, "TTS.TerminatorText"),
        ({"TTS": {**TTS, "FilterText": [{"BeginCharacters": "("}]}}, "TTS.FilterText[0].EndCharacters"),
        ({"ASR": {"Vendor": "Google"}}, "ASR.Vendor"),
        ({"LLM": "not an object"}, "LLM"),
    ],
)
async def test_config_object_violations_name_the_field(zego: Zego, body: dict[str, Any], field: str) -> None:
    envelope = await zego.call("RegisterAgent", {"AgentId": "bad", **body})
    assert envelope["Code"] == 410000003
    assert envelope["Message"].startswith(field + " "), envelope["Message"]


async def test_zego_test_key_only_with_trial_pairs(zego: Zego) -> None:
    trial = {
        "Url": "https://api.stepfun.com/v1/chat/completions",
        "ApiKey": "zego_test",
        "Model": "step-2-16k",
    }
    assert await zego.code("RegisterAgent", {"AgentId": "t1", "LLM": trial}) == 0
    assert (
        await zego.code("RegisterAgent", {"AgentId": "t2", "LLM": {**trial, "Model": "gpt-4o"}}) == 410001047
    )


@pytest.mark.parametrize("vendor", ["Minimax", "Bytedance", "BytedanceFlowing", "ByteDance", "bytedancev3"])
async def test_vendor_spelling_is_read_back_exactly_as_registered(zego: Zego, vendor: str) -> None:
    """ZEGO's sample server compares the agent it reads back for equality with what it registered; a
    canonicalised spelling would make it re-register every time. Unknown nested keys are kept too."""
    tts = {"Vendor": vendor, "Params": {"app": {"appid": "a"}, "vendor_extra": {"x": 1}}, "NotInTheDocs": 2}
    asr = {"Vendor": "tencent", "Params": {"engine": "16k"}}
    await zego.ok("RegisterAgent", {"AgentId": "v", "TTS": tts, "ASR": asr})
    [agent] = (await zego.ok("QueryAgents", {"AgentIds": ["v"]}))["Agents"]
    assert agent["TTS"] == tts and agent["ASR"] == asr


async def test_vendor_outside_the_enum_is_still_refused(zego: Zego) -> None:
    body = {"AgentId": "v", "TTS": {"Vendor": "Bytedanse", "Params": {"app": {}}}}
    assert await zego.code("RegisterAgent", body) == 410000003


@pytest.mark.parametrize(("limit", "size"), [(None, 5), (0, 5), (5, 5), (10, 10)])
async def test_list_limit(zego: Zego, limit: int | None, size: int) -> None:
    for i in range(11):
        await zego.register(f"bulk_{i:02d}")
    body = {} if limit is None else {"Limit": limit}
    data = await zego.ok("ListAgents", body)
    assert data["Total"] == 12
    assert len(data["Agents"]) == size
    assert data["Cursor"] != ""


@pytest.mark.parametrize("limit", [11, -1])
async def test_list_limit_out_of_range(zego: Zego, limit: int) -> None:
    envelope = await zego.call("ListAgents", {"Limit": limit})
    assert envelope["Code"] == 410000003
    assert "Limit" in envelope["Message"]


async def test_list_pages_until_the_cursor_is_empty(zego: Zego) -> None:
    for i in range(11):
        await zego.register(f"bulk_{i:02d}")
    seen: list[str] = []
    cursor = ""
    for _ in range(10):  # bounded: 12 agents at 5 per page is 3 pages
        data = await zego.ok("ListAgents", {"Limit": 5, "Cursor": cursor})
        seen += [a["AgentId"] for a in data["Agents"]]
        cursor = data["Cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted({*seen}) and len(seen) == 12
    assert (await zego.ok("ListAgents", {"Limit": 10, "Cursor": ""}))["Cursor"] != ""


async def test_list_exact_page_ends_with_empty_cursor(zego: Zego) -> None:
    data = await zego.ok("ListAgents", {"Limit": 1})
    assert [a["AgentId"] for a in data["Agents"]] == ["agent_1"]
    assert data["Cursor"] == ""


async def test_list_bad_cursor(zego: Zego) -> None:
    assert await zego.code("ListAgents", {"Cursor": "!!!"}) == 410000003


async def test_query_skips_unknown_ids(zego: Zego) -> None:
    data = await zego.ok("QueryAgents", {"AgentIds": ["ghost", "agent_1"]})
    assert [a["AgentId"] for a in data["Agents"]] == ["agent_1"]
    assert data["Agents"][0]["LLM"]["ApiKey"] == LLM["ApiKey"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "AgentIds is required"),
        ({"AgentIds": [f"a{i}" for i in range(11)]}, "AgentIds must have at most 10 items"),
        ({"AgentIds": [1]}, "AgentIds[0] must be a string"),
    ],
)
async def test_query_validation(zego: Zego, body: dict[str, Any], message: str) -> None:
    envelope = await zego.call("QueryAgents", body)
    assert (envelope["Code"], envelope["Message"]) == (410000003, message)
