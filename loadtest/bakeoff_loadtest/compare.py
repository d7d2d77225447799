"""A/B comparison: a variant against its baseline, one latency metric at a time."""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from bakeoff_loadtest.results import LoadPoint, RunResult
from bakeoff_loadtest.stats import mann_whitney

MAX_VERDICT: Final = 512


class Metric(StrEnum):
    """Per-request latencies a comparison can test (itl_ms: the pooled inter-token gaps)."""

    TTFT = "ttft_ms"
    TPOT = "tpot_ms"
    E2E = "e2e_ms"
    ITL_MEAN = "itl_mean_ms"
    ITL = "itl_ms"


# What a bake-off compares each variant with its baseline on: per-request values, so that samples
# are independent as the test assumes (pooled ITL gaps of one request are not).
BASELINE_METRICS: Final = (Metric.TTFT, Metric.TPOT, Metric.E2E)


class Comparison(BaseModel):
    """A variant against its baseline on one latency metric: positive shift and delta mean the
    variant is slower."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: str = Field(max_length=253, description="The variant compared.")
    baseline: str = Field(max_length=253, description="The variant it is compared with.")
    metric: Metric = Field(description="Latency compared: ttft_ms, tpot_ms, e2e_ms, itl_mean_ms or itl_ms.")
    level: float = Field(ge=0, le=1e6, description="Load level of the points compared (concurrency or requests/s).")
    n_variant: int = Field(ge=0, le=1_000_000_000, description="Samples of the variant.")
    n_baseline: int = Field(ge=0, le=1_000_000_000, description="Samples of the baseline.")
    median_variant_ms: float = Field(ge=0, le=1e9, description="Median of the variant, ms.")
    median_baseline_ms: float = Field(ge=0, le=1e9, description="Median of the baseline, ms.")
    shift_ms: float = Field(ge=-1e9, le=1e9, description="Hodges-Lehmann estimate of variant - baseline, ms.")
    p_value: float = Field(ge=0, le=1, description="Two-sided Mann-Whitney U p-value.")
    cliffs_delta: float = Field(ge=-1, le=1, description="P(variant > baseline) - P(variant < baseline).")
    alpha: float = Field(gt=0, lt=1, description="Significance level.")
    significant: bool = Field(description="p-value below alpha.")
    verdict: str = Field(max_length=MAX_VERDICT, description="The outcome in one sentence.")


def _values(point: LoadPoint, metric: Metric) -> list[float]:
    if metric is Metric.ITL:
        return list(point.itl_samples_ms)
    vals = [getattr(s, metric.value) for s in point.requests if s.ok]
    return [float(v) for v in vals if v is not None]


def _point(result: RunResult, level: float | None) -> LoadPoint:
    if level is not None:
        for p in result.points:
            if math.isclose(p.level, level):
                return p
        raise ValueError(f"{result.variant} has no load point at level {level:g}")
    chosen = result.chosen_point()
    if chosen is None:
        raise ValueError(f"{result.variant} has no successful load point to compare")
    return chosen


def compare(
    baseline: RunResult,
    variant: RunResult,
    metric: Metric = Metric.TTFT,
    *,
    level: float | None = None,
    alpha: float = 0.05,
    seed: int = 0,
) -> Comparison:
    """Two-sided Mann-Whitney U test of ``metric`` between the variant and its baseline at one load
    level: ``level``, or else the variant's chosen point's level."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    pv = _point(variant, level)
    xb = _values(_point(baseline, pv.level), metric)
    xv = _values(pv, metric)
    mw = mann_whitney(xv, xb, seed=seed)
    sig = mw.p_value < alpha
    if not sig:
        verdict = f"no significant difference in {metric.value} (p = {mw.p_value:.3g})"
    else:
        word = "slower" if mw.hodges_lehmann_shift > 0 else "faster"
        verdict = (
            f"{variant.variant} is {word} than {baseline.variant} in {metric.value} by "
            f"{_duration(abs(mw.hodges_lehmann_shift))} (p = {mw.p_value:.3g}, Cliff's delta = {mw.cliffs_delta:+.2f})"
        )
    return Comparison(
        variant=variant.variant,
        baseline=baseline.variant,
        metric=metric,
        level=pv.level,
        n_variant=len(xv),
        n_baseline=len(xb),
        median_variant_ms=_median(xv),
        median_baseline_ms=_median(xb),
        shift_ms=mw.hodges_lehmann_shift,
        p_value=mw.p_value,
        cliffs_delta=max(-1.0, min(1.0, mw.cliffs_delta)),
        alpha=alpha,
        significant=sig,
        verdict=verdict[:MAX_VERDICT],
    )


def compare_with_baseline(
    baseline: RunResult, variant: RunResult, metrics: Sequence[Metric] = BASELINE_METRICS
) -> list[Comparison]:
    """Each metric at the variant's chosen load level; none where either side has fewer than two
    samples there (the test needs two a side) or the baseline did not measure that level."""
    out: list[Comparison] = []
    for metric in metrics:
        try:
            out.append(compare(baseline, variant, metric))
        except ValueError:
            continue
    return out


def _duration(ms: float) -> str:
    return f"{ms / 1000:.3g} s" if ms >= 1000 else f"{ms:.3g} ms"


def _median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return (s[(n - 1) // 2] + s[n // 2]) / 2.0
