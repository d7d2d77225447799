"""A bake-off that keeps running in a cluster: when a run is due, what it measures, and what a finished
run leaves in the BakeOff's status.

Pure: `plan_runs` is a function of the BakeOff (spec, stored status, annotations, creation time), the
ModelVariants of its namespace, what the cluster shows of the bake-off's run Jobs and result
ConfigMaps (`job_state`, `result_state` read them from the API's JSON), the GPU catalog and the time.
The handlers apply the decision: create the run's Job (`render.jobs`), delete what the history no
longer keeps, write the status and each measured variant's capacity, post the Events.

The rules:
- When. With `spec.schedule.cron`, at each cron time (UTC) after the bake-off was created; with
  `interval`, at creation and then every interval; without a schedule, once, at creation. And on
  demand: a new value of the annotation `bakeoff.dev/run-now` starts a run (also while suspended); the
  value served is kept in `status.lastHandledRunNow`.
- One run at a time (Kubernetes' `Forbid`). A run-now request waits for the active run to end; a
  scheduled time that passes while a run is active is skipped (an Event says so) and the next one
  counts.
- Ready variants only. A scheduled run waits for every chosen variant to be Ready, at most
  `READY_WAIT` (or half the schedule's period, if shorter) after its time; then, and at once for
  run-now, it measures the Ready ones and records the others as skipped with their Ready reason. A run
  with nothing to measure creates no Job and is recorded as `Skipped`.
- Load. Each measured variant's load test is the BakeOff's load plan at the variant's endpoint; one
  whose peak streams exceed what one load process drives (`streams_per_process`) runs as a Locust
  master with `workers_for(peak)` workers.
- Results. A Job that completed with a parseable summary for every variant it measured makes the run
  `Succeeded`: per-variant results, A/B comparisons, the Pareto frontier and the recommendation are
  recomputed from it (`bakeoff_plan.summarize`, the same as `bakeoff run`), and each variant measured
  under a sweep gets its output tokens/s per replica as `status.measuredCapacity`. A Job that failed
  or exceeded its deadline, a summary that is missing or malformed, or a Job that vanished before it
  finished make the run `Failed` with the reason, and the previous verdict stays.
- Restart. The Job carries what its run is (trigger, scheduled time, run-now value, variants, skipped
  ones) in annotations, and its name is derived from its trigger time, so a restarted operator adopts
  the running Job instead of starting another, and a status write that was lost is redone.
- History. `status.lastRuns` keeps the newest `spec.runs.historyLimit` runs; the Jobs and result
  ConfigMaps of older runs are deleted (an active Job never). Deleting the BakeOff deletes the rest
  through owner references.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bakeoff_loadtest import verdict
from bakeoff_loadtest.results import RunResult
from bakeoff_loadtest.run_summary import SUMMARY_KEY, read_summary
from bakeoff_loadtest.spec import STREAMS_PER_PROCESS, RunSpec, workers_for
from bakeoff_runtime.gpus import GPUCatalog
from bakeoff_runtime.workloads import LoadMode
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bakeoff_operator.api.bakeoff import (
    MAX_REASON,
    BakeOff,
    BakeOffStatus,
    RunOutcome,
    RunRecord,
    RunTrigger,
    Schedule,
    SkippedVariant,
)
from bakeoff_operator.api.common import (
    MAX_MESSAGE,
    Condition,
    ConditionStatus,
    ConditionType,
    Reason,
    duration_seconds,
    find_condition,
    set_condition,
)
from bakeoff_operator.api.modelvariant import MeasuredCapacity, ModelVariant
from bakeoff_operator.planning.bakeoff_plan import NotExpressibleError, loadtest_args, plan_bakeoff, summarize

# Labels of what a run makes: its Job (and pod) and its result ConfigMaps.
LABEL_BAKEOFF: Final = "bakeoff.dev/bakeoff"
LABEL_RUN: Final = "bakeoff.dev/run"
LABEL_VARIANT: Final = "bakeoff.dev/variant"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "bakeoff-operator"
COMPONENT_RUN: Final = "bakeoff-run"
COMPONENT_RESULT: Final = "bakeoff-result"
# The user's request for a run now (any new value), and what a run's Job records of itself.
ANNOTATION_RUN_NOW: Final = "bakeoff.dev/run-now"
ANNOTATION_TRIGGER: Final = "bakeoff.dev/trigger"
ANNOTATION_SCHEDULED_TIME: Final = "bakeoff.dev/scheduled-time"
ANNOTATION_VARIANTS: Final = "bakeoff.dev/variants"
ANNOTATION_SKIPPED: Final = "bakeoff.dev/skipped"
ANNOTATION_RESULTS: Final = "bakeoff.dev/results"

READY_WAIT: Final = timedelta(minutes=10)
# Planned time of one load level beyond its duration (in-flight requests draining, the process starting),
# and the margin of the default deadline.
LEVEL_OVERHEAD_S: Final = 30.0
RUN_OVERHEAD_S: Final = 30.0
DEADLINE_MARGIN_S: Final = 300
MAX_JOB_NAME: Final = 63
_STAMP: Final = "%Y%m%d-%H%M%S"
JOB_NOT_CREATED: Final = "JobNotCreated"  # the reason of a run whose Job the API server refused


class RunReason:
    """Reasons of the `Running` and `Complete` conditions and of the run Events."""

    RUN_STARTED: Final = Reason.RUN_STARTED
    RUN_SUCCEEDED: Final = Reason.RUN_SUCCEEDED
    RUN_FAILED: Final = Reason.RUN_FAILED
    WAITING_FOR_SCHEDULE: Final = Reason.WAITING_FOR_SCHEDULE
    WAITING_FOR_VARIANTS: Final = "WaitingForVariants"
    SUSPENDED: Final = "Suspended"
    NO_RUN_SCHEDULED: Final = "NoRunScheduled"
    NO_RUN_YET: Final = "NoRunYet"
    RUN_SKIPPED: Final = "RunSkipped"
    SCHEDULE_SKIPPED: Final = "ScheduleSkipped"


# --- what the cluster shows -------------------------------------------------------------------------------
class JobState(BaseModel):
    """One run's Job, as far as the run is concerned."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    run: str
    uid: str | None = None
    owner_uid: str | None = None
    trigger: RunTrigger = RunTrigger.SCHEDULE
    scheduled_time: datetime | None = None
    run_now: str | None = None
    variants: tuple[str, ...] = ()
    skipped: tuple[SkippedVariant, ...] = ()
    started: datetime
    finished: datetime | None = None
    outcome: RunOutcome = RunOutcome.RUNNING
    message: str = ""
    deadline_s: int | None = None
    results_location: str | None = None


