"""BakeOff runs in a cluster: read what a bake-off's runs are, let `planning.runs` decide, and do it.

`reconcile_runs(namespace, name, ...)` reads the BakeOff, the ModelVariants of its namespace, its run
Jobs and result ConfigMaps; `planning.runs.plan_runs` (pure) decides; this module then creates the
run's ServiceAccount, RoleBinding and Job (`render.jobs`), writes the status, deletes the Jobs and
results the history no longer keeps, writes each measured variant's `status.measuredCapacity` (the
autoscaler's capacity per replica), posts the Events and sets the verdict's gauges on `/metrics`.
Everything happens under the BakeOff status lock from fresh reads, and a status write that lost a race
is computed again, so a Job created meanwhile is adopted, not doubled.

The handlers call it when a BakeOff changes (a `bakeoff.dev/run-now` annotation), when its variants or
its Jobs change; `RunsLoop` calls it every `RUNS_INTERVAL_S` from a thread of its own, for a schedule
that comes due and a run that stops waiting for its variants (a kopf timer would do the same but put a
finalizer on every BakeOff, so that none could be deleted while the operator is down).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from bakeoff_runtime.gpus import GPUCatalog
from kubernetes.client import ApiException
from pydantic import ValidationError

from bakeoff_operator.api.bakeoff import BakeOff, BakeOffStatus
from bakeoff_operator.api.modelvariant import ModelVariant, ModelVariantStatus
from bakeoff_operator.config import OperatorConfig
from bakeoff_operator.io import kube
from bakeoff_operator.io import runs as run_io
from bakeoff_operator.io.kube import status_lock
from bakeoff_operator.io.metrics import OperatorMetrics
from bakeoff_operator.planning import runs
from bakeoff_operator.planning import status as plan
from bakeoff_operator.planning.outcomes import _stored_status, wire
from bakeoff_operator.render.jobs import owner_of, render_identity, render_run_job

BAKEOFFS: Final = "bakeoffs"
MODEL_VARIANTS: Final = "modelvariants"
# How often every BakeOff's runs are looked at (a schedule comes due, a run stops waiting for its
# variants), besides the events that look at once: the BakeOff's own changes, its variants' and its Jobs'.
RUNS_INTERVAL_S: Final = 10.0
# A status write computed from a read that became stale is refused; read again at most this often.
MAX_ATTEMPTS: Final = 3
clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731 (replaced in tests)
Logger = logging.Logger | logging.LoggerAdapter[Any]


def api_message(err: ApiException) -> str:
    """The API server's own message of a refusal."""
    try:
        return str(json.loads(err.body or "{}").get("message") or err.reason)
    except ValueError:
        return str(err.reason)


def parse_bakeoff(body: Mapping[str, Any]) -> BakeOff | None:
    """The BakeOff with what its runs read (its status, creation time and run-now request); None when the
    models reject it (its validation says why)."""
    parsed = wire(body)
    metadata = body.get("metadata") or {}
    parsed["metadata"]["creationTimestamp"] = metadata.get("creationTimestamp")
    request = (metadata.get("annotations") or {}).get(runs.ANNOTATION_RUN_NOW)
    parsed["metadata"]["annotations"] = {runs.ANNOTATION_RUN_NOW: request} if request else {}
    try:
        bo = BakeOff.model_validate(parsed)
    except ValidationError:
        return None
    return bo.model_copy(update={"status": _stored_status(BakeOffStatus, body)})


def variants_of(namespace: str) -> list[ModelVariant]:
    """Every ModelVariant of the namespace the models accept, with its status."""
    out = []
    for body in kube.list_variants([namespace]):
        try:
            mv = ModelVariant.model_validate(wire(body))
        except ValidationError:
            continue  # its own status says what is wrong
        out.append(mv.model_copy(update={"status": _stored_status(ModelVariantStatus, body)}))
    return out


