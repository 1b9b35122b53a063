"""Known-answer tests for ZEGO's two signature schemes (spec §1.4, §8.4)."""

from __future__ import annotations

import re

from service.zego.signing import (
    api_signature,
    callback_signature,
    new_nonce,
    verify_api_signature,
    verify_callback_signature,
)

# Official vector from the Go sample in ZEGO's signing doc (spec §1.4).
API_VECTOR = (12345, "4fd24687296dd9f3", "9193cc662a4c0ec135ec71fb57194b38", 1615186943)
API_SIGNATURE = "43e5cfcca828314675f91b001390566a"

# Official vector from ZEGO's callback verification doc (spec §8.4).
CALLBACK_VECTOR = ("secret", "1470820198", "123412")
CALLBACK_SIGNATURE = "5bd59fd62953a8059fb7eaba95720f66d19e4517"


def test_api_signature_official_vector() -> None:
    assert api_signature(*API_VECTOR) == API_SIGNATURE


def test_verify_api_signature_accepts_the_vector_in_any_case() -> None:
    assert verify_api_signature(*API_VECTOR, API_SIGNATURE)
    assert verify_api_signature(*API_VECTOR, API_SIGNATURE.upper())
    assert not verify_api_signature(*API_VECTOR, API_SIGNATURE.upper(), case_sensitive=True)
    assert verify_api_signature(*API_VECTOR, API_SIGNATURE, case_sensitive=True)


def test_verify_api_signature_rejects_wrong_signature_and_inputs() -> None:
    app_id, nonce, secret, timestamp = API_VECTOR
    assert not verify_api_signature(app_id, nonce, secret, timestamp, "0" * 32)
    assert not verify_api_signature(app_id, nonce, secret, timestamp + 1, API_SIGNATURE)
    assert not verify_api_signature(app_id, nonce, secret[::-1], timestamp, API_SIGNATURE)
    assert not verify_api_signature(app_id, nonce, secret, timestamp, "")


def test_callback_signature_official_vector() -> None:
    assert callback_signature(*CALLBACK_VECTOR) == CALLBACK_SIGNATURE
    # ZEGO sends the timestamp as a JSON number; the int form must sign identically.
    assert callback_signature("secret", 1470820198, "123412") == CALLBACK_SIGNATURE


def test_verify_callback_signature_rejects_wrong_signature() -> None:
    assert verify_callback_signature(*CALLBACK_VECTOR, CALLBACK_SIGNATURE)
    assert not verify_callback_signature(*CALLBACK_VECTOR, CALLBACK_SIGNATURE[:-1] + "0")
    assert not verify_callback_signature("other", "1470820198", "123412", CALLBACK_SIGNATURE)


def test_new_nonce_is_16_hex_and_fresh() -> None:
    nonces = {new_nonce() for _ in range(100)}
    assert len(nonces) == 100
    assert all(re.fullmatch(r"[0-9a-f]{16}", n) for n in nonces)
