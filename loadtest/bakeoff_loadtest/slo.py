"""The SLO: latency bounds a request must meet, and the percentile a load point is judged at.

One model for every caller: the API's `slo` (ModelVariant and BakeOff) extends it with its wire
format and CEL rules, and the load harness judges requests and load points by it. Pure.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bakeoff_loadtest.records import RequestRecord


class Percentile(StrEnum):
    """The percentiles an SLO may name; every latency summary computes each of them."""

    P50 = "p50"
    P90 = "p90"
    P95 = "p95"
    P99 = "p99"

    @property
    def percent(self) -> float:
        """50.0, 90.0, 95.0 or 99.0."""
        return float(self.value[1:])

    @property
    def quantile(self) -> float:
        """0.5, 0.9, 0.95 or 0.99."""
        return self.percent / 100


class SLO(BaseModel):
    """Latency objective a request must meet; at least one bound is required."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ttft_ms: float | None = Field(
        default=None, gt=0, le=600_000, description="Time to first token, ms (request start to first content token)."
    )
    itl_ms: float | None = Field(
        default=None, gt=0, le=60_000, description="Inter-token latency, ms (gap between content tokens)."
    )
    e2e_ms: float | None = Field(default=None, gt=0, le=3_600_000, description="End-to-end request latency, ms.")
    percentile: Percentile = Field(
        default=Percentile.P90, description="Percentile of requests that must meet every bound: p50, p90, p95, p99."
    )

    @model_validator(mode="after")
    def _one_bound(self) -> SLO:
        if self.ttft_ms is None and self.itl_ms is None and self.e2e_ms is None:
            raise ValueError("an SLO needs at least one of ttft_ms, itl_ms or e2e_ms")
        return self

    def describe(self) -> str:
        bounds = [
            f"{name} <= {value:g} ms"
            for name, value in (("TTFT", self.ttft_ms), ("ITL", self.itl_ms), ("E2E", self.e2e_ms))
            if value is not None
        ]
        return f"{', '.join(bounds)} at {self.percentile.value}"


def request_meets_slo(r: RequestRecord, slo: SLO) -> bool:
    """Goodput rule: a successful request within every bound that is set (ITL: the request's TPOT)."""
    if not r.ok:
        return False
    if slo.ttft_ms is not None and (r.ttft_s is None or r.ttft_s * 1000 > slo.ttft_ms):
        return False
    if slo.itl_ms is not None:
        tpot = r.tpot_s
        if tpot is not None and tpot * 1000 > slo.itl_ms:
            return False
    return not (slo.e2e_ms is not None and (r.e2e_s is None or r.e2e_s * 1000 > slo.e2e_ms))
