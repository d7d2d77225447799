"""The verdict of a run, per variant: one definition of its figures for every place that shows them. Pure.

A run's report (`report.render_report`, the "Verdict" table of `report.html`) and a BakeOff's
`/metrics` (the operator's `bakeoff_bakeoff_result{namespace, bakeoff, variant, metric}`, which the
overview dashboard's "Bake-offs" row draws) show the same figures, defined here once:

- `FIGURES`: each figure's id, title, unit and the `metric` label values it is exported as (one for most,
  one per percentile for the latencies);
- `VerdictRow`: what a figure is computed from, per variant: the run's chosen load point (cost, throughput,
  latency percentiles), the GPUs that served it, the most requests/s within the SLO and whether the SLO
  held. `verdict_row` makes it from a run's `RunResult`, for the report and for the measured fields of a
  BakeOff's `status.results` row (the operator's `planning.bakeoff_plan.summarize`), whose gauges are the
  figures of that row;
- `figures`: a row, whether the variant is on the Pareto frontier and whether it is recommended, as
  numbers per `metric` label; a figure without a value (no request completed, no SLO) has none.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from bakeoff_loadtest.results import LatencySummary, RunResult


class Unit(StrEnum):
    USD = "usd"
    TOKENS_PER_SECOND = "tokens_per_second"
    REQUESTS_PER_SECOND = "requests_per_second"
    MILLISECONDS = "ms"
    RATIO = "ratio"  # 1 = 100 %
    FLAG = "flag"  # 1 yes, 0 no


class Figure(BaseModel):
    """One figure of the verdict: a column of the report's verdict table and a panel of the overview."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    title: str
    unit: Unit
    description: str
    metrics: tuple[str, ...] = Field(description="Its `metric` label values, in the order the report shows them.")
    headers: tuple[str, ...] = Field(description="The report's column header of each metric.")


PERCENTILES: Final = ("p50", "p90", "p95", "p99")
LATENCIES: Final = (("ttft", "TTFT"), ("itl", "ITL"), ("e2e", "E2E"))


def _one(id: str, title: str, unit: Unit, description: str) -> Figure:
    return Figure(id=id, title=title, unit=unit, description=description, metrics=(id,), headers=(title,))


FIGURES: Final = (
    _one(
        "recommended",
        "Recommended",
        Unit.FLAG,
        "The cheapest variant per 1M output tokens that met the SLO, within the accuracy budget.",
    ),
    _one("within_slo", "Within the SLO", Unit.FLAG, "The SLO held at some load level (no figure without an SLO)."),
    _one(
        "on_pareto_frontier",
        "On the Pareto frontier",
        Unit.FLAG,
        "No other variant is both cheaper per 1M output tokens and faster at p90 E2E, each at its chosen load point.",
    ),
    _one(
        "cost_per_1m_output_tokens_usd",
        "Cost per 1M output tokens",
        Unit.USD,
        "USD per 1M output tokens at the chosen load point.",
    ),
    _one(
        "cost_per_1m_total_tokens_usd",
        "Cost per 1M tokens (prompt + output)",
        Unit.USD,
        "USD per 1M prompt and output tokens at the chosen load point.",
    ),
    _one("output_tokens_per_second", "Output tokens/s", Unit.TOKENS_PER_SECOND, "At the chosen load point."),
    _one(
        "output_tokens_per_second_per_gpu",
        "Output tokens/s per GPU",
        Unit.TOKENS_PER_SECOND,
        "Output tokens/s at the chosen load point over the GPUs that served it (per replica x replicas).",
    ),
    _one(
        "max_qps_under_slo",
        "Most requests/s within the SLO",
        Unit.REQUESTS_PER_SECOND,
        "The sweep's highest rate that met the SLO, else the chosen point's requests/s when it met the SLO "
        "(or the run sets none).",
    ),
    _one(
        "accuracy_recovery",
        "Accuracy recovery",
        Unit.RATIO,
        "The variant's accuracy over its baseline's (the ModelVariants' spec.accuracy): 1 is no loss.",
    ),
    *(
        Figure(
            id=f"{key}_ms",
            title=f"{title} percentiles",
            unit=Unit.MILLISECONDS,
            description=f"{title} p50, p90, p95 and p99 at the chosen load point, in ms.",
            metrics=tuple(f"{key}_{p}_ms" for p in PERCENTILES),
            headers=tuple(f"{title} {p}" for p in PERCENTILES),
        )
        for key, title in LATENCIES
    ),
)
METRICS: Final = tuple(m for f in FIGURES for m in f.metrics)


