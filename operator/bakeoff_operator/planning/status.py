"""Desired status of ModelVariants and BakeOffs: conditions, placement and predictions, and whether
a status write is needed at all.

Pure: functions of the parsed objects, the GPU class catalog and the time (injected), so the
operator's handlers stay thin and these rules are table-tested without a cluster. Conditions follow
`metav1.Condition`: one per type, a CamelCase reason constant, a message that names the fix,
`observedGeneration`, and a `lastTransitionTime` that moves only when the condition's status does.

What a ModelVariant's status says today:
- `Fits`: does the format run on the resolved GPU class, and do weights, KV cache and state fit at the
  tensor-parallel size chosen (the planner in `planning.sizing`).
- `Ready`: from the Deployment and the pods of its KServe InferenceService (`planning.children`): True
  once a replica is ready; False with the reason nothing is deployed (the `Fits` cause, an invalid
  model source or extra argument, KServe missing), or why no replica is ready yet.
- `Scheduled`: False with reason `InsufficientGPU` and the scheduler's message while a replica waits
  for GPUs (KServe's InferenceService stays Ready then; this condition does not).
- `Degraded`: True while fewer replicas are ready than desired.
- `endpoint`, `replicas`, `readyReplicas`, `replicasReady` and `selector` (the scale subresource's).
- `predicted`: capacity and cost of one replica on the `multi-turn-chat` use case (512 prompt / 256
  output tokens) under continuous batching. With TTFT or ITL bounds in `spec.slo`, `maxQps` is the
  highest rate meeting them at the SLO's percentile; otherwise it is the saturation rate. Output
  tokens/s and cost per 1M output tokens are taken at that same rate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from bakeoff_runtime.cost import usd_per_million_tokens_at_rate
from bakeoff_runtime.formats import ExecutionMode
from bakeoff_runtime.gpus import GPUCatalog, default_catalog
from bakeoff_runtime.perf import PerformanceModel
from bakeoff_runtime.workloads import Workload, get_workload
from pydantic import BaseModel, ConfigDict, Field

from bakeoff_operator.api.bakeoff import BakeOff, BakeOffStatus
from bakeoff_operator.api.common import (
    MAX_MESSAGE,
    Condition,
    ConditionStatus,
    ConditionType,
    Reason,
    find_condition,
    set_condition,
)
from bakeoff_operator.api.gpuclass import GPUClass
from bakeoff_operator.api.modelvariant import Engine, ModelVariant, ModelVariantStatus, PredictedCapacity
from bakeoff_operator.planning.children import KSERVE_POD_LABEL, ChildrenState
from bakeoff_operator.planning.deployment import Target, VariantDeployment, plan_deployment
from bakeoff_operator.planning.sizing import Cause, Sizing, size_variant

# The ModelVariant SLO has no workload field, so every variant is predicted on the same use case: the
# middle of the quantization study's seven, in the mode a cluster serves in (continuous batching).
PREDICTION_WORKLOAD: Final = "multi-turn-chat"
PREDICTION_MODE: Final = "async"

# Status fields of a ModelVariant this module owns; a merge patch sets each one, null when absent, so a
# value that no longer holds (a GPU class that stopped fitting) is removed rather than left behind.
OWNED_VARIANT_FIELDS: Final = ("observedGeneration", "conditions", "resolvedGPUClass", "tensorParallelSize",
                               "formatExecution", "predicted", "endpoint", "replicas", "readyReplicas",
                               "replicasReady", "selector")  # fmt: skip
# What BakeOff validation writes; its runs (`planning.runs.OWNED_RUN_FIELDS`) write the rest.
OWNED_BAKEOFF_FIELDS: Final = ("observedGeneration", "conditions")


def _message(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _condition(type_: str, ok: bool, reason: str, message: str, *, generation: int | None, now: datetime) -> Condition:
    return Condition(
        type=type_,
        status=ConditionStatus.TRUE if ok else ConditionStatus.FALSE,
        reason=reason,
        message=_message(message),
        observed_generation=generation,
        last_transition_time=now,
    )


def _with(conditions: Sequence[Condition], *new: Condition) -> list[Condition]:
    out = list(conditions)
    for c in new:
        out = set_condition(out, c)
    return out


# --- the GPU class catalog -------------------------------------------------------------------------------
def cluster_catalog(gpu_classes: Iterable[GPUClass], base: GPUCatalog | None = None) -> GPUCatalog:
    """The default catalog overlaid with the cluster's GPUClass objects: one of the same name replaces
    the built-in entry (prices, a corrected spec), others are added. Sorted by name, so the same
    objects give the same catalog whatever order they were listed in."""
    catalog = base if base is not None else default_catalog()
    for gpu_class in sorted(gpu_classes, key=lambda g: g.metadata.name):
        catalog = catalog.with_gpu(gpu_class.to_gpu_spec())
    return catalog.model_copy(update={"gpus": sorted(catalog.gpus, key=lambda g: g.name)})


# --- ModelVariant -----------------------------------------------------------------------------------------
def prediction_workload(mv: ModelVariant) -> Workload:
    """The use case a variant's status predicts capacity and cost for (see the module docstring)."""
    del mv  # every variant gets the same one until the API lets a variant name its own
    return get_workload(PREDICTION_WORKLOAD)


