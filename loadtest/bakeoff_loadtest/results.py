"""The results of a load run: a versioned pydantic model, its JSON schema, writers and a loader.

Schema policy: ``schema_version`` is an integer. Adding an optional field keeps the version;
renaming, removing or changing the meaning of a field increments it, and :func:`load_result`
refuses versions it does not know, naming the version it found.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bakeoff_loadtest import cost as costmod
from bakeoff_loadtest.definitions import DEFINITIONS
from bakeoff_loadtest.records import FailureCause, RequestRecord
from bakeoff_loadtest.spec import SLO, LoadMode, RunSpec
from bakeoff_loadtest.stats import percentile, percentile_ci

SCHEMA_VERSION = 1
ITL_RESERVOIR = 20_000
SAMPLE_DETAILS = 5

_F = Field(None, description="Milliseconds; null when there were no samples.")


class LatencySummary(BaseModel):
    """Distribution summary of one latency, in milliseconds, with 95% CIs of the percentiles."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(0, ge=0, description="Samples the summary is computed from.")
    mean: float | None = _F
    min: float | None = _F
    max: float | None = _F
    p50: float | None = _F
    p90: float | None = _F
    p99: float | None = _F
    p50_ci: tuple[float, float] | None = Field(None, description="95% CI of p50 (ms).")
    p90_ci: tuple[float, float] | None = Field(None, description="95% CI of p90 (ms).")
    p99_ci: tuple[float, float] | None = Field(None, description="95% CI of p99 (ms).")

    def at(self, q: float) -> float | None:
        """The percentile ``q`` when it is one of the stored ones."""
        return {50.0: self.p50, 90.0: self.p90, 99.0: self.p99}.get(float(q))


class RequestSample(BaseModel):
    """One request as it appears in the results (times in ms from the monotonic clock)."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(..., ge=0)
    worker: int = Field(0, ge=0)
    start_offset_s: float = Field(..., description="Start, seconds after the point began.")
    ok: bool
    cause: FailureCause | None = None
    status_code: int = Field(0, ge=0, le=999)
    ttft_ms: float | None = None
    e2e_ms: float | None = None
    tpot_ms: float | None = None
    itl_mean_ms: float | None = None
    itl_max_ms: float | None = None
    output_tokens: int | None = Field(None, ge=0)
    prompt_tokens: int | None = Field(None, ge=0)
    requested_output_tokens: int = Field(..., ge=0)
    requested_prompt_tokens: int = Field(..., ge=0)
    content_chunks: int = Field(0, ge=0)


class LoadPoint(BaseModel):
    """Everything measured at one load level."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int | None = Field(None, ge=1, description="Closed-loop streams (sync: 1).")
    rate_rps: float | None = Field(None, gt=0, description="Offered requests/s (open loop).")
    arrival: Literal["constant", "poisson"] | None = None
    started_unix: float | None = Field(None, description="Wall-clock time (Unix s) of the first request start.")
    wall_s: float = Field(..., ge=0, description="First request start to last request end.")
    requests_started: int = Field(0, ge=0)
    requests_ok: int = Field(0, ge=0)
    requests_failed: int = Field(0, ge=0)
    requests_cancelled: int = Field(0, ge=0, description="In flight when the drain timeout ended.")
    failures_by_cause: dict[str, int] = Field(default_factory=dict)
    failure_examples: list[str] = Field(default_factory=list, description="A few failure messages.")
    ttft_ms: LatencySummary = Field(default_factory=LatencySummary)
    itl_ms: LatencySummary = Field(default_factory=LatencySummary)
    tpot_ms: LatencySummary = Field(default_factory=LatencySummary)
    e2e_ms: LatencySummary = Field(default_factory=LatencySummary)
    output_tokens: int = Field(0, ge=0, description="Sum of usage.completion_tokens of successes.")
    prompt_tokens: int = Field(0, ge=0, description="Sum of usage.prompt_tokens of successes.")
    output_length_mismatches: int = Field(
        0, ge=0, description="Successes whose output tokens differ from max_tokens (ignore_eos unhonoured)."
    )
    requests_per_s: float = Field(0.0, ge=0)
    output_tokens_per_s: float = Field(0.0, ge=0)
    total_tokens_per_s: float = Field(0.0, ge=0)
    goodput_rps: float | None = Field(None, ge=0, description="Successful requests meeting every SLO per s.")
    slo_attainment: float | None = Field(None, ge=0, le=1, description="Share of started requests in SLO.")
    meets_slo: bool | None = Field(None, description="Percentile SLO met and failures within budget.")
    gpu_hours: float = Field(0.0, ge=0)
    cost_usd: float = Field(0.0, ge=0)
    usd_per_1m_output_tokens: float | None = Field(None, ge=0)
    usd_per_1m_total_tokens: float | None = Field(None, ge=0)
    itl_samples_ms: list[float] = Field(
        default_factory=list, description=f"Seeded reservoir of at most {ITL_RESERVOIR} ITL samples."
    )
    requests: list[RequestSample] = Field(default_factory=list)

    @property
    def level(self) -> float:
        return float(self.rate_rps if self.rate_rps is not None else (self.concurrency or 1))

    @property
    def failure_rate(self) -> float:
        done = self.requests_ok + self.requests_failed
        return self.requests_failed / done if done else 0.0