class ResultState(BaseModel):
    """One result ConfigMap of a run: the summary one variant's load test wrote."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    run: str
    variant: str
    uid: str | None = None
    owner_uid: str | None = None
    summary: str | None = Field(default=None, description="The summary's text; None when the key is missing.")


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _owner(meta: Mapping[str, Any]) -> str | None:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "BakeOff":
            return str(ref.get("uid") or "") or None
    return None


def job_state(job: Mapping[str, Any]) -> JobState | None:
    """A run's Job from the API's JSON; None for a Job that is not one (no run label)."""
    meta = job.get("metadata") or {}
    labels = meta.get("labels") or {}
    run = labels.get(LABEL_RUN)
    if not run:
        return None
    notes = meta.get("annotations") or {}
    status = job.get("status") or {}
    outcome, finished, message = RunOutcome.RUNNING, None, ""
    for c in status.get("conditions") or []:
        if c.get("status") != "True":
            continue
        if c.get("type") == "Complete":
            outcome = RunOutcome.SUCCEEDED
            finished = _time(status.get("completionTime")) or _time(c.get("lastTransitionTime"))
        elif c.get("type") == "Failed":
            outcome = RunOutcome.FAILED
            finished = _time(c.get("lastTransitionTime"))
            message = f"{c.get('reason') or 'Failed'}: {c.get('message') or ''}".strip().rstrip(":")
    try:
        trigger = RunTrigger(notes.get(ANNOTATION_TRIGGER, RunTrigger.SCHEDULE.value))
    except ValueError:
        trigger = RunTrigger.SCHEDULE
    try:
        skipped = tuple(SkippedVariant.model_validate(s) for s in json.loads(notes.get(ANNOTATION_SKIPPED) or "[]"))
    except (ValueError, TypeError, ValidationError):
        skipped = ()
    variants = tuple(v for v in str(notes.get(ANNOTATION_VARIANTS) or "").split(",") if v)
    deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
    started = _time(status.get("startTime")) or _time(meta.get("creationTimestamp"))
    return JobState(
        name=str(meta.get("name") or run),
        run=str(run),
        uid=meta.get("uid"),
        owner_uid=_owner(meta),
        trigger=trigger,
        scheduled_time=_time(notes.get(ANNOTATION_SCHEDULED_TIME)),
        run_now=notes.get(ANNOTATION_RUN_NOW) or None,
        variants=variants,
        skipped=skipped,
        started=started or datetime.fromtimestamp(0, UTC),
        finished=finished,
        outcome=outcome,
        message=message,
        deadline_s=deadline if isinstance(deadline, int) else None,
        results_location=notes.get(ANNOTATION_RESULTS) or None,
    )


def result_state(config_map: Mapping[str, Any]) -> ResultState | None:
    """A result ConfigMap from the API's JSON; None for one without the run and variant labels."""
    meta = config_map.get("metadata") or {}
    labels = meta.get("labels") or {}
    run, variant = labels.get(LABEL_RUN), labels.get(LABEL_VARIANT)
    if not run or not variant:
        return None
    summary = (config_map.get("data") or {}).get(SUMMARY_KEY)
    return ResultState(
        name=str(meta.get("name") or ""),
        run=str(run),
        variant=str(variant),
        uid=meta.get("uid"),
        owner_uid=_owner(meta),
        summary=summary if isinstance(summary, str) else None,
    )


