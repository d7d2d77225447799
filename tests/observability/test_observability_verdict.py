"""report.html and the overview dashboard show the same verdict, computed by the same code.

One set of load results is judged twice, the two ways the project does it: as a BakeOff run the operator
folds into status and exports as `bakeoff_bakeoff_result` gauges (what the overview's "Bake-offs" row
draws), and as a local `bakeoff run`, whose report.html shows a Verdict table. Every figure of the
report equals the gauge the operator exports for that variant and metric; every "Last run" panel of the
overview draws one figure of `bakeoff_loadtest.verdict` and every figure has one panel and its report
columns."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from bakeoff_loadtest.results import RunResult
from bakeoff_loadtest.verdict import FIGURES, METRICS, Unit, VerdictRow, figures, verdict_row
from bakeoff_operator.api.bakeoff import BakeOff, BakeOffStatus
from bakeoff_operator.io.metrics import OperatorMetrics
from bakeoff_operator.local import BakeOffOutcome, Options, write_outputs
from bakeoff_operator.observability import dashboards, rules
from bakeoff_operator.planning.bakeoff_plan import plan_bakeoff, summarize
from bakeoff_operator.planning.runs import plan_runs, result_metrics
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.bakeoffs.builders import CATALOG, NAMES, RUN, at, bakeoff, finished_run, result, run_result, running_status
from tests.bakeoffs.builders import variants as model_variants
from tests.loadtest.test_loadtest_report import CHROMIUM_ARGS, _chromium_or_skip
from tests.observability.promql import dashboard_files

# An SLO two of the three variants meet (their p90 E2E is 0.35 s and 0.40 s, bf16's 0.60 s), and the hybrid
# on two replicas: the per-GPU figures divide by the GPUs that served the load.
SLO = {"e2eMs": 500, "percentile": "p90"}
REPLICAS = {"hybrid": 2}


def _bakeoff(**status: Any) -> BakeOff:
    return bakeoff(slo=SLO, status=status or None)


def _results() -> dict[str, RunResult]:
    bo = _bakeoff()
    return {n: run_result(bo, n, replicas=REPLICAS.get(n, 1)) for n in NAMES}


def _exported(status: BakeOffStatus) -> dict[tuple[str, str], float]:
    """The operator's `bakeoff_bakeoff_result` series, as Prometheus scrapes them: (variant, metric) -> value."""
    m = OperatorMetrics()
    m.set_bakeoff("team", "bo", result_metrics(status), last_run_failed=False)
    text = generate_latest(m.registry).decode()
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == rules.BAKEOFF_RESULT]
    return {(s.labels["variant"], s.labels["metric"]): s.value for s in family.samples}


class _VerdictTable(HTMLParser):
    """The report's #verdict-table: the figure of each row, in order, and (variant, metric) -> cell."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.rows: list[tuple[str, str]] = []
        self.cells: dict[tuple[str, str], tuple[str, str]] = {}
        self._cell: tuple[str, str, str] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self.inside = a.get("id") == "verdict-table"
        if not self.inside:
            return
        if tag == "tr" and a.get("data-figure"):
            self.rows.append((a["data-figure"] or "", a.get("data-metric") or ""))
        elif tag == "td":
            self._cell = (a.get("data-variant") or "", a.get("data-metric") or "", a.get("data-value") or "")
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.inside = False
        elif tag == "td" and self._cell is not None:
            variant, metric, value = self._cell
            self.cells[(variant, metric)] = (value, "".join(self._text))
            self._cell = None


def _report(tmp_path: Path) -> _VerdictTable:
    """report.html of a local run of the same results (`bakeoff run` writes it with `write_outputs`)."""
    bo, variants, results = _bakeoff(), model_variants(), _results()
    plan = plan_bakeoff(bo, variants, CATALOG, replicas=REPLICAS)
    status, recommendation = summarize(bo, variants, plan, results, {})
    write_outputs(bo, BakeOffOutcome(plan, status, recommendation, results, {}, tmp_path), Options(out=tmp_path))
    parsed = _VerdictTable()
    parsed.feed((tmp_path / "report.html").read_text())
    return parsed


@pytest.fixture(scope="module")
def operator_status() -> BakeOffStatus:
    """The status the operator folds the same results into, as a BakeOff run's Job hands them back."""
    bo = _bakeoff(**running_status())
    states = [result(RUN, n, s) for n, s in _results().items()]
    return plan_runs(bo, model_variants(), jobs=[finished_run()], results=states, catalog=CATALOG, now=at(6)).status