class Percentiles(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None


class VerdictRow(BaseModel):
    """What a variant's figures are computed from (the fields of a BakeOff's `status.results` row)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    variant: str
    gpus: int | None = None
    ttft_ms: Percentiles | None = None
    itl_ms: Percentiles | None = None
    e2e_ms: Percentiles | None = None
    output_tokens_per_second: float | None = None
    max_qps_under_slo: float | None = None
    cost_per_1m_output_tokens_usd: float | None = None
    cost_per_1m_total_tokens_usd: float | None = None
    meets_slo: bool | None = None
    accuracy_recovery: float | None = None


def _percentiles(s: LatencySummary) -> Percentiles | None:
    if not s.count:
        return None
    return Percentiles(p50=s.p50, p90=s.p90, p95=s.p95, p99=s.p99)


def verdict_row(result: RunResult, *, accuracy_recovery: float | None = None) -> VerdictRow:
    """A run's row: its chosen load point, the GPUs that served it and its most requests/s within the SLO;
    `accuracy_recovery` comes from the variants' declared accuracy, which the run does not measure."""
    point = result.chosen_point()
    meets = result.meets_slo()
    max_qps = result.sweep.max_qps_under_slo if result.sweep is not None else None
    if max_qps is None and point is not None and (meets or result.spec.slo is None):
        max_qps = point.requests_per_s
    return VerdictRow(
        variant=result.variant,
        gpus=result.spec.cost.gpus * result.spec.cost.replicas,
        ttft_ms=_percentiles(point.ttft_ms) if point else None,
        itl_ms=_percentiles(point.itl_ms) if point else None,
        e2e_ms=_percentiles(point.e2e_ms) if point else None,
        output_tokens_per_second=point.output_tokens_per_s if point else None,
        max_qps_under_slo=max_qps,
        cost_per_1m_output_tokens_usd=point.usd_per_1m_output_tokens if point else None,
        cost_per_1m_total_tokens_usd=point.usd_per_1m_total_tokens if point else None,
        meets_slo=meets,
        accuracy_recovery=accuracy_recovery,
    )


def figures(row: VerdictRow, *, on_pareto_frontier: bool, recommended: bool) -> dict[str, float]:
    """The row's figures, `metric` label -> value, in the order of `METRICS`; those without a value left out."""
    values: dict[str, float | None] = {
        "recommended": float(recommended),
        "within_slo": None if row.meets_slo is None else float(row.meets_slo),
        "on_pareto_frontier": float(on_pareto_frontier),
        "cost_per_1m_output_tokens_usd": row.cost_per_1m_output_tokens_usd,
        "cost_per_1m_total_tokens_usd": row.cost_per_1m_total_tokens_usd,
        "output_tokens_per_second": row.output_tokens_per_second,
        "output_tokens_per_second_per_gpu": (
            row.output_tokens_per_second / row.gpus if row.output_tokens_per_second is not None and row.gpus else None
        ),
        "max_qps_under_slo": row.max_qps_under_slo,
        "accuracy_recovery": row.accuracy_recovery,
    }
    for key, _ in LATENCIES:
        latency: Percentiles | None = getattr(row, f"{key}_ms")
        for p in PERCENTILES:
            values[f"{key}_{p}_ms"] = getattr(latency, p) if latency is not None else None
    assert tuple(values) == METRICS  # every figure is computed here, in its order
    return {k: float(v) for k, v in values.items() if v is not None}
