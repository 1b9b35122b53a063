"""The emulator's Digital Human API (docs/zego-digital-human-api.md) and the create-time id check."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from service.zego.digital_human import EMULATOR_DIGITAL_HUMAN_PATH
from zego_emulator.digital_humans import Avatar, Timbre, catalogue_from_json

from .conftest import DH_ID, StartEmulator, Zego

PATH = EMULATOR_DIGITAL_HUMAN_PATH
PRIVATE_ID = "42f97c28-1124-4cb2-800a-44d028497027"
FOREIGN_ID = "7e1c9a40-3b2d-4f5e-8a6b-9c0d1e2f3a4b"


async def dh_call(zego: Zego, action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return await zego.call(action, body or {}, path=PATH)


async def dh_ok(zego: Zego, action: str, body: dict[str, Any] | None = None) -> Any:
    envelope = await dh_call(zego, action, body)
    assert envelope["Code"] == 0, envelope
    assert set(envelope) == {"Code", "Message", "RequestId", "Data"}
    return envelope["Data"]


async def test_list_all_public_and_private(zego: Zego) -> None:
    everything = await dh_ok(zego, "GetDigitalHumanList")
    ids = [d["DigitalHumanId"] for d in everything["DigitalHumans"]]
    # Only the avatars that support the default inference mode (1); another app's avatar never shows.
    assert everything["Total"] == len(ids) == 5
    assert DH_ID in ids and PRIVATE_ID in ids and FOREIGN_ID not in ids
    public = await dh_ok(zego, "GetDigitalHumanList", {"FetchMode": 2})
    private = await dh_ok(zego, "GetDigitalHumanList", {"FetchMode": 3})
    assert all(d["IsPublic"] for d in public["DigitalHumans"])
    assert not any(d["IsPublic"] for d in private["DigitalHumans"])
    assert public["Total"] + private["Total"] == everything["Total"]


async def test_list_pages_with_offset_and_limit(zego: Zego) -> None:
    first = await dh_ok(zego, "GetDigitalHumanList", {"Offset": 0, "Limit": 2})
    second = await dh_ok(zego, "GetDigitalHumanList", {"Offset": 2, "Limit": 2})
    rest = await dh_ok(zego, "GetDigitalHumanList", {"Offset": 4, "Limit": 20})
    seen = [d["DigitalHumanId"] for page in (first, second, rest) for d in page["DigitalHumans"]]
    assert len(seen) == len(set(seen)) == first["Total"] == 5


async def test_list_filters_by_inference_mode(zego: Zego) -> None:
    advanced = await dh_ok(zego, "GetDigitalHumanList", {"InferenceMode": 2})
    assert {d["DigitalHumanId"] for d in advanced["DigitalHumans"]} == {DH_ID, PRIVATE_ID}
    assert all(2 in d["InferenceModes"] for d in advanced["DigitalHumans"])


@pytest.mark.parametrize(
    "body",
    [
        {"Limit": 0},
        {"Limit": 21},
        {"Offset": -1},
        {"Offset": 1_000_001},
        {"FetchMode": 4},
        {"InferenceMode": 3},
        {"Limit": "10"},
        {"Limit": True},
    ],
)
async def test_list_rejects_out_of_range_windows(zego: Zego, body: dict[str, Any]) -> None:
    envelope = await dh_call(zego, "GetDigitalHumanList", body)
    assert envelope["Code"] == 400000001
    assert next(iter(body)) in envelope["Message"]
    # An error envelope carries no Data (the documented ErrorResponse schema).
    assert set(envelope) == {"Code", "Message", "RequestId"}


async def test_info_returns_actions_and_a_24h_avatar_url(zego: Zego) -> None:
    info = await dh_ok(zego, "GetDigitalHumanInfo", {"DigitalHumanId": DH_ID})
    assert info["DigitalHumanId"] == DH_ID and info["IsPublic"] is True
    assert [a["Action"] for a in info["Actions"]] == ["wave", "nod"]
    assert all(a["PreviewUrl"].startswith("https://") for a in info["Actions"])
    expires = int(parse_qs(urlsplit(info["AvatarUrl"]).query)["Expires"][0])
    assert abs(expires - (time.time() + 86400)) < 60


@pytest.mark.parametrize("dh_id", ["no-such-avatar", FOREIGN_ID])
async def test_info_of_unknown_or_foreign_avatar_is_400000003(zego: Zego, dh_id: str) -> None:
    envelope = await dh_call(zego, "GetDigitalHumanInfo", {"DigitalHumanId": dh_id})
    assert envelope["Code"] == 400000003


async def test_info_without_id_is_400000001(zego: Zego) -> None:
    assert (await dh_call(zego, "GetDigitalHumanInfo", {}))["Code"] == 400000001


async def test_timbres_public_and_bound(zego: Zego) -> None:
    public = await dh_ok(zego, "GetTimbreList")
    assert public["Total"] == 3 and "my_cloned_voice" not in {t["TimbreId"] for t in public["Timbres"]}
    bound = await dh_ok(zego, "GetTimbreList", {"DigitalHumanId": PRIVATE_ID, "Offset": 0, "Limit": 20})
    assert [t["TimbreId"] for t in bound["Timbres"]] == ["my_cloned_voice"]
    assert (await dh_call(zego, "GetTimbreList", {"DigitalHumanId": "nope"}))["Code"] == 400000003
    assert (await dh_call(zego, "GetTimbreList", {"Limit": 0}))["Code"] == 400000001


async def test_same_gateway_checks_as_the_ai_agent_api(zego: Zego) -> None:
    params = zego.query("GetDigitalHumanList")
    params["Signature"] = "0" * 32
    assert (await zego.post_raw(params, path=PATH))["Code"] == 100000005
    # An AI Agent action is not served on the Digital Human host, and vice versa.
    assert (await dh_call(zego, "RegisterAgent", {"AgentId": "x"}))["Code"] == 100000007
    assert (await zego.call("GetDigitalHumanList", {}))["Code"] == 100000007
    assert (await zego.post_raw(zego.query("GetTimbreList"), b"[1]", path=PATH))["Code"] == 410000004


async def test_faults_apply_to_digital_human_actions(zego: Zego) -> None:
    response = await zego.admin("POST", "/faults", {"action": "GetDigitalHumanInfo", "code": 400010000})
    assert response.status_code == 200, response.text
    assert (await dh_call(zego, "GetDigitalHumanInfo", {"DigitalHumanId": DH_ID}))["Code"] == 400010000
    assert (await dh_call(zego, "GetDigitalHumanInfo", {"DigitalHumanId": DH_ID}))["Code"] == 0


async def test_rate_limit_per_action(start_emulator: StartEmulator) -> None:
    zego = await start_emulator(rate_limit_per_second=1.0)
    codes = [(await dh_call(zego, "GetTimbreList"))["Code"] for _ in range(3)]
    assert codes[0] == 0 and 410001029 in codes[1:]
    # Another action has its own bucket.
    assert (await dh_call(zego, "GetDigitalHumanList"))["Code"] == 0


# --- Create*DigitalHumanAgentInstance against the catalogue --------------------------------------


@pytest.mark.parametrize(
    ("dh_id", "code"),
    [("not-in-the-catalogue", 410001027), (FOREIGN_ID, 410001048)],
)
@pytest.mark.parametrize("action", ["CreateDigitalHumanAgentInstance", "CreateLiveDigitalHumanAgentInstance"])
async def test_create_with_unknown_or_foreign_avatar(zego: Zego, action: str, dh_id: str, code: int) -> None:
    live = action.startswith("CreateLive")
    body: dict[str, Any] = {
        "AgentId": "agent_1",
        "RTC": zego.rtc(live=live),
        "DigitalHuman": {"DigitalHumanId": dh_id},
    }
    if not live:
        body["UserId"] = "user_1"
    envelope = await zego.call(action, body)
    assert envelope["Code"] == code, envelope
    assert (await zego.admin("GET", "/state")).json()["instances"] == []


async def test_create_with_private_avatar_succeeds(zego: Zego) -> None:
    data = await zego.create_dh(DigitalHuman={"DigitalHumanId": PRIVATE_ID})
    assert data["AgentInstanceId"]


async def test_id_check_can_be_switched_off(start_emulator: StartEmulator) -> None:
    zego = await start_emulator(check_digital_human_ids=False)
    await zego.register()
    data = await zego.create_dh(DigitalHuman={"DigitalHumanId": "anything"})
    assert data["AgentInstanceId"]


async def test_custom_catalogue(start_emulator: StartEmulator) -> None:
    avatars, timbres = catalogue_from_json(
        {
            "avatars": [
                {"digital_human_id": "mine", "name": "Mine", "public": False, "actions": [["bow", "u"]]}
            ],
            "timbres": [{"timbre_id": "t1", "name": "Voice", "digital_human_id": "mine"}],
        }
    )
    assert avatars == (Avatar("mine", "Mine", public=False, actions=(("bow", "u"),)),)
    assert timbres == (Timbre("t1", "Voice", "mine"),)
    zego = await start_emulator(digital_humans=avatars, timbres=timbres)
    listing = await dh_ok(zego, "GetDigitalHumanList")
    assert [d["DigitalHumanId"] for d in listing["DigitalHumans"]] == ["mine"]
    assert (await dh_ok(zego, "GetTimbreList"))["Total"] == 0
    await zego.register()
    assert (
        await zego.call(
            "CreateDigitalHumanAgentInstance",
            {
                "AgentId": "agent_1",
                "UserId": "u",
                "RTC": zego.rtc(),
                "DigitalHuman": {"DigitalHumanId": DH_ID},
            },
        )
    )["Code"] == 410001027


def test_bad_catalogue_json_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="catalogue"):
        catalogue_from_json([])
    with pytest.raises(ValueError, match="bad catalogue entry"):
        catalogue_from_json({"avatars": [{"name": "no id"}]})


def test_cli_loads_a_catalogue_file(tmp_path: Path) -> None:
    from zego_emulator import __main__ as cli

    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps({"avatars": [{"digital_human_id": "x", "public": True}], "timbres": []}))
    loaded = cli._catalogue(str(path))
    assert loaded == {"digital_humans": (Avatar("x", "", public=True),), "timbres": ()}
    assert cli._catalogue(None) == {}


def test_cli_refuses_a_bad_catalogue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from zego_emulator import __main__ as cli

    secrets = ["--server-secret", "s" * 32, "--callback-secret", "c"]
    assert cli.main([*secrets, "--catalogue", str(tmp_path / "missing.json")]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text('{"avatars": [{"name": "no id"}]}')
    assert cli.main([*secrets, "--catalogue", str(bad)]) == 2
    assert "invalid configuration" in capsys.readouterr().err
