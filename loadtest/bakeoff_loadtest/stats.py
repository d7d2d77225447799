"""Statistics: percentiles with seeded bootstrap confidence intervals, and the A/B test.

Pure numpy. Percentiles use linear interpolation (Hyndman-Fan type 7, numpy's default). The
confidence interval is a percentile bootstrap for up to ``BOOTSTRAP_MAX_N`` samples; above that the
distribution-free order-statistic interval is used, which needs no resampling and has the same
asymptotic coverage. The A/B test is the two-sided Mann-Whitney U test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

BOOTSTRAP_MAX_N = 20_000
_Z975 = 1.959963984540054


def _arr(values: Sequence[float] | npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(values, dtype=np.float64)


def percentile(values: Sequence[float] | npt.NDArray[np.float64], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; NaN for no values."""
    a = _arr(values)
    if a.size == 0:
        return math.nan
    return float(np.percentile(a, q))


def percentile_ci(
    values: Sequence[float] | npt.NDArray[np.float64],
    q: float,
    *,
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
) -> tuple[float, float]:
    """A ``level`` confidence interval for the ``q``-th percentile (NaNs when fewer than 2 values)."""
    a = _arr(values)
    n = a.size
    if n < 2:
        return (math.nan, math.nan)
    alpha = 1.0 - level
    if n > BOOTSTRAP_MAX_N:
        # Order-statistic interval: the rank of the sample quantile is Binomial(n, q/100).
        p = q / 100.0
        z = _normal_quantile(1 - alpha / 2)
        half = z * math.sqrt(n * p * (1 - p))
        lo_rank = max(0, math.floor(n * p - half) - 1)
        hi_rank = min(n - 1, math.ceil(n * p + half))
        part = np.partition(a, (lo_rank, hi_rank))
        return (float(part[lo_rank]), float(part[hi_rank]))
    rng = np.random.default_rng(seed)
    est = np.empty(n_boot, dtype=np.float64)
    batch = max(1, min(n_boot, 2_000_000 // n))
    done = 0
    while done < n_boot:
        k = min(batch, n_boot - done)
        idx = rng.integers(0, n, size=(k, n))
        est[done : done + k] = np.percentile(a[idx], q, axis=1)
        done += k
    lo, hi = np.percentile(est, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return (float(lo), float(hi))


def _normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _normal_quantile(p: float) -> float:
    if abs(p - 0.975) < 1e-12:
        return _Z975
    # Bisection is plenty for the few quantiles this module needs.
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if _normal_cdf(mid) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass(frozen=True, slots=True)
class MannWhitney:
    """Result of a two-sided Mann-Whitney U test of samples a and b."""

    u: float
    z: float
    p_value: float
    cliffs_delta: float
    hodges_lehmann_shift: float


def _rankdata(a: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], float]:
    """Mid-ranks (1-based) and the tie term sum(t^3 - t)."""
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    ranks = np.empty(a.size, dtype=np.float64)
    # Group runs of equal values and give each the mean of its ranks.
    boundaries = np.flatnonzero(np.diff(sorted_a)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [a.size]))
    tie_term = 0.0
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2.0
        t = e - s
        if t > 1:
            tie_term += t**3 - t
    return ranks, tie_term


def mann_whitney(
    a: Sequence[float] | npt.NDArray[np.float64],
    b: Sequence[float] | npt.NDArray[np.float64],
    *,
    seed: int = 0,
) -> MannWhitney:
    """Two-sided Mann-Whitney U (normal approximation, tie and continuity corrections).

    Cliff's delta = P(a > b) - P(a < b): positive means a tends to be larger. The Hodges-Lehmann
    shift is the median of all differences a_i - b_j (a seeded subsample of pairs above 4M pairs).
    """
    x, y = _arr(a), _arr(b)
    n1, n2 = x.size, y.size
    if n1 < 2 or n2 < 2:
        raise ValueError(f"the A/B test needs at least 2 samples on each side, got {n1} and {n2}")
    ranks, tie_term = _rankdata(np.concatenate((x, y)))
    r1 = float(ranks[:n1].sum())
    u1 = r1 - n1 * (n1 + 1) / 2.0
    mean_u = n1 * n2 / 2.0
    n = n1 + n2
    var_u = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1)))
    if var_u <= 0:
        z, p = 0.0, 1.0
    else:
        diff = u1 - mean_u
        cc = 0.5 if diff != 0 else 0.0
        z = (diff - math.copysign(cc, diff)) / math.sqrt(var_u)
        p = min(1.0, 2.0 * _normal_cdf(-abs(z)))
    delta = (2.0 * u1) / (n1 * n2) - 1.0
    rng = np.random.default_rng(seed)
    if n1 * n2 <= 4_000_000:
        hl = float(np.median(np.subtract.outer(x, y)))
    else:
        i = rng.integers(0, n1, size=4_000_000)
        j = rng.integers(0, n2, size=4_000_000)
        hl = float(np.median(x[i] - y[j]))
    return MannWhitney(u=u1, z=z, p_value=p, cliffs_delta=delta, hodges_lehmann_shift=hl)
