"""Result rows, the printed table and ``bench/results/latest.json``."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Report", "Row"]


@dataclass
class Row:
    """One measured metric, agentgw beside the baseline."""

    scenario: str
    metric: str
    agentgw: float
    baseline: float
    unit: str
    target: str = "-"
    passed: bool | None = None
    """None: reported for information, no target."""

    @property
    def ratio(self) -> float:
        if not self.baseline or math.isnan(self.baseline) or math.isnan(self.agentgw):
            return math.nan
        return self.agentgw / self.baseline

    @property
    def verdict(self) -> str:
        return "info" if self.passed is None else ("PASS" if self.passed else "FAIL")


def _fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    if unit in ("/s", "events", "streams", "calls") or abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3f}"
    return f"{text} {unit}".strip()


@dataclass
class Report:
    """Everything one run measured."""

    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(
            f"  {row.scenario:<12} {row.metric:<34} agentgw {_fmt(row.agentgw, row.unit):>14}"
            f"  baseline {_fmt(row.baseline, row.unit):>14}  ratio {row.ratio:6.2f}"
            f"  target {row.target:<22} {row.verdict}",
            flush=True,
        )
        return row

    def table(self) -> str:
        headers = ("scenario", "metric", "agentgw", "baseline", "ratio", "target", "result")
        body = [
            (
                r.scenario,
                r.metric,
                _fmt(r.agentgw, r.unit),
                _fmt(r.baseline, r.unit),
                "n/a" if math.isnan(r.ratio) else f"{r.ratio:.2f}x",
                r.target,
                r.verdict,
            )
            for r in self.rows
        ]
        widths = [max(len(str(c)) for c in column) for column in zip(headers, *body, strict=False)]
        lines = [" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
        lines.append("-+-".join("-" * w for w in widths))
        lines += [" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
        return "\n".join(lines)

    def failed(self) -> list[Row]:
        return [r for r in self.rows if r.passed is False]

    def write(self, path: Path, meta: dict[str, Any]) -> None:
        rows = [{**asdict(r), "ratio": r.ratio, "result": r.verdict} for r in self.rows]
        payload = {"meta": meta, "rows": rows, "details": self.details}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2, default=_json_default, allow_nan=True) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
