"""From a BakeOff and its ModelVariants to load plans, and from their results back to BakeOff status.

Pure: the same translation serves `bakeoff run` on one machine and the operator's Locust Jobs in a
cluster. Each variant's `LoadPlan` is built here, once; the endpoint is the only thing the caller adds.
`loadtest_args` spells a run spec as the flags of `bakeoff loadtest`, which a cluster run's Job runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bakeoff_loadtest.compare import compare_with_baseline
from bakeoff_loadtest.pareto import FRONTIER_LATENCY, tradeoff
from bakeoff_loadtest.results import RunResult
from bakeoff_loadtest.spec import LoadPlan, RunSpec
from bakeoff_loadtest.verdict import verdict_row
from bakeoff_runtime.cost import CostInputs
from bakeoff_runtime.gpus import GPUCatalog
from bakeoff_runtime.workloads import WORKLOADS, LengthDistribution, LengthKind, LoadMode, PredictionMode, Workload
from pydantic import BaseModel, ConfigDict, Field

from bakeoff_operator.api.bakeoff import (
    MAX_REASON,
    BakeOff,
    BakeOffStatus,
    BaselineComparison,
    Recommendation,
    VariantResult,
)
from bakeoff_operator.api.common import duration_seconds
from bakeoff_operator.api.modelvariant import ModelVariant
from bakeoff_operator.planning.recommend import RecommendationResult, VariantOutcome, recommend
from bakeoff_operator.planning.sizing import Sizing, size_variant


class PlannedRun(BaseModel):
    """One variant's part of a bake-off: where it runs and how it is loaded (endpoint left out)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: str
    served_model_name: str
    sizing: Sizing
    load: LoadPlan = Field(description="The variant's load run; `load.at(endpoint)` is what the harness runs.")


class BakeOffPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bakeoff: str
    workload: Workload
    mode: PredictionMode = Field(description="How the performance model prices the variants.")
    runs: list[PlannedRun]


class LoadOverrides(BaseModel):
    """Bounds a local run sets over every BakeOff's own (`bakeoff run --duration/--max-requests/--seed`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    duration_s: float | None = Field(default=None, gt=0, description="Wall-clock bound of each load level.")
    max_requests: int | None = Field(default=None, ge=1, description="Request bound of each load level.")
    seed: int | None = Field(default=None, ge=0, description="Seed of prompts, lengths and arrivals.")


# --- which variants ---------------------------------------------------------------------------------------
def select_variants(bakeoff: BakeOff, variants: Sequence[ModelVariant]) -> list[ModelVariant]:
    """The variants of `bakeoff` (the one rule: `BakeOffSpec.select`); a ValueError names what is missing."""
    by_name = {v.metadata.name: v for v in variants}
    chosen = bakeoff.spec.select({name: v.metadata.labels for name, v in by_name.items()})
    if chosen.problem is not None:
        known = f"; known variants: {', '.join(sorted(by_name)) or 'none'}" if chosen.missing else ""
        raise ValueError(f"BakeOff {bakeoff.metadata.name}: {chosen.problem}{known}")
    return [by_name[n] for n in chosen.names]


# --- the plan ---------------------------------------------------------------------------------------------
def workload_of(bakeoff: BakeOff) -> Workload:
    """The workload of the bake-off; a custom one is named after the bake-off."""
    return bakeoff.spec.workload.resolve(f"{bakeoff.metadata.name}-custom"[:63].strip("-"))


def _levels(bakeoff: BakeOff) -> tuple[float, ...]:
    load = bakeoff.spec.load
    if load.mode is LoadMode.CONCURRENCY_SWEEP:
        return tuple(float(c) for c in load.concurrencies or ())
    if load.mode is LoadMode.RATE_SWEEP:
        return tuple(load.rates or ())
    return ()


def load_plan(
    bakeoff: BakeOff,
    mv: ModelVariant,
    sizing: Sizing,
    workload: Workload,
    overrides: LoadOverrides,
    *,
    replicas: int = 1,
) -> LoadPlan:
    """How the harness drives `mv` in `bakeoff`: its workload, load levels, bounds, SLO and prices, for
    `replicas` replicas serving the load (the cost counts each)."""
    spec = bakeoff.spec
    cost = CostInputs()
    if sizing.variant is not None:
        gpu = sizing.variant.gpu
        cost = CostInputs(
            gpu_class=gpu.name,
            price_per_gpu_hour=gpu.hourly_price(spot=spec.pricing.spot),
            gpus=sizing.variant.tensor_parallel,
            replicas=max(1, replicas),
        )
    return LoadPlan(
        model=mv.served_name,
        variant=mv.metadata.name,
        api=spec.workload.api,
        workload=workload,
        mode=spec.load.mode,
        levels=_levels(bakeoff),
        arrival=spec.load.arrival,
        duration_s=overrides.duration_s or duration_seconds(spec.load.duration),
        max_requests=overrides.max_requests or spec.load.max_requests,
        seed=spec.seed if overrides.seed is None else overrides.seed,
        slo=spec.slo.objective() if spec.slo is not None else None,
        cost=cost,
    )


def plan_bakeoff(
    bakeoff: BakeOff,
    variants: Sequence[ModelVariant],
    catalog: GPUCatalog,
    overrides: LoadOverrides | None = None,
    replicas: Mapping[str, int] | None = None,
) -> BakeOffPlan:
    """Size every selected variant and spell out its load plan; `replicas` gives the replicas serving
    each variant's endpoint (one where it says nothing)."""
    spec = bakeoff.spec
    workload = workload_of(bakeoff)
    mode = spec.load.mode.prediction_mode
    runs = []
    for mv in select_variants(bakeoff, variants):
        sizing = size_variant(mv, catalog, workload, mode=mode, spot=spec.pricing.spot)
        serving = (replicas or {}).get(mv.metadata.name, 1)
        runs.append(
            PlannedRun(
                variant=mv.metadata.name,
                served_model_name=mv.served_name,
                sizing=sizing,
                load=load_plan(bakeoff, mv, sizing, workload, overrides or LoadOverrides(), replicas=serving),
            )
        )
    return BakeOffPlan(bakeoff=bakeoff.metadata.name, workload=workload, mode=mode, runs=runs)


