"""Input rules checked before any ZEGO call, collected as field violations.

The rules are ZEGO's (spec §1.3, §5, §6); the field paths are whatever the caller's request
calls the field, so the API layer passes them in. ``Violations.raise_if_any`` raises one
``InvalidArgument`` carrying every problem found, not just the first.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from service.domain.model import LabelOp, LabelRequirement
from service.errors import FieldViolation, InvalidArgument

__all__ = [
    "AGENT_ID_MAX_BYTES",
    "ASR_VENDORS",
    "RTC_ID_MAX_BYTES",
    "TTS_VENDORS",
    "USER_ID_MAX_BYTES",
    "Violations",
]

AGENT_ID_MAX_BYTES = 128
USER_ID_MAX_BYTES = 32
RTC_ID_MAX_BYTES = 128
AGENT_NAME_CREATE_MAX_BYTES = 256
AGENT_NAME_UPDATE_MAX_BYTES = 64

# Spec §1.3: digits, letters and !#$%&()+-:;<=.>?@[]^_{}|~,` (the space in ZEGO's list is a doc artifact).
_AGENT_ID = re.compile(r"[0-9A-Za-z!#$%&()+\-:;<=.>?@\[\]^_{}|~,`]+")
# Spec §1.3 allows digits, letters, - and _ for user ids; §6.1 adds "." for RTC properties.
_USER_ID = re.compile(r"[0-9A-Za-z_\-]+")
_RTC_ID = re.compile(r"[0-9A-Za-z_.\-]+")
# Spec §6.4 and §6.3 (the yaml enum plus the legacy "ByteDance" ZEGO's own examples still use).
# ZEGO's examples differ in case, so the checks fold case (as the emulator does).
ASR_VENDORS = ("Tencent", "AliyunParaformer", "Microsoft", "AliyunFunASR", "AliyunQwenASR", "VolcSeedASR")
TTS_VENDORS = ("Aliyun", "ByteDanceV3", "ByteDanceFlowing", "MiniMax", "CosyVoice", "ByteDance")
_LABEL_KEY = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._/\-]{0,61}[A-Za-z0-9])?")


# Spec §6.5, the ranges of the VAD fields the deprecated ASR ones stand for (§6.4).
_ASR_VAD_RANGES: dict[str, tuple[float, float]] = {
    "vad_silence_segmentation_ms": (200, 2000),
    "pause_interval_ms": (200, 2000),
    "vad_sensitive_level": (0, 3),
    "vad_min_speech_duration_ms": (0, 1000),
    "vad_energy_threshold": (0, 1),
}


class Violations:
    """Collects field violations; raise them all at once."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        """Record one broken rule."""
        self.items.append(FieldViolation(field, description))

    def check(self, ok: bool, field: str, description: str) -> bool:
        """Record a violation unless ``ok``; returns ``ok``."""
        if not ok:
            self.add(field, description)
        return ok

    def required(self, field: str, value: str | None) -> bool:
        """The value must be non-empty."""
        return self.check(bool(value), field, "is required")

    def max_bytes(self, field: str, value: str, limit: int) -> bool:
        """The value's UTF-8 encoding must fit in ``limit`` bytes."""
        size = len(value.encode())
        return self.check(size <= limit, field, f"must be at most {limit} bytes (got {size})")

    def max_chars(self, field: str, value: str, limit: int) -> bool:
        """The value must have at most ``limit`` characters."""
        return self.check(
            len(value) <= limit, field, f"must be at most {limit} characters (got {len(value)})"
        )

    def in_range(self, field: str, value: float, low: float, high: float) -> bool:
        """``low <= value <= high`` (never true of NaN)."""
        return self.check(
            low <= value <= high, field, f"must be between {low:g} and {high:g} (got {value:g})"
        )

    def finite(self, field: str, value: float) -> bool:
        """JSON, and so ZEGO, has no NaN or Infinity."""
        return self.check(math.isfinite(value), field, f"must be a finite number (got {value})")

    def one_of(self, field: str, value: str, allowed: Iterable[str]) -> bool:
        """``value`` is one of ``allowed``, ignoring case."""
        names = tuple(allowed)
        folded = value.casefold()
        return self.check(
            any(folded == name.casefold() for name in names), field, f"must be one of {', '.join(names)}"
        )

    def asr(self, field: str, vendor: str, vad: dict[str, float | None]) -> None:
        """The agent-level ASR object (spec §6.4): a known vendor, and the VAD ranges of §6.5.

        ``vad`` holds the deprecated VAD fields by their request names (None when not set):
        ``vad_silence_segmentation_ms``, ``pause_interval_ms``, ``vad_sensitive_level``,
        ``vad_min_speech_duration_ms``, ``vad_energy_threshold``.
        """
        if vendor:
            self.one_of(f"{field}.vendor", vendor, ASR_VENDORS)
        for name, value in vad.items():
            if value is None:
                continue
            low, high = _ASR_VAD_RANGES[name]
            self.in_range(f"{field}.{name}", value, low, high)

    def agent_id(self, field: str, value: str) -> None:
        """ZEGO AgentId: required, at most 128 bytes, ZEGO's charset."""
        if self.required(field, value) and self.max_bytes(field, value, AGENT_ID_MAX_BYTES):
            self.check(
                _AGENT_ID.fullmatch(value) is not None,
                field,
                "may contain only letters, digits and !#$%&()+-:;<=.>?@[]^_{}|~,`",
            )

    def user_id(self, field: str, value: str, *, required: bool = True) -> None:
        """ZEGO UserId: at most 32 bytes of letters, digits, '-' and '_'."""
        if not value and not required:
            return
        if self.required(field, value) and self.max_bytes(field, value, USER_ID_MAX_BYTES):
            self.check(
                _USER_ID.fullmatch(value) is not None, field, "may contain only letters, digits, '-' and '_'"
            )

    def rtc_id(self, field: str, value: str, *, required: bool = True, limit: int = RTC_ID_MAX_BYTES) -> None:
        """An RTC room, stream or agent user id: letters, digits, '_', '-' and '.'."""
        if not value and not required:
            return
        if self.required(field, value) and self.max_bytes(field, value, limit):
            self.check(
                _RTC_ID.fullmatch(value) is not None,
                field,
                "may contain only letters, digits, '_', '-' and '.'",
            )

    def labels(self, field: str, labels: Iterable[tuple[str, str]]) -> None:
        """Label keys are DNS-like names (at most 63 chars); values at most 256 chars."""
        count = 0
        for key, value in labels:
            count += 1
            self.check(
                _LABEL_KEY.fullmatch(key) is not None,
                f"{field}[{key!r}]",
                "key must be 1-63 characters of letters, digits, '.', '_', '/', '-', starting and ending "
                "with a letter or digit",
            )
            self.max_chars(f"{field}[{key!r}]", value, 256)
        self.check(count <= 32, field, f"at most 32 labels are allowed (got {count})")

    def raise_if_any(self) -> None:
        """Raise ``InvalidArgument`` with every violation collected so far."""
        if self.items:
            raise InvalidArgument(list(self.items))


