"""The Pareto frontier: one definition (cost per 1M output tokens against p90 E2E, each variant at its
chosen load point), pinned by a table and by the rule that places a run on it."""

from __future__ import annotations

import pytest
from bakeoff_loadtest.pareto import Tradeoff, pareto_frontier, tradeoff
from bakeoff_loadtest.records import RequestRecord
from bakeoff_loadtest.results import RunResult, now_utc
from bakeoff_loadtest.slo import SLO
from bakeoff_loadtest.spec import RunSpec
from bakeoff_loadtest.summary import summarize_point
from bakeoff_runtime.cost import CostInputs
from bakeoff_runtime.workloads import LengthDistribution, LoadMode, Workload


def t(name: str, cost: float, e2e: float) -> Tradeoff:
    return Tradeoff(variant=name, cost_per_1m_output_tokens_usd=cost, e2e_ms=e2e)


@pytest.mark.parametrize(
    ("points", "front"),
    [
        ([t("a", 1, 5), t("b", 2, 3), t("c", 3, 4), t("d", 4, 1), t("e", 2, 6)], ["a", "b", "d"]),
        ([t("cheap-slow", 1, 300), t("dear-fast", 3, 100), t("dominated", 3.5, 350)], ["cheap-slow", "dear-fast"]),
        ([t("x", 1, 100), t("y", 1, 100)], ["x", "y"]),  # ties dominate neither: both stay
        ([t("same-cost-slower", 1, 200), t("same-cost-faster", 1, 100)], ["same-cost-faster"]),
        ([t("only", 2, 2)], ["only"]),
        ([], []),
    ],
    ids=["mixed", "dominated", "tie", "equal-cost", "one", "none"],
)
def test_frontier_keeps_what_nothing_beats_on_both_axes(points: list[Tradeoff], front: list[str]) -> None:
    assert pareto_frontier(points) == front
    assert pareto_frontier(list(reversed(points))) == front  # cheapest first, whatever the input order


def _result(variant: str, *, e2e_s: float, price: float, slo: SLO | None, error: str | None = None) -> RunResult:
    spec = RunSpec(
        endpoint="http://127.0.0.1:9",
        model="m",
        variant=variant,
        workload=Workload(name="custom", prompt=LengthDistribution(mean=10), output=LengthDistribution(mean=5)),
        mode=LoadMode.CONCURRENCY_SWEEP,
        levels=(1, 4),
        slo=slo,
        cost=CostInputs(price_per_gpu_hour=price),
    )
    points = []
    for k, level in enumerate((1, 4)):
        recs = []
        for i in range(20):
            r = RequestRecord(index=i, worker=0, start_unix=i / level, requested_prompt_tokens=10,
                              requested_output_tokens=5)  # fmt: skip
            r.ok, r.ttft_s, r.itl_s = True, 0.01, [0.01] * 4
            r.e2e_s = e2e_s * level
            r.output_tokens, r.prompt_tokens = 5, 10
            recs.append(r)
        points.append(summarize_point(recs, spec, level=level, point_index=k))
    return RunResult(spec=spec, started_at=now_utc(), finished_at=now_utc(), points=tuple(points), error=error)


def test_a_run_is_placed_at_its_chosen_point_by_p90_e2e() -> None:
    r = _result("v", e2e_s=0.1, price=2.0, slo=None)
    place = tradeoff(r)
    chosen = r.chosen_point()
    assert place is not None
    assert chosen is not None
    assert chosen.concurrency == 4  # the most output tokens/s
    assert place.e2e_ms == pytest.approx(chosen.e2e_ms.p90 or 0)
    assert place.cost_per_1m_output_tokens_usd == chosen.usd_per_1m_output_tokens


@pytest.mark.parametrize(
    ("kw", "placed"),
    [
        ({"slo": None}, True),
        ({"slo": SLO(e2e_ms=1000)}, True),
        ({"slo": SLO(e2e_ms=10)}, False),  # missed at every level
        ({"slo": None, "error": "endpoint unreachable"}, False),
        ({"slo": None, "price": 0.0}, False),  # no price: no cost to place it by
    ],
    ids=["no-slo", "meets", "misses", "failed", "unpriced"],
)
def test_who_has_a_place_on_the_frontier(kw: dict[str, object], placed: bool) -> None:
    args: dict[str, object] = {"e2e_s": 0.1, "price": 2.0, **kw}
    assert (tradeoff(_result("v", **args)) is not None) is placed  # type: ignore[arg-type]
