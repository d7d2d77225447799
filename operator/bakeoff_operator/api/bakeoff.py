"""`BakeOff` (namespaced): a load test of several variants under one workload, repeated on a
schedule, whose results, Pareto frontier and recommendation land in its status.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Final, Literal

from bakeoff_loadtest.compare import BASELINE_METRICS, Comparison
from bakeoff_runtime.workloads import WORKLOADS, LengthDistribution, LoadMode, UseCase
from bakeoff_runtime.workloads import Workload as ResolvedWorkload
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bakeoff_operator.api.common import (
    API_VERSION,
    DNS_1035_LABEL,
    MAX_NAME,
    MAX_VARIANTS,
    RFC3339,
    SLO,
    ApiModel,
    Condition,
    Duration,
    LabelSelector,
    ObjectMeta,
    cel,
    cel_rules,
    conditions_field,
    duration_seconds,
)

MAX_LOAD_LEVELS: Final = 32
MAX_LOAD_DURATION: Final = "24h"  # the load harness's bound of one load level (LoadPlan.duration_s)
MAX_LAST_RUNS: Final = 10
MAX_REASON: Final = 4096

VariantName = Annotated[str, Field(min_length=1, max_length=MAX_NAME, pattern=DNS_1035_LABEL)]


# --- workload -----------------------------------------------------------------------------------------
class TokenLengths(ApiModel, LengthDistribution):
    """Tokens per request: fixed, uniform in [min, max], or normal(mean, std) clipped to [min, max].

    The workload's length distribution in the API's wire format, with the API server's copy of its rules.
    """

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("!has(self.min) || !has(self.max) || self.min <= self.max", "min must not exceed max", ".min"),
            cel(
                "(!has(self.min) || self.min <= self.mean) && (!has(self.max) || self.mean <= self.max)",
                "mean must lie within [min, max]",
                ".mean",
            ),
            cel("self.kind != 'normal' || self.std > 0.0", "a normal distribution needs std > 0", ".std"),
        )
    )

    def lengths(self) -> LengthDistribution:
        return LengthDistribution.model_validate(dict(self))


class CustomWorkload(ApiModel):
    """Prompt and output length distributions of a workload that is not one of the seven use cases."""

    prompt_tokens: TokenLengths = Field(description="Prompt length in tokens.")
    output_tokens: TokenLengths = Field(description="Output length in tokens (max_tokens, ignore_eos).")
    chat_turns: int = Field(default=1, ge=1, le=16, description="Chat messages the prompt is split into.")


class Workload(ApiModel):
    """What each request asks for: a named use case (the quantization study's seven, or the two reasoning
    workloads), or custom lengths."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("has(self.useCase) != has(self.custom)", "give exactly one of useCase or custom"),
        )
    )

    use_case: UseCase | None = Field(
        default=None,
        description=", ".join(f"{w.name} ({w.prompt_tokens}/{w.output_tokens} tokens)" for w in WORKLOADS.values())
        + ".",
    )
    custom: CustomWorkload | None = Field(default=None, description="Custom prompt/output length distributions.")
    api: Literal["chat", "completions"] = Field(
        default="chat", description="OpenAI endpoint: /v1/chat/completions or /v1/completions."
    )

    @model_validator(mode="after")
    def _one(self) -> Workload:
        if (self.use_case is None) == (self.custom is None):
            raise ValueError("give exactly one of useCase or custom")
        return self

    @property
    def name(self) -> str:
        return self.use_case.value if self.use_case is not None else "custom"

    def resolve(self, custom_name: str) -> ResolvedWorkload:
        """The workload each request is drawn from; a custom one is named `custom_name`."""
        if self.use_case is not None:
            return WORKLOADS[self.use_case.value]
        custom = self.custom
        assert custom is not None  # the model requires useCase or custom
        return ResolvedWorkload(
            name=custom_name,
            prompt=custom.prompt_tokens.lengths(),
            output=custom.output_tokens.lengths(),
            chat_turns=custom.chat_turns,
        )


