"""What a load run is asked to do: the load plan of one variant, and the run spec that adds its endpoint.

A `LoadPlan` is built once, where the run is decided (`bakeoff loadtest` from its flags, `bakeoff run`
and the operator from a BakeOff); the endpoint is the only thing added when the variant is serving.
"""

from __future__ import annotations

import math
from typing import Final, Literal

from bakeoff_runtime.cost import CostInputs
from bakeoff_runtime.workloads import LoadMode, Workload
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bakeoff_loadtest.slo import SLO

DEFAULT_CONCURRENCY_LEVELS: Final[tuple[float, ...]] = (1, 2, 4, 8, 16, 32)
# Concurrent streams one load process (one Locust process on one core) drives with its timings intact:
# `benchmarks/loadtest_capacity.py` measured a TTFT error p99 of 9.5 ms at 200 streams of 25 tokens/s
# and 103 ms at 400. A load that needs more runs as a Locust master and workers (`workers_for`).
STREAMS_PER_PROCESS: Final = 200
MAX_WORKERS: Final = 256


def workers_for(peak_streams: float, streams_per_process: int = STREAMS_PER_PROCESS) -> int:
    """Locust worker processes for a load of `peak_streams` concurrent streams: 0 (one process, no
    workers) while one process carries them, else one worker per `streams_per_process` streams (the
    master only coordinates); at most `MAX_WORKERS`."""
    if streams_per_process < 1:
        raise ValueError(f"streams per process must be at least 1, got {streams_per_process}")
    processes = math.ceil(max(0.0, peak_streams) / streams_per_process)
    return 0 if processes <= 1 else min(MAX_WORKERS, processes)


class LoadPlan(BaseModel):
    """One variant's load run, endpoint left out; a sweep runs one load point per level."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(..., min_length=1, max_length=256, description="Served model name sent as `model`.")
    variant: str = Field("", max_length=253, description="Variant label in results (default: the model).")
    api: Literal["chat", "completions"] = Field("chat", description="/v1/chat/completions or /v1/completions.")
    workload: Workload
    mode: LoadMode = LoadMode.SYNC
    levels: tuple[float, ...] = Field(
        (),
        max_length=64,
        description="Concurrencies (concurrency-sweep; default 1,2,4,8,16,32) or offered requests/s (rate-sweep).",
    )
    arrival: Literal["constant", "poisson"] = Field("poisson", description="Arrival process of rate-sweep.")
    duration_s: float = Field(60.0, gt=0, le=86_400, description="Wall-clock bound of each load point.")
    max_requests: int | None = Field(None, ge=1, le=100_000_000, description="Request bound of each point.")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Seeds prompts, lengths, arrivals, bootstrap.")
    slo: SLO | None = Field(None, description="Latency objective for goodput and `meets_slo`; none: not judged.")
    max_failure_rate: float = Field(0.01, ge=0.0, le=1.0, description="Failure rate a point meeting the SLO may have.")
    cost: CostInputs = Field(default_factory=CostInputs)
    workers: int = Field(0, ge=0, le=MAX_WORKERS, description="Locust worker processes (0: in-process).")
    request_timeout_s: float = Field(600.0, gt=0, le=86_400, description="Per-read network timeout.")
    connect_timeout_s: float = Field(10.0, gt=0, le=600, description="Connection timeout.")
    drain_timeout_s: float = Field(120.0, ge=0, le=86_400, description="Wait for in-flight at the end.")
    max_in_flight: int = Field(4096, ge=1, le=1_000_000, description="Open-loop cap on streams in flight.")
    tokenizer: str | None = Field(
        None, max_length=4096, description="None/'words', 'server' (/tokenize) or a tokenizer.json path."
    )

    @model_validator(mode="after")
    def _check(self) -> LoadPlan:
        if self.mode is LoadMode.SYNC and self.levels:
            raise ValueError("mode 'sync' is one stream at a time: levels apply to the sweeps only")
        if self.mode is LoadMode.RATE_SWEEP and not self.levels:
            raise ValueError("mode 'rate-sweep' needs levels, the offered requests per second, e.g. 0.5,1,2,4")
        if any(x <= 0 for x in self.levels):
            raise ValueError("every sweep level must be > 0")
        if self.mode is LoadMode.CONCURRENCY_SWEEP and any(x != int(x) for x in self.levels):
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

    @property
    def open_loop(self) -> bool:
        return self.mode.open_loop

    def sweep_levels(self) -> tuple[float, ...]:
        """The level of each load point: concurrencies, offered rates, or the one stream of sync."""
        if self.mode is LoadMode.CONCURRENCY_SWEEP:
            return self.levels or DEFAULT_CONCURRENCY_LEVELS
        if self.mode is LoadMode.RATE_SWEEP:
            return self.levels
        return (1.0,)

    def peak_streams(self, latency_s: float | None = None) -> float:
        """The most streams this plan keeps in flight: the highest concurrency of a sweep, one for sync;
        for a rate sweep the highest rate times `latency_s` (Little's law; the expected end-to-end
        latency at that rate, e.g. the performance model's at saturation), capped by `max_in_flight`,
        and one stream per request/s when no latency is known."""
        if self.mode is LoadMode.RATE_SWEEP:
            rate = max(self.levels)
            return min(float(self.max_in_flight), rate * (latency_s if latency_s is not None else 1.0))
        return max(self.sweep_levels())

    def at(self, endpoint: str) -> RunSpec:
        """This plan against the variant serving at ``endpoint``."""
        return RunSpec.model_validate({**dict(self), "endpoint": endpoint})


class RunSpec(LoadPlan):
    """A load plan with the endpoint of the variant it runs against."""

    endpoint: str = Field(..., min_length=8, max_length=2048, description="Base URL, e.g. http://host:8000.")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"endpoint must be an http(s) URL such as http://127.0.0.1:8000, got {v!r}")
        v = v.rstrip("/")
        return v.removesuffix("/v1")
