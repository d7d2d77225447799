"""Builders of bake-off runs for table tests: variants with a Ready condition and an endpoint, BakeOffs
with a creation time and annotations, run Jobs and result objects as the planner sees them, and load
results with chosen throughput and latency."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bakeoff_loadtest.records import RequestRecord
from bakeoff_loadtest.results import RunResult
from bakeoff_loadtest.spec import RunSpec
from bakeoff_loadtest.summary import summarize_point
from bakeoff_operator.api.bakeoff import BakeOff, BakeOffStatus, RunOutcome, RunRecord, RunTrigger, SkippedVariant
from bakeoff_operator.api.modelvariant import ModelVariant
from bakeoff_operator.planning.bakeoff_plan import plan_bakeoff
from bakeoff_operator.planning.runs import JobState, ResultState
from bakeoff_runtime.gpus import default_catalog

T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
UID = "uid-bo"
CATALOG = default_catalog()

# Three variants of one model, as a bake-off compares them: dense BF16 (the baseline), INT4 W4A16, and
# a Mamba hybrid.
VARIANT_SPECS: dict[str, dict[str, Any]] = {
    "dense-bf16": {"format": "bf16"},
    "dense-int4": {"format": "int4", "baseline": "dense-bf16", "accuracy": {"recovery": 0.99}},
    "hybrid": {
        "format": "bf16",
        "architecture": {"catalog": "apriel-h1-h30"},
        "model": {"source": "pvc://weights/apriel-h1-h30"},
        "baseline": "dense-bf16",
        "accuracy": {"recovery": 0.97},
    },
}
NAMES = tuple(VARIANT_SPECS)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def variant(
    name: str, *, ready: bool = True, reason: str = "EndpointReady", replicas: int = 1, endpoint: bool = True
) -> ModelVariant:
    spec: dict[str, Any] = {
        "model": {"source": "hf://meta-llama/Llama-3.1-8B-Instruct"},
        "architecture": {"catalog": "llama-3.1-8b"},
        "gpuClass": "h100",
        **VARIANT_SPECS.get(name, {"format": "bf16"}),
    }
    status: dict[str, Any] = {
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "reason": reason if ready or reason != "EndpointReady" else "Progressing",
                "message": f"{replicas}/{replicas} replicas ready" if ready else "no replica ready yet (0/1): starting",
                "lastTransitionTime": "2026-01-01T09:00:00Z",
            }
        ],
        "readyReplicas": replicas if ready else 0,
    }
    if endpoint:
        status["endpoint"] = f"http://{name}-predictor.team.svc.cluster.local"
    return ModelVariant.model_validate(
        {"metadata": {"name": name, "namespace": "team"}, "spec": spec, "status": status}
    )


def variants(*not_ready: str) -> list[ModelVariant]:
    return [variant(n, ready=n not in not_ready) for n in NAMES]


def bakeoff(
    *,
    created: datetime = T0,
    annotations: Mapping[str, str] | None = None,
    status: Mapping[str, Any] | None = None,
    uid: str = UID,
    **spec: Any,
) -> BakeOff:
    body: dict[str, Any] = {
        "variants": list(NAMES),
        "workload": {"useCase": "rag"},
        "load": {"mode": "concurrency-sweep", "concurrencies": [1, 4], "duration": "20s"},
        **spec,
    }
    meta = {
        "name": "bo",
        "namespace": "team",
        "uid": uid,
        "generation": 1,
        "creationTimestamp": created,
        "annotations": dict(annotations or {}),
    }
    return BakeOff.model_validate({"metadata": meta, "spec": body, "status": status})


def job(
    run: str,
    *,
    outcome: RunOutcome = RunOutcome.RUNNING,
    started: datetime = T0,
    finished: datetime | None = None,
    measured: Sequence[str] = NAMES,
    skipped: Sequence[SkippedVariant] = (),
    trigger: RunTrigger = RunTrigger.SCHEDULE,
    scheduled: datetime | None = None,
    run_now: str | None = None,
    message: str = "",
    owner: str = UID,
    deadline_s: int | None = 600,
) -> JobState:
    if outcome is not RunOutcome.RUNNING and finished is None:
        finished = started + timedelta(minutes=2)
    return JobState(
        name=run,
        run=run,
        owner_uid=owner,
        trigger=trigger,
        scheduled_time=scheduled,
        run_now=run_now,
        variants=tuple(measured),
        skipped=tuple(skipped),
        started=started,
        finished=finished,
        outcome=outcome,
        message=message,
        deadline_s=deadline_s,
    )


# Per variant: (output tokens/s per stream-second scale, E2E seconds): INT4 is cheapest and fast, the
# hybrid fastest per token but on the same GPUs as BF16.
SPEEDS: dict[str, tuple[float, float]] = {"dense-bf16": (1.0, 0.60), "dense-int4": (1.8, 0.35), "hybrid": (1.5, 0.40)}


def spec_of(bo: BakeOff, name: str, replicas: int = 1) -> RunSpec:
    plan = plan_bakeoff(bo, [variant(n) for n in NAMES], CATALOG, replicas={name: replicas})
    run = next(r for r in plan.runs if r.variant == name)
    return run.load.at(f"http://{name}-predictor.team.svc.cluster.local")


def run_result(bo: BakeOff, name: str, *, replicas: int = 1, error: str | None = None) -> RunResult:
    """A measured sweep of `name`: 40 requests per level, faster variants finishing sooner."""
    return _run_result(bo.spec.model_dump_json(), name, replicas, error)


@functools.cache
def _run_result(spec_json: str, name: str, replicas: int, error: str | None) -> RunResult:
    bo = BakeOff.model_validate({"metadata": {"name": "bo", "namespace": "team"}, "spec": json.loads(spec_json)})
    spec = spec_of(bo, name, replicas)
    scale, e2e = SPEEDS.get(name, (1.0, 0.5))
    points = []
    for k, level in enumerate(spec.sweep_levels()):
        recs = []
        for i in range(40):
            start = i * e2e / (scale * level)
            r = RequestRecord(
                index=i, worker=0, start_unix=start, requested_prompt_tokens=100, requested_output_tokens=64
            )
            r.ok, r.ttft_s, r.itl_s = True, 0.05 / scale + i * 1e-4, [e2e / 64] * 63
            r.e2e_s = e2e + i * 1e-4
            r.output_tokens, r.prompt_tokens = 64, 100
            recs.append(r)
        points.append(summarize_point(recs, spec, level=level, point_index=k))
    return RunResult(spec=spec, started_at=T0, finished_at=T0, points=tuple(points), error=error)


def result(run: str, name: str, summary: RunResult | str | None, owner: str = UID) -> ResultState:
    text = summary.model_dump_json() if isinstance(summary, RunResult) else summary
    return ResultState(name=f"{run}-{name}", run=run, variant=name, owner_uid=owner, summary=text)


def status_with(*runs: RunRecord, **fields: Any) -> dict[str, Any]:
    """A stored BakeOff status holding `runs` (newest first) and `fields`."""
    return BakeOffStatus(last_runs=list(runs), **fields).to_wire()


def record(name: str, outcome: RunOutcome, start: datetime, end: datetime | None = None, **extra: Any) -> RunRecord:
    if outcome is not RunOutcome.RUNNING and end is None:
        end = start + timedelta(minutes=2)
    return RunRecord(name=name, start_time=start, completion_time=end, outcome=outcome, job=name, **extra)


RUN = "bo-20260101-100000"


def finished_run(**extra: Any) -> JobState:
    """The Job of run `RUN`, completed five minutes after it started."""
    return job(RUN, outcome=RunOutcome.SUCCEEDED, finished=at(5), scheduled=T0, **extra)


def running_status(**fields: Any) -> dict[str, Any]:
    """A stored status with run `RUN` measuring every variant."""
    rec = record(RUN, RunOutcome.RUNNING, T0, variants=list(NAMES))
    return status_with(rec, lastScheduleTime="2026-01-01T10:00:00Z", **fields)