def start_run(decision: runs.RunsDecision, bo: BakeOff, config: OperatorConfig, logger: Logger) -> str | None:
    """Create the run's identity and Job; why not, if its results claim is missing or the API server
    refuses."""
    start = decision.start
    assert start is not None
    namespace, name, uid = bo.metadata.namespace or "", bo.metadata.name, str(bo.metadata.uid)
    owner = owner_of(name, uid)
    settings = config.job_settings()
    try:
        claim = start.results_claim
        if claim is not None and not run_io.claim_exists(namespace, claim):
            return (
                f"spec.runs.resultsClaim: PersistentVolumeClaim {claim} does not exist in namespace {namespace}; "
                "create it or remove spec.runs.resultsClaim"
            )
        run_io.ensure_identity(namespace, render_identity(name, owner, settings))
        created = run_io.create_job(render_run_job(start, name, namespace, owner, settings))
    except ApiException as err:
        if err.status in (400, 403, 404, 422):
            return f"the API server refused it: {err.status} {api_message(err)}"
        raise
    logger.info(f"bakeoffs {namespace}/{name}: run {start.run} {'started' if created else 'adopted'}")
    return None


def write_capacity(namespace: str, capacity: runs.VariantCapacity) -> None:
    """A measured variant's `status.measuredCapacity` (fields the variant's own status leaves alone)."""
    measured = capacity.capacity.to_wire()
    with status_lock(MODEL_VARIANTS, namespace):
        for _ in range(MAX_ATTEMPTS):
            body = kube.get_object(MODEL_VARIANTS, namespace, capacity.variant)
            if body is None or (body.get("status") or {}).get("measuredCapacity") == measured:
                return
            version = str(body["metadata"]["resourceVersion"])
            result = kube.patch_status(
                MODEL_VARIANTS, namespace, capacity.variant, {"measuredCapacity": measured}, version
            )
            if result is not kube.PatchOutcome.CONFLICT:
                return


def apply_decision(
    decision: runs.RunsDecision,
    body: Mapping[str, Any],
    jobs: list[runs.JobState],
    results: list[runs.ResultState],
    *,
    metrics: OperatorMetrics | None,
    logger: Logger,
) -> None:
    """What follows a status write: deletions beyond the history, capacities, Events, metrics."""
    namespace, name = str(body["metadata"]["namespace"]), str(body["metadata"]["name"])
    uids = {j.name: j.uid for j in jobs}
    for job in decision.delete_jobs:
        run_io.delete_job(namespace, job, uids.get(job))
    result_uids = {r.name: r.uid for r in results}
    for result in decision.delete_results:
        run_io.delete_result(namespace, result, result_uids.get(result))
    for capacity in decision.capacities:
        write_capacity(namespace, capacity)
    for event in decision.events:
        try:
            run_io.post_event(body, warning=event.warning, reason=event.reason, message=event.message, at=clock())
        except ApiException as err:  # an Event is news, not state: the status already says it
            logger.warning(f"bakeoffs {namespace}/{name}: Event {event.reason} not posted: {api_message(err)}")
    if metrics is not None:
        status = decision.status
        rec = status.recommendation
        metrics.set_bakeoff(
            namespace,
            name,
            runs.result_metrics(status),
            runs.last_run_failed(status),
            recommendation=(rec.variant or "", rec.reason) if rec is not None else None,
        )


def decide(  # noqa: PLR0917 (what `plan_runs` reads, in its order)
    bo: BakeOff,
    variants: list[ModelVariant],
    jobs: list[runs.JobState],
    results: list[runs.ResultState],
    catalog: GPUCatalog,
    now: datetime,
    config: OperatorConfig,
) -> runs.RunsDecision:
    return runs.plan_runs(
        bo,
        variants,
        jobs=jobs,
        results=results,
        catalog=catalog,
        now=now,
        streams_per_process=config.loadtest_streams_per_process,
    )


