"""ZEGO return codes the emulator produces (spec §7), and the one exception that carries them.

Every rejection inside the emulator raises :class:`ZegoError`; the HTTP layer turns it into the
``{"Code", "Message", "RequestId"}`` envelope with HTTP 200, as ZEGO does.
"""

from __future__ import annotations

__all__ = ["ZegoError"]

# Gateway / common codes (spec §7.1).
APPID_FORMAT = 100000001
TIMESTAMP_EMPTY = 100000002
TIMESTAMP_FORMAT = 100000003
SIGNATURE_EXPIRED = 100000004
SIGNATURE_WRONG = 100000005
ACTION_EMPTY = 100000006
ACTION_UNSUPPORTED = 100000007
NONCE_EMPTY = 100000008
SIGNATURE_EMPTY = 100000009
SECRET_NOT_FOUND = 100000010
BODY_READ_FAILED = 100000012
SIGNATURE_VERSION_EMPTY = 100000013
SIGNATURE_VERSION_UNSUPPORTED = 100000014

# Business codes (spec §7.2).
SYSTEM_ERROR = 410000001
INVALID_PARAMETER = 410000003
JSON_PARSE_FAILED = 410000004
APP_INSTANCE_LIMIT = 410000011
INVALID_DIGITAL_HUMAN_PARAMETER = 410000014
INSTANCE_NOT_FOUND = 410001002
SEND_TTS_FAILED = 410001007
AGENT_EXISTS = 410001008
AGENT_NOT_FOUND = 410001009
INSTANCE_UPDATE_FAILED = 410001011
AGENT_LISTENING = 410001013
DH_RESOURCES_INSUFFICIENT = 410001025
DH_CONFIG_ID_UNSUPPORTED = 410001026
DH_ID_INCORRECT = 410001027
DH_CREATE_FAILED = 410001028
DH_STREAM_ID_DUPLICATE = 410001030
DH_CONCURRENCY_LIMIT = 410001031
GRACEFUL_SHUTDOWN_IN_PROGRESS = 410001041
NOT_WALKIE_TALKIE = 410001042
STALE_SEQUENCE = 410001043
USER_NOT_PUBLISHING = 410001046
ZEGO_TEST_KEY_NOT_ALLOWED = 410001047
DH_NOT_OWNED = 410001048
LIVE_DH_API_FORBIDDEN = 410001049


class ZegoError(Exception):
    """A request rejected with a ZEGO ``Code`` and a human-readable ``Message``.

    The message names the offending input (never a secret), like ZEGO's ``410000003`` messages.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ZegoError(code={self.code}, message={self.message!r})"


def invalid(message: str) -> ZegoError:
    """A ``410000003`` (invalid parameter) error whose message names the field."""
    return ZegoError(INVALID_PARAMETER, message)
