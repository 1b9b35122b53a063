"""The one place where ZEGO signatures are computed.

Two schemes exist, and both live here so nothing else hashes secrets:

* API requests (spec §1.4): ``md5(str(AppId) + SignatureNonce + ServerSecret + str(Timestamp))``,
  lowercase hex, with the timestamp in **seconds**.
* Server callbacks (spec §8.4): ``sha1("".join(sorted([CallbackSecret, str(Timestamp), Nonce])))``,
  lowercase hex, with the timestamp in **milliseconds**, as sent.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = [
    "api_signature",
    "callback_signature",
    "new_nonce",
    "verify_api_signature",
    "verify_callback_signature",
]


def new_nonce() -> str:
    """A fresh SignatureNonce: 16 hex characters (8 random bytes), as the current docs ask."""
    return secrets.token_hex(8)


def api_signature(app_id: int, nonce: str, server_secret: str, timestamp: int) -> str:
    """Sign one API request (spec §1.4). ``timestamp`` is Unix time in seconds."""
    material = f"{app_id}{nonce}{server_secret}{timestamp}".encode()
    # md5 is ZEGO's choice, not ours; it is an authenticator here, not a password hash.
    return hashlib.md5(material, usedforsecurity=False).hexdigest()


def verify_api_signature(
    app_id: int,
    nonce: str,
    server_secret: str,
    timestamp: int,
    signature: str,
    *,
    case_sensitive: bool = False,
) -> bool:
    """Constant-time check of an API request signature.

    ZEGO specifies lowercase hex (spec §1.4). ``case_sensitive`` compares exactly, so an uppercase
    signature fails as it would at a server comparing strings; otherwise case is ignored.
    """
    given = signature if case_sensitive else signature.lower()
    return hmac.compare_digest(api_signature(app_id, nonce, server_secret, timestamp), given)


def callback_signature(callback_secret: str, timestamp: str | int, nonce: str) -> str:
    """Sign one server callback (spec §8.4). ``timestamp`` is the decimal string ZEGO sent (ms)."""
    parts = sorted([callback_secret, str(timestamp), nonce])
    return hashlib.sha1("".join(parts).encode(), usedforsecurity=False).hexdigest()


def verify_callback_signature(callback_secret: str, timestamp: str | int, nonce: str, signature: str) -> bool:
    """Constant-time check of a callback signature."""
    return hmac.compare_digest(callback_signature(callback_secret, timestamp, nonce), signature.lower())