def size_for_status(mv: ModelVariant, catalog: GPUCatalog) -> Sizing:
    """The planner's placement of `mv`, priced on the prediction workload at on-demand prices."""
    return size_variant(mv, catalog, prediction_workload(mv), mode=PREDICTION_MODE, spot=False)


_FITS_REASONS: Final[dict[Cause, str]] = {
    Cause.FITS: Reason.FITS_IN_MEMORY,
    Cause.UNKNOWN_GPU_CLASS: Reason.UNKNOWN_GPU_CLASS,
    Cause.FORMAT_UNSUPPORTED: Reason.FORMAT_UNSUPPORTED,
    Cause.DOES_NOT_FIT: Reason.DOES_NOT_FIT,
    Cause.INVALID_SPEC: Reason.INVALID_SPEC,
}


def fits_reason(sizing: Sizing) -> str:
    """The `Fits` reason: the planner's cause, named as a condition reason."""
    if sizing.fits and sizing.execution is ExecutionMode.WEIGHT_ONLY_FALLBACK:
        return Reason.WEIGHT_ONLY_FALLBACK
    return _FITS_REASONS[sizing.cause]


def predicted_capacity(mv: ModelVariant, sizing: Sizing) -> PredictedCapacity | None:
    """One replica's capacity and cost on the prediction workload, at the SLO when it bounds TTFT or ITL."""
    if sizing.variant is None or sizing.prediction is None:
        return None
    prediction = sizing.prediction
    slo = mv.spec.slo
    qps = prediction.max_qps
    if slo is not None and (slo.ttft_ms is not None or slo.itl_ms is not None):
        qps = PerformanceModel(sizing.variant).qps_at_slo(
            prediction.prompt_tokens,
            prediction.output_tokens,
            ttft_s=slo.ttft_ms / 1000 if slo.ttft_ms is not None else None,
            itl_s=slo.itl_ms / 1000 if slo.itl_ms is not None else None,
            percentile=slo.percentile.quantile,
        )
    if qps is None:
        return PredictedCapacity(workload=prediction.workload)
    tokens_per_s = qps * prediction.output_tokens
    cost = usd_per_million_tokens_at_rate(
        price_per_gpu_hour=prediction.price_per_hour_usd / prediction.gpus,
        gpus=prediction.gpus,
        replicas=1,
        tokens_per_second=tokens_per_s,
    )
    return PredictedCapacity(
        max_qps=round(qps, 4),
        output_tokens_per_second=round(tokens_per_s, 2),
        cost_per_1m_output_tokens_usd=round(cost, 4) if cost is not None else None,
        workload=prediction.workload,
    )


_REFUSAL_REASONS: Final[dict[Cause, str]] = {
    Cause.UNKNOWN_GPU_CLASS: Reason.UNKNOWN_GPU_CLASS,
    Cause.FORMAT_UNSUPPORTED: Reason.FORMAT_UNSUPPORTED,
    Cause.DOES_NOT_FIT: Reason.DOES_NOT_FIT,
    Cause.INVALID_SPEC: Reason.INVALID_SPEC,
    Cause.FITS: Reason.INVALID_SPEC,
}