# --- load ---------------------------------------------------------------------------------------------
class Load(ApiModel):
    """How hard and how long each variant is driven."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "self.mode != 'concurrency-sweep' || (has(self.concurrencies) && size(self.concurrencies) > 0)",
                "mode concurrency-sweep needs concurrencies, e.g. [1, 4, 16, 64]",
                ".concurrencies",
            ),
            cel(
                "self.mode != 'rate-sweep' || (has(self.rates) && size(self.rates) > 0)",
                "mode rate-sweep needs rates (requests/s), e.g. [0.5, 1, 2, 4]",
                ".rates",
            ),
            cel(
                "self.mode == 'concurrency-sweep' || !has(self.concurrencies) || size(self.concurrencies) == 0",
                "concurrencies apply to mode concurrency-sweep only",
                ".concurrencies",
            ),
            cel(
                "self.mode == 'rate-sweep' || !has(self.rates) || size(self.rates) == 0",
                "rates apply to mode rate-sweep only",
                ".rates",
            ),
            cel(
                f"!has(self.duration) || (duration(self.duration) > duration('0s') && "
                f"duration(self.duration) <= duration('{MAX_LOAD_DURATION}'))",
                f"duration must be more than 0s and at most {MAX_LOAD_DURATION}, e.g. 60s",
                ".duration",
            ),
        )
    )

    mode: LoadMode = Field(default=LoadMode.SYNC, description="sync, concurrency-sweep or rate-sweep.")
    concurrencies: list[Annotated[int, Field(ge=1, le=100_000)]] | None = Field(
        default=None,
        max_length=MAX_LOAD_LEVELS,
        description="Streams in flight at each level (concurrency-sweep).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    rates: list[Annotated[float, Field(gt=0, le=1_000_000)]] | None = Field(
        default=None, max_length=MAX_LOAD_LEVELS, description="Offered requests/s at each level (rate-sweep)."
    )
    arrival: Literal["constant", "poisson"] = Field(
        default="poisson", description="Arrival process of rate-sweep: constant or poisson."
    )
    duration: Duration = Field(default="60s", description="Wall-clock bound of each load level.")
    max_requests: int | None = Field(default=None, ge=1, le=100_000_000, description="Request bound of each level.")

    @field_validator("duration")
    @classmethod
    def _duration_bounds(cls, value: str) -> str:
        if not 0 < duration_seconds(value) <= duration_seconds(MAX_LOAD_DURATION):
            raise ValueError(f"duration must be more than 0s and at most {MAX_LOAD_DURATION}, e.g. 60s")
        return value

    @model_validator(mode="after")
    def _levels(self) -> Load:
        if self.mode is LoadMode.CONCURRENCY_SWEEP and not self.concurrencies:
            raise ValueError("mode concurrency-sweep needs concurrencies, e.g. [1, 4, 16, 64]")
        if self.mode is LoadMode.RATE_SWEEP and not self.rates:
            raise ValueError("mode rate-sweep needs rates (requests/s), e.g. [0.5, 1, 2, 4]")
        if self.mode is not LoadMode.CONCURRENCY_SWEEP and self.concurrencies:
            raise ValueError("concurrencies apply to mode concurrency-sweep only")
        if self.mode is not LoadMode.RATE_SWEEP and self.rates:
            raise ValueError("rates apply to mode rate-sweep only")
        if self.concurrencies and len(set(self.concurrencies)) != len(self.concurrencies):
            raise ValueError("concurrencies must not repeat a level")
        return self


# --- schedule, budget, pricing ------------------------------------------------------------------------
CRON_PATTERN: Final = r"^(@(hourly|daily|weekly|monthly|yearly|annually|midnight)|(\S+\s+){4}\S+)$"


class Schedule(ApiModel):
    """When the bake-off repeats: a cron expression or a fixed interval (absent: once)."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(cel("has(self.cron) != has(self.interval)", "give exactly one of cron or interval"))
    )

    cron: str | None = Field(
        default=None,
        max_length=128,
        pattern=CRON_PATTERN,
        description="Five-field cron expression in UTC (e.g. `0 */6 * * *`) or @hourly, @daily, @weekly.",
    )
    interval: Duration | None = Field(default=None, description="Time between run starts, e.g. `6h`.")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression; write five fields like '0 */6 * * *'")
        return value

    @model_validator(mode="after")
    def _one(self) -> Schedule:
        if (self.cron is None) == (self.interval is None):
            raise ValueError("give exactly one of cron or interval")
        return self


