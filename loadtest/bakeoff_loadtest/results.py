"""The results of a load run: a versioned, immutable pydantic model and its JSON schema.

Schema policy: ``schema_version`` is an integer. Adding an optional field keeps the version;
renaming, removing or changing the meaning of a field increments it, and
:func:`bakeoff_loadtest.result_files.load_result` refuses versions it does not know, naming the
version it found. Every model here is frozen: :mod:`bakeoff_loadtest.summary` builds each one
once, from the request records.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from bakeoff_loadtest.definitions import DEFINITIONS
from bakeoff_loadtest.records import FailureCause
from bakeoff_loadtest.slo import Percentile
from bakeoff_loadtest.spec import RunSpec

SCHEMA_VERSION: Final = 2
ITL_RESERVOIR: Final = 20_000

_MS = Field(None, description="Milliseconds; null when there were no samples.")
_CI = Field(None, description="95% confidence interval (ms).")

Interval = tuple[float, float]


class LatencySummary(BaseModel):
    """Distribution summary of one latency, in milliseconds, with 95% CIs of every percentile an SLO
    may name (p50, p90, p95, p99)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(0, ge=0, description="Samples the summary is computed from.")
    mean: float | None = _MS
    min: float | None = _MS
    max: float | None = _MS
    p50: float | None = _MS
    p90: float | None = _MS
    p95: float | None = _MS
    p99: float | None = _MS
    p50_ci: Interval | None = _CI
    p90_ci: Interval | None = _CI
    p95_ci: Interval | None = _CI
    p99_ci: Interval | None = _CI

    def at(self, p: Percentile) -> float | None:
        """The percentile ``p`` (every one an SLO may name is stored)."""
        value: float | None = getattr(self, p.value)
        return value

    def ci(self, p: Percentile) -> Interval | None:
        value: Interval | None = getattr(self, f"{p.value}_ci")
        return value


class RequestSample(BaseModel):
    """One request as it appears in the results (times in ms from the monotonic clock)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int = Field(..., ge=0)
    worker: int = Field(0, ge=0)
    start_offset_s: float = Field(..., description="Start, seconds after the point began.")
    ok: bool
    cause: FailureCause | None = None
    status_code: int = Field(0, ge=0, le=999)
    ttft_ms: float | None = None
    e2e_ms: float | None = None
    tpot_ms: float | None = None
    itl_mean_ms: float | None = None
    itl_max_ms: float | None = None
    output_tokens: int | None = Field(None, ge=0)
    prompt_tokens: int | None = Field(None, ge=0)
    requested_output_tokens: int = Field(..., ge=0)
    requested_prompt_tokens: int = Field(..., ge=0)
    content_chunks: int = Field(0, ge=0)


class LoadPoint(BaseModel):
    """Everything measured at one load level."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    concurrency: int | None = Field(None, ge=1, description="Closed-loop streams (sync: 1).")
    rate_rps: float | None = Field(None, gt=0, description="Offered requests/s (open loop).")
    arrival: Literal["constant", "poisson"] | None = None
    started_unix: float | None = Field(None, description="Wall-clock time (Unix s) of the first request start.")
    wall_s: float = Field(..., ge=0, description="First request start to last request end.")
    requests_started: int = Field(0, ge=0)
    requests_ok: int = Field(0, ge=0)
    requests_failed: int = Field(0, ge=0)
    requests_cancelled: int = Field(0, ge=0, description="In flight when the drain timeout ended.")
    failures_by_cause: dict[str, int] = Field(default_factory=dict)
    failure_examples: tuple[str, ...] = Field((), description="A few failure messages.")
    ttft_ms: LatencySummary = Field(default_factory=LatencySummary)
    itl_ms: LatencySummary = Field(default_factory=LatencySummary)
    tpot_ms: LatencySummary = Field(default_factory=LatencySummary)
    e2e_ms: LatencySummary = Field(default_factory=LatencySummary)
    output_tokens: int = Field(0, ge=0, description="Sum of usage.completion_tokens of successes.")
    prompt_tokens: int = Field(0, ge=0, description="Sum of usage.prompt_tokens of successes.")
    output_length_mismatches: int = Field(
        0, ge=0, description="Successes whose output tokens differ from max_tokens (ignore_eos unhonoured)."
    )
    requests_per_s: float = Field(0.0, ge=0)
    output_tokens_per_s: float = Field(0.0, ge=0)
    total_tokens_per_s: float = Field(0.0, ge=0)
    goodput_rps: float | None = Field(None, ge=0, description="Successful requests meeting every SLO per s.")
    slo_attainment: float | None = Field(None, ge=0, le=1, description="Share of started requests in SLO.")
    meets_slo: bool | None = Field(None, description="Percentile SLO met and failures within budget.")
    gpu_hours: float = Field(0.0, ge=0)
    cost_usd: float = Field(0.0, ge=0)
    usd_per_1m_output_tokens: float | None = Field(None, ge=0)
    usd_per_1m_total_tokens: float | None = Field(None, ge=0)
    itl_samples_ms: tuple[float, ...] = Field(
        (), description=f"Seeded reservoir of at most {ITL_RESERVOIR} ITL samples."
    )
    requests: tuple[RequestSample, ...] = ()

    @property
    def level(self) -> float:
        return float(self.rate_rps if self.rate_rps is not None else (self.concurrency or 1))

    @property
    def failure_rate(self) -> float:
        done = self.requests_ok + self.requests_failed
        return self.requests_failed / done if done else 0.0


