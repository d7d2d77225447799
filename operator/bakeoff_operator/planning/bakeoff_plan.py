"""From a BakeOff and its ModelVariants to load runs, and from their results back to BakeOff status.

Pure: the same translation serves `bakeoff run` on one machine and the operator's Locust Jobs in a
cluster. Endpoints are the only thing the caller adds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bakeoff_loadtest.cost import CostInputs
from bakeoff_loadtest.results import LatencySummary, LoadPoint, RunResult
from bakeoff_loadtest.spec import SLO as LoadSLO
from bakeoff_loadtest.spec import LoadMode as HarnessMode
from bakeoff_loadtest.workloads import LengthDistribution, use_case_workload
from bakeoff_loadtest.workloads import Workload as LoadWorkload
from bakeoff_runtime.gpus import GPUCatalog
from bakeoff_runtime.workloads import Workload as RuntimeWorkload
from bakeoff_runtime.workloads import get_workload
from pydantic import BaseModel, ConfigDict, Field

from bakeoff_operator.api.bakeoff import (
    MAX_REASON,
    BakeOff,
    BakeOffStatus,
    LatencyPercentiles,
    LoadMode,
    Recommendation,
    TokenLengths,
    VariantResult,
)
from bakeoff_operator.api.common import SLO, duration_seconds
from bakeoff_operator.api.modelvariant import ModelVariant
from bakeoff_operator.planning.recommend import RecommendationResult, VariantOutcome, recommend
from bakeoff_operator.planning.sizing import Sizing, size_variant

HARNESS_MODES: Mapping[LoadMode, HarnessMode] = {
    LoadMode.SYNC: HarnessMode.SYNC,
    LoadMode.CONCURRENCY_SWEEP: HarnessMode.SWEEP_CONCURRENCY,
    LoadMode.RATE_SWEEP: HarnessMode.SWEEP_RATE,
}


class PlannedRun(BaseModel):
    """One variant's part of a bake-off: where it runs and how it is loaded (endpoint left out)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: str
    served_model_name: str
    sizing: Sizing
    run_options: dict[str, object] = Field(description="RunSpec fields except endpoint.")


class BakeOffPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bakeoff: str
    workload: RuntimeWorkload
    mode: str = Field(description="sync or async: how the performance model prices the variants.")
    runs: list[PlannedRun]


def select_variants(bakeoff: BakeOff, variants: Sequence[ModelVariant]) -> list[ModelVariant]:
    """The variants a bake-off names, in its order, or those its selector matches, by name."""
    spec = bakeoff.spec
    by_name = {v.metadata.name: v for v in variants}
    if spec.variants is not None:
        missing = [n for n in spec.variants if n not in by_name]
        if missing:
            raise ValueError(
                f"BakeOff {bakeoff.metadata.name}: spec.variants names {', '.join(missing)}, which no ModelVariant "
                f"defines; known variants: {', '.join(sorted(by_name)) or 'none'}"
            )
        return [by_name[n] for n in spec.variants]
    selector = spec.variant_selector
    assert selector is not None  # the model requires variants or variantSelector
    chosen = [v for v in variants if selector.matches(dict(v.metadata.labels or {}))]
    if not chosen:
        raise ValueError(f"BakeOff {bakeoff.metadata.name}: spec.variantSelector matches no ModelVariant")
    return sorted(chosen, key=lambda v: v.metadata.name)


def _lengths(t: TokenLengths) -> LengthDistribution:
    return LengthDistribution(kind=t.kind.value, mean=t.mean, std=t.std, min=t.min, max=t.max)


def workloads(bakeoff: BakeOff) -> tuple[LoadWorkload, RuntimeWorkload]:
    """The harness's workload (distributions) and the performance model's (mean lengths)."""
    wl = bakeoff.spec.workload
    if wl.use_case is not None:
        return use_case_workload(wl.use_case.value), get_workload(wl.use_case.value)
    custom = wl.custom
    assert custom is not None  # the model requires useCase or custom
    name = f"{bakeoff.metadata.name}-custom"[:63].strip("-")
    load = LoadWorkload(
        name=name,
        prompt_tokens=_lengths(custom.prompt_tokens),
        output_tokens=_lengths(custom.output_tokens),
        chat_turns=custom.chat_turns,
    )
    runtime = RuntimeWorkload(
        name=name, prompt_tokens=custom.prompt_tokens.mean, output_tokens=custom.output_tokens.mean
    )
    return load, runtime


def harness_slo(slo: SLO | None) -> LoadSLO:
    if slo is None:
        return LoadSLO()
    return LoadSLO(ttft_ms=slo.ttft_ms, itl_ms=slo.itl_ms, e2e_ms=slo.e2e_ms, percentile=slo.percentile.quantile * 100)