def test_the_reports_figures_are_the_gauges_the_operator_exports(
    tmp_path: Path, operator_status: BakeOffStatus
) -> None:
    exported = _exported(operator_status)
    report = _report(tmp_path)
    shown = {key: float(value) for key, (value, _) in report.cells.items() if value}
    assert shown == exported
    # the comparison covers every kind of figure: a recommendation, the SLO, per-GPU throughput, latencies
    assert {m for _, m in shown} == set(METRICS)
    assert sorted(v for (v, m), x in shown.items() if m == "recommended" and x == 1) == [
        operator_status.recommendation.variant if operator_status.recommendation else None
    ]
    assert {v: x for (v, m), x in shown.items() if m == "within_slo"} == {
        "dense-bf16": 0.0,
        "dense-int4": 1.0,
        "hybrid": 1.0,
    }
    hybrid = next(r for r in operator_status.results if r.variant == "hybrid")
    assert hybrid.gpus == 2
    assert hybrid.output_tokens_per_second is not None
    assert shown[("hybrid", "output_tokens_per_second_per_gpu")] == hybrid.output_tokens_per_second / 2


def test_the_report_prints_each_figure_as_its_unit_says(tmp_path: Path) -> None:
    report = _report(tmp_path)
    units = {m: f.unit for f in FIGURES for m in f.metrics}
    for (variant, metric), (value, text) in report.cells.items():
        where = f"{variant} {metric}"
        if not value:
            assert text == "–", where
        elif units[metric] is Unit.FLAG:
            assert text == ("yes" if float(value) else "no"), where
        else:
            digits = {Unit.USD: 3, Unit.REQUESTS_PER_SECOND: 2, Unit.RATIO: 3}.get(units[metric], 1)
            assert text == f"{float(value):,.{digits}f}", where


def test_figures_of_a_run_result_are_those_of_its_status_row(operator_status: BakeOffStatus) -> None:
    """The operator's status row of a variant is the run's `verdict_row` (the one computation both use)."""
    results = _results()
    for row in operator_status.results:
        kwargs = {"on_pareto_frontier": False, "recommended": False}
        # The accuracy recovery is the variants' declared accuracy, not the run's: the status row has it.
        expected = figures(verdict_row(results[row.variant], accuracy_recovery=row.accuracy_recovery), **kwargs)
        assert figures(VerdictRow.model_validate(row.model_dump(by_alias=False)), **kwargs) == expected, row.variant


def _panel_metrics(panel: dict[str, Any]) -> set[str]:
    """The `metric` label values a panel's queries select of `bakeoff_bakeoff_result`."""
    found: set[str] = set()
    for target in panel.get("targets", []):
        expr = target["expr"]
        if rules.BAKEOFF_RESULT not in expr:
            continue
        (matcher,) = re.findall(r'metric(=~?)"([^"]+)"', expr)
        found |= set(matcher[1].split("|")) if matcher[0] == "=~" else {matcher[1]}
    return found


def test_every_last_run_panel_is_one_report_figure_and_every_figure_has_one(tmp_path: Path) -> None:
    overview = dashboard_files()[dashboards.OVERVIEW_UID]
    panels = [p for p in overview["panels"] if p["type"] != "row" and _panel_metrics(p)]
    by_title = {p["title"]: _panel_metrics(p) for p in panels}
    assert len(by_title) == len(panels)
    assert by_title == {dashboards.LAST_RUN + f.title: set(f.metrics) for f in FIGURES}
    # the report's columns are the same figures, each metric once, in the figures' order
    report = _report(tmp_path)
    assert report.rows == [(f.id, m) for f in FIGURES for m in f.metrics]
    assert [m for (v, m) in report.cells if v == NAMES[0]] == list(METRICS)


@pytest.mark.browser
def test_the_verdict_renders_in_headless_chromium_within_the_page(tmp_path: Path) -> None:
    exe = _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    _report(tmp_path)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto((tmp_path / "report.html").as_uri())
            page.wait_for_load_state("load")
            table = page.locator("#verdict-table")
            assert table.locator("tr").count() == 1 + len(METRICS)
            box, body = table.bounding_box(), page.locator("body").bounding_box()
            assert box is not None
            assert body is not None
            assert box["x"] + box["width"] <= body["x"] + body["width"] + 1  # no column cut off
            header = table.locator("tr").first.inner_text()
            assert all(name in header for name in NAMES)
            assert "Cost per 1M output tokens" in table.inner_text()
        finally:
            browser.close()