class SweepAnalysis(BaseModel):
    """Where a sweep saturates and the most load it carries within the SLO."""

    model_config = ConfigDict(extra="forbid")

    knee_level: float | None = Field(None, description="Level with the highest tokens/s per median E2E.")
    max_output_tokens_per_s: float = Field(0.0, ge=0)
    max_qps_under_slo: float | None = Field(None, description="Highest offered rate meeting the SLO.")
    max_concurrency_under_slo: int | None = Field(None, description="Highest concurrency meeting the SLO.")
    max_goodput_rps: float | None = Field(None, ge=0)
    saturated_at: float | None = Field(
        None, description="First level whose median E2E exceeds 1.5x that of the lowest level, or that fails."
    )


class RunResult(BaseModel):
    """A load run of one variant: the spec it ran, its load points and their analysis."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = Field(1, description="Version of this results schema.")
    harness: str = Field("bakeoff-loadtest", description="Producer of the results.")
    locust_version: str = Field("", max_length=64)
    spec: RunSpec
    started_at: datetime
    finished_at: datetime
    points: list[LoadPoint] = Field(default_factory=list)
    sweep: SweepAnalysis | None = None
    warnings: list[str] = Field(default_factory=list)
    error: str | None = Field(None, description="Why the run ended early, when it did.")
    definitions: dict[str, str] = Field(default_factory=lambda: dict(DEFINITIONS))

    @property
    def variant(self) -> str:
        return self.spec.label

    def best_point(self) -> LoadPoint | None:
        """The point with the most output tokens/s among those meeting the SLO (all, without SLO).

        Cost per token falls as throughput rises, so this is also the cheapest point within SLO.
        """
        pts = [p for p in self.points if p.requests_ok > 0]
        if not self.spec.slo.empty:
            pts = [p for p in pts if p.meets_slo]
        if not pts:
            return None
        return max(pts, key=lambda p: p.output_tokens_per_s)


def _ms(x: float | None) -> float | None:
    return None if x is None else x * 1000.0


def summarize_latency(values_ms: Sequence[float], seed: int) -> LatencySummary:
    if not values_ms:
        return LatencySummary()
    vals = list(values_ms)
    s = LatencySummary(
        count=len(vals),
        mean=sum(vals) / len(vals),
        min=min(vals),
        max=max(vals),
        p50=percentile(vals, 50),
        p90=percentile(vals, 90),
        p99=percentile(vals, 99),
    )
    if len(vals) >= 2:
        s.p50_ci = percentile_ci(vals, 50, seed=seed)
        s.p90_ci = percentile_ci(vals, 90, seed=seed + 1)
        s.p99_ci = percentile_ci(vals, 99, seed=seed + 2)
    return s


def request_meets_slo(r: RequestRecord, slo: SLO) -> bool:
    """Goodput rule: a successful request within every SLO target that is set."""
    if not r.ok:
        return False
    if slo.ttft_ms is not None and (r.ttft_s is None or r.ttft_s * 1000 > slo.ttft_ms):
        return False
    if slo.itl_ms is not None:
        tpot = r.tpot_s
        if tpot is not None and tpot * 1000 > slo.itl_ms:
            return False
    return not (slo.e2e_ms is not None and (r.e2e_s is None or r.e2e_s * 1000 > slo.e2e_ms))


def summarize_point(
    records: Sequence[RequestRecord],
    spec: RunSpec,
    *,
    level: float,
    wall_s: float | None = None,
    point_index: int = 0,
) -> LoadPoint:
    """Aggregate the records of one load point. ``wall_s`` defaults to first start to last end."""
    recs = sorted(records, key=lambda r: (r.start_unix, r.index))
    seed = spec.seed * 1000 + point_index * 10
    if recs:
        t0 = recs[0].start_unix
        ends = [r.start_unix + r.e2e_s for r in recs if r.e2e_s is not None]
        measured = (max(ends) if ends else t0) - t0
    else:
        t0, measured = 0.0, 0.0
    wall = measured if wall_s is None else wall_s
    ok = [r for r in recs if r.ok]
    cancelled = [r for r in recs if r.cause is FailureCause.CANCELLED]
    failed = [r for r in recs if not r.ok and r.cause is not FailureCause.CANCELLED]
    causes = Counter(str(r.cause) for r in failed)
    examples: list[str] = []
    for r in failed:
        msg = f"{r.cause}: {r.detail}"
        if msg not in examples:
            examples.append(msg)
        if len(examples) >= SAMPLE_DETAILS:
            break
    itl_all = [g * 1000.0 for r in ok for g in r.itl_s]
    out_tok = sum(r.output_tokens or 0 for r in ok)
    in_tok = sum(r.prompt_tokens or 0 for r in ok)
    tpots = [t * 1000.0 for r in ok if (t := r.tpot_s) is not None]
    reservoir = itl_all
    if len(itl_all) > ITL_RESERVOIR:
        reservoir = random.Random(seed + 7).sample(itl_all, ITL_RESERVOIR)

    mode = spec.mode
    point = LoadPoint(
        concurrency=int(level) if not spec.open_loop else None,
        rate_rps=level if spec.open_loop else None,
        arrival=spec.arrival if spec.open_loop else None,
        started_unix=t0 if recs else None,
        wall_s=wall,
        requests_started=len(recs),
        requests_ok=len(ok),
        requests_failed=len(failed),
        requests_cancelled=len(cancelled),
        failures_by_cause=dict(sorted(causes.items())),
        failure_examples=examples,
        ttft_ms=summarize_latency([r.ttft_s * 1000 for r in ok if r.ttft_s is not None], seed),
        itl_ms=summarize_latency(itl_all, seed + 3),
        tpot_ms=summarize_latency(tpots, seed + 5),
        e2e_ms=summarize_latency([r.e2e_s * 1000 for r in ok if r.e2e_s is not None], seed + 6),
        output_tokens=out_tok,
        prompt_tokens=in_tok,
        output_length_mismatches=sum(1 for r in ok if r.output_tokens != r.requested_output_tokens),
        itl_samples_ms=[round(x, 4) for x in reservoir],
        requests=[
            RequestSample(
                index=r.index,
                worker=r.worker,
                start_offset_s=r.start_unix - t0,
                ok=r.ok,
                cause=r.cause,
                status_code=r.status_code,
                ttft_ms=_ms(r.ttft_s),
                e2e_ms=_ms(r.e2e_s),
                tpot_ms=_ms(r.tpot_s),
                itl_mean_ms=(sum(r.itl_s) / len(r.itl_s) * 1000) if r.itl_s else None,
                itl_max_ms=max(r.itl_s) * 1000 if r.itl_s else None,
                output_tokens=r.output_tokens,
                prompt_tokens=r.prompt_tokens,
                requested_output_tokens=r.requested_output_tokens,
                requested_prompt_tokens=r.requested_prompt_tokens,
                content_chunks=r.content_chunks,
            )
            for r in recs
        ],
    )
    if mode is LoadMode.SYNC:
        point.concurrency = 1
    if wall > 0:
        point.requests_per_s = len(ok) / wall
        point.output_tokens_per_s = out_tok / wall
        point.total_tokens_per_s = (out_tok + in_tok) / wall
    point.gpu_hours = costmod.gpu_hours(spec.cost, wall)
    point.cost_usd = costmod.cost_usd(spec.cost, wall)
    point.usd_per_1m_output_tokens = costmod.cost_per_million(spec.cost, wall, out_tok)
    point.usd_per_1m_total_tokens = costmod.cost_per_million(spec.cost, wall, out_tok + in_tok)
    if not spec.slo.empty:
        good = sum(1 for r in ok if request_meets_slo(r, spec.slo))
        point.goodput_rps = good / wall if wall > 0 else 0.0
        done = len(ok) + len(failed)
        point.slo_attainment = good / done if done else 0.0
        point.meets_slo = point_meets_slo(point, spec.slo)
    return point


def point_meets_slo(point: LoadPoint, slo: SLO) -> bool:
    """The SLO percentile of TTFT, ITL and E2E within target, and failures within budget."""
    if point.requests_ok == 0 or point.failure_rate > slo.max_failure_rate:
        return False
    q = slo.percentile
    checks: list[tuple[float | None, LatencySummary]] = [
        (slo.ttft_ms, point.ttft_ms),
        (slo.itl_ms, point.itl_ms),
        (slo.e2e_ms, point.e2e_ms),
    ]
    for target, summary in checks:
        if target is None:
            continue
        value = summary.at(q)
        if value is None:
            # A percentile not stored in the summary: judge the conservative stored one above it.
            value = summary.p99 if q > 90 else summary.p90 if q > 50 else summary.p50
        if value is None or value > target:
            return False
    return True


def analyse_sweep(points: Sequence[LoadPoint], spec: RunSpec) -> SweepAnalysis:
    """Knee (max power = tokens/s ÷ median E2E), max QPS/concurrency under SLO, saturation."""
    a = SweepAnalysis()
    usable = [p for p in points if p.requests_ok > 0 and p.e2e_ms.p50]
    if usable:
        knee = max(usable, key=lambda p: p.output_tokens_per_s / (p.e2e_ms.p50 or math.inf))
        a.knee_level = knee.level
        a.max_output_tokens_per_s = max(p.output_tokens_per_s for p in usable)
    if not spec.slo.empty:
        within = [p for p in points if p.meets_slo]
        if within:
            if spec.open_loop:
                a.max_qps_under_slo = max(p.level for p in within)
            else:
                a.max_concurrency_under_slo = int(max(p.level for p in within))
        goodputs = [p.goodput_rps for p in points if p.goodput_rps is not None]
        a.max_goodput_rps = max(goodputs) if goodputs else None
    ordered = sorted(points, key=lambda p: p.level)
    base = next((p.e2e_ms.p50 for p in ordered if p.e2e_ms.p50), None)
    for p in ordered:
        e2e = p.e2e_ms.p50
        if (
            p.requests_ok == 0
            or p.failure_rate > spec.slo.max_failure_rate
            or (base is not None and e2e is not None and e2e > 1.5 * base)
        ):
            a.saturated_at = p.level
            break
    return a


# ---------------------------------------------------------------------------------------------
# Writers and loader


def result_json_schema() -> dict[str, Any]:
    """The JSON schema of :class:`RunResult` (documented in docs/measurement.md)."""
    return RunResult.model_json_schema()


def _stem(result: RunResult) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in result.variant) or "variant"
    return f"{safe}-{result.spec.workload.name}-{result.spec.mode.value}"


POINT_COLUMNS = (
    "variant",
    "workload",
    "mode",
    "concurrency",
    "rate_rps",
    "wall_s",
    "requests_started",
    "requests_ok",
    "requests_failed",
    "requests_cancelled",
    "ttft_p50_ms",
    "ttft_p90_ms",
    "ttft_p99_ms",
    "itl_p50_ms",
    "itl_p90_ms",
    "itl_p99_ms",
    "tpot_p50_ms",
    "e2e_p50_ms",
    "e2e_p99_ms",
    "output_tokens",
    "prompt_tokens",
    "requests_per_s",
    "output_tokens_per_s",
    "goodput_rps",
    "meets_slo",
    "usd_per_1m_output_tokens",
    "usd_per_1m_total_tokens",
)


def point_row(result: RunResult, p: LoadPoint) -> dict[str, Any]:
    return {
        "variant": result.variant,
        "workload": result.spec.workload.name,
        "mode": result.spec.mode.value,
        "concurrency": p.concurrency,
        "rate_rps": p.rate_rps,
        "wall_s": round(p.wall_s, 6),
        "requests_started": p.requests_started,
        "requests_ok": p.requests_ok,
        "requests_failed": p.requests_failed,
        "requests_cancelled": p.requests_cancelled,
        "ttft_p50_ms": p.ttft_ms.p50,
        "ttft_p90_ms": p.ttft_ms.p90,
        "ttft_p99_ms": p.ttft_ms.p99,
        "itl_p50_ms": p.itl_ms.p50,
        "itl_p90_ms": p.itl_ms.p90,
        "itl_p99_ms": p.itl_ms.p99,
        "tpot_p50_ms": p.tpot_ms.p50,
        "e2e_p50_ms": p.e2e_ms.p50,
        "e2e_p99_ms": p.e2e_ms.p99,
        "output_tokens": p.output_tokens,
        "prompt_tokens": p.prompt_tokens,
        "requests_per_s": p.requests_per_s,
        "output_tokens_per_s": p.output_tokens_per_s,
        "goodput_rps": p.goodput_rps,
        "meets_slo": p.meets_slo,
        "usd_per_1m_output_tokens": p.usd_per_1m_output_tokens,
        "usd_per_1m_total_tokens": p.usd_per_1m_total_tokens,
    }


def write_results(out_dir: str | Path, results: Sequence[RunResult]) -> list[Path]:
    """Write ``<stem>.json`` and ``<stem>.requests.csv`` per result and a shared ``points.csv``.

    Files are written to a temporary name and renamed, so a reader never sees half a file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for r in results:
        stem = _stem(r)
        path = out / f"{stem}.json"
        _atomic_write(path, r.model_dump_json(indent=2))
        written.append(path)
        req_path = out / f"{stem}.requests.csv"
        fields = ["point", *RequestSample.model_fields]
        tmp = req_path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            for k, p in enumerate(r.points):
                for s in p.requests:
                    w.writerow({"point": k, **s.model_dump(mode="json")})
        tmp.replace(req_path)
        written.append(req_path)
    points_path = out / "points.csv"
    tmp = points_path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(POINT_COLUMNS))
        w.writeheader()
        for r in results:
            for p in r.points:
                w.writerow(point_row(r, p))
    tmp.replace(points_path)
    written.append(points_path)
    return written


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def load_result(path: str | Path) -> RunResult:
    """Read a results JSON back; a clear ValueError for a foreign or newer schema."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read results file {str(p)!r}: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{str(p)!r} is not a results object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(f"{str(p)!r} has schema_version {version!r}; this harness reads version {SCHEMA_VERSION}")
    try:
        return RunResult.model_validate(data)
    except ValidationError as e:
        raise ValueError(f"{str(p)!r} is not valid results: {e}") from e


def load_results(directory: str | Path) -> list[RunResult]:
    """Every results JSON in a directory, sorted by file name."""
    return [load_result(p) for p in sorted(Path(directory).glob("*.json"))]


def now_utc() -> datetime:
    return datetime.now(UTC)