def reconcile_runs(
    namespace: str,
    name: str,
    *,
    catalog: GPUCatalog,
    config: OperatorConfig,
    metrics: OperatorMetrics | None,
    logger: Logger,
) -> runs.RunsDecision | None:
    """Read the BakeOff, its variants, run Jobs and results; let `planning.runs` decide; start the run it
    says, write the status it gives and do the rest (see the module docstring). None when the BakeOff is
    gone, its spec is invalid, or the status could not be written."""
    with status_lock(BAKEOFFS, namespace):
        started: list[runs.RunEvent] = []
        for _ in range(MAX_ATTEMPTS):
            body = kube.get_object(BAKEOFFS, namespace, name)
            bo = parse_bakeoff(body) if body is not None else None
            if body is None or bo is None:
                return None
            jobs = [j for raw in run_io.list_run_jobs(namespace, name) if (j := runs.job_state(raw)) is not None]
            results = [r for raw in run_io.list_results(namespace, name) if (r := runs.result_state(raw)) is not None]
            variants = variants_of(namespace)
            now = clock()

            decision = decide(bo, variants, jobs, results, catalog, now, config)
            if decision.start is not None:
                refused = start_run(decision, bo, config, logger)
                if refused is not None:
                    failed = runs.unstarted_job(decision.start, refused, now)
                    decision = decide(bo, variants, [*jobs, failed], results, catalog, now, config)
                else:
                    started = [e for e in decision.events if e.reason == runs.RunReason.RUN_STARTED]
            stored = _stored_status(BakeOffStatus, body)
            written = not plan.status_changed(stored, decision.status)
            if not written:
                patch = plan.status_patch(decision.status, runs.OWNED_RUN_FIELDS)
                version = str(body["metadata"]["resourceVersion"])
                result = kube.patch_status(BAKEOFFS, namespace, name, patch, version)
                if result is kube.PatchOutcome.GONE:
                    return None
                written = result is kube.PatchOutcome.WRITTEN
            if written:
                extra = [e for e in started if e not in decision.events]
                with_started = decision.model_copy(update={"events": (*extra, *decision.events)})
                apply_decision(with_started, body, jobs, results, metrics=metrics, logger=logger)
                return decision
        logger.warning(f"bakeoffs {namespace}/{name}: run status not written, the object kept changing")
        return None


class RunsLoop:
    """The BakeOffs kopf has shown this operator, looked at every `RUNS_INTERVAL_S` from a thread of its
    own. Handlers fill it (`seen`); `catalog` gives the GPU catalog the handlers see."""

    def __init__(
        self, config: OperatorConfig, metrics: OperatorMetrics | None, interval_s: float = RUNS_INTERVAL_S
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.interval_s = interval_s
        self.lock = threading.Lock()
        self.bakeoffs: set[tuple[str, str]] = set()
        self.catalog: Callable[[], GPUCatalog] | None = None
        self.stop = threading.Event()

    def seen(self, namespace: str, name: str, catalog: Callable[[], GPUCatalog], *, gone: bool = False) -> None:
        with self.lock:
            self.catalog = catalog
            if gone:
                self.bakeoffs.discard((namespace, name))
            else:
                self.bakeoffs.add((namespace, name))

    def reconcile(self, namespace: str, name: str, catalog: GPUCatalog, logger: Logger) -> runs.RunsDecision | None:
        """`reconcile_runs` with this operator's configuration and metrics."""
        return reconcile_runs(namespace, name, catalog=catalog, config=self.config, metrics=self.metrics, logger=logger)

    def run(self) -> None:
        logger = logging.getLogger("bakeoff.runs")
        while not self.stop.wait(self.interval_s):
            with self.lock:
                keys, catalog = sorted(self.bakeoffs), self.catalog
            for namespace, name in keys:
                if catalog is None or self.stop.is_set():
                    break
                try:
                    self.reconcile(namespace, name, catalog(), logger)
                except Exception:  # one BakeOff's trouble (the API server away) is no reason to stop the others
                    logger.exception(f"bakeoffs {namespace}/{name}: looking at its runs failed; trying again")
