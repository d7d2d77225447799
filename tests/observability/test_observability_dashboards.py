"""The generated Grafana dashboards: what they show, that they are well formed for Grafana 11.6 (the
grafana-foundation-sdk build the project pins) and that the shipped JSON is what the SDK reads back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from bakeoff_operator.observability import dashboards
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from tests.observability.promql import dashboard_files, panel_queries

OVERVIEW_PANELS = [
    "Cost per 1M output tokens",
    "Cost per 1M tokens (prompt + output)",
    "Output tokens/s per GPU",
    "Cost per 1M output tokens over time",
    "Output tokens/s per GPU over time",
    "TTFT at the SLO percentile",
    "ITL at the SLO percentile",
    "E2E at the SLO percentile",
    "Latency percentiles (seconds, last 5m)",
    "Goodput",
    "SLO error budget burn rate (last 1h)",
    "Replicas",
    "GPUs per class",
    "Output tokens/s",
    "Saturation",
    "Requests waiting",
    "Last run of each BakeOff",
    "Recommendation and its reason",
    "Last run: Recommended",
    "Last run: Within the SLO",
    "Last run: On the Pareto frontier",
    "Last run: Cost per 1M output tokens",
    "Last run: Cost per 1M tokens (prompt + output)",
    "Last run: Output tokens/s",
    "Last run: Output tokens/s per GPU",
    "Last run: Most requests/s within the SLO",
    "Last run: Accuracy recovery",
    "Last run: TTFT percentiles",
    "Last run: ITL percentiles",
    "Last run: E2E percentiles",
]
VARIANT_PANELS = [
    "Requests running and waiting",
    "Tokens/s",
    "Batch size",
    "KV cache and sequence slots",
    "Preemptions/s",
    "Queue time",
    "TTFT distribution",
    "ITL distribution",
    "E2E distribution",
    "TTFT quantiles",
    "ITL quantiles",
    "E2E quantiles",
    "Replicas: desired and scraped",
    "Output tokens/s per replica against capacity",
    "Last autoscaling decision",
    "Scaling limited",
    "Time capped by GPUs",
    "Cost per 1M tokens",
    "GPUs held",
]


def _panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in d["panels"] if p["type"] != "row"]


@pytest.mark.parametrize(
    ("name", "titles"),
    [(dashboards.OVERVIEW_UID, OVERVIEW_PANELS), (dashboards.VARIANT_UID, VARIANT_PANELS)],
    ids=["overview", "variant"],
)
def test_dashboard_shows_these_panels(name: str, titles: list[str]) -> None:
    assert [p["title"] for p in _panels(dashboard_files()[name])] == titles


@pytest.mark.parametrize("name", [dashboards.OVERVIEW_UID, dashboards.VARIANT_UID])
def test_dashboard_is_well_formed(name: str) -> None:
    d = dashboard_files()[name]
    assert d["uid"] == name
    assert d["schemaVersion"] == 41  # Grafana 11.6
    assert [v["name"] for v in d["templating"]["list"]] == ["datasource", "namespace", "variant"]
    ids = [p["id"] for p in d["panels"]]
    assert ids == list(range(1, len(ids) + 1))
    for panel in _panels(d):
        where = f"{name}/{panel['title']}"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert panel.get("description"), where
        refs = [t["refId"] for t in panel["targets"]]
        assert refs, where
        assert len(refs) == len(set(refs)), where
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], where
        # Panels fit the 24-column grid.
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, where


def test_overview_compares_several_variants_and_the_variant_view_one() -> None:
    files = dashboard_files()
    variant = {v["name"]: v for v in files[dashboards.OVERVIEW_UID]["templating"]["list"]}["variant"]
    assert variant["multi"]
    assert variant["includeAll"]
    assert all(
        'variant=~"$variant"' in q.expr
        for q in panel_queries()
        if q.dashboard == dashboards.OVERVIEW_UID and "$variant" in q.expr
    )
    assert all(
        'variant="$variant"' in q.expr
        for q in panel_queries()
        if q.dashboard == dashboards.VARIANT_UID and "$variant" in q.expr
    )


@pytest.mark.parametrize("name", [dashboards.OVERVIEW_UID, dashboards.VARIANT_UID])
def test_shipped_json_is_what_the_sdk_reads_back(name: str) -> None:
    shipped = dashboard_files()[name]
    again = json.loads(json.dumps(Dashboard.from_json(shipped), cls=JSONEncoder))
    assert again == shipped


def test_slo_targets_are_dashed() -> None:
    d = dashboard_files()[dashboards.OVERVIEW_UID]
    panel = next(p for p in d["panels"] if p["title"] == "TTFT at the SLO percentile")
    (override,) = panel["fieldConfig"]["overrides"]
    assert override["matcher"] == {"id": "byFrameRefID", "options": "B"}
    assert "slo_ttft_seconds" in next(t["expr"] for t in panel["targets"] if t["refId"] == "B")
