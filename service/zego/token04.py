"""ZEGO RTC login tokens, version "04" (spec §13 of ``docs/zego-ai-agent-api.md``).

A token is the literal prefix ``"04"`` followed by standard base64 (with padding) of a binary buffer.
All integers are big-endian. The encrypted plaintext is compact JSON::

    {"app_id":<int>,"user_id":<str>,"nonce":<int32>,"ctime":<unix s>,"expire":<ctime+eff>,"payload":<str>}

Two buffer layouts exist; the key is the 32-character ServerSecret taken as raw UTF-8 bytes (AES-256):

* **GCM** (current, recommended)::

      int64 expire | uint16 nonceLen(=12) | nonce[12] | uint16 ctLen | ciphertext||tag[16] | uint8 mode(=1)

  AES-256-GCM without AAD; the nonce is 12 random bytes.

* **CBC** (legacy, deprecated)::

      int64 expire | uint16 ivLen(=16) | iv[16] | uint16 ctLen | AES-256-CBC(PKCS#7(plaintext))

  The IV is 16 random ASCII characters from ``[0-9a-z]``. Some producers append a mode byte ``0``.

Decoding follows §13: after ``expire``, ``len+iv`` and ``len+ct``, exactly one remaining byte is the mode
(1 = GCM, 0 = CBC) and no remaining byte means CBC. The outer ``expire`` must equal the inner one, which is
the only integrity check the CBC layout (and the unauthenticated GCM header) gets.

The secret never appears in an exception message or a repr.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import secrets
import string
import struct
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "Token04Claims",
    "Token04ClaimsMismatchError",
    "Token04DecryptionError",
    "Token04Error",
    "Token04ExpiredError",
    "Token04MalformedError",
    "TokenLayout",
    "decode_token04",
    "mint_token04",
    "verify_token04",
]

_PREFIX = "04"
_CBC_IV_LEN = 16
_GCM_NONCE_LEN = 12
_GCM_TAG_LEN = 16
_MODE_CBC = 0
_MODE_GCM = 1
_IV_ALPHABET = string.digits + string.ascii_lowercase
_INT64_MAX = 2**63 - 1


class TokenLayout(enum.Enum):
    """Binary layout / cipher of a Token04."""

    GCM = "gcm"
    CBC = "cbc"


@dataclass(frozen=True)
class Token04Claims:
    """The decrypted content of a Token04 (no secret is ever held here)."""

    app_id: int
    user_id: str
    nonce: int
    ctime: int
    expire: int
    payload: str
    layout: TokenLayout


class Token04Error(ValueError):
    """Base class for every Token04 decoding or verification failure."""


class Token04MalformedError(Token04Error):
    """Bad prefix, bad base64, inconsistent lengths, unknown mode byte, or a badly shaped plaintext."""


class Token04DecryptionError(Token04Error):
    """Decryption or an integrity check failed: wrong secret, or the token was tampered with."""


class Token04ExpiredError(Token04Error):
    """The token's ``expire`` is not after the reference time."""


class Token04ClaimsMismatchError(Token04Error):
    """The token was issued for another app or another user."""


def _key(secret: str) -> bytes:
    key = secret.encode("utf-8")
    if len(secret) != 32 or len(key) != 32:
        raise ValueError("secret must be exactly 32 ASCII characters")
    return key


def mint_token04(
    *,
    app_id: int,
    user_id: str,
    secret: str,
    effective_seconds: int,
    payload: str = "",
    layout: TokenLayout = TokenLayout.GCM,
    now: int | None = None,
    nonce: int | None = None,
    iv: bytes | None = None,
) -> str:
    """Mint a Token04. ``now`` (ctime), ``nonce`` and ``iv`` (CBC IV / GCM nonce) exist for tests."""
    _check_identity(app_id, user_id)
    key = _key(secret)
    if not _is_int(effective_seconds) or effective_seconds <= 0:
        raise ValueError("effective_seconds must be a positive integer")
    if not isinstance(payload, str):
        raise ValueError("payload must be a string")
    ctime = int(time.time()) if now is None else now
    expire = ctime + effective_seconds
    if not 0 <= expire <= _INT64_MAX:
        raise ValueError("now + effective_seconds must fit in an int64")
    claims = dict(
        app_id=app_id, user_id=user_id, nonce=_nonce(nonce), ctime=ctime, expire=expire, payload=payload
    )
    plaintext = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if layout is TokenLayout.GCM:
        iv, ciphertext, trailer = _encrypt_gcm(key, plaintext, iv)
    elif layout is TokenLayout.CBC:
        iv, ciphertext, trailer = _encrypt_cbc(key, plaintext, iv)
    else:
        raise ValueError("layout must be a TokenLayout")
    if len(ciphertext) > 0xFFFF:
        raise ValueError("payload is too long for a Token04")
    buf = struct.pack(">qH", expire, len(iv)) + iv + struct.pack(">H", len(ciphertext)) + ciphertext + trailer
    return _PREFIX + base64.b64encode(buf).decode("ascii")


def _check_identity(app_id: int, user_id: str) -> None:
    if not _is_int(app_id) or not 0 < app_id < 2**32:
        raise ValueError("app_id must be a non-zero uint32")
    if not isinstance(user_id, str) or not user_id or len(user_id) > 64:
        raise ValueError("user_id must be a non-empty string of at most 64 characters")