def plan_bakeoff(bakeoff: BakeOff, variants: Sequence[ModelVariant], catalog: GPUCatalog) -> BakeOffPlan:
    """Size every selected variant and spell out its load run."""
    spec = bakeoff.spec
    load_wl, runtime_wl = workloads(bakeoff)
    mode = "sync" if spec.load.mode is LoadMode.SYNC else "async"
    harness_mode = HARNESS_MODES[spec.load.mode]
    levels: tuple[float, ...] = ()
    if spec.load.mode is LoadMode.CONCURRENCY_SWEEP:
        levels = tuple(float(c) for c in (spec.load.concurrencies or ()))
    elif spec.load.mode is LoadMode.RATE_SWEEP:
        levels = tuple(spec.load.rates or ())
    runs = []
    for mv in select_variants(bakeoff, variants):
        sizing = size_variant(mv, catalog, runtime_wl, mode=mode, spot=spec.pricing.spot)
        options: dict[str, object] = {
            "model": mv.served_name,
            "variant": mv.metadata.name,
            "api": spec.workload.api,
            "workload": load_wl,
            "mode": harness_mode,
            "levels": levels,
            "arrival": spec.load.arrival,
            "duration_s": duration_seconds(spec.load.duration),
            "max_requests": spec.load.max_requests,
            "seed": spec.seed,
            "slo": harness_slo(spec.slo),
        }
        if sizing.variant is not None:
            gpu = sizing.variant.gpu
            options["cost"] = CostInputs(
                gpu_class=gpu.name,
                price_per_gpu_hour=gpu.hourly_price(spot=spec.pricing.spot),
                gpus=sizing.variant.tensor_parallel,
                replicas=1,
            )
        runs.append(
            PlannedRun(variant=mv.metadata.name, served_model_name=mv.served_name, sizing=sizing, run_options=options)
        )
    return BakeOffPlan(bakeoff=bakeoff.metadata.name, workload=runtime_wl, mode=mode, runs=runs)


def _percentiles(s: LatencySummary) -> LatencyPercentiles | None:
    if not s.count:
        return None
    return LatencyPercentiles(p50=s.p50, p90=s.p90, p99=s.p99)


def chosen_point(result: RunResult) -> LoadPoint | None:
    """The load level a variant is judged at: the most output tokens/s within the SLO; without an SLO
    (or when no level met it) the most output tokens/s of any level that completed requests."""
    best = result.best_point()
    if best is not None:
        return best
    done = [p for p in result.points if p.requests_ok > 0]
    return max(done, key=lambda p: p.output_tokens_per_s) if done else None


def _meets(result: RunResult) -> bool | None:
    if result.spec.slo.empty:
        return None
    return any(p.meets_slo for p in result.points)


def summarize(
    bakeoff: BakeOff,
    variants: Sequence[ModelVariant],
    plan: BakeOffPlan,
    results: Mapping[str, RunResult],
    failures: Mapping[str, str],
) -> tuple[BakeOffStatus, RecommendationResult]:
    """Per-variant results, Pareto frontier and recommendation, as the BakeOff's status."""
    by_name = {v.metadata.name: v for v in variants}
    budget = bakeoff.spec.accuracy_budget.max_recovery_loss if bakeoff.spec.accuracy_budget else None
    rows: list[VariantResult] = []
    outcomes: list[VariantOutcome] = []
    for run in plan.runs:
        mv = by_name[run.variant]
        recovery = mv.spec.accuracy.recovery if mv.spec.accuracy else None
        result = results.get(run.variant)
        failed = failures.get(run.variant) or (None if run.sizing.fits else run.sizing.reason)
        point = chosen_point(result) if result is not None else None
        if result is not None and point is None and not failed:
            failed = result.error or "no request completed"
        meets = _meets(result) if result is not None else None
        within = None if budget is None or recovery is None else 1 - recovery <= budget + 1e-12
        max_qps = None
        if result is not None and result.sweep is not None:
            max_qps = result.sweep.max_qps_under_slo
        if max_qps is None and point is not None and (meets or (result is not None and result.spec.slo.empty)):
            max_qps = point.requests_per_s
        cost = point.usd_per_1m_output_tokens if point is not None and meets is not False else None
        rows.append(
            VariantResult(
                variant=run.variant,
                gpu_class=run.sizing.gpu_class,
                requests=sum(p.requests_ok for p in result.points) if result is not None else None,
                ttft_ms=_percentiles(point.ttft_ms) if point else None,
                itl_ms=_percentiles(point.itl_ms) if point else None,
                e2e_ms=_percentiles(point.e2e_ms) if point else None,
                output_tokens_per_second=point.output_tokens_per_s if point else None,
                max_qps_under_slo=max_qps,
                cost_per_1m_output_tokens_usd=point.usd_per_1m_output_tokens if point else None,
                cost_per_1m_total_tokens_usd=point.usd_per_1m_total_tokens if point else None,
                accuracy_recovery=recovery,
                meets_slo=meets,
                within_accuracy_budget=within,
            )
        )
        outcomes.append(
            VariantOutcome(
                variant=run.variant,
                baseline=mv.spec.baseline,
                cost_per_1m_output_tokens_usd=cost,
                latency_ms=point.e2e_ms.p90 if point else None,
                meets_slo=meets,
                accuracy_recovery=recovery,
                failed=failed,
            )
        )
    rec = recommend(outcomes, budget)
    status = BakeOffStatus(
        results=rows,
        pareto_frontier=rec.pareto_frontier,
        recommendation=Recommendation(variant=rec.variant, reason=rec.reason[:MAX_REASON]),
    )
    return status, rec