def is_label_key(key: str) -> bool:
    """Whether ``key`` is a valid label key."""
    return _LABEL_KEY.fullmatch(key) is not None


def parse_label_selector(text: str, field: str = "label_selector") -> tuple[LabelRequirement, ...]:
    """Parse ``k=v,k!=v,k,!k`` (Kubernetes' equality-based selectors, without set operators).

    Raises:
        InvalidArgument: a clause is malformed; the message names it.
    """
    requirements: list[LabelRequirement] = []
    for raw in text.split(","):
        clause = raw.strip()
        if not clause:
            continue
        if "!=" in clause:
            key, _, value = clause.partition("!=")
            op = LabelOp.NOT_EQUALS
        elif "=" in clause:
            key, _, value = clause.partition("=")
            key, value = key.rstrip("="), value.lstrip("=")  # accept Kubernetes' "==" too
            op = LabelOp.EQUALS
        elif clause.startswith("!"):
            key, value, op = clause[1:], "", LabelOp.NOT_EXISTS
        else:
            key, value, op = clause, "", LabelOp.EXISTS
        key = key.strip()
        if not is_label_key(key):
            raise InvalidArgument([FieldViolation(field, f"{clause!r} does not name a valid label key")])
        requirements.append(LabelRequirement(key, op, value.strip()))
    return tuple(requirements)
