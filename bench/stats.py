"""Percentiles and summaries (nearest rank, as the service's own turn stats)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = ["percentile", "summary"]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, ``q`` in [0, 1]; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q * len(ordered))))
    return ordered[rank - 1]


def summary(values: Iterable[float]) -> dict[str, float]:
    """count, p50, p99, max and mean of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return {"count": 0, "p50": math.nan, "p99": math.nan, "max": math.nan, "mean": math.nan}
    return {
        "count": len(ordered),
        "p50": percentile(ordered, 0.50),
        "p99": percentile(ordered, 0.99),
        "max": ordered[-1],
        "mean": sum(ordered) / len(ordered),
    }