# --- the load plan as `bakeoff loadtest` flags -------------------------------------------------------------
class NotExpressibleError(ValueError):
    """A run spec that the flags of `bakeoff loadtest` cannot state."""


def _number(x: float) -> str:
    return repr(float(x))


def _workload_args(workload: Workload) -> list[str]:
    """`--workload` and, for a custom one, its lengths; raises NotExpressibleError when the flags cannot
    state it (they give both lengths one distribution kind and one relative spread)."""
    named = WORKLOADS.get(workload.name)
    if named is not None and named == workload:
        return ["--workload", workload.name]
    if workload.chat_turns != 1:
        raise NotExpressibleError(f"workload {workload.name}: `bakeoff loadtest` sends one chat turn per request")
    prompt, output = workload.prompt, workload.output
    if prompt.kind is not output.kind:
        raise NotExpressibleError(
            f"workload {workload.name}: `bakeoff loadtest` draws prompt and output lengths from one distribution "
            f"kind, not {prompt.kind.value} and {output.kind.value}"
        )
    args = ["--workload", "custom", "--prompt-tokens", str(prompt.mean), "--output-tokens", str(output.mean)]
    if prompt.kind is LengthKind.FIXED:
        if prompt != LengthDistribution(mean=prompt.mean) or output != LengthDistribution(mean=output.mean):
            raise NotExpressibleError(f"workload {workload.name}: fixed lengths take no bounds in `bakeoff loadtest`")
        return args
    spread = (prompt.std if prompt.kind is LengthKind.NORMAL else (prompt.upper - prompt.mean)) / prompt.mean
    try:
        same = all(d == LengthDistribution.around(d.mean, d.kind, spread) for d in (prompt, output))
    except ValueError:
        same = False
    if not same:
        raise NotExpressibleError(
            f"workload {workload.name}: `bakeoff loadtest` spreads both lengths by one relative --spread "
            f"({prompt.kind.value} around the mean); these prompt and output bounds do not follow it"
        )
    return [*args, "--length-dist", prompt.kind.value, "--spread", _number(spread)]


