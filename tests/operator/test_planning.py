"""Placement and recommendation: table tests of the pure planners."""

from __future__ import annotations

from typing import Any

import pytest
from bakeoff_operator.api.modelvariant import ModelVariant
from bakeoff_operator.planning.recommend import VariantOutcome, pareto_frontier, recommend
from bakeoff_operator.planning.sizing import Cause, size_variant
from bakeoff_runtime.gpus import default_catalog
from bakeoff_runtime.workloads import get_workload


def variant(name: str = "v", **spec: Any) -> ModelVariant:
    body: dict[str, Any] = {
        "model": {"source": "hf://meta-llama/Llama-3.1-8B-Instruct"},
        "architecture": {"catalog": "llama-3.1-8b"},
        "format": "bf16",
    }
    body.update(spec)
    return ModelVariant.model_validate({"metadata": {"name": name}, "spec": body})


def outcome(name: str, cost: float | None, latency: float | None = 100.0, **kw: Any) -> VariantOutcome:
    return VariantOutcome(variant=name, cost_per_1m_output_tokens_usd=cost, latency_ms=latency, **kw)


class TestSizing:
    def test_auto_tensor_parallel_is_the_fewest_gpus_that_fit(self) -> None:
        s = size_variant(variant(architecture={"catalog": "llama-3.1-70b"}, gpuClass="h100"), default_catalog(), None)
        assert s.fits
        assert s.tensor_parallel == 2  # 70B BF16 weights (~131 GiB) need two 80 GB GPUs

    def test_explicit_tensor_parallel_that_does_not_fit_names_the_fix(self) -> None:
        s = size_variant(
            variant(architecture={"catalog": "llama-3.1-70b"}, gpuClass="h100", tensorParallelSize=1),
            default_catalog(),
            None,
        )
        assert not s.fits
        assert "tensorParallelSize" in s.reason

    def test_auto_gpu_class_picks_the_cheapest_per_token_that_fits(self) -> None:
        wl = get_workload("multi-turn-chat")
        s = size_variant(variant(format="int4"), default_catalog(), wl, mode="async")
        assert s.fits
        fitting = [c for c in s.candidates if c.fits and c.cost_per_1m_output_tokens_usd is not None]
        assert len(fitting) >= 3
        assert s.prediction is not None
        best = min(c.cost_per_1m_output_tokens_usd or 0 for c in fitting)
        assert s.prediction.cost_per_1m_output_tokens_usd == pytest.approx(best)

    def test_fp8_on_ampere_needs_the_fallback_to_be_accepted(self) -> None:
        s = size_variant(variant(format="fp8", gpuClass="auto"), default_catalog(), None)
        refused = {c.gpu_class: c.reason for c in s.candidates if not c.fits}
        assert "a100-80gb" in refused
        assert "allowWeightOnlyFallback" in refused["a100-80gb"]

    def test_unknown_gpu_class_is_a_clear_reason(self) -> None:
        s = size_variant(variant(gpuClass="b200"), default_catalog(), None)
        assert not s.fits
        assert "spec.gpuClass" in s.reason
        assert "h100" in s.reason  # lists the valid names

    @pytest.mark.parametrize(
        ("spec", "cause"),
        [
            ({"gpuClass": "h100"}, Cause.FITS),
            ({"gpuClass": "b200"}, Cause.UNKNOWN_GPU_CLASS),
            ({"format": "fp8", "gpuClass": "a100-80gb", "allowWeightOnlyFallback": False}, None),
            ({"architecture": {"catalog": "llama-3.1-405b"}, "gpuClass": "l4"}, Cause.DOES_NOT_FIT),
        ],
        ids=["fits", "unknown-class", "fp8-on-ampere-refused-by-the-api", "too-big"],
    )
    def test_the_cause_names_what_to_fix(self, spec: dict[str, Any], cause: Cause | None) -> None:
        if cause is None:  # the API model itself refuses fp8 on a catalog Ampere class without the fallback
            with pytest.raises(ValueError, match="allowWeightOnlyFallback"):
                variant(**spec)
            return
        assert size_variant(variant(**spec), default_catalog(), None).cause is cause

    def test_a_format_no_gpu_class_runs_is_the_cause_only_when_every_class_refuses_it(self) -> None:
        catalog = default_catalog()
        ampere = [g for g in catalog.gpus if g.compute_capability < 8.9]
        only_ampere = catalog.model_copy(update={"gpus": ampere})
        s = size_variant(variant(format="fp8"), only_ampere, None)
        assert (s.fits, s.cause) == (False, Cause.FORMAT_UNSUPPORTED)

    def test_a_workload_longer_than_the_deployed_length_is_refused_with_the_fix(self) -> None:
        long = get_workload("long-reasoning")
        s = size_variant(variant(architecture={"catalog": "apriel-h1-h30"}, gpuClass="h100"), default_catalog(), long)
        assert not s.fits
        assert s.cause is Cause.DOES_NOT_FIT
        assert f"set spec.serving.maxModelLen to at least {long.context_tokens}" in s.reason
        roomy = variant(architecture={"catalog": "apriel-h1-h30"}, gpuClass="h100", serving={"maxModelLen": 32768})
        s = size_variant(roomy, default_catalog(), long)
        assert s.variant is not None
        assert s.variant.max_model_len == 32768


class TestRecommend:
    @pytest.mark.parametrize(
        ("outcomes", "budget", "expected"),
        [
            ([outcome("a", 2.0), outcome("b", 1.0)], None, "b"),
            ([outcome("a", 2.0), outcome("b", 1.0, meets_slo=False)], None, "a"),
            (
                [
                    outcome("bf16", 2.0),
                    outcome("int4", 1.0, baseline="bf16", accuracy_recovery=0.97),
                    outcome("fp8", 1.5, baseline="bf16", accuracy_recovery=0.998),
                ],
                0.01,
                "fp8",
            ),
            ([outcome("a", None), outcome("b", None)], None, None),
            ([outcome("a", 1.0, failed="runtime exited"), outcome("b", 3.0)], None, "b"),
            ([outcome("h40", 1.0, baseline="t"), outcome("t", 2.0)], 0.05, "t"),  # unknown recovery
        ],
        ids=["cheapest", "slo-miss", "accuracy-budget", "none", "failed", "unknown-accuracy"],
    )
    def test_cheapest_qualifying(
        self, outcomes: list[VariantOutcome], budget: float | None, expected: str | None
    ) -> None:
        assert recommend(outcomes, budget).variant == expected

    def test_reason_has_the_figures_and_the_baseline(self) -> None:
        r = recommend([outcome("bf16", 2.0), outcome("int4", 0.5, baseline="bf16", meets_slo=True)])
        assert r.variant == "int4"
        assert "$0.500" in r.reason
        assert "4.00x cheaper than its baseline bf16" in r.reason

    def test_no_qualifier_explains_each_variant(self) -> None:
        r = recommend([outcome("a", 1.0, meets_slo=False)])
        assert r.variant is None
        assert "a: misses the SLO" in r.reason

    def test_pareto_frontier_drops_dominated_variants(self) -> None:
        front = pareto_frontier(
            [outcome("cheap-slow", 1.0, 300.0), outcome("dear-fast", 3.0, 100.0), outcome("dominated", 3.5, 350.0)]
        )
        assert front == ["cheap-slow", "dear-fast"]