# --- when ---------------------------------------------------------------------------------------------------
def scheduled_times(
    schedule: Schedule | None, created: datetime, now: datetime
) -> tuple[datetime | None, datetime | None]:
    """The latest scheduled time at or before `now` (None before the first) and the next one after it
    (None without a schedule): cron times from creation on; creation plus whole intervals; or, without
    a schedule, creation alone."""
    if schedule is None:
        return (created if created <= now else None), None
    if schedule.interval is not None:
        step = timedelta(seconds=duration_seconds(schedule.interval))
        if now < created:
            return None, created
        k = math.floor((now - created) / step)
        return created + k * step, created + (k + 1) * step
    expr = str(schedule.cron)
    latest: datetime = croniter(expr, now - timedelta(minutes=1)).get_next(datetime)
    if latest > now:
        latest = croniter(expr, now).get_prev(datetime)
    following: datetime = croniter(expr, now).get_next(datetime)
    return (latest if latest >= created else None), following


def run_name(bakeoff: str, at: datetime, trigger: RunTrigger) -> str:
    """The run's id and its Job's name: the bake-off's name and the trigger time (UTC, to the second),
    `-now` for a run-now request; a name too long for a Job keeps a hash of itself."""
    suffix = "-" + _utc(at).strftime(_STAMP) + ("-now" if trigger is RunTrigger.RUN_NOW else "")
    room = MAX_JOB_NAME - len(suffix)
    prefix = bakeoff
    if len(prefix) > room:
        digest = hashlib.sha256(bakeoff.encode()).hexdigest()[:6]
        prefix = f"{bakeoff[: room - 7].rstrip('-')}-{digest}"
    return prefix + suffix


def _utc(t: datetime) -> datetime:
    return t.astimezone(UTC)


def result_name(run: str, variant: str) -> str:
    """The ConfigMap one variant's summary of `run` is written to."""
    return f"{run}-{variant}"


# --- what a run measures -------------------------------------------------------------------------------------
class MeasuredRun(BaseModel):
    """One variant's load test in a run: its spec (endpoint included) and where its summary goes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: str
    result: str = Field(description="Name of the ConfigMap its summary is written to.")
    spec: RunSpec
    args: tuple[str, ...] = Field(description="`bakeoff loadtest` flags stating `spec` (`loadtest_args`).")


class RunStart(BaseModel):
    """A run to start now: one Job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: str
    trigger: RunTrigger
    scheduled_time: datetime | None = None
    run_now: str | None = None
    side_by_side: bool = False
    deadline_s: int
    measured: tuple[MeasuredRun, ...]
    skipped: tuple[SkippedVariant, ...] = ()
    results_claim: str | None = Field(default=None, description="PVC the full results go to (spec.runs.resultsClaim).")
    results_path: str = Field(default="", description="The run's folder on that claim: <bakeoff>/<run>.")

    @property
    def results_location(self) -> str | None:
        """pvc://<claim>/<bakeoff>/<run>, when the run keeps its full results."""
        return f"pvc://{self.results_claim}/{self.results_path}" if self.results_claim else None

    def annotations(self) -> dict[str, str]:
        """What the Job records of its run (read back by `job_state`)."""
        out = {
            ANNOTATION_TRIGGER: self.trigger.value,
            ANNOTATION_VARIANTS: ",".join(m.variant for m in self.measured),
            ANNOTATION_SKIPPED: json.dumps([s.to_wire() for s in self.skipped], sort_keys=True),
        }
        if self.scheduled_time is not None:
            out[ANNOTATION_SCHEDULED_TIME] = _utc(self.scheduled_time).strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.run_now is not None:
            out[ANNOTATION_RUN_NOW] = self.run_now
        if self.results_location is not None:
            out[ANNOTATION_RESULTS] = self.results_location
        return out


def planned_seconds(spec: RunSpec) -> float:
    """How long one variant's load test is planned to take: each level's duration plus its overhead."""
    levels = len(spec.sweep_levels())
    return levels * (spec.duration_s + LEVEL_OVERHEAD_S) + RUN_OVERHEAD_S