class AccuracyBudget(ApiModel):
    """How much accuracy a variant may lose against its baseline and still be recommended."""

    max_recovery_loss: float = Field(
        ge=0, le=1, description="Largest allowed 1 - recovery (0.01: keep at least 99% of the baseline's score)."
    )

    @property
    def min_recovery(self) -> float:
        return 1.0 - self.max_recovery_loss


class Pricing(ApiModel):
    """Which GPU price the cost per 1M tokens uses."""

    spot: bool = Field(default=False, description="Use the GPU class's spot price instead of on-demand.")


MAX_RUN_DEADLINE: Final = "168h"  # a week: a run that takes longer is stuck, not measuring
DEFAULT_HISTORY_LIMIT: Final = 5


class RunPolicy(ApiModel):
    """How each run of the bake-off executes in a cluster: one Kubernetes Job per run."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                f"!has(self.deadline) || (duration(self.deadline) >= duration('1m') && "
                f"duration(self.deadline) <= duration('{MAX_RUN_DEADLINE}'))",
                f"deadline must be at least 1m and at most {MAX_RUN_DEADLINE}, e.g. 2h",
                ".deadline",
            ),
        )
    )

    side_by_side: bool = Field(
        default=False,
        description="Load every variant at once (each on its own replicas); false: one variant after another.",
    )
    deadline: Duration | None = Field(
        default=None,
        description="Longest a run may take; it is then stopped and marked failed (the Job's "
        "activeDeadlineSeconds). Default: twice the planned load time plus 5 minutes.",
    )
    results_claim: str | None = Field(
        default=None,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="PersistentVolumeClaim in the BakeOff's namespace that each run writes its full per-request "
        "results to (`<bakeoff>/<run>/<variant>/`: results JSON with every request and the report). Without it "
        "only each variant's summary comes back (a ConfigMap per run and variant).",
    )
    history_limit: int = Field(
        default=DEFAULT_HISTORY_LIMIT,
        ge=1,
        le=MAX_LAST_RUNS,
        description="Runs kept in status.lastRuns; the Jobs and result objects of older runs are deleted.",
    )

    @field_validator("deadline")
    @classmethod
    def _deadline_bounds(cls, value: str | None) -> str | None:
        if value is not None and not 60 <= duration_seconds(value) <= duration_seconds(MAX_RUN_DEADLINE):
            raise ValueError(f"deadline must be at least 1m and at most {MAX_RUN_DEADLINE}, e.g. 2h")
        return value


class Selection(BaseModel):
    """The variants a BakeOff names or selects, or why there are none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    names: list[str] = Field(default_factory=list, description="Chosen variants: the listed order, else by name.")
    missing: list[str] = Field(default_factory=list, description="Names spec.variants lists that do not exist.")
    by_selector: bool = Field(default=False, description="Chosen by spec.variantSelector.")

    @property
    def problem(self) -> str | None:
        """Why the bake-off has no variants to run, in the spec's words; None when it has."""
        if self.missing:
            return f"spec.variants names {', '.join(self.missing)}, which no ModelVariant defines"
        if not self.names:
            return "spec.variantSelector matches no ModelVariant"
        return None


