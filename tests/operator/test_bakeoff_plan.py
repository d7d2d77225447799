"""From a BakeOff to typed load plans and back to status: the one selection rule, the load plan built
once, A/B comparisons with each baseline, and the frontier of the one Pareto function."""

from __future__ import annotations

from typing import Any

import pytest
from bakeoff_loadtest.pareto import pareto_frontier, tradeoff
from bakeoff_loadtest.records import RequestRecord
from bakeoff_loadtest.results import RunResult, now_utc
from bakeoff_loadtest.slo import Percentile
from bakeoff_loadtest.spec import LoadPlan
from bakeoff_loadtest.summary import summarize_point
from bakeoff_operator.api.bakeoff import BakeOff
from bakeoff_operator.api.modelvariant import ModelVariant
from bakeoff_operator.planning.bakeoff_plan import LoadOverrides, plan_bakeoff, select_variants, summarize
from bakeoff_runtime.gpus import default_catalog
from bakeoff_runtime.workloads import WORKLOADS, LoadMode, PredictionMode


def variant(name: str, labels: dict[str, str] | None = None, **spec: Any) -> ModelVariant:
    body: dict[str, Any] = {
        "model": {"source": "hf://meta-llama/Llama-3.1-8B-Instruct"},
        "architecture": {"catalog": "llama-3.1-8b"},
        "format": "bf16",
        "gpuClass": "h100",
        **spec,
    }
    return ModelVariant.model_validate({"metadata": {"name": name, "labels": labels or {}}, "spec": body})


def bakeoff(**spec: Any) -> BakeOff:
    body: dict[str, Any] = {"variants": ["bf16", "int4"], "workload": {"useCase": "rag"}, **spec}
    return BakeOff.model_validate({"metadata": {"name": "bo"}, "spec": body})


VARIANTS = [
    variant("int4", {"team": "a"}, format="int4", baseline="bf16", accuracy={"recovery": 0.99}),
    variant("bf16", {"team": "a"}),
    variant("fp8", {"team": "b"}, format="fp8", baseline="bf16"),
]


@pytest.mark.parametrize(
    ("selection", "chosen", "problem"),
    [
        ({"variants": ["int4", "bf16"]}, ["int4", "bf16"], None),  # the listed order
        ({"variants": ["bf16", "nope"]}, None, "spec.variants names nope"),
        ({"variantSelector": {"matchLabels": {"team": "a"}}}, ["bf16", "int4"], None),  # by name
        (
            {"variantSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]}},
            ["bf16", "fp8", "int4"],
            None,
        ),
        ({"variantSelector": {"matchLabels": {"team": "c"}}}, None, "spec.variantSelector matches no ModelVariant"),
    ],
    ids=["listed", "missing", "selector", "expression", "selects-none"],
)
def test_one_rule_selects_the_variants(
    selection: dict[str, Any], chosen: list[str] | None, problem: str | None
) -> None:
    bo = BakeOff.model_validate({"metadata": {"name": "bo"}, "spec": {"workload": {"useCase": "rag"}, **selection}})
    picked = bo.spec.select({v.metadata.name: v.metadata.labels for v in VARIANTS})
    assert picked.problem is None or problem in picked.problem
    if chosen is None:
        with pytest.raises(ValueError, match=problem or ""):
            select_variants(bo, VARIANTS)
    else:
        assert picked.names == chosen
        assert [v.metadata.name for v in select_variants(bo, VARIANTS)] == chosen


def test_the_load_plan_is_typed_and_built_once_with_the_overrides() -> None:
    bo = bakeoff(
        load={"mode": "concurrency-sweep", "concurrencies": [4, 16], "duration": "30s", "maxRequests": 50},
        slo={"ttftMs": 500, "percentile": "p95"},
        seed=3,
    )
    plan = plan_bakeoff(bo, VARIANTS, default_catalog(), LoadOverrides(duration_s=5, seed=9))
    assert plan.mode is PredictionMode.ASYNC
    assert plan.workload == WORKLOADS["rag"]
    load = plan.runs[0].load
    assert isinstance(load, LoadPlan)
    assert (load.mode, load.levels, load.duration_s, load.max_requests, load.seed) == (
        LoadMode.CONCURRENCY_SWEEP,
        (4.0, 16.0),
        5.0,
        50,
        9,
    )
    assert load.slo is not None
    assert load.slo.percentile is Percentile.P95
    assert load.cost.price_per_gpu_hour > 0
    spec = load.at("http://127.0.0.1:8000/v1")
    assert spec.endpoint == "http://127.0.0.1:8000"
    assert spec.model_dump(exclude={"endpoint"}) == load.model_dump()


def test_a_custom_workload_is_the_same_model_as_a_use_case() -> None:
    bo = bakeoff(workload={"custom": {"promptTokens": {"mean": 300}, "outputTokens": {"mean": 40}, "chatTurns": 2}})
    plan = plan_bakeoff(bo, VARIANTS, default_catalog())
    assert (plan.workload.name, plan.workload.prompt_tokens, plan.workload.output_tokens) == ("bo-custom", 300, 40)
    assert plan.runs[0].load.workload == plan.workload
    assert plan.workload.chat_turns == 2


def _result(plan_load: LoadPlan, ttft_s: float, e2e_s: float) -> RunResult:
    spec = plan_load.at("http://127.0.0.1:9")
    recs = []
    for i in range(30):
        r = RequestRecord(index=i, worker=0, start_unix=float(i), requested_prompt_tokens=10, requested_output_tokens=5)
        r.ok, r.ttft_s, r.itl_s = True, ttft_s + i * 1e-4, [0.01] * 4
        r.e2e_s = e2e_s + i * 1e-4
        r.output_tokens, r.prompt_tokens = 5, 10
        recs.append(r)
    point = summarize_point(recs, spec, level=1)
    return RunResult(spec=spec, started_at=now_utc(), finished_at=now_utc(), points=(point,))


def test_status_compares_each_variant_with_its_baseline_and_states_the_one_frontier() -> None:
    bo = bakeoff(variants=["bf16", "int4", "fp8"], load={"mode": "sync", "maxRequests": 30})
    plan = plan_bakeoff(bo, VARIANTS, default_catalog())
    loads = {r.variant: r.load for r in plan.runs}
    results = {
        "bf16": _result(loads["bf16"], 0.05, 0.50),
        "int4": _result(loads["int4"], 0.03, 0.30),
        "fp8": _result(loads["fp8"], 0.05, 0.50),
    }
    status, rec = summarize(bo, VARIANTS, plan, results, {})
    pairs = {(c.variant, c.baseline, c.metric.value) for c in status.comparisons}
    assert pairs == {(v, "bf16", m) for v in ("int4", "fp8") for m in ("ttft_ms", "tpot_ms", "e2e_ms")}
    faster = next(c for c in status.comparisons if c.variant == "int4" and c.metric.value == "e2e_ms")
    assert faster.significant
    assert faster.shift_ms == pytest.approx(-200, abs=1)
    wire = status.to_wire()["comparisons"][0]
    assert {"medianBaselineMs", "pValue", "cliffsDelta", "shiftMs"} <= set(wire)
    front = pareto_frontier([t for r in results.values() if (t := tradeoff(r)) is not None])
    assert status.pareto_frontier == rec.pareto_frontier == front
