"""What the chart ships: one ConfigMap per dashboard with the Grafana sidecar's label (on by default), and
a PrometheusRule whose spec is the rule file (only when enabled)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.chart_support import render
from tests.observability.promql import RULE_FILE, dashboard_files

pytestmark = pytest.mark.helm


def _kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_dashboards_are_configmaps_for_the_grafana_sidecar(helm_binary: Path, tmp_path: Path) -> None:
    docs = render(helm_binary, tmp_path, {})
    maps = {m["metadata"]["name"]: m for m in _kind(docs, "ConfigMap")}
    assert sorted(maps) == ["bakeoff-dashboard-overview", "bakeoff-dashboard-variant"]
    shipped = dashboard_files()
    for m in maps.values():
        assert m["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert m["metadata"]["namespace"] == "bakeoff-system"
        ((name, body),) = m["data"].items()
        assert json.loads(body) == shipped[name.removesuffix(".json")]
    assert not _kind(docs, "PrometheusRule")


def test_dashboard_label_namespace_and_folder_are_values(helm_binary: Path, tmp_path: Path) -> None:
    values = {
        "observability": {
            "dashboards": {
                "label": "grafana.com/dashboard",
                "labelValue": "bakeoff",
                "namespace": "monitoring",
                "annotations": {"grafana_folder": "Bakeoff"},
            }
        }
    }
    for m in _kind(render(helm_binary, tmp_path, values), "ConfigMap"):
        assert m["metadata"]["labels"]["grafana.com/dashboard"] == "bakeoff"
        assert m["metadata"]["namespace"] == "monitoring"
        assert m["metadata"]["annotations"] == {"grafana_folder": "Bakeoff"}


def test_no_dashboards_when_disabled(helm_binary: Path, tmp_path: Path) -> None:
    docs = render(helm_binary, tmp_path, {"observability": {"dashboards": {"enabled": False}}})
    assert not _kind(docs, "ConfigMap")


def test_prometheus_rule_is_the_rule_file(helm_binary: Path, tmp_path: Path) -> None:
    values = {"observability": {"prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}}}
    (rule,) = _kind(render(helm_binary, tmp_path, values), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"] == yaml.safe_load(RULE_FILE.read_text())
