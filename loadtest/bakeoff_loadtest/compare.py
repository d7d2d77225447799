"""A/B comparison of two variants, and the Pareto frontier of cost against latency."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bakeoff_loadtest.results import LoadPoint, RunResult
from bakeoff_loadtest.stats import mann_whitney

Metric = Literal["ttft_ms", "e2e_ms", "tpot_ms", "itl_mean_ms", "itl_ms"]


class Comparison(BaseModel):
    """B against A on one latency metric: positive shift and delta mean B is slower."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(..., description="Per-request metric compared (itl_ms: pooled ITL samples).")
    a: str = Field(..., description="Variant A (the baseline).")
    b: str = Field(..., description="Variant B.")
    n_a: int = Field(..., ge=0)
    n_b: int = Field(..., ge=0)
    median_a: float
    median_b: float
    ratio: float | None = Field(None, description="median B / median A.")
    shift: float = Field(..., description="Hodges-Lehmann estimate of B - A (ms).")
    u: float = Field(..., description="Mann-Whitney U of B.")
    z: float
    p_value: float = Field(..., ge=0, le=1)
    cliffs_delta: float = Field(..., ge=-1, le=1, description="P(B > A) - P(B < A).")
    alpha: float = Field(..., gt=0, lt=1)
    significant: bool
    verdict: str


def _values(point: LoadPoint, metric: Metric) -> list[float]:
    if metric == "itl_ms":
        return list(point.itl_samples_ms)
    vals = [getattr(s, metric) for s in point.requests if s.ok]
    return [float(v) for v in vals if v is not None]


def _point(result: RunResult, level: float | None) -> LoadPoint:
    if level is not None:
        for p in result.points:
            if math.isclose(p.level, level):
                return p
        raise ValueError(f"{result.variant} has no load point at level {level:g}")
    if len(result.points) == 1:
        return result.points[0]
    best = result.best_point()
    if best is None:
        raise ValueError(f"{result.variant} has no successful load point to compare")
    return best


def compare(
    a: RunResult,
    b: RunResult,
    metric: Metric = "ttft_ms",
    *,
    level: float | None = None,
    alpha: float = 0.05,
    seed: int = 0,
) -> Comparison:
    """Two-sided Mann-Whitney U test of ``metric`` between A and B at one load level.

    Without ``level``, single-point runs compare their point and sweeps their best point.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    xa = _values(_point(a, level), metric)
    xb = _values(_point(b, level), metric)
    mw = mann_whitney(xb, xa, seed=seed)
    med_a = _median(xa)
    med_b = _median(xb)
    sig = mw.p_value < alpha
    if not sig:
        verdict = f"no significant difference in {metric} (p = {mw.p_value:.3g})"
    else:
        word = "slower" if mw.hodges_lehmann_shift > 0 else "faster"
        verdict = (
            f"{b.variant} is {word} than {a.variant} in {metric} by {abs(mw.hodges_lehmann_shift):.3g} ms "
            f"(p = {mw.p_value:.3g}, Cliff's delta = {mw.cliffs_delta:+.2f})"
        )
    return Comparison(
        metric=metric,
        a=a.variant,
        b=b.variant,
        n_a=len(xa),
        n_b=len(xb),
        median_a=med_a,
        median_b=med_b,
        ratio=med_b / med_a if med_a else None,
        shift=mw.hodges_lehmann_shift,
        u=mw.u,
        z=mw.z,
        p_value=mw.p_value,
        cliffs_delta=max(-1.0, min(1.0, mw.cliffs_delta)),
        alpha=alpha,
        significant=sig,
        verdict=verdict,
    )


def _median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return (s[(n - 1) // 2] + s[n // 2]) / 2.0


def pareto_front(items: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the items no other item beats on both coordinates (both minimised), by x."""
    order = sorted(range(len(items)), key=lambda i: (items[i][0], items[i][1]))
    front: list[int] = []
    best_y = math.inf
    for i in order:
        x, y = items[i]
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        if y < best_y:
            front.append(i)
            best_y = y
    return front
