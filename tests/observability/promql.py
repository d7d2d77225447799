"""Reading the queries of the generated rules and dashboards: metric names and label matchers from parsed
PromQL (promql-parser), Grafana's variables expanded, and the metric families each name may come from."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import yaml
from bakeoff_operator.io.metrics import OperatorMetrics
from bakeoff_operator.observability import files, rules
from prometheus_client import Gauge

from tests.conformance.snapshot import read_snapshot

REPO = Path(__file__).resolve().parents[2]
CHART_FILES = REPO / "charts/bakeoff/files"
RULE_FILE = CHART_FILES / files.RULE_FILE
UNIT_TESTS = Path(__file__).with_name("rules-test.yaml")

# Labels Prometheus or the scrape configuration put on every scraped series.
TARGET_LABELS = frozenset({"namespace", "variant", "instance", "job", "pod", "container", "service", "endpoint"})
# Another part of the operator exports these; the rules reference them by name and labels.
AWAITED_OPERATOR_METRICS: dict[str, frozenset[str]] = {
    rules.BAKEOFF_LAST_RUN_FAILED: frozenset({"namespace", "bakeoff"}),
    rules.BAKEOFF_RESULT: frozenset({"namespace", "bakeoff", "variant", "metric"}),
}
# Grafana's variables, as a test expands them.
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__range": "5m", "__interval": "15s"}


@dataclass(frozen=True)
class Selector:
    name: str
    labels: frozenset[str]


def selectors(expr: str) -> list[Selector]:
    """Every vector selector of a PromQL expression: its metric name and the labels it matches on."""
    found: list[Selector] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            found.append(Selector(node.name, frozenset(m.name for m in node.matchers.matchers)))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def expand(expr: str, values: Mapping[str, str]) -> str:
    """Grafana's `$name`, `${name}` and `${name:format}` replaced by `values`, then its built-ins."""
    merged = {**GRAFANA_BUILTINS, **values}

    def sub(m: re.Match[str]) -> str:
        name = m.group("braced") or m.group("plain")
        if name not in merged:
            raise KeyError(f"no value for Grafana variable ${name} in {expr!r}")
        return merged[name]

    return re.sub(r"\$(?:\{(?P<braced>\w+)(?::\w+)?\}|(?P<plain>\w+))", sub, expr)


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref: str
    expr: str
    instant: bool

    @property
    def id(self) -> str:
        return f"{self.dashboard}/{self.panel}/{self.ref}"


def dashboard_files() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((CHART_FILES / files.DASHBOARD_DIR).glob("*.json"))}


def panel_queries(dashboards: Mapping[str, Mapping[str, Any]] | None = None) -> list[PanelQuery]:
    out = []
    for name, d in (dashboards or dashboard_files()).items():
        for panel in d["panels"]:
            for target in panel.get("targets", []):
                out.append(
                    PanelQuery(name, panel["title"], target["refId"], target["expr"], bool(target.get("instant")))
                )
    return out


def variable_queries(dashboards: Mapping[str, Mapping[str, Any]] | None = None) -> list[tuple[str, str, str, str]]:
    """(dashboard, variable, selector, label) of every `label_values(selector, label)` variable."""
    out = []
    for name, d in (dashboards or dashboard_files()).items():
        for v in d["templating"]["list"]:
            if v["type"] != "query":
                continue
            m = re.fullmatch(r"label_values\((?P<selector>.+),\s*(?P<label>\w+)\)", v["query"])
            assert m, f"{name}: variable {v['name']} is not a label_values() query: {v['query']}"
            out.append((name, v["name"], m.group("selector"), m.group("label")))
    return out


def rule_file() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RULE_FILE.read_text())
    return loaded


def rule_exprs() -> Iterator[tuple[str, str]]:
    """(record or alert name, expr) of every rule of the shipped rule file."""
    for group in rule_file()["groups"]:
        for rule in group["rules"]:
            yield rule.get("record") or rule["alert"], rule["expr"]


# --- the families a name may come from ------------------------------------------------------------------
def vllm_families() -> dict[str, frozenset[str]]:
    """Series name -> labels, from the checked-in snapshot of real vLLM's /metrics (histograms: their
    `_bucket`, `_sum` and `_count` series)."""
    _, fams = read_snapshot()
    out: dict[str, frozenset[str]] = {}
    for name, (kind, labels) in fams.items():
        if kind == "histogram":
            out[f"{name}_bucket"] = labels | {"le"}
            out[f"{name}_sum"] = labels
            out[f"{name}_count"] = labels
        else:
            out[name] = labels
    return out


def exported_operator_metrics() -> dict[str, frozenset[str]]:
    """Name -> labels of every gauge in the operator's registry."""
    return {
        value._name: frozenset(value._labelnames)
        for value in vars(OperatorMetrics()).values()
        if isinstance(value, Gauge)
    }


def operator_families() -> dict[str, frozenset[str]]:
    """The operator's gauges, and the metrics another part of it is awaited to export."""
    return {**AWAITED_OPERATOR_METRICS, **exported_operator_metrics()}


def awaited_in(expr: str) -> list[str]:
    """Metrics of a query that no part of the operator exports yet."""
    exported = exported_operator_metrics()
    expanded = expand(expr, {"datasource": "prometheus", "namespace": "ns", "variant": "v"})
    return [s.name for s in selectors(expanded) if s.name in AWAITED_OPERATOR_METRICS and s.name not in exported]


def recorded_families() -> dict[str, frozenset[str] | None]:
    """Recorded series of the rule file (labels not checked: None)."""
    return dict.fromkeys(rules.recorded_names(), None)