def _ready(deployment: VariantDeployment, children: ChildrenState) -> tuple[bool, str, str]:
    if not deployment.deployable:
        return False, _REFUSAL_REASONS[deployment.cause], f"nothing deployed: {deployment.reason}"
    if children.dependency_missing:
        return False, Reason.DEPENDENCY_MISSING, f"nothing deployed: {children.dependency_missing}"
    if children.apply_error:
        return False, Reason.CHILD_REJECTED, f"the API server refused a child: {children.apply_error}"
    if not children.deployed:
        return False, Reason.PROGRESSING, "the InferenceService is not created yet"
    where = f" at {children.endpoint}" if children.endpoint else ""
    if children.desired_replicas == 0:
        return False, Reason.SCALED_TO_ZERO, "scaled to zero: no replica runs until load arrives"
    if children.ready_replicas > 0:
        return (
            True,
            Reason.ENDPOINT_READY,
            (f"{children.ready_replicas}/{children.desired_replicas} replicas ready{where}"),
        )
    if children.failed_containers:
        return False, Reason.RUNTIME_FAILED, "no replica ready: " + "; ".join(children.failed_containers)
    if children.unschedulable:
        return False, Reason.PROGRESSING, f"no replica ready: waiting to be placed: {children.unschedulable[0]}"
    return False, Reason.PROGRESSING, f"no replica ready yet (0/{children.desired_replicas}): starting"


def _scheduled(children: ChildrenState) -> tuple[bool, str, str]:
    if children.unschedulable:
        reason = Reason.INSUFFICIENT_GPU if children.insufficient_gpu else Reason.UNSCHEDULABLE
        waiting = len(children.unschedulable)
        return False, reason, f"{waiting} replica(s) cannot be placed: {children.unschedulable[0]}"
    return True, Reason.GPUS_AVAILABLE, f"every replica is placed ({children.replicas} pod(s))"


def variant_status(
    mv: ModelVariant,
    deployment: VariantDeployment,
    children: ChildrenState,
    generation: int | None,
    now: datetime,
) -> ModelVariantStatus:
    """The status `mv` should have: `mv.status` with the fields this module owns recomputed from the
    deployment plan and what the cluster shows of its children.

    Fields owned by others (the live cost per 1M tokens) are carried over untouched.
    """
    sizing = deployment.sizing
    old = mv.status or ModelVariantStatus()

    def condition(type_: str, verdict: tuple[bool, str, str]) -> Condition:
        return _condition(type_, *verdict, generation=generation, now=now)

    fits = condition(ConditionType.FITS, (sizing.fits, fits_reason(sizing), sizing.reason))
    ready = condition(ConditionType.READY, _ready(deployment, children))
    conditions = _with(old.conditions, fits, ready)
    live = deployment.deployable and children.deployed
    if live:
        conditions = _with(conditions, condition(ConditionType.SCHEDULED, _scheduled(children)))
        ready_of = f"{children.ready_replicas} of {children.desired_replicas} replicas ready"
        degraded = (
            (True, Reason.REPLICAS_UNAVAILABLE, ready_of)
            if children.ready_replicas < children.desired_replicas
            else (False, Reason.AS_EXPECTED, "every desired replica is ready")
        )
        conditions = _with(conditions, condition(ConditionType.DEGRADED, degraded))
    else:
        conditions = [c for c in conditions if c.type not in (ConditionType.SCHEDULED, ConditionType.DEGRADED)]
    return old.model_copy(
        update={
            "observed_generation": generation,
            "conditions": conditions,
            "resolved_gpu_class": sizing.gpu_class,
            "tensor_parallel_size": sizing.tensor_parallel,
            "format_execution": sizing.execution if sizing.fits else None,
            "predicted": predicted_capacity(mv, sizing),
            "endpoint": children.endpoint if live else None,
            "replicas": children.replicas if live else None,
            "ready_replicas": children.ready_replicas if live else None,
            "replicas_ready": f"{children.ready_replicas}/{children.desired_replicas}" if live else None,
            "selector": f"{KSERVE_POD_LABEL}={mv.metadata.name}" if live else None,
        }
    )


