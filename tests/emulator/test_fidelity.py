"""Divergences found by running ZEGO's own sample servers against the emulator (issue 15), each pinned
against the wire: the digital-human concurrency code and the error envelope's Data. (RTC clashes:
test_rtc_conflicts.py; vendor read-backs: test_agents.py; signature case: test_gateway.py.)"""

from __future__ import annotations

import pytest

from zego_emulator import EmulatorConfig

from .conftest import DH_ID, SECRET, StartEmulator, Zego


@pytest.mark.parametrize("code", [410001031, 410001025])
async def test_digital_human_concurrency_code_is_configurable(
    start_emulator: StartEmulator, code: int
) -> None:
    """ZEGO's docs say 410001031; ZEGO's sample server falls back to voice only on 410001025."""
    zego = await start_emulator(digital_human_instance_limit=1, digital_human_concurrency_code=code)
    await zego.register()
    await zego.create_dh()
    body = {
        "AgentId": "agent_1",
        "UserId": "u2",
        "RTC": zego.rtc(),
        "DigitalHuman": {"DigitalHumanId": DH_ID},
    }
    assert await zego.code("CreateDigitalHumanAgentInstance", body) == code
    # The sample's fallback, a voice instance, still works: voice has its own pool.
    await zego.create_voice(user="u2")


def test_only_the_two_known_concurrency_codes_are_accepted() -> None:
    with pytest.raises(ValueError, match="410001031"):
        EmulatorConfig(app_id=1, server_secret=SECRET, callback_secret="c", digital_human_concurrency_code=1)


async def test_error_envelope_has_no_data_by_default(zego: Zego) -> None:
    envelope = await zego.call("DeleteAgentInstance", {"AgentInstanceId": "1" * 19})
    assert envelope["Code"] == 410001002
    assert set(envelope) == {"Code", "Message", "RequestId"}
    # A success always carries Data, null when the action returns nothing.
    iid = await zego.create_voice()
    ok = await zego.call("DeleteAgentInstance", {"AgentInstanceId": iid})
    assert ok["Code"] == 0 and "Data" in ok and ok["Data"] is None


async def test_error_envelope_with_null_data_on_request(start_emulator: StartEmulator) -> None:
    zego = await start_emulator(error_envelope_data=True)
    for envelope in (
        await zego.call("DeleteAgentInstance", {"AgentInstanceId": "1" * 19}),
        await zego.call("GetDigitalHumanInfo", {"DigitalHumanId": "nope"}, path="/digitalhuman"),
        await zego.post_raw({"Action": "ListAgents"}),
    ):
        assert envelope["Code"] != 0
        assert set(envelope) == {"Code", "Message", "RequestId", "Data"} and envelope["Data"] is None