def deadline_seconds(bo: BakeOff, measured: Sequence[MeasuredRun]) -> int:
    """`spec.runs.deadline`, else twice the planned load time (side by side: the longest variant's; one
    after another: their sum) plus `DEADLINE_MARGIN_S`."""
    if bo.spec.runs.deadline is not None:
        return int(duration_seconds(bo.spec.runs.deadline))
    times = [planned_seconds(m.spec) for m in measured] or [0.0]
    planned = max(times) if bo.spec.runs.side_by_side else sum(times)
    return math.ceil(2 * planned) + DEADLINE_MARGIN_S


def _ready(mv: ModelVariant) -> Condition | None:
    return find_condition(mv.status.conditions, ConditionType.READY) if mv.status else None


def _not_ready_reason(mv: ModelVariant) -> str | None:
    """Why a run cannot measure `mv` now, or None when it can."""
    ready = _ready(mv)
    if ready is None:
        return "not Ready: the operator has not reported on it yet"
    if ready.status is not ConditionStatus.TRUE:
        return _clip(f"not Ready ({ready.reason}): {ready.message}", 1024)
    if not (mv.status and mv.status.endpoint):
        return "Ready, but its status has no endpoint yet"
    return None


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def what_to_measure(
    bo: BakeOff,
    variants: Sequence[ModelVariant],
    catalog: GPUCatalog,
    *,
    streams_per_process: int = STREAMS_PER_PROCESS,
) -> tuple[list[MeasuredRun], list[SkippedVariant], str | None]:
    """The chosen variants a run can measure now (Ready, with an endpoint), each with its run spec, and
    the others with the reason; the third item says why there are none to choose at all.

    A load test whose peak streams (`LoadPlan.peak_streams`, a rate sweep's by the variant's predicted
    latency at saturation) exceed what one process drives runs as a Locust master and `workers_for`
    workers in the Job's pod."""
    by_name = {v.metadata.name: v for v in variants}
    replicas = {name: (mv.status.ready_replicas or 1) if mv.status else 1 for name, mv in by_name.items()}
    try:
        plan = plan_bakeoff(bo, variants, catalog, replicas=replicas)
    except ValueError as err:
        return [], [], str(err)
    measured: list[MeasuredRun] = []
    skipped: list[SkippedVariant] = []
    for planned in plan.runs:
        mv = by_name[planned.variant]
        why = _not_ready_reason(mv)
        if why is None and not planned.sizing.fits:
            why = _clip(f"does not fit: {planned.sizing.reason}", 1024)
        if why is None:
            assert mv.status is not None
            assert mv.status.endpoint is not None
            spec = planned.load.at(mv.status.endpoint)
            prediction = planned.sizing.prediction
            latency = prediction.latency_s if prediction is not None else None
            workers = workers_for(spec.peak_streams(latency), streams_per_process)
            spec = spec.model_copy(update={"workers": workers})
            try:
                args = tuple(loadtest_args(spec))
            except NotExpressibleError as err:
                why = _clip(str(err), 1024)
            else:
                measured.append(MeasuredRun(variant=planned.variant, result="", spec=spec, args=args))
                continue
        skipped.append(SkippedVariant(variant=planned.variant, reason=why))
    return measured, skipped, None


# --- the decision -----------------------------------------------------------------------------------------
class RunEvent(BaseModel):
    """A Kubernetes Event to post on the BakeOff."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warning: bool = False
    reason: str
    message: str


class VariantCapacity(BaseModel):
    """A measured variant's capacity per replica, for its `status.measuredCapacity`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: str
    capacity: MeasuredCapacity