class BakeOffSpec(ApiModel):
    """Variants, workload, load, schedule, SLO, accuracy budget and pricing of a bake-off."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("has(self.variants) != has(self.variantSelector)", "give exactly one of variants or variantSelector"),
        )
    )

    variants: list[VariantName] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_VARIANTS,
        description="Names of the ModelVariants (same namespace) to compare.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    variant_selector: LabelSelector | None = Field(
        default=None, description="Selects the ModelVariants to compare by label (instead of variants)."
    )
    workload: Workload = Field(description="What each request asks for.")
    load: Load = Field(default_factory=Load, description="Load mode, levels and bounds.")
    schedule: Schedule | None = Field(default=None, description="Repeat on a cron or interval; absent: run once.")
    suspend: bool = Field(
        default=False, description="Skip scheduled runs while true (a `bakeoff.dev/run-now` request still runs)."
    )
    runs: RunPolicy = Field(default_factory=RunPolicy, description="How runs execute: side by side, deadline, history.")
    slo: SLO | None = Field(default=None, description="Latency objective for goodput and the recommendation.")
    accuracy_budget: AccuracyBudget | None = Field(
        default=None, description="Largest accuracy loss against the baseline a recommendation may have."
    )
    pricing: Pricing = Field(default_factory=Pricing, description="Price inputs.")
    seed: int = Field(default=0, ge=0, le=2_147_483_647, description="Seeds prompts, lengths and arrivals.")

    def select(self, labels_by_name: Mapping[str, Mapping[str, str]]) -> Selection:
        """The one rule from a bake-off to its variants: `variants` in their order, or the variants
        whose labels `variantSelector` matches, by name. `labels_by_name` holds every ModelVariant of
        the namespace with its labels."""
        if self.variants is not None:
            missing = [n for n in self.variants if n not in labels_by_name]
            return Selection(names=[] if missing else list(self.variants), missing=missing)
        selector = self.variant_selector
        assert selector is not None  # the model requires variants or variantSelector
        chosen = sorted(name for name, labels in labels_by_name.items() if selector.matches(dict(labels)))
        return Selection(names=chosen, by_selector=True)

    @model_validator(mode="after")
    def _one_selection(self) -> BakeOffSpec:
        if (self.variants is None) == (self.variant_selector is None):
            raise ValueError("give exactly one of variants or variantSelector")
        if self.variants is not None and len(set(self.variants)) != len(self.variants):
            raise ValueError("variants must not name a variant twice")
        return self


# --- status -------------------------------------------------------------------------------------------
class LatencyPercentiles(ApiModel):
    """Latency percentiles in milliseconds."""

    p50: float | None = Field(default=None, ge=0, le=1e8, description="Median, ms.")
    p90: float | None = Field(default=None, ge=0, le=1e8, description="90th percentile, ms.")
    p95: float | None = Field(default=None, ge=0, le=1e8, description="95th percentile, ms.")
    p99: float | None = Field(default=None, ge=0, le=1e8, description="99th percentile, ms.")


class VariantResult(ApiModel):
    """One variant's results in the last completed run."""

    variant: VariantName = Field(description="ModelVariant name.")
    gpu_class: str | None = Field(default=None, max_length=MAX_NAME, alias="gpuClass", description="GPU class.")
    gpus: int | None = Field(
        default=None, ge=1, le=1_000_000, description="GPUs serving the load: per replica times replicas."
    )
    requests: int | None = Field(default=None, ge=0, le=1_000_000_000, description="Requests completed.")
    ttft_ms: LatencyPercentiles | None = Field(default=None, description="Time to first token.")
    itl_ms: LatencyPercentiles | None = Field(default=None, description="Inter-token latency.")
    e2e_ms: LatencyPercentiles | None = Field(default=None, alias="e2eMs", description="End-to-end latency.")
    output_tokens_per_second: float | None = Field(default=None, ge=0, le=1e9, description="Output tokens/s.")
    max_qps_under_slo: float | None = Field(
        default=None, ge=0, le=1e6, description="Highest requests/s whose percentile met the SLO."
    )
    cost_per_1m_output_tokens_usd: float | None = Field(
        default=None, ge=0, le=1e9, alias="costPer1MOutputTokensUSD", description="USD per 1M output tokens."
    )
    cost_per_1m_total_tokens_usd: float | None = Field(
        default=None, ge=0, le=1e9, alias="costPer1MTotalTokensUSD", description="USD per 1M prompt+output tokens."
    )
    accuracy_recovery: float | None = Field(
        default=None, ge=0, le=1.5, description="Accuracy as a fraction of the baseline (from the variant)."
    )
    meets_slo: bool | None = Field(default=None, description="The SLO held at some load level.")
    within_accuracy_budget: bool | None = Field(default=None, description="Recovery within the accuracy budget.")


class BaselineComparison(ApiModel, Comparison):
    """A variant against its baseline (its ModelVariant's `spec.baseline`) on one latency metric:
    a two-sided Mann-Whitney U test at the variant's chosen load level."""


class Recommendation(ApiModel):
    """The cheapest variant meeting the SLO and the accuracy budget, and why."""

    variant: VariantName | None = Field(default=None, description="Recommended variant; absent when none qualifies.")
    reason: str = Field(max_length=MAX_REASON, description="Why, in one or two sentences with the figures.")


