"""Request bodies and response ``Data`` of ZEGO's Digital Human API asset actions.

The Digital Human API is a separate ZEGO product on its own host, signed exactly like the AI Agent
API (docs/zego-digital-human-api.md §1). agentgw uses only its three read-only asset actions:
``GetDigitalHumanList``, ``GetDigitalHumanInfo`` and ``GetTimbreList`` (§2-§4). Fields ZEGO does not
document for a response (``InferenceModes``, a timbre's ``IsPublic``) are optional here [INFER]: a
server that omits them still parses, and unknown keys are ignored like everywhere on the wire.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final
from urllib.parse import urlsplit

from service.zego.models_config import WireModel
from service.zego.regions import REGION_BASE_URLS, resolve_base_url

__all__ = [
    "DEFAULT_DIGITAL_HUMAN_BASE",
    "DIGITAL_HUMAN_BASE_URLS",
    "EMULATOR_DIGITAL_HUMAN_PATH",
    "FETCH_ALL",
    "FETCH_PRIVATE",
    "FETCH_PUBLIC",
    "AvatarAction",
    "DigitalHumanInfo",
    "DigitalHumanSummary",
    "GetDigitalHumanInfoRequest",
    "GetDigitalHumanListData",
    "GetDigitalHumanListRequest",
    "GetTimbreListData",
    "GetTimbreListRequest",
    "Timbre",
    "derive_digital_human_base",
    "resolve_digital_human_base",
]

#: ``FetchMode`` (§2): everything, public only, private only.
FETCH_ALL: Final = 1
FETCH_PUBLIC: Final = 2
FETCH_PRIVATE: Final = 3

#: The host in ZEGO's docs; ZEGO's quick-start sample server uses ``aigc-digital-human-api`` (§1).
DEFAULT_DIGITAL_HUMAN_BASE: Final = "https://aigc-digitalhuman-api.zegotech.cn"

#: Named Digital Human API hosts. ZEGO documents no regional variants of this host (§1).
DIGITAL_HUMAN_BASE_URLS: Final = MappingProxyType(
    {
        "unified": DEFAULT_DIGITAL_HUMAN_BASE,
        "sample": "https://aigc-digital-human-api.zegotech.cn",
    }
)

#: Where the bundled emulator serves the Digital Human API, under its own base URL.
EMULATOR_DIGITAL_HUMAN_PATH: Final = "/digitalhuman"


def resolve_digital_human_base(value: str) -> str:
    """A name from ``DIGITAL_HUMAN_BASE_URLS`` (``unified``, ``sample``) or an ``http(s)://`` URL.

    Raises:
        ValueError: neither a known name nor an absolute http(s) URL without query or fragment.
    """
    named = DIGITAL_HUMAN_BASE_URLS.get(value.strip().lower())
    if named is not None:
        return named
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        known = ", ".join(sorted(DIGITAL_HUMAN_BASE_URLS))
        raise ValueError(
            f"unknown Digital Human API host {value!r}: use one of {known}, or an http(s):// URL"
        )
    return resolve_base_url(value)


def derive_digital_human_base(ai_agent_base: str) -> str:
    """The Digital Human API host to use when none is configured [INFER].

    Against ZEGO (any documented AI Agent region), the documented Digital Human host. Against anything
    else (the bundled emulator, a test double), the same server under ``EMULATOR_DIGITAL_HUMAN_PATH``.
    """
    base = resolve_base_url(ai_agent_base)
    if base in REGION_BASE_URLS.values():
        return DEFAULT_DIGITAL_HUMAN_BASE
    return base + EMULATOR_DIGITAL_HUMAN_PATH


class GetDigitalHumanListRequest(WireModel):
    """GetDigitalHumanList (§2). Absent fields take ZEGO's defaults: mode 1, fetch 1, offset 0, limit 20."""

    inference_mode: int | None = None
    fetch_mode: int | None = None
    offset: int | None = None
    limit: int | None = None


class DigitalHumanSummary(WireModel):
    """One ``DigitalHuman`` of a list answer (§2)."""

    digital_human_id: str
    name: str = ""
    avatar_url: str = ""
    is_public: bool | None = None
    inference_modes: list[int] = []


class GetDigitalHumanListData(WireModel):
    """GetDigitalHumanList ``Data``: ``total`` counts every match, not just this page."""

    total: int = 0
    digital_humans: list[DigitalHumanSummary] = []


class GetDigitalHumanInfoRequest(WireModel):
    """GetDigitalHumanInfo (§3)."""

    digital_human_id: str


class AvatarAction(WireModel):
    """One action a digital human can perform (§3): its name and a preview video."""

    action: str
    preview_url: str = ""


class DigitalHumanInfo(WireModel):
    """GetDigitalHumanInfo ``Data`` (§3). ``avatar_url`` is valid for 24 hours after the answer."""

    digital_human_id: str
    name: str = ""
    avatar_url: str = ""
    is_public: bool = False
    actions: list[AvatarAction] = []
    inference_modes: list[int] = []  # [INFER] not in ZEGO's table; empty when ZEGO omits it


class GetTimbreListRequest(WireModel):
    """GetTimbreList (§4). No ``digital_human_id`` lists public timbres; one lists those bound to it."""

    digital_human_id: str | None = None
    offset: int | None = None
    limit: int | None = None


class Timbre(WireModel):
    """One ``Timbre`` of a GetTimbreList answer (§4)."""

    timbre_id: str
    name: str = ""
    is_public: bool | None = None  # [INFER] not in ZEGO's table


class GetTimbreListData(WireModel):
    """GetTimbreList ``Data``."""

    total: int = 0
    timbres: list[Timbre] = []
