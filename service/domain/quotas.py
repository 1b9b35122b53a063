"""Per-caller quotas: how many concurrent sessions of each pool a caller may hold, and what share
of ZEGO's per-action request rate it may use.

Loaded from ``AGENTGW_QUOTAS_FILE`` (TOML)::

    [default]                 # every caller not listed below
    voice = 5
    digital_human = 2
    rate_share = 0.5          # of each ZEGO action's rate (10/s by default)

    [callers."billing-svc"]
    voice = 10
    digital_human = 10
    rate_share = 1.0

A missing key means "no quota" for that limit (the pool's own limit still applies). Admins are
held to their quota like anyone else: a quota protects the account's cap, not a permission.
Quotas are checked inside the same ledger transaction as admission, so concurrent creates by one
caller cannot overshoot it.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CallerQuota", "QuotaPolicy", "load_quotas"]

_POOLS = ("voice", "digital_human")
_KEYS = frozenset({*_POOLS, "rate_share"})


@dataclass(frozen=True)
class CallerQuota:
    """One caller's limits; None is unlimited."""

    voice: int | None = None
    digital_human: int | None = None
    rate_share: float | None = None
    """Fraction (0, 1] of each ZEGO action's rate this caller may use."""

    def sessions(self, pool: str) -> int | None:
        """The concurrent-session quota of ``pool``."""
        value: int | None = getattr(self, pool)
        return value


@dataclass(frozen=True)
class QuotaPolicy:
    """Quotas per caller, with a default for callers not listed."""

    default: CallerQuota = field(default_factory=CallerQuota)
    callers: Mapping[str, CallerQuota] = field(default_factory=dict)

    def for_caller(self, name: str) -> CallerQuota:
        """The quota that applies to ``name``."""
        return self.callers.get(name, self.default)

    @property
    def limits_rate(self) -> bool:
        """Whether any caller has a rate share (so the ZEGO limiter must be fair)."""
        return self.default.rate_share is not None or any(
            q.rate_share is not None for q in self.callers.values()
        )


def _quota(where: str, raw: Any) -> CallerQuota:
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a table")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (expected voice, digital_human, rate_share)")
    values: dict[str, Any] = {}
    for pool in _POOLS:
        if pool in raw:
            value = raw[pool]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{where}.{pool} must be a whole number >= 0")
            values[pool] = value
    if "rate_share" in raw:
        share = raw["rate_share"]
        if not isinstance(share, int | float) or isinstance(share, bool) or not math.isfinite(share):
            raise ValueError(f"{where}.rate_share must be a number")
        if not 0 < share <= 1:
            raise ValueError(f"{where}.rate_share must be above 0 and at most 1")
        values["rate_share"] = float(share)
    return CallerQuota(**values)


def load_quotas(path: Path) -> QuotaPolicy:
    """Parse a quotas file.

    Raises:
        ValueError: one line saying what is wrong and where.
    """
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    unknown = sorted(set(data) - {"default", "callers"})
    if unknown:
        raise ValueError(f"{path}: unknown table {unknown[0]!r} (expected default, callers)")
    default = _quota("default", data.get("default", {}))
    callers_raw = data.get("callers", {})
    if not isinstance(callers_raw, dict):
        raise ValueError(f"{path}: callers must be a table of tables")
    callers = {name: _quota(f"callers.{name}", raw) for name, raw in callers_raw.items()}
    return QuotaPolicy(default=default, callers=callers)