def _nonce(nonce: int | None) -> int:
    """The given int32 nonce, or a fresh positive one."""
    if nonce is None:
        return secrets.randbelow(2**31 - 1) + 1
    if not -(2**31) <= nonce < 2**31:
        raise ValueError("nonce must be an int32")
    return nonce


def _encrypt_gcm(key: bytes, plaintext: bytes, iv: bytes | None) -> tuple[bytes, bytes, bytes]:
    """(nonce, ciphertext with tag, mode trailer) of the GCM layout."""
    if iv is None:
        iv = secrets.token_bytes(_GCM_NONCE_LEN)
    elif len(iv) != _GCM_NONCE_LEN:
        raise ValueError(f"iv must be {_GCM_NONCE_LEN} bytes for the GCM layout")
    return iv, AESGCM(key).encrypt(iv, plaintext, None), bytes([_MODE_GCM])


def _encrypt_cbc(key: bytes, plaintext: bytes, iv: bytes | None) -> tuple[bytes, bytes, bytes]:
    """(IV, ciphertext, no trailer) of the legacy CBC layout."""
    if iv is None:
        iv = "".join(secrets.choice(_IV_ALPHABET) for _ in range(_CBC_IV_LEN)).encode("ascii")
    elif len(iv) != _CBC_IV_LEN:
        raise ValueError(f"iv must be {_CBC_IV_LEN} bytes for the CBC layout")
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return iv, encryptor.update(padded) + encryptor.finalize(), b""


def decode_token04(token: str, secret: str) -> Token04Claims:
    """Decrypt a Token04 and return its claims; checks structure and integrity but not expiry or identity."""
    key = _key(secret)
    if not isinstance(token, str) or not token.startswith(_PREFIX):
        raise Token04MalformedError("token must start with the version prefix '04'")
    try:
        buf = base64.b64decode(token[len(_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise Token04MalformedError("token body is not valid base64") from None

    try:
        outer_expire, iv_len = struct.unpack_from(">qH", buf, 0)
        iv = buf[10 : 10 + iv_len]
        (ct_len,) = struct.unpack_from(">H", buf, 10 + iv_len)
    except struct.error:
        raise Token04MalformedError("token is truncated") from None
    ciphertext, rest = buf[12 + iv_len : 12 + iv_len + ct_len], buf[12 + iv_len + ct_len :]
    if len(ciphertext) != ct_len:
        raise Token04MalformedError("token is truncated (ciphertext)")
    if len(rest) > 1:
        raise Token04MalformedError("token has trailing bytes")
    mode = rest[0] if rest else _MODE_CBC

    if mode == _MODE_GCM:
        layout = TokenLayout.GCM
        if iv_len != _GCM_NONCE_LEN or ct_len < _GCM_TAG_LEN:
            raise Token04MalformedError("GCM token has a bad nonce or ciphertext length")
        try:
            plaintext = AESGCM(key).decrypt(iv, ciphertext, None)
        except InvalidTag:
            raise Token04DecryptionError(
                "token failed GCM authentication (wrong secret or tampered)"
            ) from None
    elif mode == _MODE_CBC:
        layout = TokenLayout.CBC
        if iv_len != _CBC_IV_LEN or ct_len == 0 or ct_len % 16:
            raise Token04MalformedError("CBC token has a bad iv or ciphertext length")
        decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        unpadder = padding.PKCS7(128).unpadder()
        try:
            padded = decryptor.update(ciphertext) + decryptor.finalize()
            plaintext = unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise Token04DecryptionError("token failed CBC decryption (wrong secret or tampered)") from None
    else:
        raise Token04MalformedError(f"unknown token mode byte {mode}")

    try:
        data: Any = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        # With CBC a wrong key or a flipped bit usually yields garbage that still unpads.
        raise Token04DecryptionError("token plaintext is not JSON (wrong secret or tampered)") from None
    claims = _claims_from_json(data, layout)
    if claims.expire != outer_expire:
        raise Token04DecryptionError("token's outer expire does not match the encrypted one (tampered)")
    return claims


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _claims_from_json(data: Any, layout: TokenLayout) -> Token04Claims:
    if not isinstance(data, dict):
        raise Token04MalformedError("token plaintext is not a JSON object")
    for name in ("app_id", "nonce", "ctime", "expire"):
        if not _is_int(data.get(name)):
            raise Token04MalformedError(f"token claim {name!r} is missing or not an integer")
    user_id, payload = data.get("user_id"), data.get("payload", "")
    if not isinstance(user_id, str) or not isinstance(payload, str):
        raise Token04MalformedError("token claims 'user_id' and 'payload' must be strings")
    return Token04Claims(
        data["app_id"], user_id, data["nonce"], data["ctime"], data["expire"], payload, layout
    )


def verify_token04(
    token: str, secret: str, *, app_id: int, user_id: str, now: int | None = None
) -> Token04Claims:
    """Decode a Token04 and check it was issued for ``app_id``/``user_id`` and has not expired at ``now``."""
    claims = decode_token04(token, secret)
    if claims.app_id != app_id:
        raise Token04ClaimsMismatchError(f"token is for app_id {claims.app_id}, expected {app_id}")
    if claims.user_id != user_id:
        raise Token04ClaimsMismatchError("token was issued for a different user_id")
    current = int(time.time()) if now is None else now
    if claims.expire <= current:
        raise Token04ExpiredError(f"token expired at {claims.expire} (now {current})")
    return claims
