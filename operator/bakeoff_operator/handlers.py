"""kopf handlers of the Bakeoff operator: deploy ModelVariants, run BakeOffs, and say so in their status.

Run it as the chart does::

    kopf run --standalone -m bakeoff_operator.handlers --all-namespaces --liveness=http://0.0.0.0:8080/healthz

The handlers stay thin: parse the object into its pydantic model, ask the pure planners
(`planning.sizing`, `planning.status`) for the status it should have, and merge-patch the status
subresource only when that differs from what is stored. A spec the API server accepted but Bakeoff
cannot use becomes a False condition naming the field, and a `kopf.PermanentError` (no retries, no
crash loop).

What the operator knows of the cluster it keeps in kopf indexes, filled before any handler runs:
the GPUClasses (the catalog is the default one overlaid with them), and the names, labels and
conditions of the ModelVariants and BakeOffs per namespace. When a GPUClass changes (a price, a new
class) every ModelVariant is sized again; when a ModelVariant appears, goes, or changes its labels or
conditions, the BakeOffs of its namespace are validated again. Because a status depends on other
objects, every status is computed and written under one lock per kind and namespace, through
`bakeoff_operator.kube` with the `resourceVersion` it was read at (see `_StatusLocks`).

A BakeOff also runs: `planning.runs` decides when a run is due and what it measures, and folds a
finished run's results into status; `bakeoff_runs` applies that (the run's Job from `render.jobs`,
the results, the variants' measured capacity, Events, `/metrics`). The handlers look at a BakeOff's
runs when it changes (a `bakeoff.dev/run-now` annotation), when its variants or its Jobs change;
`bakeoff_runs.RunsLoop` every `RUNS_INTERVAL_S` from a thread of its own.

Environment (set by the chart): `BAKEOFF_NAMESPACE` is the operator's own namespace (the pod's),
`BAKEOFF_METRICS_PORT`, `BAKEOFF_PROMETHEUS_URL` and `BAKEOFF_VLLM_IMAGE` configure the metrics,
autoscaler and runtimes; they are checked at startup (`OperatorConfig`) and kept in kopf's `memo`.
Which namespaces are served is kopf's choice (`--namespace` per namespace, or `--all-namespaces`; the
chart's `operator.watchNamespaces`); GPUClasses are cluster-scoped and always watched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import kopf
from bakeoff_runtime.gpus import GPUCatalog
from kubernetes.client import ApiException
from pydantic import ValidationError

from bakeoff_operator.api.common import GROUP, VERSION
from bakeoff_operator.api.gpuclass import GPUClass
from bakeoff_operator.api.modelvariant import ModelVariant
from bakeoff_operator.autoscaler import Autoscaler
from bakeoff_operator.bakeoff_runs import RunsLoop, api_message
from bakeoff_operator.config import OperatorConfig
from bakeoff_operator.io import kube
from bakeoff_operator.io.kube import status_lock
from bakeoff_operator.io.metrics import OperatorMetrics
from bakeoff_operator.io.prometheus import Prometheus
from bakeoff_operator.planning import runs
from bakeoff_operator.planning import status as plan
from bakeoff_operator.planning.children import KSERVE_POD_LABEL, ChildrenState
from bakeoff_operator.planning.children import observe_children as observed_children
from bakeoff_operator.planning.outcomes import (
    Outcome,
    bakeoff_outcome,
    observed_variant,
    problems,
    variant_outcome,
    wire,
)
from bakeoff_operator.render.kserve import (
    INFERENCE_SERVICE_API,
    LABEL_MANAGED_BY,
    LABEL_MODEL,
    LABEL_VARIANT,
    MANAGED_BY,
    SERVING_RUNTIME_API,
    Owner,
    Replicas,
    gpu_placement,
    render_children,
)

MODEL_VARIANTS: Final = (GROUP, VERSION, "modelvariants")
BAKEOFFS: Final = (GROUP, VERSION, "bakeoffs")
GPU_CLASSES: Final = (GROUP, VERSION, "gpuclasses")

# kopf keeps its handling state in annotations under this prefix (not in `status.kopf`, which the CRDs'
# structural schemas would prune). kopf ignores every annotation under its prefix when it diffs an
# object, so it is a sub-domain of its own, leaving `bakeoff.dev/*` annotations to users.
ANNOTATION_PREFIX: Final = "operator.bakeoff.dev"
# A status write computed from a read that became stale is refused; read again at most this often.
MAX_REFRESH_ATTEMPTS: Final = 3
clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731 (replaced in tests)


def catalog_from(gpu_classes: kopf.Index[str, GPUClass]) -> GPUCatalog:
    return plan.cluster_catalog(g for store in gpu_classes.values() for g in store)


def _variants_in(index: kopf.Index[str, plan.ObservedVariant], namespace: str | None) -> list[plan.ObservedVariant]:
    return list(index.get(namespace or "", []))


# --- writing status ----------------------------------------------------------------------------------------


def refresh(
    plural: str,
    namespace: str,
    name: str,
    *,
    compute: Callable[[Mapping[str, Any]], Outcome],
    owned: Iterable[str],
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> Outcome | None:
    """Read an object, compute its status and write it if it changed, holding the status lock; read
    again when the write lost a race (kopf's own annotation writes). None when the object is gone."""
    with status_lock(plural, namespace):
        outcome = None
        for _ in range(MAX_REFRESH_ATTEMPTS):
            body = kube.get_object(plural, namespace, name)
            if body is None:
                return None
            outcome = compute(body)
            if not outcome.changed:
                return outcome
            version = str(body["metadata"]["resourceVersion"])
            patch = plan.status_patch(outcome.desired, tuple(owned))
            result = kube.patch_status(plural, namespace, name, patch, version)
            if result is kube.PatchOutcome.WRITTEN:
                logger.info(f"{plural} {namespace}/{name}: status updated")
                return outcome
            if result is kube.PatchOutcome.GONE:
                return None
        logger.warning(f"{plural} {namespace}/{name}: status not written, the object kept changing")
        return outcome


# --- the children of a ModelVariant --------------------------------------------------------------------------
@dataclass
class Applied:
    """What applying a variant's children found: a kind the cluster lacks, or a refusal."""

    dependency_missing: str | None = None
    error: str | None = None
    gpu_resource: str = "nvidia.com/gpu"
    desired_replicas: int = 0


def apply_children(  # noqa: PLR0917 (the handler's context, passed on)
    body: Mapping[str, Any],
    catalog: GPUCatalog,
    gpu_classes: Mapping[str, GPUClass],
    config: OperatorConfig,
    memo: Any,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> Applied:
    """Render the variant's children from its deployment plan and server-side apply them; delete the
    ServingRuntimes of its earlier renderings. Nothing is applied for a variant that is not deployable."""
    mv = ModelVariant.model_validate(wire(body))
    deployment = plan.plan_for_status(mv, catalog, config.default_engine)
    if not deployment.deployable or deployment.variant is None:
        return Applied()
    placement = gpu_placement(deployment.variant.gpu.name, gpu_classes, catalog)
    autoscaling = mv.spec.autoscaling
    desired = mv.spec.desired_replicas
    replicas = Replicas(desired=desired, maximum=max(autoscaling.max_replicas if autoscaling else desired, 1))
    metadata = body.get("metadata") or {}
    owner = Owner(name=str(metadata["name"]), uid=str(metadata["uid"]))
    pod_monitor = memo.get("pod_monitor_served", True)
    children = render_children(
        deployment,
        config.render_settings(pod_monitor=pod_monitor),
        owner,
        placement,
        replicas,
        engine=mv.spec.engine,
        model_label=(mv.metadata.labels or {}).get(LABEL_MODEL),
    )
    applied = Applied(gpu_resource=placement.resource_name, desired_replicas=desired)
    namespace = str(metadata.get("namespace") or "")
    for obj in children.objects:
        try:
            kube.apply({**obj, "metadata": {**obj["metadata"], "namespace": namespace}})
        except kube.MissingKindError as err:
            if obj["kind"] == "PodMonitor":
                memo["pod_monitor_served"] = False  # prometheus-operator is optional
                logger.info("no PodMonitor CRD: vLLM metrics are not scraped through prometheus-operator")
                continue
            applied.dependency_missing = f"{err}; Bakeoff deploys variants as KServe InferenceServices"
            return applied
        except ApiException as err:
            if err.status in (400, 403, 422):  # invalid, or refused by an admission webhook
                applied.error = f"{obj['kind']} {obj['metadata']['name']}: {api_message(err)}"
                return applied
            raise
    current = children.of_kind("ServingRuntime")
    keep = current["metadata"]["name"] if current else None
    for runtime in kube.list_namespaced(
        SERVING_RUNTIME_API, "ServingRuntime", namespace, f"{LABEL_VARIANT}={owner.name}"
    ):
        meta = runtime.get("metadata") or {}
        owned = any(ref.get("uid") == owner.uid for ref in meta.get("ownerReferences") or [])
        if (
            owned
            and meta.get("name") != keep
            and kube.delete_namespaced(
                SERVING_RUNTIME_API, "ServingRuntime", namespace, str(meta["name"]), str(meta["uid"])
            )
        ):
            logger.info(f"ServingRuntime {namespace}/{meta['name']}: deleted, replaced by {keep}")
    return applied


def observe_children(namespace: str, name: str, applied: Applied) -> ChildrenState:
    """Read the variant's InferenceService, Deployment and pods."""
    isvc = kube.get_namespaced(INFERENCE_SERVICE_API, "InferenceService", namespace, name)
    deployment = kube.get_deployment(namespace, f"{name}-predictor") if isvc is not None else None
    pods = kube.list_pods(namespace, f"{KSERVE_POD_LABEL}={name}") if isvc is not None else []
    return observed_children(
        isvc,
        deployment,
        pods,
        desired_replicas=applied.desired_replicas,
        gpu_resource=applied.gpu_resource,
        dependency_missing=applied.dependency_missing,
        apply_error=applied.error,
    )


def reconcile_variant(
    namespace: str,
    name: str,
    *,
    gpu_classes: kopf.Index[str, GPUClass],
    memo: Any,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    apply: bool = True,
) -> Outcome | None:
    """Apply the variant's children (when `apply`), then write the status they and the plan give."""
    config: OperatorConfig = memo.config
    catalog = catalog_from(gpu_classes)
    classes = {g.metadata.name: g for store in gpu_classes.values() for g in store}
    applied = Applied()
    if apply:
        body = kube.get_object(MODEL_VARIANTS[2], namespace, name)
        if body is None:
            return None
        # An invalid spec applies nothing; the status below says why.
        with contextlib.suppress(ValidationError):
            applied = apply_children(body, catalog, classes, config, memo, logger)
    else:
        body = kube.get_object(MODEL_VARIANTS[2], namespace, name)
        if body is None:
            return None
        applied = _applied_of(body, catalog, classes, config)

    def compute(b: Mapping[str, Any]) -> Outcome:
        return variant_outcome(b, catalog, clock(), observe_children(namespace, name, applied), config.default_engine)

    return refresh(MODEL_VARIANTS[2], namespace, name, compute=compute, owned=plan.OWNED_VARIANT_FIELDS, logger=logger)


def _applied_of(
    body: Mapping[str, Any], catalog: GPUCatalog, classes: Mapping[str, GPUClass], config: OperatorConfig
) -> Applied:
    """What a status refresh needs to read the children right (desired replicas, the GPU resource)."""
    try:
        mv = ModelVariant.model_validate(wire(body))
    except ValidationError:
        return Applied()
    deployment = plan.plan_for_status(mv, catalog, config.default_engine)
    if deployment.variant is None:
        return Applied(desired_replicas=mv.spec.desired_replicas)
    placement = gpu_placement(deployment.variant.gpu.name, classes, catalog)
    return Applied(gpu_resource=placement.resource_name, desired_replicas=mv.spec.desired_replicas)


# --- startup ---------------------------------------------------------------------------------------------------
@kopf.on.startup()
def configure(*, settings: kopf.OperatorSettings, memo: Any, logger: kopf.Logger, **_: Any) -> None:
    try:
        memo.config = OperatorConfig.from_env(os.environ)
    except ValueError as err:
        raise kopf.PermanentError(str(err)) from None  # the operator stops: fix the Deployment's env
    # One replica without peering (the chart's Deployment uses the Recreate strategy).
    settings.peering.standalone = True
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    # Conditions carry the news; Kubernetes Events only for what went wrong.
    settings.posting.level = logging.WARNING
    # No finalizers: status-only work owns nothing to clean up, and kopf adds one only for deletion
    # handlers, of which there are none.
    config: OperatorConfig = memo.config
    metrics = OperatorMetrics()
    memo.metrics = metrics
    if config.metrics_port is not None:
        metrics.serve(config.metrics_port, config.metrics_address)
    if config.prometheus_url:
        autoscaler = Autoscaler(
            Prometheus(config.prometheus_url),
            metrics,
            namespaces=[n for n in config.watch_namespaces.split(",") if n],
            lease_namespace=config.namespace,
            rate_window=config.rate_window,
        )
        memo.autoscaler_stop = threading.Event()
        thread = threading.Thread(
            target=autoscaler.run,
            args=(memo.autoscaler_stop, config.autoscale_interval_s),
            name="bakeoff-autoscaler",
            daemon=True,
        )
        thread.start()
    logger.info(f"Bakeoff operator: deploying ModelVariants and validating BakeOffs ({memo.config})")


@kopf.on.cleanup()
def stop_autoscaler(*, memo: Any, **_: Any) -> None:
    stop = memo.get("autoscaler_stop")
    if stop is not None:
        stop.set()


# --- indexes ---------------------------------------------------------------------------------------------------
@kopf.index(*GPU_CLASSES)
def gpu_classes(*, name: str, body: kopf.Body, logger: kopf.Logger, **_: Any) -> dict[str, GPUClass] | None:
    """GPUClass objects by name; one the model rejects is left out (variants naming it get UnknownGPUClass)."""
    try:
        return {name: GPUClass.model_validate(wire(body))}
    except ValidationError as err:
        logger.warning(f"GPUClass {name} is left out of the catalog: {problems(err)}")
        return None


@kopf.index(*MODEL_VARIANTS)
def model_variants(*, namespace: str | None, body: kopf.Body, **_: Any) -> dict[str, plan.ObservedVariant]:
    """ModelVariants by namespace: what BakeOff validation reads of them."""
    return {namespace or "": observed_variant(body)}


@kopf.index(*BAKEOFFS)
def bakeoffs(*, namespace: str | None, name: str, **_: Any) -> dict[str, str]:
    """BakeOff names by namespace."""
    return {namespace or "": name}


# --- ModelVariant ------------------------------------------------------------------------------------------------
@kopf.on.resume(*MODEL_VARIANTS)
@kopf.on.create(*MODEL_VARIANTS)
@kopf.on.update(*MODEL_VARIANTS)
def reconcile_model_variant(*, name: str, namespace: str | None, memo: Any, logger: kopf.Logger, **kwargs: Any) -> None:
    """Size the variant, deploy it on KServe (ServingRuntime, InferenceService, PodMonitor) and write
    Fits, Ready, Scheduled, Degraded, placement, predictions, endpoint and replicas."""
    gpu_classes: kopf.Index[str, GPUClass] = kwargs["gpu_classes"]
    outcome = reconcile_variant(namespace or "", name, gpu_classes=gpu_classes, memo=memo, logger=logger)
    if outcome is not None and outcome.invalid is not None:
        raise kopf.PermanentError(f"invalid spec: {outcome.invalid}")


# Objects of a variant's replicas: the InferenceService, and KServe's Deployment and pods, which carry its labels.
OUR_CHILDREN: Final[dict[str, Any]] = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_VARIANT: kopf.PRESENT}


def _refresh_owner(
    labels: Mapping[str, str], namespace: str | None, memo: Any, logger: kopf.Logger, kwargs: Mapping[str, Any]
) -> None:
    variant = labels.get(LABEL_VARIANT)
    if variant and namespace:
        reconcile_variant(namespace, variant, gpu_classes=kwargs["gpu_classes"], memo=memo, logger=logger, apply=False)


@kopf.on.event("pods", labels=OUR_CHILDREN)
def variant_pod_changed(
    *, type: str | None, labels: Mapping[str, str], namespace: str | None, memo: Any, logger: kopf.Logger, **kwargs: Any
) -> None:
    """A replica's pod was created, placed, became ready or went: the variant's status follows."""
    del type
    _refresh_owner(labels, namespace, memo, logger, kwargs)


@kopf.on.event("apps", "v1", "deployments", labels=OUR_CHILDREN)
def variant_deployment_changed(
    *, labels: Mapping[str, str], namespace: str | None, memo: Any, logger: kopf.Logger, **kwargs: Any
) -> None:
    """KServe's Deployment of a variant changed (replicas, rollout): the variant's status follows."""
    _refresh_owner(labels, namespace, memo, logger, kwargs)


@kopf.on.event(
    "serving.kserve.io",
    "v1beta1",
    "inferenceservices",
    labels={LABEL_MANAGED_BY: MANAGED_BY, LABEL_VARIANT: kopf.PRESENT},
)
def variant_inference_service_changed(
    *, labels: Mapping[str, str], namespace: str | None, memo: Any, logger: kopf.Logger, **kwargs: Any
) -> None:
    """KServe reported on a variant's InferenceService (its address): the variant's status follows."""
    _refresh_owner(labels, namespace, memo, logger, kwargs)


@kopf.on.event(*GPU_CLASSES)
def resize_on_gpu_class_change(
    *,
    type: str | None,
    name: str,
    memo: Any,
    logger: kopf.Logger,
    **kwargs: Any,
) -> None:
    """A GPU class appeared, changed (a price) or went: size every ModelVariant again."""
    gpu_classes: kopf.Index[str, GPUClass] = kwargs["gpu_classes"]
    model_variants: kopf.Index[str, plan.ObservedVariant] = kwargs["model_variants"]
    if type is None:
        return  # the initial listing; the resume handlers size every variant with the full catalog
    logger.info(f"GPUClass {name} {type.lower()}: sizing every ModelVariant again")
    for namespace, store in list(model_variants.items()):
        for variant in sorted({v.name for v in store}):
            reconcile_variant(namespace, variant, gpu_classes=gpu_classes, memo=memo, logger=logger)


# --- BakeOff ------------------------------------------------------------------------------------------------------


@kopf.on.resume(*BAKEOFFS)
@kopf.on.create(*BAKEOFFS)
@kopf.on.update(*BAKEOFFS)
def validate_bakeoff(*, name: str, namespace: str | None, memo: Any, logger: kopf.Logger, **kwargs: Any) -> None:
    """Check the variants the bake-off names or selects exist and are Ready; then look at its runs (a
    new `bakeoff.dev/run-now` annotation, a schedule that changed)."""
    model_variants: kopf.Index[str, plan.ObservedVariant] = kwargs["model_variants"]
    outcome = refresh(
        BAKEOFFS[2],
        namespace or "",
        name,
        compute=lambda b: bakeoff_outcome(b, _variants_in(model_variants, namespace), clock()),
        owned=plan.OWNED_BAKEOFF_FIELDS,
        logger=logger,
    )
    if outcome is not None and outcome.invalid is not None:
        raise kopf.PermanentError(f"invalid spec: {outcome.invalid}")
    if outcome is not None:
        reconcile_runs(namespace or "", name, gpu_classes=kwargs["gpu_classes"], memo=memo, logger=logger)


def _fingerprint(variant: plan.ObservedVariant) -> tuple[Any, ...]:
    """What a BakeOff's validation depends on: labels and each condition's status and reason."""
    conditions = sorted((c.type, c.status.value, c.reason) for c in variant.conditions)
    return (tuple(sorted(variant.labels.items())), tuple(conditions))


@kopf.on.event(*MODEL_VARIANTS)
def revalidate_bakeoffs(
    *,
    type: str | None,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    memo: Any,
    logger: kopf.Logger,
    **kwargs: Any,
) -> None:
    """A ModelVariant appeared, went, or changed labels or conditions: validate its namespace's BakeOffs
    (and start a run that waited for it to be Ready)."""
    model_variants: kopf.Index[str, plan.ObservedVariant] = kwargs["model_variants"]
    bakeoffs: kopf.Index[str, str] = kwargs["bakeoffs"]
    seen: dict[tuple[str, str], tuple[Any, ...]] = memo.setdefault("variant_fingerprints", {})
    key = (namespace or "", name)
    if type == "DELETED":
        seen.pop(key, None)
    else:
        fingerprint = _fingerprint(observed_variant(body))
        unchanged = seen.get(key) == fingerprint
        seen[key] = fingerprint
        if type is None or unchanged:
            return  # the initial listing (resume handlers cover it), or nothing a BakeOff depends on
    for bakeoff in sorted(set(bakeoffs.get(namespace or "", []))):
        refresh(
            BAKEOFFS[2],
            namespace or "",
            bakeoff,
            compute=lambda b: bakeoff_outcome(b, _variants_in(model_variants, namespace), clock()),
            owned=plan.OWNED_BAKEOFF_FIELDS,
            logger=logger,
        )
        reconcile_runs(namespace or "", bakeoff, gpu_classes=kwargs["gpu_classes"], memo=memo, logger=logger)


# --- BakeOff runs: scheduled load-test Jobs, results back into status (`bakeoff_runs`) -----------------------------
def reconcile_runs(
    namespace: str, name: str, *, gpu_classes: kopf.Index[str, GPUClass], memo: Any, logger: kopf.Logger
) -> None:
    """Look at one BakeOff's runs now (`bakeoff_runs.reconcile_runs`)."""
    loop: RunsLoop = memo.runs_loop
    loop.reconcile(namespace, name, catalog_from(gpu_classes), logger)


@kopf.on.startup()
def start_runs_loop(*, memo: Any, **_: Any) -> None:
    loop = RunsLoop(memo.config, memo.get("metrics"))
    memo.runs_loop = loop
    threading.Thread(target=loop.run, name="bakeoff-runs", daemon=True).start()


@kopf.on.cleanup()
def stop_runs_loop(*, memo: Any, **_: Any) -> None:
    loop: RunsLoop | None = memo.get("runs_loop")
    if loop is not None:
        loop.stop.set()


# The Jobs of bake-off runs carry these labels (render.jobs.run_labels).
RUN_JOBS: Final[dict[str, Any]] = {
    runs.LABEL_COMPONENT: runs.COMPONENT_RUN,
    runs.LABEL_MANAGED_BY: runs.MANAGED_BY,
    runs.LABEL_BAKEOFF: kopf.PRESENT,
}


@kopf.on.event("batch", "v1", "jobs", labels=RUN_JOBS)
def bakeoff_job_changed(
    *, type: str | None, labels: Mapping[str, str], namespace: str | None, memo: Any, logger: kopf.Logger, **kwargs: Any
) -> None:
    """A run's Job started, ended or went: its BakeOff's runs follow (results fold in at once)."""
    if type is None:
        return  # the initial listing: the BakeOffs' resume handlers look at their runs
    reconcile_runs(namespace or "", labels[runs.LABEL_BAKEOFF], gpu_classes=kwargs["gpu_classes"], memo=memo,
                   logger=logger)  # fmt: skip


@kopf.on.event(*BAKEOFFS)
def bakeoff_seen(*, type: str | None, name: str, namespace: str | None, memo: Any, **kwargs: Any) -> None:
    """Every BakeOff joins the runs loop; a deleted one leaves it, and its verdict leaves /metrics (its
    Jobs and results go with it, by owner references)."""
    gone = type == "DELETED"
    loop: RunsLoop | None = memo.get("runs_loop")
    if loop is not None:
        gpu_classes: kopf.Index[str, GPUClass] = kwargs["gpu_classes"]
        loop.seen(namespace or "", name, lambda: catalog_from(gpu_classes), gone=gone)
    metrics: OperatorMetrics | None = memo.get("metrics")
    if gone and metrics is not None:
        metrics.remove_bakeoff(namespace or "", name)