def with_scaling_condition(
    status: ModelVariantStatus, verdict: tuple[bool, str, str], *, generation: int | None, now: datetime
) -> ModelVariantStatus:
    """`status` with the autoscaler's `ScalingLimited` condition set (the other conditions untouched)."""
    c = _condition(ConditionType.SCALING_LIMITED, *verdict, generation=generation, now=now)
    return status.model_copy(update={"conditions": _with(status.conditions, c)})


def plan_for_status(mv: ModelVariant, catalog: GPUCatalog, default_engine: Engine = Engine.VLLM) -> VariantDeployment:
    """The cluster deployment of `mv`, priced on the prediction workload at on-demand prices."""
    return plan_deployment(
        mv,
        catalog,
        Target.KSERVE,
        engine=mv.spec.engine or default_engine,
        workload=prediction_workload(mv),
        mode=PREDICTION_MODE,
        spot=False,
    )


def desired_variant_status(
    mv: ModelVariant, catalog: GPUCatalog, now: datetime, children: ChildrenState | None = None
) -> ModelVariantStatus:
    """Plan `mv` on `catalog` and give the status that says so (nothing deployed when `children` is None)."""
    deployment = plan_for_status(mv, catalog)
    observed = children if children is not None else ChildrenState(deployed=False)
    return variant_status(mv, deployment, observed, mv.metadata.generation, now)


def invalid_variant_status(
    old: ModelVariantStatus | None, message: str, generation: int | None, now: datetime
) -> ModelVariantStatus:
    """The status of a ModelVariant whose spec the API server accepted but Bakeoff cannot use."""
    old = old or ModelVariantStatus()
    text = f"invalid spec: {message}"
    fits = _condition(ConditionType.FITS, False, Reason.INVALID_SPEC, text, generation=generation, now=now)
    ready = _condition(ConditionType.READY, False, Reason.INVALID_SPEC, text, generation=generation, now=now)
    return old.model_copy(
        update={
            "observed_generation": generation,
            "conditions": _with(old.conditions, fits, ready),
            "resolved_gpu_class": None,
            "tensor_parallel_size": None,
            "format_execution": None,
            "predicted": None,
        }
    )


