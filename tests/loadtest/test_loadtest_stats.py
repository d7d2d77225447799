"""Statistics, cost and results: coverage of the intervals, power of the A/B test, pinned formulas."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from bakeoff_loadtest.compare import Metric, compare, compare_with_baseline
from bakeoff_loadtest.records import FailureCause, RequestRecord
from bakeoff_loadtest.result_files import load_result, load_results, write_results
from bakeoff_loadtest.results import SCHEMA_VERSION, RunResult, now_utc, result_json_schema
from bakeoff_loadtest.slo import SLO, Percentile
from bakeoff_loadtest.spec import RunSpec
from bakeoff_loadtest.stats import mann_whitney, percentile, percentile_ci
from bakeoff_loadtest.summary import analyse_sweep, summarize_point
from bakeoff_runtime.cost import CostInputs, usd_per_million_tokens, usd_per_million_tokens_at_rate
from bakeoff_runtime.workloads import LengthDistribution, LoadMode, Workload
from pydantic import ValidationError

WL = Workload(name="custom", prompt=LengthDistribution(mean=10), output=LengthDistribution(mean=5))


def test_percentile_is_linear_interpolation() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10, 20], 90) == pytest.approx(19.0)
    assert math.isnan(percentile([], 50))


@pytest.mark.parametrize("q", [50, 90, 99])
def test_bootstrap_interval_covers_the_true_percentile(q: int) -> None:
    # Exponential(1): the true q-th percentile is -ln(1 - q/100).
    truth = -math.log(1 - q / 100)
    rng = np.random.default_rng(123)
    n = 400 if q < 99 else 2000
    trials = 150
    hits = 0
    for k in range(trials):
        xs = rng.exponential(1.0, n)
        lo, hi = percentile_ci(xs, q, seed=k, n_boot=400)
        hits += lo <= truth <= hi
    # Nominal 95%; the binomial sd over 150 trials is ~1.8 points, and the bootstrap is slightly
    # anti-conservative in the tail, hence the asymmetric band.
    assert 0.87 <= hits / trials <= 0.995


def test_large_samples_use_the_order_statistic_interval() -> None:
    rng = np.random.default_rng(5)
    xs = rng.exponential(1.0, 100_000)
    lo, hi = percentile_ci(xs, 99, seed=0)
    truth = -math.log(0.01)
    assert lo <= truth <= hi
    assert hi - lo < 0.3


def test_intervals_are_seeded() -> None:
    xs = list(np.random.default_rng(1).normal(size=300))
    assert percentile_ci(xs, 90, seed=4) == percentile_ci(xs, 90, seed=4)


def test_mann_whitney_detects_a_real_shift_and_not_a_null() -> None:
    rng = np.random.default_rng(0)
    a = rng.lognormal(3.0, 0.3, 300)
    shifted = a * 1.0 + rng.lognormal(3.0, 0.3, 300) * 0 + 3.0  # +3 ms everywhere
    res = mann_whitney(shifted, a)
    assert res.p_value < 1e-3
    assert res.cliffs_delta > 0.1
    assert res.hodges_lehmann_shift == pytest.approx(3.0, abs=1.5)
    false_positives = 0
    for k in range(200):
        x = rng.lognormal(3.0, 0.3, 80)
        y = rng.lognormal(3.0, 0.3, 80)
        false_positives += mann_whitney(x, y, seed=k).p_value < 0.05
    assert false_positives <= 20  # 5% nominal: 10 expected, the 99.9% binomial bound is ~20


def test_mann_whitney_matches_a_hand_computed_example() -> None:
    # a = [1, 2, 3], b = [4, 5, 6]: U_a = 0, delta = -1, z with continuity correction.
    res = mann_whitney([1, 2, 3], [4, 5, 6])
    assert res.u == 0
    assert res.cliffs_delta == -1.0
    var = 3 * 3 * 7 / 12
    assert res.z == pytest.approx((0 - 4.5 + 0.5) / math.sqrt(var))
    with pytest.raises(ValueError, match="at least 2 samples"):
        mann_whitney([1], [2, 3])


def test_cost_formula_is_pinned() -> None:
    c = CostInputs(gpu_class="H100", price_per_gpu_hour=3.29, gpus=2, replicas=3)
    # 3.29 USD/GPU-h x 2 GPUs x 3 replicas x 0.5 h = 9.87 USD; over 2M tokens = 4.935 USD per 1M.
    assert c.usd(1800) == pytest.approx(9.87)
    assert c.usd_per_million(1800, 2_000_000) == pytest.approx(4.935)
    assert c.usd_per_million(1800, 0) is None
    assert CostInputs().usd_per_million(1800, 10) is None  # no price given: no cost


@pytest.mark.parametrize(
    ("price", "gpus", "replicas", "tokens_per_s"),
    [(3.29, 1, 1, 1000.0), (6.58, 2, 1, 2715.0), (1.25, 4, 3, 37.5)],
    ids=["one-gpu", "tp2", "tp4-three-replicas"],
)
def test_measured_and_predicted_cost_are_one_formula(
    price: float, gpus: int, replicas: int, tokens_per_s: float
) -> None:
    # A measured point of 90 s at a steady rate costs per token exactly what the rate predicts.
    measured = CostInputs(price_per_gpu_hour=price, gpus=gpus, replicas=replicas).usd_per_million(
        90.0, round(tokens_per_s * 90)
    )
    predicted = usd_per_million_tokens_at_rate(
        price_per_gpu_hour=price, gpus=gpus, replicas=replicas, tokens_per_second=tokens_per_s
    )
    by_hand = price * gpus * replicas / (tokens_per_s * 3600) * 1e6
    assert measured == pytest.approx(by_hand, rel=1e-3)
    assert predicted == pytest.approx(by_hand, rel=1e-12)
    assert usd_per_million_tokens(price_per_gpu_hour=price, gpus=gpus, replicas=replicas, hours=1, tokens=0) is None


def _rec(i: int, *, ttft: float, itl: float, out: int, ok: bool = True, start: float = 0.0) -> RequestRecord:
    r = RequestRecord(index=i, worker=0, start_unix=start, requested_prompt_tokens=10, requested_output_tokens=out)
    r.ok = ok
    if ok:
        r.ttft_s, r.itl_s = ttft, [itl] * (out - 1)
        r.e2e_s = ttft + itl * (out - 1)
        r.output_tokens, r.prompt_tokens, r.content_chunks = out, 10, out
    else:
        r.cause, r.detail, r.e2e_s = FailureCause.HTTP_STATUS, "HTTP 500", 0.01
    return r


def _spec(**kw: object) -> RunSpec:
    base: dict[str, object] = {
        "endpoint": "http://127.0.0.1:9",
        "model": "m",
        "workload": WL,
        "cost": CostInputs(gpu_class="H100", price_per_gpu_hour=3.6, gpus=1, replicas=1),
        "slo": SLO(ttft_ms=100, itl_ms=20, percentile=Percentile.P99),
    }
    base.update(kw)
    return RunSpec.model_validate(base)


def test_point_summary_goodput_throughput_and_cost() -> None:
    recs = [_rec(i, ttft=0.05, itl=0.01, out=5, start=i * 1.0) for i in range(9)]
    recs.append(_rec(9, ttft=0.5, itl=0.01, out=5, start=9.0))  # misses the TTFT SLO
    recs.append(_rec(10, ttft=0, itl=0, out=5, ok=False, start=9.5))
    p = summarize_point(recs, _spec(), level=1)
    # wall: first start 0.0 to last end 9.0 + 0.5 + 0.04 = 9.54 s
    assert p.wall_s == pytest.approx(9.54)
    assert (p.requests_ok, p.requests_failed, p.failures_by_cause) == (10, 1, {"http_status": 1})
    assert p.output_tokens == 50
    assert p.prompt_tokens == 100
    assert p.output_tokens_per_s == pytest.approx(50 / 9.54)
    assert p.goodput_rps == pytest.approx(9 / 9.54)
    assert p.slo_attainment == pytest.approx(9 / 11)
    assert p.ttft_ms.p50 == pytest.approx(50.0)
    assert p.itl_ms.p50 == pytest.approx(10.0)
    assert p.itl_ms.count == 40
    assert p.tpot_ms.p50 == pytest.approx(10.0)
    # 3.6 USD/h x 9.54 s = 0.00954 USD over 50 output tokens
    assert p.usd_per_1m_output_tokens == pytest.approx(3.6 * 9.54 / 3600 / 50 * 1e6)
    assert p.usd_per_1m_total_tokens == pytest.approx(3.6 * 9.54 / 3600 / 150 * 1e6)
    assert p.meets_slo is False  # 1 failure in 11 is over the 1% failure budget


@pytest.mark.parametrize(
    ("p", "bound_ms", "meets"),
    [
        (Percentile.P50, 51.0, True),
        (Percentile.P90, 91.0, True),
        (Percentile.P95, 96.0, True),
        (Percentile.P95, 95.0, False),
        (Percentile.P99, 96.0, False),
        (Percentile.P99, 99.5, True),
    ],
    ids=["p50", "p90", "p95-within", "p95-over", "p99-over", "p99-within"],
)
def test_a_point_is_judged_at_the_slos_own_percentile(p: Percentile, bound_ms: float, meets: bool) -> None:
    # TTFTs of 1..100 ms: p50 = 50.5, p90 = 90.1, p95 = 95.05, p99 = 99.01 (linear interpolation).
    recs = [_rec(i, ttft=(i + 1) / 1000, itl=0.001, out=5, start=i * 0.01) for i in range(100)]
    point = summarize_point(recs, _spec(slo=SLO(ttft_ms=bound_ms, percentile=p)), level=1)
    assert point.ttft_ms.at(p) == pytest.approx({"p50": 50.5, "p90": 90.1, "p95": 95.05, "p99": 99.01}[p.value])
    assert point.meets_slo is meets


def test_sweep_analysis_finds_knee_and_max_qps_under_slo() -> None:
    spec = _spec(mode=LoadMode.RATE_SWEEP, levels=(1, 2, 4, 8))
    points = []
    for k, (rate, ttft) in enumerate([(1, 0.03), (2, 0.04), (4, 0.05), (8, 0.6)]):
        recs = [_rec(i, ttft=ttft, itl=0.01, out=5, start=i / rate) for i in range(int(rate * 10))]
        points.append(summarize_point(recs, spec, level=rate, point_index=k))
    a = analyse_sweep(points, spec)
    assert a.max_qps_under_slo == 4
    assert a.saturated_at == 8
    assert a.knee_level in (2.0, 4.0)


def test_results_round_trip_and_schema(tmp_path: Path) -> None:
    spec = _spec()
    point = summarize_point([_rec(i, ttft=0.05, itl=0.01, out=5, start=i) for i in range(5)], spec, level=1)
    res = RunResult(spec=spec, started_at=now_utc(), finished_at=now_utc(), points=(point,))
    paths = write_results(tmp_path, [res])
    assert {p.name for p in paths} == {
        "m-custom-sync.json",
        "m-custom-sync.requests.csv",
        "points.csv",
    }
    back = load_result(tmp_path / "m-custom-sync.json")
    assert back == res
    assert load_results(tmp_path) == [res]
    header = (tmp_path / "points.csv").read_text().splitlines()[0]
    assert header.startswith("variant,workload,mode,concurrency,rate_rps")
    schema = result_json_schema()
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    data = json.loads((tmp_path / "m-custom-sync.json").read_text())
    data["schema_version"] = 99
    (tmp_path / "future.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"schema_version 99; this harness reads version {SCHEMA_VERSION}"):
        load_result(tmp_path / "future.json")


def test_results_are_immutable() -> None:
    point = summarize_point([_rec(0, ttft=0.05, itl=0.01, out=5)], _spec(), level=1)
    res = RunResult(spec=_spec(), started_at=now_utc(), finished_at=now_utc(), points=(point,))
    with pytest.raises(ValidationError):
        res.error = "late"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        point.meets_slo = True  # type: ignore[misc]
    with pytest.raises(AttributeError):
        res.points.append(point)  # type: ignore[attr-defined]


def _run(variant: str, ttft_s: float, rng: np.random.Generator) -> RunResult:
    spec = _spec(variant=variant)
    recs = [_rec(i, ttft=ttft_s + rng.random() * 0.01, itl=0.01, out=5) for i in range(60)]
    point = summarize_point(recs, spec, level=1)
    return RunResult(spec=spec, started_at=now_utc(), finished_at=now_utc(), points=(point,))


def test_a_variant_is_compared_with_its_baseline() -> None:
    rng = np.random.default_rng(2)
    bf16, int4 = _run("bf16", 0.05, rng), _run("int4", 0.04, rng)
    c = compare(bf16, int4, Metric.TTFT)
    assert (c.variant, c.baseline, c.level) == ("int4", "bf16", 1.0)
    assert c.significant
    assert c.shift_ms == pytest.approx(-10.0, abs=2.0)
    assert "int4 is faster than bf16" in c.verdict
    assert not compare(bf16, bf16, Metric.TTFT).significant
    assert [x.metric for x in compare_with_baseline(bf16, int4)] == [Metric.TTFT, Metric.TPOT, Metric.E2E]


def test_no_comparison_without_two_samples_a_side() -> None:
    rng = np.random.default_rng(3)
    one = RunResult(
        spec=_spec(variant="one"),
        started_at=now_utc(),
        finished_at=now_utc(),
        points=(summarize_point([_rec(0, ttft=0.05, itl=0.01, out=5)], _spec(variant="one"), level=1),),
    )
    assert compare_with_baseline(_run("base", 0.05, rng), one) == []


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"mode": LoadMode.RATE_SWEEP}, "needs levels"),
        ({"mode": LoadMode.CONCURRENCY_SWEEP, "levels": (1, 2.5)}, "whole numbers"),
        ({"mode": LoadMode.CONCURRENCY_SWEEP, "levels": (0,)}, "must be > 0"),
        ({"mode": LoadMode.SYNC, "levels": (4,)}, "levels apply to the sweeps"),
        ({"endpoint": "127.0.0.1:8000"}, "must be an http"),
        ({"mode": LoadMode.SYNC, "workers": 2}, "at most 1 worker"),
    ],
    ids=["rate-sweep-without-levels", "fractional-concurrency", "zero", "sync-levels", "no-scheme", "sync-workers"],
)
def test_nonsensical_specs_are_rejected(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _spec(**kw)


def test_endpoint_is_normalised() -> None:
    assert _spec(endpoint="http://h:8000/v1/").endpoint == "http://h:8000"
