"""Everything the ZEGO client raises, and the one table from ZEGO's codes (spec §7) to a class.

The classes are the domain's ZEGO error tree (``service.domain.zego_errors``), re-exported here, so
the adapter raises exactly what the domain branches on. ``from_code`` is the only place that maps a
ZEGO code to a class; ``API_ERROR_CLASSES`` is the table it reads.
"""

from __future__ import annotations

from collections.abc import Collection
from types import MappingProxyType
from typing import Final

from service.domain.zego_errors import (
    GRACEFUL_SHUTDOWN_IN_PROGRESS,
    ZegoAgentAlreadyExists,
    ZegoAgentNotFound,
    ZegoApiError,
    ZegoConcurrencyLimit,
    ZegoConnectError,
    ZegoCredentialsRejected,
    ZegoDeadlineExceeded,
    ZegoDigitalHumanNotFound,
    ZegoError,
    ZegoInstanceNotFound,
    ZegoInvalidRequest,
    ZegoProtocolError,
    ZegoRateLimited,
    ZegoServiceError,
    ZegoStateConflict,
    ZegoTimeout,
    ZegoTransportError,
)

__all__ = [
    "API_ERROR_CLASSES",
    "GRACEFUL_SHUTDOWN_IN_PROGRESS",
    "ZegoAgentAlreadyExists",
    "ZegoAgentNotFound",
    "ZegoApiError",
    "ZegoConcurrencyLimit",
    "ZegoConnectError",
    "ZegoCredentialsRejected",
    "ZegoDeadlineExceeded",
    "ZegoDigitalHumanNotFound",
    "ZegoError",
    "ZegoInstanceNotFound",
    "ZegoInvalidRequest",
    "ZegoProtocolError",
    "ZegoRateLimited",
    "ZegoServiceError",
    "ZegoStateConflict",
    "ZegoTimeout",
    "ZegoTransportError",
    "error_class",
    "from_code",
]


_CODE_GROUPS: Final[dict[type[ZegoApiError], tuple[int, ...]]] = {
    ZegoCredentialsRejected: (
        100000004,  # signature expired
        100000005,  # signature wrong
        100000009,  # Signature empty
        100000010,  # ServerSecret lookup failed (AppId)
        100000011,  # app config lookup failed
        100000017,  # app has not enabled the service
        410000002,  # invalid AppID
        410000005,  # gateway auth failed
        410000006,  # app has not enabled the service
        410001033,  # LLM test account expired
        410001034,  # TTS test account expired
        410001035,  # app test account expired
        400000002,  # Digital Human API not enabled for the app
        400010001,  # no Digital Human API call permission
    ),
    ZegoInvalidRequest: (
        100000000,  # wrong Host header
        100000001,  # AppId format
        100000002,  # Timestamp empty
        100000003,  # Timestamp format
        100000006,  # Action empty
        100000007,  # unsupported Action
        100000008,  # SignatureNonce empty
        100000012,  # HTTP body unreadable
        100000013,  # SignatureVersion empty
        100000014,  # unsupported SignatureVersion
        410000003,  # invalid parameter
        410000004,  # JSON parse failed
        410000014,  # invalid digital-human parameter
        410001026,  # digital-human ConfigId not supported
        410001047,  # ApiKey "zego_test" with a non-allowed LLM.Url
        400000001,  # Digital Human API: invalid input parameter
        400000004,  # Digital Human API: timbre not found
    ),
    ZegoDigitalHumanNotFound: (
        410001027,  # DigitalHumanId incorrect
        410001048,  # DigitalHumanId not owned by this app
        400000003,  # Digital Human API: digital human not found
    ),
    ZegoAgentAlreadyExists: (410001008,),
    ZegoAgentNotFound: (410001009,),
    ZegoInstanceNotFound: (410001002,),
    ZegoConcurrencyLimit: (
        410000011,  # voice instances
        410001025,  # digital-human resources (ZEGO's sample treats it as the concurrency limit)
        410001031,  # digital-human concurrency (ZEGO's docs)
        400000008,  # Digital Human API: video stream concurrency
    ),
    ZegoRateLimited: (410001029,),
    ZegoStateConflict: (
        410001013,  # agent is listening (walkie-talkie)
        410001016,  # user not in the instance's room
        410001030,  # digital-human stream ID duplicate
        GRACEFUL_SHUTDOWN_IN_PROGRESS,  # graceful shutdown in progress
        410001042,  # not walkie-talkie mode
        410001043,  # stale Sequence
        410001046,  # user not publishing yet
        410001049,  # live digital human refuses API control
    ),
}

#: ZEGO code -> exception class; codes not listed map to ZegoServiceError.
API_ERROR_CLASSES: Final = MappingProxyType(
    {code: cls for cls, codes in _CODE_GROUPS.items() for code in codes}
)


def error_class(code: int) -> type[ZegoApiError]:
    """The class ZEGO's answer ``code`` is raised as (``ZegoServiceError`` for codes not listed)."""
    return API_ERROR_CLASSES.get(code, ZegoServiceError)


def from_code(
    code: int,
    message: str,
    request_id: str,
    action: str,
    *,
    rate_limit_codes: Collection[int] = (),
) -> ZegoApiError:
    """Build the exception for a non-zero envelope ``Code``.

    ``rate_limit_codes`` are extra codes to treat as ``ZegoRateLimited`` (ZEGO's code for its generic
    per-action limit is undocumented, so deployments configure it once observed).
    """
    cls = ZegoRateLimited if code in rate_limit_codes else API_ERROR_CLASSES.get(code, ZegoServiceError)
    return cls(code, message, request_id, action)
