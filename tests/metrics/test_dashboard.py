"""The Grafana dashboard and the Prometheus rules only name metrics that agentgw exports.

Every metric named in ``deploy/grafana/agentgw.json`` queries and in ``deploy/prometheus`` rules must be
a sample of a fresh :class:`Metrics` registry (``_bucket``/``_sum``/``_count`` included) or a recording
rule defined in ``agentgw.rules.yml``. A renamed family then breaks this test, not a dashboard at 3 am.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import re
from asyncio.subprocess import PIPE
from collections.abc import Iterator
from typing import Any

import pytest

from service.api.metrics_interceptor import preinitialize
from service.metrics import Metrics

ROOT = pathlib.Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "agentgw.json"
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted([*PROMETHEUS.glob("*.rules.yml"), *PROMETHEUS.glob("*.alerts.yml")])

KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACES = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:$.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """Metric and recording-rule names in a PromQL expression (not functions, labels or keywords)."""
    stripped = _GROUPING.sub(" ", _RANGE.sub(" ", _BRACES.sub(" ", _STRING.sub('""', expr))))
    return {name for name in _IDENT.findall(stripped) if name not in KEYWORDS}


def dashboard_exprs() -> list[str]:
    def walk(panels: list[dict[str, Any]]) -> Iterator[str]:
        for panel in panels:
            yield from (t["expr"] for t in panel.get("targets", []))
            yield from walk(panel.get("panels", []))

    return list(walk(json.loads(DASHBOARD.read_text())["panels"]))


def rule_entries(path: pathlib.Path) -> list[tuple[str, str]]:
    """(key, value) of every ``record``/``alert``/``expr`` in a rules file.

    Enough YAML for our rule files (plain scalars and ``|``/``>`` blocks), so the suite needs no YAML
    library; ``test_the_rule_reader_sees_every_rule`` guards against it missing anything.
    """
    entries: list[tuple[str, str]] = []
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)(?:- )?(record|alert|expr):\s*(.*)$", line)
        if match is None:
            continue
        indent, key, value = len(match.group(1)), match.group(2), match.group(3).strip()
        if value in {"|", "|-", ">", ">-"}:
            block = []
            for follow in lines[i + 1 :]:
                if follow.strip() and len(follow) - len(follow.lstrip()) <= indent:
                    break
                block.append(follow.strip())
            value = " ".join(block)
        entries.append((key, value.strip("'\"")))
    return entries


@pytest.fixture(scope="module")
def exported() -> set[str]:
    metrics = Metrics()
    preinitialize(metrics, [])
    return {sample.name for family in metrics.registry.collect() for sample in family.samples}


@pytest.fixture(scope="module")
def recorded() -> set[str]:
    return {value for path in RULE_FILES for key, value in rule_entries(path) if key == "record"}


def test_the_rule_reader_sees_every_rule() -> None:
    for path in RULE_FILES:
        entries = rule_entries(path)
        rules = [k for k, _ in entries if k != "expr"]
        exprs = [v for k, v in entries if k == "expr"]
        assert len(rules) == len(exprs) == path.read_text().count("expr:"), path.name
        assert all(exprs), path.name


def test_the_name_extractor() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, grpc_method) (rate(grpc_server_handling_seconds_bucket"
        '{job=~"$job",grpc_type="unary"}[$__rate_interval]))) / on (job) group_left agentgw:x:ratio_rate5m'
        " > bool 0.5"
    )
    assert metric_names(expr) == {"grpc_server_handling_seconds_bucket", "agentgw:x:ratio_rate5m"}
    assert metric_names('label_replace(agentgw_sessions, "pool", "$1", "kind", "(.+)")') == {
        "agentgw_sessions"
    }


def test_dashboard_queries_name_exported_metrics(exported: set[str], recorded: set[str]) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    for expr in exprs:
        for name in metric_names(expr):
            known = recorded if ":" in name else exported
            assert name in known, f"{name} in dashboard query {expr!r}"


def test_rules_and_alerts_name_exported_metrics(exported: set[str], recorded: set[str]) -> None:
    for path in RULE_FILES:
        for key, value in rule_entries(path):
            if key != "expr":
                continue
            for name in metric_names(value):
                known = recorded if ":" in name else exported
                assert name in known, f"{name} in {path.name}: {value!r}"


def test_dashboard_shape() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"] for p in panels)
    for topic in ("cap", "heatmap", "p50 / p95 / p99", "Budget breaches", "ZEGO errors by code", "Callbacks"):
        assert topic in titles, topic
    heatmap = next(p for p in panels if p["type"] == "heatmap")
    assert heatmap["targets"][0]["format"] == "heatmap"
    quantiles = next(p for p in panels if "p50 / p95 / p99" in p["title"])
    steps = quantiles["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps if s["value"] is not None] == [1.5]
    assert quantiles["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line"


async def test_dashboard_queries_parse(tmp_path: pathlib.Path, promtool: str) -> None:
    """promtool parses every query (Grafana variables replaced) as a recording rule."""
    variables = {"$__rate_interval": "5m", "$job": ".*", "$kind": ".*", "$trigger": ".*"}
    rules = []
    for n, expr in enumerate(dashboard_exprs()):
        for var, value in variables.items():
            expr = expr.replace(var, value)
        assert "$" not in expr.replace('"$1"', ""), expr
        rules.append({"record": f"dashboard:query_{n}", "expr": expr})
    rule_file = tmp_path / "dashboard.rules.yml"
    # YAML is a superset of JSON, so promtool reads this file as it is.
    rule_file.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    check = await asyncio.create_subprocess_exec(
        promtool, "check", "rules", str(rule_file), stdout=PIPE, stderr=PIPE
    )
    async with asyncio.timeout(30):
        out, err = await check.communicate()
    assert check.returncode == 0, (out + err).decode()