class RunOutcome(StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"  # due, but no variant could be measured: no Job was created


class RunTrigger(StrEnum):
    SCHEDULE = "Schedule"  # spec.schedule (or, without one, the bake-off's creation)
    RUN_NOW = "RunNow"  # the `bakeoff.dev/run-now` annotation


class SkippedVariant(ApiModel):
    """A variant a run did not measure, and why."""

    variant: VariantName = Field(description="ModelVariant name.")
    reason: str = Field(max_length=1024, description="Why it was not measured (e.g. its Ready condition).")


class RunRecord(ApiModel):
    """One run of the bake-off."""

    name: str = Field(max_length=MAX_NAME, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", description="Run id.")
    start_time: RFC3339 = Field(description="When the run started.")
    completion_time: RFC3339 | None = Field(default=None, description="When it finished.")
    outcome: RunOutcome = Field(description="Running, Succeeded, Failed or Skipped.")
    message: str = Field(default="", max_length=MAX_REASON, description="Details, e.g. why it failed.")
    recommended: str | None = Field(default=None, max_length=MAX_NAME, description="Variant recommended by the run.")
    trigger: RunTrigger | None = Field(default=None, description="What started it: Schedule or RunNow.")
    job: str | None = Field(default=None, max_length=MAX_NAME, description="The Job that ran it.")
    variants: list[VariantName] = Field(
        default_factory=list, max_length=MAX_VARIANTS, description="Variants the run measured, in order."
    )
    skipped: list[SkippedVariant] = Field(
        default_factory=list, max_length=MAX_VARIANTS, description="Variants it did not measure, with the reason."
    )
    results_location: str | None = Field(
        default=None,
        max_length=253 + 2 * MAX_NAME + 8,
        description="Where its full per-request results are: pvc://<claim>/<bakeoff>/<run> (spec.runs.resultsClaim).",
    )


class BakeOffStatus(ApiModel):
    """Results of the last completed run, the Pareto frontier, the recommendation and recent runs."""

    observed_generation: int | None = Field(default=None, ge=0, description="Generation last reconciled.")
    conditions: list[Condition] = conditions_field()
    results: list[VariantResult] = Field(
        default_factory=list,
        max_length=MAX_VARIANTS,
        description="Per-variant results of the last completed run.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["variant"]},
    )
    pareto_frontier: list[VariantName] = Field(
        default_factory=list,
        max_length=MAX_VARIANTS,
        description="Variants no other variant beats on both cost per 1M output tokens and p90 E2E latency, "
        "each at its chosen load point; cheapest first.",
    )
    comparisons: list[BaselineComparison] = Field(
        default_factory=list,
        max_length=MAX_VARIANTS * len(BASELINE_METRICS),
        description="Each variant against its baseline on TTFT, TPOT and E2E (Mann-Whitney U test).",
    )
    recommendation: Recommendation | None = Field(default=None, description="The recommended variant.")
    last_runs: list[RunRecord] = Field(
        default_factory=list, max_length=MAX_LAST_RUNS, description="Most recent runs, newest first."
    )
    next_run_time: RFC3339 | None = Field(default=None, description="When the next scheduled run starts.")
    last_schedule_time: RFC3339 | None = Field(
        default=None, description="The scheduled time of the last run started or skipped."
    )
    last_handled_run_now: str | None = Field(
        default=None,
        max_length=253,
        description="The last `bakeoff.dev/run-now` annotation value a run was started for.",
    )
    last_successful_run: str | None = Field(
        default=None, max_length=MAX_NAME, description="The run the results, frontier and recommendation are from."
    )


def record_run(history: list[RunRecord], run: RunRecord) -> list[RunRecord]:
    """`run` first (replacing an entry of the same name), then the older ones, at most MAX_LAST_RUNS."""
    return [run, *(r for r in history if r.name != run.name)][:MAX_LAST_RUNS]


class BakeOff(ApiModel):
    """A bake-off between model variants."""

    api_version: Literal["bakeoff.dev/v1alpha1"] = Field(default=API_VERSION, description="API version.")
    kind: Literal["BakeOff"] = Field(default="BakeOff", description="Kind.")
    metadata: ObjectMeta = Field(description="Object metadata.")
    spec: BakeOffSpec = Field(description="The bake-off.")
    status: BakeOffStatus | None = Field(default=None, description="Results and recommendation.")