# --- BakeOff ------------------------------------------------------------------------------------------------
class ObservedVariant(BaseModel):
    """What a BakeOff's validation needs to know of one ModelVariant in its namespace."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=253, description="ModelVariant name.")
    labels: dict[str, str] = Field(default_factory=dict, description="Its labels (for variantSelector).")
    conditions: list[Condition] = Field(default_factory=list, description="Its status conditions.")

    @classmethod
    def from_variant(cls, mv: ModelVariant) -> ObservedVariant:
        return cls(
            name=mv.metadata.name,
            labels=dict(mv.metadata.labels),
            conditions=list(mv.status.conditions) if mv.status else [],
        )


def _selection(
    bo: BakeOff, variants: Sequence[ObservedVariant]
) -> tuple[list[ObservedVariant], tuple[str, str] | None]:
    """The variants a BakeOff names or selects (`BakeOffSpec.select`), or the reason and message saying
    why there are none."""
    namespace = bo.metadata.namespace or "default"
    by_name = {v.name: v for v in variants}
    chosen = bo.spec.select({v.name: v.labels for v in variants})
    if chosen.missing:
        known = ", ".join(sorted(by_name)) or "none"
        text = (
            f"spec.variants names {', '.join(chosen.missing)}, which no ModelVariant in namespace {namespace} "
            f"defines; create {'them' if len(chosen.missing) > 1 else 'it'} or fix the names (ModelVariants there: "
            f"{known})"
        )
        return [], (Reason.VARIANT_NOT_FOUND, text)
    if not chosen.names:
        text = (
            f"spec.variantSelector matches no ModelVariant in namespace {namespace} "
            f"({len(variants)} there); label the variants or change the selector"
        )
        return [], (Reason.NO_VARIANTS_SELECTED, text)
    return [by_name[n] for n in chosen.names], None


def _readiness(v: ObservedVariant) -> str:
    ready = find_condition(v.conditions, ConditionType.READY)
    if ready is None:
        return f"{v.name} (not sized yet)"
    fits = find_condition(v.conditions, ConditionType.FITS)
    extra = f", does not fit: {fits.reason}" if fits is not None and fits.status is ConditionStatus.FALSE else ""
    return f"{v.name} ({ready.reason}{extra})"


def bakeoff_status(
    bo: BakeOff, variants: Sequence[ObservedVariant], generation: int | None, now: datetime
) -> BakeOffStatus:
    """The status `bo` should have, validated against the ModelVariants of its namespace.

    `VariantsResolved` is True when every named or selected variant exists and is Ready. The run
    conditions (`Running`, `Complete`), results, frontier, recommendation and history are the runs'
    (`planning.runs`) and are carried over.
    """
    old = bo.status or BakeOffStatus()
    chosen, problem = _selection(bo, variants)
    if problem is not None:
        reason, text = problem
        resolved = _condition(ConditionType.VARIANTS_RESOLVED, False, reason, text, generation=generation, now=now)
    else:
        not_ready = [
            v
            for v in chosen
            if (c := find_condition(v.conditions, ConditionType.READY)) is None or c.status is not ConditionStatus.TRUE
        ]
        if not_ready:
            text = f"{len(chosen)} variant(s) found; not Ready: {', '.join(_readiness(v) for v in not_ready)}"
            resolved = _condition(
                ConditionType.VARIANTS_RESOLVED, False, Reason.VARIANT_NOT_READY, text, generation=generation, now=now
            )
        else:
            text = f"all {len(chosen)} variant(s) found and Ready: {', '.join(v.name for v in chosen)}"
            resolved = _condition(
                ConditionType.VARIANTS_RESOLVED, True, Reason.VARIANTS_FOUND, text, generation=generation, now=now
            )
    return old.model_copy(update={"observed_generation": generation, "conditions": _with(old.conditions, resolved)})


def invalid_bakeoff_status(
    old: BakeOffStatus | None, message: str, generation: int | None, now: datetime
) -> BakeOffStatus:
    """The status of a BakeOff whose spec the API server accepted but Bakeoff cannot use."""
    old = old or BakeOffStatus()
    text = f"invalid spec: {message}"
    resolved = _condition(
        ConditionType.VARIANTS_RESOLVED, False, Reason.INVALID_SPEC, text, generation=generation, now=now
    )
    running = _condition(ConditionType.RUNNING, False, Reason.INVALID_SPEC, text, generation=generation, now=now)
    return old.model_copy(
        update={"observed_generation": generation, "conditions": _with(old.conditions, resolved, running)}
    )


# --- writing status ------------------------------------------------------------------------------------------
def _comparable(status: BaseModel | None) -> dict[str, Any]:
    if status is None:
        return {}
    wire: dict[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    conditions = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in wire.get("conditions", [])]
    wire["conditions"] = sorted(conditions, key=lambda c: str(c["type"]))
    return wire


def status_changed(old: BaseModel | None, new: BaseModel) -> bool:
    """Whether writing `new` over `old` changes anything a reader cares about.

    The order of conditions and their `lastTransitionTime` are ignored: `set_condition` keeps the
    time of a condition whose status held, and a time alone never justifies a write.
    """
    return _comparable(old) != _comparable(new)


def status_patch(status: BaseModel, owned: Sequence[str]) -> dict[str, Any]:
    """A JSON merge patch of the `status` subresource setting exactly the `owned` fields.

    An owned field that is unset becomes null (removed); nested objects are written whole, with
    nulls for their unset fields, since a merge patch would otherwise keep stale values inside them.
    """
    full: Mapping[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=False)
    patch: dict[str, Any] = {}
    for key in owned:
        value = full.get(key)
        if isinstance(value, list):
            value = [_drop_none(v) if isinstance(v, dict) else v for v in value]
        patch[key] = value
    return patch


def _drop_none(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}
