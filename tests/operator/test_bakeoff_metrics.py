"""The verdict of a BakeOff on the operator's /metrics: one `bakeoff_bakeoff_result` series per variant
and metric from the status, `bakeoff_bakeoff_last_run_failed`, and series that go when a variant
leaves the results or the BakeOff is deleted."""

from __future__ import annotations

import pytest
from bakeoff_operator.api.bakeoff import BakeOffStatus
from bakeoff_operator.io.metrics import OperatorMetrics
from bakeoff_operator.planning.runs import plan_runs, result_metrics

from tests.bakeoffs.builders import (
    CATALOG,
    NAMES,
    RUN,
    at,
    bakeoff,
    finished_run,
    result,
    run_result,
    running_status,
    variants,
)


def folded() -> BakeOffStatus:
    bo = bakeoff(status=running_status())
    results = [result(RUN, n, run_result(bo, n)) for n in NAMES]
    return plan_runs(bo, variants(), jobs=[finished_run()], results=results, catalog=CATALOG, now=at(6)).status


def test_the_verdict_as_numbers_per_variant_and_metric() -> None:
    status = folded()
    values = result_metrics(status)
    assert set(values) == set(NAMES)
    int4 = next(r for r in status.results if r.variant == "dense-int4")
    got = values["dense-int4"]
    assert got["recommended"] == 1
    assert values["dense-bf16"]["recommended"] == 0
    assert got["on_pareto_frontier"] == 1
    assert got["cost_per_1m_output_tokens_usd"] == int4.cost_per_1m_output_tokens_usd
    assert int4.gpus == 1
    assert got["output_tokens_per_second_per_gpu"] == int4.output_tokens_per_second
    assert int4.e2e_ms is not None
    assert got["e2e_p90_ms"] == int4.e2e_ms.p90
    assert "within_slo" not in got  # the bake-off sets no SLO


def sample(m: OperatorMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_series_follow_the_status_and_go_with_the_bakeoff() -> None:
    m = OperatorMetrics()
    values = result_metrics(folded())
    m.set_bakeoff("team", "bo", values, last_run_failed=False)
    key = {"namespace": "team", "bakeoff": "bo"}
    assert sample(m, "bakeoff_bakeoff_result", **key, variant="dense-int4", metric="recommended") == 1
    assert sample(m, "bakeoff_bakeoff_last_run_failed", **key) == 0
    fewer = {k: v for k, v in values.items() if k != "hybrid"}
    m.set_bakeoff("team", "bo", fewer, last_run_failed=True)
    assert sample(m, "bakeoff_bakeoff_result", **key, variant="hybrid", metric="recommended") is None
    assert sample(m, "bakeoff_bakeoff_last_run_failed", **key) == 1
    m.remove_bakeoff("team", "bo")
    assert sample(m, "bakeoff_bakeoff_result", **key, variant="dense-int4", metric="recommended") is None
    assert sample(m, "bakeoff_bakeoff_last_run_failed", **key) is None
    m.remove_bakeoff("team", "bo")  # a second delete event is harmless


@pytest.mark.parametrize("outcome", ["none", "running"])
def test_no_run_yet_exports_no_results(outcome: str) -> None:
    status = bakeoff().status if outcome == "none" else bakeoff(status=running_status()).status
    assert result_metrics(status or BakeOffStatus()) == {}
