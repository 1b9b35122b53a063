"""The emulator's gateway layer: validation order (spec §16), envelope, routing and the rate limit."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from service.zego.signing import api_signature

from .conftest import APP_ID, SECRET, StartEmulator, Zego

REQUEST_ID = re.compile(r"[0-9]{19}")


def _signed(ts: int, nonce: str = "abc") -> dict[str, str]:
    return {
        "AppId": str(APP_ID),
        "SignatureNonce": nonce,
        "Timestamp": str(ts),
        "Signature": api_signature(APP_ID, nonce, SECRET, ts),
        "SignatureVersion": "2.0",
    }


# Each case breaks one check and leaves every later parameter broken or missing too, so the expected
# code proves the order of the checks, not just their existence.
ORDER_CASES: list[tuple[str, dict[str, str], int]] = [
    ("no Action", {}, 100000006),
    ("empty Action", {"Action": "", "AppId": "x"}, 100000006),
    ("unknown Action", {"Action": "GetAgent", "AppId": "x"}, 100000007),
    ("missing AppId", {"Action": "ListAgents"}, 100000001),
    ("AppId not a number", {"Action": "ListAgents", "AppId": "12a"}, 100000001),
    ("AppId negative", {"Action": "ListAgents", "AppId": "-5"}, 100000001),
    ("AppId beyond uint32", {"Action": "ListAgents", "AppId": "4294967296"}, 100000001),
    ("other AppId", {"Action": "ListAgents", "AppId": "7"}, 100000010),
    ("missing Timestamp", {"Action": "ListAgents", "AppId": str(APP_ID)}, 100000002),
    ("Timestamp in ms format", {"Action": "ListAgents", "AppId": str(APP_ID), "Timestamp": "1.5"}, 100000003),
    ("Timestamp text", {"Action": "ListAgents", "AppId": str(APP_ID), "Timestamp": "now"}, 100000003),
    ("missing nonce", {"Action": "ListAgents", "AppId": str(APP_ID), "Timestamp": "1"}, 100000008),
    (
        "missing Signature",
        {"Action": "ListAgents", "AppId": str(APP_ID), "Timestamp": "1", "SignatureNonce": "n"},
        100000009,
    ),
    (
        "missing SignatureVersion",
        {
            "Action": "ListAgents",
            "AppId": str(APP_ID),
            "Timestamp": "1",
            "SignatureNonce": "n",
            "Signature": "s",
        },
        100000013,
    ),
    (
        "SignatureVersion 1.0",
        {
            "Action": "ListAgents",
            "AppId": str(APP_ID),
            "Timestamp": "1",
            "SignatureNonce": "n",
            "Signature": "s",
            "SignatureVersion": "1.0",
        },
        100000014,
    ),
    (
        "expired before the signature is checked",
        {
            "Action": "ListAgents",
            "AppId": str(APP_ID),
            "Timestamp": "1",
            "SignatureNonce": "n",
            "Signature": "s",
            "SignatureVersion": "2.0",
        },
        100000004,
    ),
]


@pytest.mark.parametrize(
    ("params", "expected"), [(p, c) for _, p, c in ORDER_CASES], ids=[n for n, _, _ in ORDER_CASES]
)
async def test_validation_order(zego: Zego, params: dict[str, str], expected: int) -> None:
    envelope = await zego.post_raw(params, b"not json")
    assert envelope["Code"] == expected, envelope
    assert REQUEST_ID.fullmatch(envelope["RequestId"])
    assert envelope.get("Data") is None
    assert envelope["Message"]


@pytest.mark.parametrize("offset", [-700, 700])
async def test_skew_beyond_ten_minutes_is_expired(zego: Zego, offset: int) -> None:
    envelope = await zego.post_raw({"Action": "ListAgents", **_signed(int(time.time()) + offset)})
    assert envelope["Code"] == 100000004


async def test_skew_inside_ten_minutes_is_accepted(zego: Zego) -> None:
    envelope = await zego.post_raw({"Action": "ListAgents", **_signed(int(time.time()) - 590)})
    assert envelope["Code"] == 0


async def test_wrong_signature_is_checked_before_the_body(zego: Zego) -> None:
    params = zego.query("ListAgents")
    params["Signature"] = "0" * 32
    assert (await zego.post_raw(params, b"{broken"))["Code"] == 100000005


async def test_signature_is_lowercase_hex_and_nonce_format_free(zego: Zego) -> None:
    params = {"Action": "ListAgents", **_signed(int(time.time()), nonce="k3j4base36")}
    assert (await zego.post_raw(params))["Code"] == 0
    # ZEGO specifies lowercase hex; an uppercase signature is a wrong signature (spec §1.4 [INFER]).
    params["Signature"] = params["Signature"].upper()
    assert (await zego.post_raw(params))["Code"] == 100000005


async def test_signature_case_can_be_ignored(start_emulator: StartEmulator) -> None:
    zego = await start_emulator(signature_case_sensitive=False)
    params = {"Action": "ListAgents", **_signed(int(time.time()))}
    params["Signature"] = params["Signature"].upper()
    assert (await zego.post_raw(params))["Code"] == 0


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'"text"', b'{"Limit": NaN}', b"\xff\xfe"])
async def test_body_must_be_a_json_object(zego: Zego, body: bytes) -> None:
    assert (await zego.post_raw(zego.query("ListAgents"), body))["Code"] == 410000004


async def test_schema_violation_names_the_field(zego: Zego) -> None:
    envelope = await zego.call("CreateAgentInstance", {"AgentId": "agent_1", "UserId": "u1", "RTC": {}})
    assert envelope["Code"] == 410000003
    assert envelope["Message"] == "RTC.RoomId is required"


async def test_success_envelope_shape(zego: Zego) -> None:
    envelope = await zego.call("ListAgents", {})
    assert set(envelope) == {"Code", "Message", "RequestId", "Data"}
    assert envelope["Code"] == 0
    assert REQUEST_ID.fullmatch(envelope["RequestId"])
    # Actions without Data answer Data: null, like ZEGO's documented example.
    envelope = await zego.call("ResetAgentInstanceMsgList", {"AgentInstanceId": await zego.create_voice()})
    assert envelope == {"Code": 0, "Message": "Succeed", "RequestId": envelope["RequestId"], "Data": None}


async def test_error_envelope_has_no_data(zego: Zego) -> None:
    envelope = await zego.call("UnregisterAgent", {"AgentId": "nobody"})
    assert set(envelope) == {"Code", "Message", "RequestId"}
    assert envelope["Code"] == 410001009


async def test_request_ids_are_unique(zego: Zego) -> None:
    ids = {(await zego.call("ListAgents"))["RequestId"] for _ in range(20)}
    assert len(ids) == 20


async def test_root_with_and_without_slash_and_doubled_question_mark(zego: Zego) -> None:
    query = httpx.QueryParams(zego.query("ListAgents"))
    for url in (f"{zego.url}/?{query}", f"{zego.url}?{query}", f"{zego.url}/??{query}"):
        response = await zego.http.post(url, content=b"{}")
        assert response.status_code == 200
        assert response.json()["Code"] == 0, url


async def test_http_status_is_200_even_for_errors(zego: Zego) -> None:
    response = await zego.http.post(zego.url + "/", content=b"{}")
    assert response.status_code == 200
    assert response.json()["Code"] == 100000006


async def test_rate_limit_uses_the_configured_code(start_emulator: StartEmulator) -> None:
    zego = await start_emulator(rate_limit_per_second=2.0, rate_limit_code=410000999)
    codes = [await zego.code("ListAgents", {}) for _ in range(5)]
    assert codes[:2] == [0, 0]
    assert codes.count(410000999) >= 2
    # Buckets are per action: another action is unaffected.
    assert await zego.code("QueryAgents", {"AgentIds": []}) == 0
    # Schema violations are reported before the bucket is consulted (spec §16 order).
    assert await zego.code("ListAgents", {"Limit": 11}) == 410000003


async def test_rate_limit_default_code(start_emulator: StartEmulator) -> None:
    zego = await start_emulator(rate_limit_per_second=1.0)
    codes = [await zego.code("ListAgents", {}) for _ in range(3)]
    assert codes[0] == 0
    assert 410001029 in codes[1:]


async def test_unknown_path_is_not_the_api(zego: Zego) -> None:
    response = await zego.http.post(f"{zego.url}/v1/agents", params=zego.query("ListAgents"), content=b"{}")
    assert response.status_code == 404