class RunsDecision(BaseModel):
    """What to do for one BakeOff now; `status` is written whatever else happens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: BakeOffStatus
    start: RunStart | None = None
    delete_jobs: tuple[str, ...] = ()
    delete_results: tuple[str, ...] = ()
    events: tuple[RunEvent, ...] = ()
    capacities: tuple[VariantCapacity, ...] = ()


OWNED_RUN_FIELDS: Final = ("conditions", "results", "paretoFrontier", "comparisons", "recommendation", "lastRuns",
                           "nextRunTime", "lastScheduleTime", "lastHandledRunNow", "lastSuccessfulRun")  # fmt: skip


class _Fold:
    """The status being built, with the Events and capacities that go with it."""

    def __init__(
        self, bo: BakeOff, variants: Sequence[ModelVariant], catalog: GPUCatalog, streams_per_process: int
    ) -> None:
        self.bo = bo
        self.variants = variants
        self.catalog = catalog
        self.streams_per_process = streams_per_process
        self.status = (bo.status or BakeOffStatus()).model_copy(deep=True)
        self.history: dict[str, RunRecord] = {r.name: r for r in self.status.last_runs}
        self.events: list[RunEvent] = []
        self.capacities: dict[str, VariantCapacity] = {}

    def event(self, reason: str, message: str, *, warning: bool = False) -> None:
        self.events.append(RunEvent(warning=warning, reason=reason, message=_clip(message, 1024)))

    def record(self, rec: RunRecord) -> None:
        self.history[rec.name] = rec

    def failed(self, rec: RunRecord, why: str, at: datetime) -> None:
        kept = self.status.last_successful_run
        stays = f"; the results of run {kept} stay" if kept else "; there are no results yet"
        self.record(
            rec.model_copy(
                update={"outcome": RunOutcome.FAILED, "completion_time": at, "message": _clip(why, MAX_REASON)}
            )
        )
        self.event(RunReason.RUN_FAILED, f"run {rec.name} failed: {why}{stays}", warning=True)

    def succeeded(self, rec: RunRecord, results: Mapping[str, RunResult], at: datetime) -> None:
        names = [*rec.variants, *(s.variant for s in rec.skipped)]
        present = {v.metadata.name for v in self.variants}
        chosen = [n for n in dict.fromkeys(names) if n in present]
        bo = self.bo.model_copy(
            update={"spec": self.bo.spec.model_copy(update={"variants": chosen, "variant_selector": None})}
        )
        failures = {s.variant: f"skipped: {s.reason}" for s in rec.skipped}
        plan = plan_bakeoff(bo, self.variants, self.catalog)
        measured = {k: v for k, v in results.items() if k in chosen}
        status, rec_result = summarize(bo, self.variants, plan, measured, failures)
        self.status = self.status.model_copy(
            update={
                "results": status.results,
                "pareto_frontier": status.pareto_frontier,
                "comparisons": status.comparisons,
                "recommendation": status.recommendation,
                "last_successful_run": rec.name,
            }
        )
        skipped = f"; skipped {', '.join(s.variant for s in rec.skipped)}" if rec.skipped else ""
        message = f"measured {', '.join(rec.variants)}{skipped}; recommended {rec_result.variant or 'none'}"
        self.record(
            rec.model_copy(
                update={
                    "outcome": RunOutcome.SUCCEEDED,
                    "completion_time": at,
                    "message": _clip(message, MAX_REASON),
                    "recommended": rec_result.variant,
                }
            )
        )
        self.event(RunReason.RUN_SUCCEEDED, f"run {rec.name} finished: {rec_result.reason}")
        for name, result in measured.items():
            capacity = measured_capacity(self.bo, rec.name, result, at)
            if capacity is not None:
                self.capacities[name] = VariantCapacity(variant=name, capacity=capacity)

    def fold(self, rec: RunRecord, outcome: RunOutcome, why: str, results: Sequence[ResultState], at: datetime) -> None:
        """A run whose Job ended (or vanished) with `outcome`: read its results into status."""
        if outcome is RunOutcome.FAILED:
            self.failed(rec, why, at)
            return
        parsed, problems = read_results(rec, results)
        present = {v.metadata.name for v in self.variants}
        if not problems and not present.intersection(rec.variants):
            problems = [f"none of its variants ({', '.join(rec.variants) or 'none'}) exists any more"]
        if problems:
            self.failed(rec, "; ".join(problems), at)
            return
        self.succeeded(rec, parsed, at)


def read_results(rec: RunRecord, results: Sequence[ResultState]) -> tuple[dict[str, RunResult], list[str]]:
    """The summaries of every variant `rec` measured, and what is wrong with those that are missing or
    malformed."""
    by_variant = {r.variant: r for r in results if r.run == rec.name}
    parsed: dict[str, RunResult] = {}
    problems: list[str] = []
    for variant in rec.variants:
        found = by_variant.get(variant)
        if found is None or found.summary is None:
            problems.append(f"{variant}: no results (its load test wrote none; see the Job's log)")
            continue
        try:
            result = read_summary(found.summary)
        except ValueError as err:
            problems.append(f"{variant}: results malformed ({err})")
            continue
        if result.variant != variant:
            problems.append(f"{variant}: results malformed (they are for variant {result.variant})")
            continue
        parsed[variant] = result
    return parsed, problems


def measured_capacity(bo: BakeOff, run: str, result: RunResult, at: datetime) -> MeasuredCapacity | None:
    """Output tokens/s per replica at the run's chosen load level, for a sweep that met its SLO there (a
    sync run measures one stream, not what a replica carries)."""
    if result.spec.mode is LoadMode.SYNC or result.error is not None:
        return None
    point = result.chosen_point()
    if point is None or point.output_tokens_per_s <= 0 or point.meets_slo is False:
        return None
    per_replica = point.output_tokens_per_s / max(1, result.spec.cost.replicas)
    return MeasuredCapacity(
        output_tokens_per_second=round(per_replica, 2),
        bakeoff=bo.metadata.name,
        run=run,
        workload=bo.spec.workload.name,
        measured_at=at,
    )


def _record_of(job: JobState) -> RunRecord:
    return RunRecord(
        name=job.run,
        start_time=job.started,
        outcome=RunOutcome.RUNNING,
        trigger=job.trigger,
        job=job.name,
        variants=list(job.variants),
        skipped=list(job.skipped),
        results_location=job.results_location,
    )


def _job_failure(job: JobState) -> str:
    if job.message.startswith(JOB_NOT_CREATED):
        return f"its Job was not created: {job.message.removeprefix(JOB_NOT_CREATED + ': ')}"
    if job.message.startswith("DeadlineExceeded"):
        limit = f" of {job.deadline_s} s" if job.deadline_s else ""
        return f"the run took longer than its deadline{limit} (Job {job.name}: {job.message})"
    return f"the load-test pod failed (Job {job.name}: {job.message or 'Failed'}); see `kubectl logs job/{job.name}`"


def _stamp(t: datetime) -> str:
    return _utc(t).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fold_jobs(f: _Fold, jobs: Sequence[JobState], results: Sequence[ResultState], now: datetime) -> None:
    """Adopt running Jobs; fold finished ones not folded yet, oldest first; then runs whose Job vanished
    before it was read, by their results."""
    for job in sorted(jobs, key=lambda j: j.started):
        rec = f.history.get(job.run)
        if job.outcome is RunOutcome.RUNNING:
            if rec is None:
                f.record(_record_of(job))
            continue
        if rec is not None and rec.outcome is not RunOutcome.RUNNING:
            continue
        f.fold(rec or _record_of(job), job.outcome, _job_failure(job), results, job.finished or now)
    present = {j.run for j in jobs}
    for rec in sorted(f.history.values(), key=lambda r: r.start_time):
        if rec.outcome is RunOutcome.RUNNING and rec.name not in present:
            problems = read_results(rec, results)[1]
            gone = "its Job was deleted before it finished (by hand, or by its TTL while the operator was down)"
            why = "; ".join([gone, *problems])
            f.fold(rec, RunOutcome.FAILED if problems else RunOutcome.SUCCEEDED, why, results, now)


class _Due(BaseModel):
    """Whether a run is due, and the bookkeeping of schedule times and run-now requests."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latest: datetime | None = Field(default=None, description="A scheduled time not served yet.")
    following: datetime | None = Field(default=None, description="The next scheduled time.")
    token: str | None = Field(default=None, description="A run-now request not served yet.")
    last_schedule: datetime | None = None
    handled: str | None = None


