"""What a load run is asked to do: endpoint, workload, load mode, bounds, SLO and cost inputs."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bakeoff_loadtest.cost import CostInputs
from bakeoff_loadtest.workloads import Workload


class LoadMode(StrEnum):
    """sync: one stream at a time; concurrency: N closed-loop streams; rate: open-loop arrivals;
    the sweeps repeat concurrency or rate over a list of levels."""

    SYNC = "sync"
    CONCURRENCY = "concurrency"
    RATE = "rate"
    SWEEP_CONCURRENCY = "sweep-concurrency"
    SWEEP_RATE = "sweep-rate"


class SLO(BaseModel):
    """Latency targets; a request meets them all to count toward goodput."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ttft_ms: float | None = Field(None, gt=0, le=3_600_000, description="TTFT target in ms.")
    itl_ms: float | None = Field(
        None, gt=0, le=600_000, description="ITL target in ms (per request: its TPOT; per point: percentile)."
    )
    e2e_ms: float | None = Field(None, gt=0, le=86_400_000, description="Optional E2E target in ms.")
    percentile: float = Field(99.0, ge=50.0, le=100.0, description="Percentile a load point is judged at.")
    max_failure_rate: float = Field(0.01, ge=0.0, le=1.0, description="Failure rate a point may have.")

    @property
    def empty(self) -> bool:
        return self.ttft_ms is None and self.itl_ms is None and self.e2e_ms is None


DEFAULT_CONCURRENCY_LEVELS: tuple[float, ...] = (1, 2, 4, 8, 16, 32)


class RunSpec(BaseModel):
    """One load run against one variant; sweeps run one load point per level."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str = Field(..., min_length=8, max_length=2048, description="Base URL, e.g. http://host:8000.")
    model: str = Field(..., min_length=1, max_length=256, description="Served model name sent as `model`.")
    variant: str = Field("", max_length=253, description="Variant label in results (default: the model).")
    api: Literal["chat", "completions"] = Field("chat", description="/v1/chat/completions or /v1/completions.")
    workload: Workload
    mode: LoadMode = LoadMode.SYNC
    concurrency: int = Field(1, ge=1, le=100_000, description="Streams in flight (concurrency mode).")
    rate_rps: float | None = Field(None, gt=0, le=1_000_000, description="Offered requests/s (rate mode).")
    arrival: Literal["constant", "poisson"] = Field("poisson", description="Arrival process (rate modes).")
    levels: tuple[float, ...] = Field((), max_length=64, description="Concurrencies or rates of a sweep.")
    duration_s: float = Field(60.0, gt=0, le=86_400, description="Wall-clock bound of each load point.")
    max_requests: int | None = Field(None, ge=1, le=100_000_000, description="Request bound of each point.")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Seeds prompts, lengths, arrivals, bootstrap.")
    slo: SLO = Field(default_factory=SLO)
    cost: CostInputs = Field(default_factory=CostInputs)
    workers: int = Field(0, ge=0, le=256, description="Locust worker processes (0: in-process).")
    request_timeout_s: float = Field(600.0, gt=0, le=86_400, description="Per-read network timeout.")
    connect_timeout_s: float = Field(10.0, gt=0, le=600, description="Connection timeout.")
    drain_timeout_s: float = Field(120.0, ge=0, le=86_400, description="Wait for in-flight at the end.")
    max_in_flight: int = Field(4096, ge=1, le=1_000_000, description="Open-loop cap on streams in flight.")
    tokenizer: str | None = Field(
        None, max_length=4096, description="None/'words', 'server' (/tokenize) or a tokenizer.json path."
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"endpoint must be an http(s) URL such as http://127.0.0.1:8000, got {v!r}")
        v = v.rstrip("/")
        return v.removesuffix("/v1")

    @model_validator(mode="after")
    def _check(self) -> RunSpec:
        if self.mode is LoadMode.RATE and self.rate_rps is None:
            raise ValueError("mode 'rate' needs rate_rps (--rate), the offered requests per second")
        if self.mode is LoadMode.SWEEP_RATE and not self.levels:
            raise ValueError("mode 'sweep-rate' needs levels (--levels), e.g. 0.5,1,2,4")
        if self.mode in (LoadMode.SWEEP_CONCURRENCY, LoadMode.SWEEP_RATE):
            if any(x <= 0 for x in self.levels):
                raise ValueError("every sweep level must be > 0")
            if self.mode is LoadMode.SWEEP_CONCURRENCY and any(x != int(x) for x in self.levels):
                raise ValueError("concurrency sweep levels must be whole numbers")
        if self.mode is LoadMode.SYNC and self.workers > 1:
            raise ValueError("mode 'sync' is one stream at a time: use at most 1 worker")
        return self

    @property
    def label(self) -> str:
        return self.variant or self.model

    @property
    def path(self) -> str:
        return "/v1/chat/completions" if self.api == "chat" else "/v1/completions"

    def sweep_levels(self) -> tuple[float, ...]:
        if self.mode is LoadMode.SWEEP_CONCURRENCY:
            return self.levels or DEFAULT_CONCURRENCY_LEVELS
        if self.mode is LoadMode.SWEEP_RATE:
            return self.levels
        if self.mode is LoadMode.RATE:
            return (float(self.rate_rps or 0),)
        if self.mode is LoadMode.CONCURRENCY:
            return (float(self.concurrency),)
        return (1.0,)

    @property
    def open_loop(self) -> bool:
        return self.mode in (LoadMode.RATE, LoadMode.SWEEP_RATE)
