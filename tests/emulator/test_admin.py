"""Admin API: fault injection (code, latency, timeout, drop), token verification, reset, bad input."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from service.zego.token04 import TokenLayout, mint_token04

from .conftest import APP_ID, SECRET, Zego


async def test_fault_code_for_n_calls_then_normal(zego: Zego) -> None:
    response = await zego.admin("POST", "/faults", {"action": "ListAgents", "code": 410000001, "count": 2})
    assert response.status_code == 200
    assert response.json()["fault"] == {
        "action": "ListAgents",
        "count": 2,
        "code": 410000001,
        "latency_ms": 0,
        "mode": None,
    }
    assert [await zego.code("ListAgents") for _ in range(3)] == [410000001, 410000001, 0]
    # Faults apply only to correctly signed requests.
    await zego.admin("POST", "/faults", {"action": "ListAgents", "code": 410000001})
    params = zego.query("ListAgents")
    params["Signature"] = "f" * 32
    assert (await zego.post_raw(params))["Code"] == 100000005
    assert await zego.code("ListAgents") == 410000001


async def test_fault_for_any_action_and_clear(zego: Zego) -> None:
    await zego.admin("POST", "/faults", {"action": "*", "code": 410000010, "count": 5})
    assert await zego.code("QueryAgents", {"AgentIds": []}) == 410000010
    assert (await zego.admin("GET", "/faults")).json()["faults"][0]["count"] == 4
    assert (await zego.admin("DELETE", "/faults")).json() == {"cleared": 1}
    assert await zego.code("QueryAgents", {"AgentIds": []}) == 0


async def test_fault_latency(zego: Zego) -> None:
    await zego.admin("POST", "/faults", {"action": "ListAgents", "latency_ms": 300})
    started = time.monotonic()
    assert await zego.code("ListAgents") == 0
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert await zego.code("ListAgents") == 0
    assert time.monotonic() - started < 0.3


async def test_fault_timeout_trips_the_client_timeout(zego: Zego) -> None:
    await zego.admin("POST", "/faults", {"action": "ListAgents", "mode": "timeout"})
    with pytest.raises(httpx.ReadTimeout):
        await zego.post_raw(zego.query("ListAgents"), timeout=0.3)
    assert await zego.code("ListAgents") == 0


async def test_fault_timeout_does_not_hold_up_shutdown(zego: Zego) -> None:
    # The held request is still open when the fixture shuts the emulator down; shutdown must stay quick
    # (pytest-timeout would catch a hang).
    await zego.admin("POST", "/faults", {"action": "ListAgents", "mode": "timeout"})
    with pytest.raises(httpx.ReadTimeout):
        await zego.post_raw(zego.query("ListAgents"), timeout=0.2)


async def test_fault_drop_closes_the_connection_without_an_answer(zego: Zego) -> None:
    await zego.admin("POST", "/faults", {"action": "CreateAgentInstance", "mode": "drop", "count": 1})
    body = {"AgentId": "agent_1", "UserId": "u", "RTC": zego.rtc()}
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await zego.call("CreateAgentInstance", body)
    # The dropped call did nothing, and the next one works on a new connection.
    assert (await zego.admin("GET", "/state")).json()["counts"]["instances"] == 0
    assert await zego.code("CreateAgentInstance", body) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"action": "NoSuchAction", "code": 1},
        {"action": "ListAgents"},
        {"action": "ListAgents", "code": 1, "mode": "drop"},
        {"action": "ListAgents", "mode": "explode"},
        {"action": "ListAgents", "code": 1, "count": 0},
        {"action": "ListAgents", "code": "1"},
        {"action": "ListAgents", "code": 1, "colour": "red"},
        [1, 2],
    ],
)
async def test_bad_fault_input_is_400(zego: Zego, body: Any) -> None:
    response = await zego.admin("POST", "/faults", body)
    assert response.status_code == 400
    assert response.json()["message"]


@pytest.mark.parametrize("body", [{}, {"present": "yes"}, {"hidden": True}])
async def test_bad_room_input_is_400(zego: Zego, body: dict[str, Any]) -> None:
    response = await zego.admin("POST", "/rooms/room_1/users/u1", body)
    assert response.status_code == 400


async def test_unknown_admin_endpoint_is_json_404(zego: Zego) -> None:
    response = await zego.admin("GET", "/nothing/here")
    assert response.status_code == 404
    assert "unknown admin endpoint" in response.json()["message"]


async def test_reset_forgets_everything(zego: Zego) -> None:
    await zego.create_voice()
    await zego.admin("POST", "/faults", {"action": "ListAgents", "code": 1})
    assert (await zego.admin("POST", "/reset")).json() == {"reset": True}
    state = (await zego.admin("GET", "/state")).json()
    assert state["agents"] == [] and state["instances"] == [] and state["faults"] == []
    assert await zego.events() == []
    assert await zego.code("ListAgents") == 0


@pytest.mark.parametrize("layout", [TokenLayout.CBC, TokenLayout.GCM])
async def test_token_verify_accepts_both_layouts(zego: Zego, layout: TokenLayout) -> None:
    token = mint_token04(app_id=APP_ID, user_id="alice", secret=SECRET, effective_seconds=3600, layout=layout)
    response = await zego.admin("POST", "/tokens/verify", {"token": token, "user_id": "alice"})
    result = response.json()
    assert result["valid"] is True and result["error"] is None
    assert result["layout"] == layout.name
    assert (result["app_id"], result["user_id"], result["payload"]) == (APP_ID, "alice", "")
    assert result["expire"] >= int(time.time()) + 3500


async def test_token_verify_reports_failures(zego: Zego) -> None:
    token = mint_token04(app_id=APP_ID, user_id="alice", secret=SECRET, effective_seconds=3600)
    for body in ({"token": token, "user_id": "mallory"}, {"token": "04garbage", "user_id": "alice"}):
        result = (await zego.admin("POST", "/tokens/verify", body)).json()
        assert result["valid"] is False and result["error"] and result["layout"] is None
        assert SECRET not in result["error"]
    assert (await zego.admin("POST", "/tokens/verify", {"token": token})).status_code == 400
