"""Token04 minting / decoding against the worked vectors of spec §13."""

from __future__ import annotations

import base64
import json
import string
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from service.zego.token04 import (
    Token04Claims,
    Token04ClaimsMismatchError,
    Token04DecryptionError,
    Token04Error,
    Token04ExpiredError,
    Token04MalformedError,
    TokenLayout,
    decode_token04,
    mint_token04,
    verify_token04,
)

SECRET = "fa94dd0f974cf2e293728a526b028271"
OTHER_SECRET = "0123456789abcdef0123456789abcdef"
CTIME = 1_700_000_000
EXPIRE = CTIME + 3600
PLAINTEXT = (
    '{"app_id":1,"user_id":"demo","nonce":123456789,"ctime":1700000000,"expire":1700003600,"payload":""}'
)
CBC_VECTOR = (
    "04AAAAAGVT/xAAEDAxMjM0NTY3ODlhYmNkZWYAcPDOWcZeMCPxbh1dpHzCTREIwK2oIO5x78Qlcu9iUMPYkqBI5TvjB3JwCxC9+klE8/"
    "eu//t2uE7+o7gQ53yB/JkIFUA6xyD5rb5rd5NER5knvdDJH2auGOam8ZKJG5qT/1t+UUUnbL8ghIsUgkbwAAg="
)
GCM_VECTOR = (
    "04AAAAAGVT/xAADAABAgMEBQYHCAkKCwBzlo4HRoGUdkuLbKIoOhbZY6YpcMaBTLWHRtiSNdXNuWkV2JYrMFwLwjjq6aFvxM5vMUW1uc"
    "oWpme7Vck+JCYUW5+rbF2LagnFZkRVec2ODtmU4F4kKEo7U2F+thJs5COIYlau+pkGhJGWuIAhD9RBltNqvwE="
)
PRIVILEGE_PAYLOAD = json.dumps(
    {"room_id": "room-1", "privilege": {"1": 1, "2": 0}, "stream_id_list": None}, separators=(",", ":")
)


def _vector(layout: TokenLayout, **overrides: Any) -> str:
    args: dict[str, Any] = {
        "app_id": 1,
        "user_id": "demo",
        "secret": SECRET,
        "effective_seconds": 3600,
        "now": CTIME,
        "nonce": 123456789,
        "layout": layout,
        "iv": b"0123456789abcdef" if layout is TokenLayout.CBC else bytes.fromhex("000102030405060708090a0b"),
    }
    args.update(overrides)
    return mint_token04(**args)


def _buf(token: str) -> bytearray:
    assert token.startswith("04")
    return bytearray(base64.b64decode(token[2:]))


def _tok(buf: bytes | bytearray) -> str:
    return "04" + base64.b64encode(bytes(buf)).decode("ascii")


def test_cbc_worked_vector() -> None:
    assert _vector(TokenLayout.CBC) == CBC_VECTOR


def test_gcm_worked_vector() -> None:
    assert _vector(TokenLayout.GCM) == GCM_VECTOR


def test_gcm_is_default_layout() -> None:
    token = mint_token04(
        app_id=1,
        user_id="demo",
        secret=SECRET,
        effective_seconds=3600,
        now=CTIME,
        nonce=123456789,
        iv=bytes.fromhex("000102030405060708090a0b"),
    )
    assert token == GCM_VECTOR


def test_gcm_plaintext_is_compact_json_in_key_order() -> None:
    buf = bytes(_buf(GCM_VECTOR))
    nonce, ct = buf[10:22], buf[24:-1]
    assert buf[-1] == 1
    assert AESGCM(SECRET.encode()).decrypt(nonce, ct, None).decode() == PLAINTEXT


@pytest.mark.parametrize(("token", "layout"), [(CBC_VECTOR, TokenLayout.CBC), (GCM_VECTOR, TokenLayout.GCM)])
def test_decode_worked_vectors(token: str, layout: TokenLayout) -> None:
    assert decode_token04(token, SECRET) == Token04Claims(
        app_id=1,
        user_id="demo",
        nonce=123456789,
        ctime=CTIME,
        expire=EXPIRE,
        payload="",
        layout=layout,
    )


@pytest.mark.parametrize("layout", list(TokenLayout))
def test_round_trip_with_privilege_payload(layout: TokenLayout) -> None:
    token = mint_token04(
        app_id=4_000_000_000,
        user_id="用户-42",
        secret=SECRET,
        effective_seconds=600,
        payload=PRIVILEGE_PAYLOAD,
        layout=layout,
    )
    claims = verify_token04(token, SECRET, app_id=4_000_000_000, user_id="用户-42")
    assert claims.layout is layout
    assert claims.payload == PRIVILEGE_PAYLOAD
    assert json.loads(claims.payload)["privilege"] == {"1": 1, "2": 0}
    assert claims.expire == claims.ctime + 600
    assert 0 < claims.nonce < 2**31


