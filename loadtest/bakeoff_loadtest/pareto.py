"""The Pareto frontier of cost against latency: one definition for the CLI, the BakeOff status and
the HTML report.

Each variant is placed at its chosen load point (`RunResult.chosen_point`) by its cost per 1M output
tokens and its p90 E2E latency, both lower-is-better. A variant is on the frontier when no other
variant is at least as good on both and strictly better on one; ties stay on it together. A variant
without a measurement, or that missed the SLO at every load level, has no place on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from bakeoff_loadtest.results import RunResult
from bakeoff_loadtest.slo import Percentile

FRONTIER_LATENCY: Final = Percentile.P90
FRONTIER_AXES: Final = "cost vs p90 E2E"


class Tradeoff(BaseModel):
    """Where one variant sits: what it costs and how long a request takes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: str
    cost_per_1m_output_tokens_usd: float = Field(ge=0)
    e2e_ms: float = Field(ge=0, description="E2E latency at the frontier's percentile (p90), ms.")


def tradeoff(result: RunResult) -> Tradeoff | None:
    """The variant's place in the frontier, or None when it has none (see the module docstring)."""
    point = result.chosen_point()
    if point is None or result.error is not None or result.meets_slo() is False:
        return None
    cost, latency = point.usd_per_1m_output_tokens, point.e2e_ms.at(FRONTIER_LATENCY)
    if cost is None or latency is None:
        return None
    return Tradeoff(variant=result.variant, cost_per_1m_output_tokens_usd=cost, e2e_ms=latency)


def pareto_frontier(points: Sequence[Tradeoff]) -> list[str]:
    """Variants no other variant beats on both cost and latency, cheapest first."""

    def beats(p: Tradeoff, o: Tradeoff) -> bool:
        cost, lat = p.cost_per_1m_output_tokens_usd, p.e2e_ms
        at_least = cost <= o.cost_per_1m_output_tokens_usd and lat <= o.e2e_ms
        return at_least and (cost < o.cost_per_1m_output_tokens_usd or lat < o.e2e_ms)

    front = [o for o in points if not any(beats(p, o) for p in points if p is not o)]
    front.sort(key=lambda o: (o.cost_per_1m_output_tokens_usd, o.e2e_ms, o.variant))
    return [o.variant for o in front]