def _due(f: _Fold, jobs: Sequence[JobState], active: bool, now: datetime) -> _Due:
    bo, old = f.bo, f.bo.status or BakeOffStatus()
    last_schedule, handled = old.last_schedule_time, old.last_handled_run_now
    requested = bo.metadata.annotations.get(ANNOTATION_RUN_NOW) or None
    for job in jobs:
        if job.scheduled_time is not None and (last_schedule is None or job.scheduled_time > last_schedule):
            last_schedule = job.scheduled_time
        if job.run_now is not None and job.run_now == requested:
            handled = job.run_now
    token = requested if requested is not None and requested != handled else None
    schedule = bo.spec.schedule
    latest, following = scheduled_times(schedule, bo.metadata.creation_timestamp or now, now)
    if latest is not None and last_schedule is not None and latest <= last_schedule:
        latest = None
    if schedule is None and latest is not None and (f.history or jobs):
        latest = None  # the one run of a bake-off without a schedule has happened
    if latest is not None and bo.spec.suspend and not active:
        last_schedule, latest = latest, None  # a suspended schedule lets its times pass
    finished = [r for r in f.history.values() if r.completion_time is not None]
    if latest is not None and not active and token is None and finished:
        ended = max(finished, key=lambda r: (r.completion_time or r.start_time, r.name))
        if ended.completion_time is not None and latest < ended.completion_time:
            f.event(
                RunReason.SCHEDULE_SKIPPED,
                f"the run due at {_stamp(latest)} was skipped: run {ended.name} was still running then "
                "(one run at a time)",
            )
            last_schedule, latest = latest, None
    return _Due(latest=latest, following=following, token=token, last_schedule=last_schedule, handled=handled)


def _listing(skipped: Sequence[SkippedVariant]) -> str:
    return "; ".join(f"{s.variant} ({s.reason})" for s in skipped)