def loadtest_args(spec: RunSpec) -> list[str]:
    """The `bakeoff loadtest` flags that run exactly `spec`: the CLI builds the same spec back from them
    (a custom workload is then named `custom`). Raises NotExpressibleError for a spec no flags state."""
    defaults = RunSpec.model_fields
    if spec.connect_timeout_s != defaults["connect_timeout_s"].default:
        raise NotExpressibleError("`bakeoff loadtest` has no flag for the connect timeout")
    args = ["--endpoint", spec.endpoint, "--model", spec.model]
    if spec.variant:
        args += ["--variant", spec.variant]
    args += ["--api", spec.api, *_workload_args(spec.workload), "--mode", spec.mode.value]
    if spec.levels:
        args += ["--levels", ",".join(_number(x) for x in spec.levels)]
    args += ["--arrival", spec.arrival, "--duration", _number(spec.duration_s)]
    if spec.max_requests is not None:
        args += ["--max-requests", str(spec.max_requests)]
    args += ["--seed", str(spec.seed)]
    if spec.slo is not None:
        for flag, bound in (
            ("--slo-ttft-ms", spec.slo.ttft_ms),
            ("--slo-itl-ms", spec.slo.itl_ms),
            ("--slo-e2e-ms", spec.slo.e2e_ms),
        ):
            if bound is not None:
                args += [flag, _number(bound)]
        args += ["--slo-percentile", spec.slo.percentile.value]
    cost = spec.cost
    args += [
        "--slo-max-failure-rate", _number(spec.max_failure_rate),
        "--gpu-class", cost.gpu_class,
        "--price-per-gpu-hour", _number(cost.price_per_gpu_hour),
        "--gpus", str(cost.gpus),
        "--replicas", str(cost.replicas),
        "--workers", str(spec.workers),
        "--timeout", _number(spec.request_timeout_s),
        "--drain-timeout", _number(spec.drain_timeout_s),
        "--max-in-flight", str(spec.max_in_flight),
    ]  # fmt: skip
    if spec.tokenizer is not None:
        args += ["--tokenizer", spec.tokenizer]
    return args


# --- results back into status -----------------------------------------------------------------------------
def comparisons(
    plan: BakeOffPlan, variants: Sequence[ModelVariant], results: Mapping[str, RunResult]
) -> list[BaselineComparison]:
    """Each measured variant against its measured baseline (`spec.baseline`), in the plan's order."""
    by_name = {v.metadata.name: v for v in variants}
    out: list[BaselineComparison] = []
    for run in plan.runs:
        baseline = by_name[run.variant].spec.baseline
        if baseline is None or run.variant not in results or baseline not in results:
            continue
        for c in compare_with_baseline(results[baseline], results[run.variant]):
            out.append(BaselineComparison.model_validate(dict(c)))
    return out


def summarize(
    bakeoff: BakeOff,
    variants: Sequence[ModelVariant],
    plan: BakeOffPlan,
    results: Mapping[str, RunResult],
    failures: Mapping[str, str],
) -> tuple[BakeOffStatus, RecommendationResult]:
    """Per-variant results, A/B comparisons, Pareto frontier and recommendation, as the BakeOff's status."""
    by_name = {v.metadata.name: v for v in variants}
    budget = bakeoff.spec.accuracy_budget.max_recovery_loss if bakeoff.spec.accuracy_budget else None
    rows: list[VariantResult] = []
    outcomes: list[VariantOutcome] = []
    for run in plan.runs:
        mv = by_name[run.variant]
        recovery = mv.spec.accuracy.recovery if mv.spec.accuracy else None
        result = results.get(run.variant)
        failed = failures.get(run.variant) or (None if run.sizing.fits else run.sizing.reason)
        point = result.chosen_point() if result is not None else None
        if result is not None and point is None and not failed:
            failed = result.error or "no request completed"
        meets = result.meets_slo() if result is not None else None
        within = None if budget is None or recovery is None else 1 - recovery <= budget + 1e-12
        place = tradeoff(result) if result is not None and not failed else None
        # The measured fields as the verdict's figures (and a run's report.html) compute them.
        measured = verdict_row(result).model_dump(exclude={"variant"}) if result is not None else {}
        rows.append(
            VariantResult.model_validate(
                {
                    "variant": run.variant,
                    "gpu_class": run.sizing.gpu_class,
                    "requests": sum(p.requests_ok for p in result.points) if result is not None else None,
                    **measured,
                    "accuracy_recovery": recovery,
                    "within_accuracy_budget": within,
                }
            )
        )
        outcomes.append(
            VariantOutcome(
                variant=run.variant,
                baseline=mv.spec.baseline,
                cost_per_1m_output_tokens_usd=place.cost_per_1m_output_tokens_usd if place else None,
                latency_ms=place.e2e_ms if place else (point.e2e_ms.at(FRONTIER_LATENCY) if point else None),
                meets_slo=meets,
                accuracy_recovery=recovery,
                failed=failed,
            )
        )
    rec = recommend(outcomes, budget)
    status = BakeOffStatus(
        results=rows,
        pareto_frontier=rec.pareto_frontier,
        comparisons=comparisons(plan, variants, results),
        recommendation=Recommendation(variant=rec.variant, reason=rec.reason[:MAX_REASON]),
    )
    return status, rec
