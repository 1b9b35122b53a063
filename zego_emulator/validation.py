"""Typed reads of raw request JSON, with ZEGO's field limits and ``410000003`` messages.

The emulator deliberately does not share the gateway's client models: it checks raw JSON on its own, so
a drift between what the client sends and what ZEGO accepts shows up in tests.

Two rules hold everywhere: a JSON ``null`` counts as an absent field (ZEGO's own sample sends
``"LLM": null``), and every message names the field by its dotted path (``"RTC.RoomId is required"``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from .errors import invalid

__all__ = [
    "AGENT_ID_RE",
    "INT64_MAX",
    "RTC_ID_RE",
    "USER_ID_RE",
    "Fields",
    "Json",
]

Json = dict[str, Any]
"""A decoded JSON object."""

INT64_MAX = 2**63 - 1

# Spec §1.3: AgentId allows digits, letters and !#$%&()+-:;<=.>?@[]^_{}|~, (the space in the docs'
# list is treated as a formatting artifact).
AGENT_ID_RE = re.compile(r"[0-9A-Za-z!#$%&()+\-:;<=.>?@\[\]^_{}|~,]+")
# Spec §1.3: UserId allows digits, letters, '-' and '_'.
USER_ID_RE = re.compile(r"[0-9A-Za-z_\-]+")
# Spec §6.1 (A/SHARED) also allows '.' in RTC properties; the looser rule wins so real clients that
# follow the schema are not rejected (§15 item 7).
RTC_ID_RE = re.compile(r"[0-9A-Za-z_.\-]+")


def _check_range(name: str, value: float, lo: float | None, hi: float | None) -> None:
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if lo is not None and hi is not None:
            raise invalid(f"{name} must be between {lo:g} and {hi:g}")
        raise invalid(
            f"{name} must be at least {lo:g}" if lo is not None else f"{name} must be at most {hi:g}"
        )


class Fields:
    """Reads typed fields of one JSON object, reporting errors by dotted path.

    Example::

        rtc = Fields(body).obj("RTC", required=True)
        room = rtc.text("RoomId", required=True, max_bytes=128, pattern=RTC_ID_RE)
    """

    def __init__(self, data: Mapping[str, Any], path: str = "") -> None:
        self._data = data
        self.path = path

    def name(self, key: str) -> str:
        """The dotted path of ``key`` inside this object, for messages."""
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str) -> Any:
        """The raw value, with ``null`` and absence both returned as ``None``."""
        return self._data.get(key)

    def has(self, key: str) -> bool:
        """Whether ``key`` is present with a non-null value."""
        return self._data.get(key) is not None

    def clean(self) -> Json:
        """A copy of the object without its ``null`` members (kept for storage and echo)."""
        return {k: v for k, v in self._data.items() if v is not None}

    def _missing(self, key: str) -> Exception:
        return invalid(f"{self.name(key)} is required")

    def obj(self, key: str, *, required: bool = False, alias: str | None = None) -> Fields | None:
        """A nested object; ``alias`` is an accepted alternative key (``RtcInfo`` for ``RTC``)."""
        used = key
        value = self._data.get(key)
        if value is None and alias is not None and self._data.get(alias) is not None:
            used, value = alias, self._data[alias]
        if value is None:
            if required:
                raise self._missing(key)
            return None
        if not isinstance(value, dict):
            raise invalid(f"{self.name(used)} must be an object")
        return Fields(value, self.name(used))

    def text(
        self,
        key: str,
        *,
        required: bool = False,
        max_bytes: int | None = None,
        max_chars: int | None = None,
        pattern: re.Pattern[str] | None = None,
        choices: Collection[str] | None = None,
        fold_case: bool = False,
    ) -> str | None:
        """A string. A required string must also be non-empty.

        ``fold_case`` matches ``choices`` case-insensitively and returns the canonical spelling.
        """
        value = self._data.get(key)
        if value is None or (required and value == ""):
            if required:
                raise self._missing(key)
            return None
        if not isinstance(value, str):
            raise invalid(f"{self.name(key)} must be a string")
        if max_bytes is not None and len(value.encode()) > max_bytes:
            raise invalid(f"{self.name(key)} must be at most {max_bytes} bytes")
        if max_chars is not None and len(value) > max_chars:
            raise invalid(f"{self.name(key)} must be at most {max_chars} characters")
        if pattern is not None and value and pattern.fullmatch(value) is None:
            raise invalid(f"{self.name(key)} contains characters that are not allowed")
        if choices is not None:
            if fold_case:
                canon = {c.lower(): c for c in choices}
                if value.lower() not in canon:
                    raise invalid(f"{self.name(key)} must be one of {', '.join(sorted(choices))}")
                return canon[value.lower()]
            if value not in choices:
                raise invalid(f"{self.name(key)} must be one of {', '.join(sorted(choices))}")
        return value

    def integer(
        self,
        key: str,
        *,
        required: bool = False,
        lo: int | None = None,
        hi: int | None = None,
        choices: Collection[int] | None = None,
    ) -> int | None:
        """An integer (JSON booleans and fractional numbers are rejected)."""
        value = self._data.get(key)
        if value is None:
            if required:
                raise self._missing(key)
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(f"{self.name(key)} must be an integer")
        if choices is not None and value not in choices:
            raise invalid(f"{self.name(key)} must be one of {', '.join(str(c) for c in sorted(choices))}")
        _check_range(self.name(key), value, lo, hi)
        return value

    def number(self, key: str, *, lo: float | None = None, hi: float | None = None) -> float | None:
        """A number (integer or float)."""
        value = self._data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise invalid(f"{self.name(key)} must be a number")
        _check_range(self.name(key), value, lo, hi)
        return float(value)

    def boolean(self, key: str) -> bool | None:
        """A JSON boolean."""
        value = self._data.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise invalid(f"{self.name(key)} must be a boolean")
        return value

    def array(self, key: str, *, required: bool = False, max_items: int | None = None) -> list[Any] | None:
        """A JSON array."""
        value = self._data.get(key)
        if value is None:
            if required:
                raise self._missing(key)
            return None
        if not isinstance(value, list):
            raise invalid(f"{self.name(key)} must be an array")
        if max_items is not None and len(value) > max_items:
            raise invalid(f"{self.name(key)} must have at most {max_items} items")
        return value

    def objects(self, key: str, *, required: bool = False, max_items: int | None = None) -> list[Fields]:
        """A JSON array of objects, each wrapped for further reads (``Messages[2].Role``)."""
        items = self.array(key, required=required, max_items=max_items) or []
        out: list[Fields] = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise invalid(f"{self.name(key)}[{i}] must be an object")
            out.append(Fields(item, f"{self.name(key)}[{i}]"))
        return out

    def strings(self, key: str, *, max_items: int | None = None, max_chars: int | None = None) -> list[str]:
        """A JSON array of strings."""
        items = self.array(key, max_items=max_items) or []
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise invalid(f"{self.name(key)}[{i}] must be a string")
            if max_chars is not None and len(item) > max_chars:
                raise invalid(f"{self.name(key)}[{i}] must be at most {max_chars} characters")
        return list(items)