def _start(f: _Fold, due: _Due, now: datetime) -> tuple[_Due, RunStart | None, str | None]:
    """Start the due run (or record it Skipped), or say what it waits for; with the bookkeeping updated."""
    bo = f.bo
    measured, skipped, problem = what_to_measure(bo, f.variants, f.catalog, streams_per_process=f.streams_per_process)
    if due.token is None and due.latest is not None and (problem is not None or skipped):
        period = (due.following - due.latest) / 2 if due.following is not None else READY_WAIT
        until = due.latest + min(READY_WAIT, period)
        if now < until:
            why = problem or "not Ready: " + _listing(skipped)
            return due, None, f"the run due at {_stamp(due.latest)} waits until {_stamp(until)} for its variants: {why}"
    trigger = RunTrigger.RUN_NOW if due.token is not None else RunTrigger.SCHEDULE
    at = due.latest if trigger is RunTrigger.SCHEDULE and due.latest is not None else now
    name = run_name(bo.metadata.name, at, trigger)
    served = due.model_copy(
        update={
            "last_schedule": due.latest or due.last_schedule,
            "handled": due.token or due.handled,
            "latest": None,
            "token": None,
        }
    )
    if not measured:
        why = problem or "no variant can be measured: " + _listing(skipped)
        f.record(
            RunRecord(
                name=name,
                start_time=now,
                completion_time=now,
                outcome=RunOutcome.SKIPPED,
                message=_clip(why, MAX_REASON),
                trigger=trigger,
                skipped=skipped,
            )
        )
        f.event(RunReason.RUN_SKIPPED, f"run {name} not started: {why}", warning=True)
        return served, None, None
    named = [m.model_copy(update={"result": result_name(name, m.variant)}) for m in measured]
    start = RunStart(
        run=name,
        trigger=trigger,
        scheduled_time=due.latest if trigger is RunTrigger.SCHEDULE else None,
        run_now=due.token,
        side_by_side=bo.spec.runs.side_by_side,
        deadline_s=deadline_seconds(bo, named),
        measured=tuple(named),
        skipped=tuple(skipped),
        results_claim=bo.spec.runs.results_claim,
        results_path=f"{bo.metadata.name}/{name}" if bo.spec.runs.results_claim else "",
    )
    f.record(
        RunRecord(
            name=name,
            start_time=now,
            outcome=RunOutcome.RUNNING,
            trigger=trigger,
            job=name,
            variants=[m.variant for m in named],
            skipped=skipped,
            results_location=start.results_location,
        )
    )
    how = "side by side" if start.side_by_side else "one after another"
    also = f"; skipped {', '.join(s.variant for s in skipped)}" if skipped else ""
    f.event(
        RunReason.RUN_STARTED,
        f"run {name} ({trigger.value}): measuring {', '.join(m.variant for m in named)} {how}, deadline "
        f"{start.deadline_s} s{also}",
    )
    return served, start, None


def _kept(f: _Fold) -> list[RunRecord]:
    """The runs status keeps: every active one, then the newest finished ones, up to the history limit."""
    ordered = sorted(f.history.values(), key=lambda r: (r.start_time, r.name), reverse=True)
    active = [r for r in ordered if r.outcome is RunOutcome.RUNNING]
    room = max(0, f.bo.spec.runs.history_limit - len(active))
    kept = active + [r for r in ordered if r.outcome is not RunOutcome.RUNNING][:room]
    return sorted(kept, key=lambda r: (r.start_time, r.name), reverse=True)


def _newest_finished(runs: Sequence[RunRecord]) -> RunRecord | None:
    done = [r for r in runs if r.outcome is not RunOutcome.RUNNING and r.completion_time is not None]
    return max(done, key=lambda r: (r.completion_time or r.start_time, r.name)) if done else None


def _running_condition(bo: BakeOff, active: RunRecord | None, due: _Due, waiting: str | None) -> tuple[bool, str, str]:
    if active is not None:
        pending = f"; the run-now request {due.token!r} waits for it" if due.token is not None else ""
        return (
            True,
            RunReason.RUN_STARTED,
            f"run {active.name} is measuring {', '.join(active.variants)} (Job {active.job or active.name}, "
            f"started {_stamp(active.start_time)}){pending}",
        )
    if waiting is not None:
        return False, RunReason.WAITING_FOR_VARIANTS, waiting
    if bo.spec.suspend:
        return (
            False,
            RunReason.SUSPENDED,
            "spec.suspend is true: scheduled runs are skipped; set the annotation bakeoff.dev/run-now to a new "
            "value to run once",
        )
    if due.following is not None:
        return False, RunReason.WAITING_FOR_SCHEDULE, f"next run at {_stamp(due.following)}"
    return (
        False,
        RunReason.NO_RUN_SCHEDULED,
        "no spec.schedule: the bake-off runs once; set the annotation bakeoff.dev/run-now to a new value to run it "
        "again",
    )


