"""The recommendation: the cheapest variant per 1M output tokens that meets the SLO and the accuracy budget.

Pure: a function of measured outcomes. It also gives the Pareto frontier of cost against latency
(defined once, in `bakeoff_loadtest.pareto`), so a user sees what each step down in cost buys or loses.
"""

from __future__ import annotations

from collections.abc import Sequence

from bakeoff_loadtest.pareto import Tradeoff
from bakeoff_loadtest.pareto import pareto_frontier as frontier_of
from pydantic import BaseModel, ConfigDict, Field


class VariantOutcome(BaseModel):
    """What a bake-off measured for one variant, reduced to what the recommendation weighs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: str
    baseline: str | None = Field(default=None, description="The variant this one is compared with.")
    cost_per_1m_output_tokens_usd: float | None = Field(
        default=None, ge=0, description="At the highest-throughput load level that met the SLO."
    )
    latency_ms: float | None = Field(
        default=None, ge=0, description="p90 E2E latency at the same load level: what the frontier trades cost against."
    )
    meets_slo: bool | None = Field(default=None, description="None when the bake-off sets no SLO.")
    accuracy_recovery: float | None = Field(default=None, ge=0, le=2, description="Fraction of the baseline's score.")
    failed: str | None = Field(default=None, description="Why the variant has no measurement, when it has none.")


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: str
    qualifies: bool
    reason: str


class RecommendationResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: str | None
    reason: str
    pareto_frontier: list[str]
    verdicts: list[Verdict]


def _recovery(o: VariantOutcome, baselines: set[str]) -> float | None:
    if o.accuracy_recovery is not None:
        return o.accuracy_recovery
    # A variant others are compared with is its own reference: it recovers all of itself.
    return 1.0 if o.variant in baselines and o.baseline is None else None


def pareto_frontier(outcomes: Sequence[VariantOutcome]) -> list[str]:
    """The Pareto frontier (`bakeoff_loadtest.pareto`) of the variants with a cost and a latency."""
    return frontier_of(
        [
            Tradeoff(
                variant=o.variant, cost_per_1m_output_tokens_usd=o.cost_per_1m_output_tokens_usd, e2e_ms=o.latency_ms
            )
            for o in outcomes
            if o.cost_per_1m_output_tokens_usd is not None and o.latency_ms is not None and not o.failed
        ]
    )


def recommend(outcomes: Sequence[VariantOutcome], max_recovery_loss: float | None = None) -> RecommendationResult:
    """Cheapest qualifying variant, with the reason in figures; none (and why) when nothing qualifies."""
    baselines = {o.baseline for o in outcomes if o.baseline}
    verdicts: list[Verdict] = []
    qualifying: list[VariantOutcome] = []
    for o in outcomes:
        recovery = _recovery(o, baselines)
        if o.failed:
            verdicts.append(Verdict(variant=o.variant, qualifies=False, reason=f"no measurement: {o.failed}"))
        elif o.cost_per_1m_output_tokens_usd is None:
            verdicts.append(Verdict(variant=o.variant, qualifies=False, reason="no load level met the SLO"))
        elif o.meets_slo is False:
            verdicts.append(Verdict(variant=o.variant, qualifies=False, reason="misses the SLO at every load level"))
        elif max_recovery_loss is not None and recovery is None:
            verdicts.append(
                Verdict(
                    variant=o.variant,
                    qualifies=False,
                    reason="accuracy recovery unknown: set spec.accuracy.recovery on the ModelVariant",
                )
            )
        elif max_recovery_loss is not None and recovery is not None and 1 - recovery > max_recovery_loss + 1e-12:
            verdicts.append(
                Verdict(
                    variant=o.variant,
                    qualifies=False,
                    reason=f"recovers {recovery:.1%} of its baseline, below the budget of {1 - max_recovery_loss:.1%}",
                )
            )
        else:
            verdicts.append(Verdict(variant=o.variant, qualifies=True, reason="meets the SLO and the accuracy budget"))
            qualifying.append(o)
    front = pareto_frontier(outcomes)
    if not qualifying:
        detail = "; ".join(f"{v.variant}: {v.reason}" for v in verdicts) or "no variants were measured"
        return RecommendationResult(
            variant=None, reason=f"no variant qualifies ({detail})", pareto_frontier=front, verdicts=verdicts
        )
    best = min(
        qualifying, key=lambda o: (o.cost_per_1m_output_tokens_usd or 0.0, o.latency_ms or float("inf"), o.variant)
    )
    cost = best.cost_per_1m_output_tokens_usd or 0.0
    parts = [f"{best.variant} is the cheapest variant that qualifies at ${cost:.3f} per 1M output tokens"]
    by_name = {o.variant: o for o in outcomes}
    ref = by_name.get(best.baseline) if best.baseline else None
    if ref is not None and ref.cost_per_1m_output_tokens_usd:
        ratio = ref.cost_per_1m_output_tokens_usd / cost if cost else float("inf")
        parts.append(f"{ratio:.2f}x cheaper than its baseline {ref.variant} (${ref.cost_per_1m_output_tokens_usd:.3f})")
    others = sorted((o for o in qualifying if o is not best), key=lambda o: o.cost_per_1m_output_tokens_usd or 0.0)
    if others:
        runner = others[0]
        parts.append(f"next is {runner.variant} at ${runner.cost_per_1m_output_tokens_usd:.3f}")
    if best.meets_slo:
        parts.append("it meets the SLO")
    recovery = _recovery(best, baselines)
    if max_recovery_loss is not None and recovery is not None:
        parts.append(f"recovers {recovery:.1%} of baseline accuracy (budget {1 - max_recovery_loss:.1%})")
    return RecommendationResult(
        variant=best.variant, reason="; ".join(parts) + ".", pareto_frontier=front, verdicts=verdicts
    )