def test_decode_cbc_with_zero_mode_byte() -> None:
    token = _tok(_buf(CBC_VECTOR) + b"\x00")
    claims = decode_token04(token, SECRET)
    assert claims.layout is TokenLayout.CBC
    assert claims.expire == EXPIRE


@pytest.mark.parametrize("token", [CBC_VECTOR, GCM_VECTOR])
def test_wrong_secret_is_decryption_error(token: str) -> None:
    with pytest.raises(Token04DecryptionError) as info:
        decode_token04(token, OTHER_SECRET)
    assert OTHER_SECRET not in str(info.value)
    assert SECRET not in repr(info.value)


@pytest.mark.parametrize("token", [CBC_VECTOR, GCM_VECTOR])
def test_tampered_ciphertext_byte(token: str) -> None:
    buf = _buf(token)
    index = len(buf) - 5  # inside the last ciphertext block / the GCM tag
    buf[index] ^= 0x01
    with pytest.raises(Token04DecryptionError):
        decode_token04(_tok(buf), SECRET)


@pytest.mark.parametrize("token", [CBC_VECTOR, GCM_VECTOR])
def test_tampered_outer_expire(token: str) -> None:
    buf = _buf(token)
    buf[7] ^= 0x01
    with pytest.raises(Token04DecryptionError, match="expire"):
        decode_token04(_tok(buf), SECRET)


@pytest.mark.parametrize(
    "token",
    [
        "03" + CBC_VECTOR[2:],
        "04!!!not-base64",
        "04" + base64.b64encode(b"\x00" * 5).decode(),
        _tok(_buf(GCM_VECTOR)[:-20]),
        _tok(_buf(GCM_VECTOR)[:-1] + b"\x02"),
        _tok(_buf(GCM_VECTOR) + b"\x01"),
        _tok(_buf(CBC_VECTOR) + b"\x01"),
    ],
    ids=["prefix", "base64", "short", "truncated", "mode-2", "trailing", "cbc-as-gcm"],
)
def test_malformed(token: str) -> None:
    with pytest.raises(Token04MalformedError):
        decode_token04(token, SECRET)


def test_verify_accepts_valid_token() -> None:
    claims = verify_token04(GCM_VECTOR, SECRET, app_id=1, user_id="demo", now=EXPIRE - 1)
    assert claims.user_id == "demo"


@pytest.mark.parametrize("now", [EXPIRE, EXPIRE + 1])
def test_verify_expired(now: int) -> None:
    with pytest.raises(Token04ExpiredError):
        verify_token04(CBC_VECTOR, SECRET, app_id=1, user_id="demo", now=now)


def test_verify_wrong_user() -> None:
    with pytest.raises(Token04ClaimsMismatchError, match="user_id"):
        verify_token04(GCM_VECTOR, SECRET, app_id=1, user_id="someone-else", now=CTIME)


def test_verify_wrong_app() -> None:
    with pytest.raises(Token04ClaimsMismatchError, match="app_id"):
        verify_token04(GCM_VECTOR, SECRET, app_id=2, user_id="demo", now=CTIME)


def test_errors_are_value_errors() -> None:
    for cls in (
        Token04MalformedError,
        Token04DecryptionError,
        Token04ExpiredError,
        Token04ClaimsMismatchError,
    ):
        assert issubclass(cls, Token04Error)
    assert issubclass(Token04Error, ValueError)


@pytest.mark.parametrize(
    ("overrides", "argument"),
    [
        ({"app_id": 0}, "app_id"),
        ({"app_id": 2**32}, "app_id"),
        ({"app_id": -1}, "app_id"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": "u" * 65}, "user_id"),
        ({"secret": SECRET[:-1]}, "secret"),
        ({"secret": SECRET + "0"}, "secret"),
        ({"effective_seconds": 0}, "effective_seconds"),
        ({"effective_seconds": -5}, "effective_seconds"),
        ({"iv": b"short"}, "iv"),
    ],
)
def test_mint_rejects_bad_inputs(overrides: dict[str, Any], argument: str) -> None:
    for layout in TokenLayout:
        with pytest.raises(ValueError, match=argument) as info:
            _vector(layout, **overrides)
        assert SECRET[:8] not in str(info.value)


def test_user_id_of_64_chars_is_allowed() -> None:
    token = _vector(TokenLayout.GCM, user_id="u" * 64)
    assert decode_token04(token, SECRET).user_id == "u" * 64


def test_random_ivs_differ() -> None:
    def mint(layout: TokenLayout) -> str:
        return mint_token04(
            app_id=1, user_id="demo", secret=SECRET, effective_seconds=3600, now=CTIME, nonce=1, layout=layout
        )

    for layout in TokenLayout:
        first, second = _buf(mint(layout)), _buf(mint(layout))
        iv_len = 16 if layout is TokenLayout.CBC else 12
        assert first[10 : 10 + iv_len] != second[10 : 10 + iv_len]
        assert first != second
    cbc_iv = bytes(_buf(mint(TokenLayout.CBC))[10:26]).decode("ascii")
    assert set(cbc_iv) <= set(string.digits + string.ascii_lowercase)