def _complete_condition(last: RunRecord | None, results_from: str | None) -> tuple[bool, str, str]:
    if last is None:
        return False, RunReason.NO_RUN_YET, "no run has finished yet"
    if last.outcome is RunOutcome.SUCCEEDED:
        return (
            True,
            RunReason.RUN_SUCCEEDED,
            f"run {last.name} finished at {_stamp(last.completion_time or last.start_time)}; the results, frontier "
            "and recommendation are from it",
        )
    stays = f"the results are still those of run {results_from}" if results_from else "there are no results yet"
    reason = RunReason.RUN_FAILED if last.outcome is RunOutcome.FAILED else RunReason.RUN_SKIPPED
    return False, reason, f"run {last.name} {last.outcome.value.lower()}: {last.message}; {stays}"


def _condition(type_: str, verdict: tuple[bool, str, str], generation: int | None, now: datetime) -> Condition:
    ok, reason, message = verdict
    return Condition(
        type=type_,
        status=ConditionStatus.TRUE if ok else ConditionStatus.FALSE,
        reason=reason,
        message=_clip(message, MAX_MESSAGE),
        observed_generation=generation,
        last_transition_time=now,
    )


def plan_runs(
    bo: BakeOff,
    variants: Sequence[ModelVariant],
    *,
    jobs: Sequence[JobState],
    results: Sequence[ResultState],
    catalog: GPUCatalog,
    now: datetime,
    streams_per_process: int = STREAMS_PER_PROCESS,
) -> RunsDecision:
    """Adopt the bake-off's Jobs, fold finished runs into status, start a due run, bound the history.
    `streams_per_process` is what one load process drives (above it a run's load test gets workers).

    Jobs and results owned by another object of the same name (a BakeOff deleted and created again
    while the garbage collector works) are neither read nor deleted."""
    uid = bo.metadata.uid
    jobs = [j for j in jobs if uid is None or j.owner_uid in (None, uid)]
    results = [r for r in results if uid is None or r.owner_uid in (None, uid)]
    f = _Fold(bo, variants, catalog, streams_per_process)
    _fold_jobs(f, jobs, results, now)
    active = next((r for r in f.history.values() if r.outcome is RunOutcome.RUNNING), None)
    due = _due(f, jobs, active is not None, now)
    start, waiting = None, None
    if active is None and (due.token is not None or due.latest is not None):
        due, start, waiting = _start(f, due, now)
        if start is not None:
            active = f.history[start.run]
    kept = _kept(f)
    names = {r.name for r in kept}
    running_runs = {r.name for r in kept if r.outcome is RunOutcome.RUNNING}
    generation = bo.metadata.generation
    status = f.status
    running = _condition(ConditionType.RUNNING, _running_condition(bo, active, due, waiting), generation, now)
    complete = _condition(
        ConditionType.COMPLETE, _complete_condition(_newest_finished(kept), status.last_successful_run), generation, now
    )
    status = status.model_copy(
        update={
            "conditions": set_condition(set_condition(list(status.conditions), running), complete),
            "last_runs": kept,
            "next_run_time": None if bo.spec.suspend else due.following,
            "last_schedule_time": due.last_schedule,
            "last_handled_run_now": due.handled,
        }
    )
    return RunsDecision(
        status=status,
        start=start,
        delete_jobs=tuple(sorted(j.name for j in jobs if j.run not in names and j.outcome is not RunOutcome.RUNNING)),
        delete_results=tuple(sorted(r.name for r in results if r.run not in names | running_runs)),
        events=tuple(f.events),
        capacities=tuple(f.capacities[k] for k in sorted(f.capacities)),
    )


def last_run_failed(status: BakeOffStatus) -> bool:
    """Whether the newest finished run failed: the verdict in status is not from it."""
    last = _newest_finished(status.last_runs)
    return last is not None and last.outcome is RunOutcome.FAILED


def result_metrics(status: BakeOffStatus) -> dict[str, dict[str, float]]:
    """The verdict in status as numbers per variant and metric (the operator's `bakeoff_bakeoff_result`): the
    figures of `bakeoff_loadtest.verdict`, which a run's report.html shows too, from each status row."""
    recommended = status.recommendation.variant if status.recommendation else None
    return {
        row.variant: verdict.figures(
            verdict.VerdictRow.model_validate(row.model_dump(by_alias=False)),
            on_pareto_frontier=row.variant in status.pareto_frontier,
            recommended=row.variant == recommended,
        )
        for row in status.results
    }


def unstarted_job(start: RunStart, refusal: str, now: datetime) -> JobState:
    """The Job the API server refused to create, as a failed one: the run is recorded as failed with the
    refusal (and its trigger as served) instead of being tried again every few seconds."""
    return JobState(
        name=start.run,
        run=start.run,
        trigger=start.trigger,
        scheduled_time=start.scheduled_time,
        run_now=start.run_now,
        variants=tuple(m.variant for m in start.measured),
        skipped=start.skipped,
        started=now,
        finished=now,
        outcome=RunOutcome.FAILED,
        message=f"{JOB_NOT_CREATED}: {refusal}",
    )