class SweepAnalysis(BaseModel):
    """Where a sweep saturates and the most load it carries within the SLO."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    knee_level: float | None = Field(None, description="Level with the highest tokens/s per median E2E.")
    max_output_tokens_per_s: float = Field(0.0, ge=0)
    max_qps_under_slo: float | None = Field(None, description="Highest offered rate meeting the SLO.")
    max_concurrency_under_slo: int | None = Field(None, description="Highest concurrency meeting the SLO.")
    max_goodput_rps: float | None = Field(None, ge=0)
    saturated_at: float | None = Field(
        None, description="First level whose median E2E exceeds 1.5x that of the lowest level, or that fails."
    )


class RunResult(BaseModel):
    """A load run of one variant: the spec it ran, its load points and their analysis."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[2] = Field(2, description="Version of this results schema.")
    harness: str = Field("bakeoff-loadtest", description="Producer of the results.")
    locust_version: str = Field("", max_length=64)
    spec: RunSpec
    started_at: datetime
    finished_at: datetime
    points: tuple[LoadPoint, ...] = ()
    sweep: SweepAnalysis | None = None
    warnings: tuple[str, ...] = ()
    error: str | None = Field(
        None, description="Why the run failed or ended early: a load point without a successful request, a signal."
    )
    interrupted: bool = Field(
        False, description="A signal stopped the run: the last load point is cut short, later ones never ran."
    )
    definitions: dict[str, str] = Field(default_factory=lambda: dict(DEFINITIONS))

    @property
    def variant(self) -> str:
        return self.spec.label

    def chosen_point(self) -> LoadPoint | None:
        """The load point the variant is judged at (see "chosen load point" in the definitions).

        Cost per token falls as throughput rises, so within the SLO this is also the cheapest point.
        """
        done = [p for p in self.points if p.requests_ok > 0]
        within = [p for p in done if p.meets_slo]
        pool = within or done
        return max(pool, key=lambda p: p.output_tokens_per_s) if pool else None

    def meets_slo(self) -> bool | None:
        """Whether some load point met the SLO; None when the run sets none."""
        if self.spec.slo is None:
            return None
        return any(p.meets_slo for p in self.points)


def result_json_schema() -> dict[str, Any]:
    """The JSON schema of :class:`RunResult` (documented in docs/measurement.md)."""
    return RunResult.model_json_schema()


def now_utc() -> datetime:
    return datetime.now(UTC)
