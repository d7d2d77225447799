"""Desired status of ModelVariants and BakeOffs: table tests of the pure rules, with builders and an
injected clock (no cluster; the handlers' body parsing is covered here too, it needs none)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bakeoff_operator.api import BakeOff, ConditionStatus, ConditionType, GPUClass, ModelVariant, Reason
from bakeoff_operator.api.common import Condition, find_condition
from bakeoff_operator.api.modelvariant import ModelVariantStatus
from bakeoff_operator.config import OperatorConfig
from bakeoff_operator.planning import status as plan
from bakeoff_operator.planning.children import observe_children
from bakeoff_operator.planning.outcomes import bakeoff_outcome, observed_variant, variant_outcome
from bakeoff_runtime.formats import ExecutionMode
from bakeoff_runtime.gpus import GPUCatalog, default_catalog

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


# --- builders ---------------------------------------------------------------------------------------------
def variant(name: str = "v", generation: int = 1, labels: dict[str, str] | None = None, **spec: Any) -> ModelVariant:
    body: dict[str, Any] = {
        "model": {"source": "hf://meta-llama/Llama-3.1-8B-Instruct"},
        "architecture": {"catalog": "llama-3.1-8b"},
        "format": "bf16",
        "gpuClass": "h100",
    }
    body.update(spec)
    meta = {"name": name, "namespace": "ns", "generation": generation, "labels": labels or {}}
    return ModelVariant.model_validate({"metadata": meta, "spec": body})


def gpu_class(
    name: str, cc: float = 8.0, on_demand: float = 2.0, memory: float = 79.2, fp8: float | None = None
) -> GPUClass:
    tflops: dict[str, float] = {"bf16": 312.0, "int8": 624.0}
    if fp8 is not None:
        tflops["fp8"] = fp8
    return GPUClass.model_validate(
        {
            "metadata": {"name": name},
            "spec": {
                "product": f"TEST-{name.upper()}",
                "memoryGiB": memory,
                "bandwidthTBps": 2.0,
                "tflops": tflops,
                "computeCapability": cc,
                "pricePerGPUHour": {"onDemand": on_demand},
            },
        }
    )


def bakeoff(name: str = "bo", generation: int = 1, **spec: Any) -> BakeOff:
    body: dict[str, Any] = {"workload": {"useCase": "multi-turn-chat"}}
    body.update(spec)
    return BakeOff.model_validate(
        {"metadata": {"name": name, "namespace": "ns", "generation": generation}, "spec": body}
    )


def observed(name: str, ready: bool | None = False, labels: dict[str, str] | None = None) -> plan.ObservedVariant:
    conditions = []
    if ready is not None:
        conditions.append(
            Condition(
                type=ConditionType.READY,
                status=ConditionStatus.TRUE if ready else ConditionStatus.FALSE,
                reason=Reason.ENDPOINT_READY if ready else Reason.PROGRESSING,
                last_transition_time=T0,
            )
        )
    return plan.ObservedVariant(name=name, labels=labels or {}, conditions=conditions)


CUSTOM = "ampere-custom"
CATALOG = plan.cluster_catalog([gpu_class(CUSTOM)])


def status_of(mv: ModelVariant, now: datetime = T0, catalog: GPUCatalog = CATALOG) -> ModelVariantStatus:
    return plan.desired_variant_status(mv, catalog, now)


def condition(status: Any, type_: str) -> Condition:
    found = find_condition(status.conditions, type_)
    assert found is not None, f"no {type_} condition in {status}"
    return found


# --- Fits ----------------------------------------------------------------------------------------------------
FITS_CASES: list[tuple[str, ModelVariant, GPUCatalog, bool, str, str]] = [
    ("fits", variant(), CATALOG, True, Reason.FITS_IN_MEMORY, "fits 1x h100"),
    (
        "weight-only-fallback-accepted",
        variant(format="fp8", gpuClass="a100-80gb", allowWeightOnlyFallback=True),
        CATALOG,
        True,
        Reason.WEIGHT_ONLY_FALLBACK,
        "a100-80gb",
    ),
    ("unknown-gpu-class", variant(gpuClass="b200"), CATALOG, False, Reason.UNKNOWN_GPU_CLASS, "create the GPUClass"),
    (
        "fp8-on-custom-ampere-class",
        variant(format="fp8", gpuClass=CUSTOM),
        CATALOG,
        False,
        Reason.FORMAT_UNSUPPORTED,
        "allowWeightOnlyFallback",
    ),
    (
        "int4-on-turing",
        variant(format="int4", gpuClass="turing"),
        plan.cluster_catalog([gpu_class("turing", cc=7.5)]),
        False,
        Reason.FORMAT_UNSUPPORTED,
        "compute capability >= 8",
    ),
    (
        "too-big-at-the-tensor-parallel-size-asked",
        variant(architecture={"catalog": "llama-3.1-70b"}, tensorParallelSize=1),
        CATALOG,
        False,
        Reason.DOES_NOT_FIT,
        "raise tensorParallelSize",
    ),
    (
        "auto-with-only-ampere-classes-for-fp8",
        variant(format="fp8", gpuClass="auto"),
        plan.cluster_catalog([gpu_class("amp-a"), gpu_class("amp-b")], base=GPUCatalog(gpus=[])),
        False,
        Reason.FORMAT_UNSUPPORTED,
        "no GPU class fits",
    ),
    (
        "auto-with-only-small-classes",
        variant(architecture={"catalog": "llama-3.1-70b"}, gpuClass="auto"),
        plan.cluster_catalog([gpu_class("tiny", memory=8.0)], base=GPUCatalog(gpus=[])),
        False,
        Reason.DOES_NOT_FIT,
        "does not fit 32x (4 pipeline stages of 8) tiny",
    ),
]


@pytest.mark.parametrize(
    ("mv", "catalog", "fits", "reason", "text"), [c[1:] for c in FITS_CASES], ids=[c[0] for c in FITS_CASES]
)
def test_fits_condition(mv: ModelVariant, catalog: GPUCatalog, fits: bool, reason: str, text: str) -> None:
    status = status_of(mv, catalog=catalog)
    c = condition(status, ConditionType.FITS)
    assert c.status is (ConditionStatus.TRUE if fits else ConditionStatus.FALSE)
    assert c.reason == reason
    assert text in c.message
    assert c.observed_generation == 1
    assert (status.resolved_gpu_class is not None) == fits
    assert (status.predicted is not None) == fits


def test_ready_is_false_until_a_replica_is_ready() -> None:
    c = condition(status_of(variant()), ConditionType.READY)
    assert (c.status, c.reason) == (ConditionStatus.FALSE, Reason.PROGRESSING)
    assert find_condition(status_of(variant()).conditions, ConditionType.SCHEDULED) is None


INSUFFICIENT = (
    "0/4 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 3 Insufficient nvidia.com/gpu. "
    "preemption: 0/4 nodes are available: 4 No preemption victims found for incoming pod."
)
ISVC = {"status": {"address": {"url": "http://llama-8b-fp8-predictor.ns.svc.cluster.local"}}}


def deployment_obj(replicas: int, ready: int, generation: int = 1, seen: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "status": {
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": replicas,
            "observedGeneration": seen,
        },
    }


def pod(scheduled: bool = True, message: str = INSUFFICIENT, waiting: str | None = None) -> dict[str, Any]:
    conditions = [{"type": "PodScheduled", "status": "True"}]
    if not scheduled:
        conditions = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]
    statuses = [{"name": "kserve-container", "state": {"waiting": {"reason": waiting}}}] if waiting else []
    return {"metadata": {"name": "p"}, "status": {"conditions": conditions, "containerStatuses": statuses}}


OK = ("True", "GPUsAvailable")
UP = ("True", "EndpointReady")
WAIT = ("False", "Progressing")
NO_GPU = ("False", "InsufficientGPU")
TAINTED = "0/4 nodes: node(s) had untolerated taint"


@pytest.mark.parametrize(
    ("isvc", "deployment", "pods", "desired", "extra", "ready", "scheduled", "degraded"),
    [
        (ISVC, deployment_obj(2, 2), [pod(), pod()], 2, {}, UP, OK, "False"),
        (ISVC, deployment_obj(3, 2), [pod(), pod(), pod(False)], 3, {}, UP, NO_GPU, "True"),
        (ISVC, deployment_obj(1, 0), [pod(False)], 1, {}, WAIT, NO_GPU, "True"),
        (ISVC, deployment_obj(1, 0), [pod(False, TAINTED)], 1, {}, WAIT, ("False", "Unschedulable"), "True"),
        (ISVC, deployment_obj(1, 0), [pod(waiting="CrashLoopBackOff")], 1, {}, ("False", "RuntimeFailed"), OK, "True"),
        (ISVC, deployment_obj(0, 0), [], 0, {}, ("False", "ScaledToZero"), OK, "False"),
        (None, None, [], 1, {"dependency_missing": "no kind"}, ("False", "DependencyMissing"), None, None),
        (None, None, [], 1, {"apply_error": "denied by webhook"}, ("False", "ChildRejected"), None, None),
    ],
    ids=["all-ready", "one-waits-for-gpus", "none-placed", "other-unschedulable", "crash-loop", "scaled-to-zero",
         "kserve-missing", "child-rejected"],
)  # fmt: skip
def test_children_give_ready_scheduled_and_degraded(  # noqa: PLR0917
    isvc: dict[str, Any] | None,
    deployment: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    desired: int,
    extra: dict[str, Any],
    ready: tuple[str, str],
    scheduled: tuple[str, str] | None,
    degraded: str | None,
) -> None:
    children = observe_children(isvc, deployment, pods, desired_replicas=desired, **extra)
    status = plan.desired_variant_status(variant(), CATALOG, T0, children)
    c = condition(status, ConditionType.READY)
    assert (c.status.value, c.reason) == ready
    got = find_condition(status.conditions, ConditionType.SCHEDULED)
    assert (None if got is None else (got.status.value, got.reason)) == scheduled
    if scheduled and scheduled[1] == "InsufficientGPU":
        assert got is not None
        assert "Insufficient nvidia.com/gpu" in got.message
    got = find_condition(status.conditions, ConditionType.DEGRADED)
    assert (None if got is None else got.status.value) == degraded
    if isvc is not None:
        assert status.endpoint == "http://llama-8b-fp8-predictor.ns.svc.cluster.local"
        assert status.replicas_ready == f"{children.ready_replicas}/{desired}"
        assert status.selector == f"serving.kserve.io/inferenceservice={variant().metadata.name}"


def test_a_variant_that_does_not_fit_deploys_nothing_and_says_why() -> None:
    status = status_of(
        variant(gpuClass="l4", architecture={"catalog": "llama-3.1-70b"}, format="bf16", tensorParallelSize=1)
    )
    c = condition(status, ConditionType.READY)
    assert (c.status, c.reason) == (ConditionStatus.FALSE, Reason.DOES_NOT_FIT)
    assert c.message.startswith("nothing deployed:")
    assert status.endpoint is None


def test_a_fitting_variant_reports_placement_and_prediction() -> None:
    status = status_of(variant(architecture={"catalog": "llama-3.1-70b"}))
    assert status.resolved_gpu_class == "h100"
    assert status.tensor_parallel_size == 2  # 70B BF16 needs two 80 GB GPUs
    assert status.format_execution is ExecutionMode.NATIVE
    assert status.observed_generation == 1
    p = status.predicted
    assert p is not None
    assert p.workload == plan.PREDICTION_WORKLOAD
    assert p.max_qps is not None
    assert p.output_tokens_per_second is not None
    assert p.cost_per_1m_output_tokens_usd is not None
    # Cost per 1M output tokens = the replica's hourly price / output tokens per hour × 1e6.
    price = default_catalog().get("h100").price_per_gpu_hour.on_demand * 2
    assert p.cost_per_1m_output_tokens_usd == pytest.approx(price / (p.output_tokens_per_second * 3600) * 1e6, rel=1e-3)
    assert p.output_tokens_per_second == pytest.approx(p.max_qps * 256, rel=1e-3)  # multi-turn chat: 256 out


@pytest.mark.parametrize(
    ("slo", "lower"),
    [(None, False), ({"e2eMs": 60000}, False), ({"itlMs": 20}, True), ({"ttftMs": 200, "percentile": "p99"}, True)],
    ids=["no-slo", "e2e-only-is-not-modelled", "itl-bound", "ttft-bound"],
)
def test_slo_bounds_lower_the_predicted_rate(slo: dict[str, Any] | None, lower: bool) -> None:
    free = status_of(variant()).predicted
    bounded = status_of(variant(slo=slo) if slo else variant()).predicted
    assert free is not None
    assert bounded is not None
    assert free.max_qps is not None
    assert bounded.max_qps is not None
    assert (bounded.max_qps < free.max_qps) == lower
    assert bounded.max_qps <= free.max_qps


# --- transitions and writes -------------------------------------------------------------------------------------
def test_transition_time_moves_only_when_a_condition_status_changes() -> None:
    first = status_of(variant(), T0)
    again = status_of(variant().model_copy(update={"status": first}), T1)
    assert [c.last_transition_time for c in again.conditions] == [T0, T0]
    assert not plan.status_changed(first, again)

    broken = variant(generation=2, architecture={"catalog": "llama-3.1-70b"}, tensorParallelSize=1)
    after = status_of(broken.model_copy(update={"status": again}), T1)
    assert condition(after, ConditionType.FITS).last_transition_time == T1  # True -> False
    assert condition(after, ConditionType.READY).last_transition_time == T0  # False all along
    assert condition(after, ConditionType.READY).observed_generation == 2
    assert after.observed_generation == 2
    assert plan.status_changed(again, after)


def test_fields_owned_by_others_are_carried_over() -> None:
    stored = ModelVariantStatus(live_cost_per_1m_tokens_usd=1.25)
    status = status_of(variant().model_copy(update={"status": stored}))
    assert status.live_cost_per_1m_tokens_usd == 1.25


def _fits(message: str, when: datetime = T0, status: ConditionStatus = ConditionStatus.TRUE) -> Condition:
    return Condition(type="Fits", status=status, reason="FitsInMemory", message=message, last_transition_time=when)


def _ready(when: datetime = T0) -> Condition:
    return Condition(type="Ready", status=ConditionStatus.FALSE, reason="Progressing", last_transition_time=when)


CHANGED_CASES: list[tuple[str, ModelVariantStatus | None, ModelVariantStatus, bool]] = [
    ("no-stored-status", None, ModelVariantStatus(conditions=[_fits("a")]), True),
    ("same", ModelVariantStatus(conditions=[_fits("a")]), ModelVariantStatus(conditions=[_fits("a")]), False),
    (
        "only-times",
        ModelVariantStatus(conditions=[_fits("a", T0)]),
        ModelVariantStatus(conditions=[_fits("a", T1)]),
        False,
    ),
    (
        "condition-order",
        ModelVariantStatus(conditions=[_fits("a"), _ready()]),
        ModelVariantStatus(conditions=[_ready(), _fits("a")]),
        False,
    ),
    ("message", ModelVariantStatus(conditions=[_fits("a")]), ModelVariantStatus(conditions=[_fits("b")]), True),
    (
        "status",
        ModelVariantStatus(conditions=[_fits("a")]),
        ModelVariantStatus(conditions=[_fits("a", status=ConditionStatus.FALSE)]),
        True,
    ),
    ("generation", ModelVariantStatus(observed_generation=1), ModelVariantStatus(observed_generation=2), True),
    ("gpu-class", ModelVariantStatus(resolved_gpu_class="h100"), ModelVariantStatus(resolved_gpu_class="l40s"), True),
]


@pytest.mark.parametrize(("old", "new", "changed"), [c[1:] for c in CHANGED_CASES], ids=[c[0] for c in CHANGED_CASES])
def test_status_changed(old: ModelVariantStatus | None, new: ModelVariantStatus, changed: bool) -> None:
    assert plan.status_changed(old, new) is changed


def test_status_patch_clears_what_no_longer_holds() -> None:
    fitting = status_of(variant())
    broken = status_of(variant(gpuClass="b200").model_copy(update={"status": fitting}))
    patch = plan.status_patch(broken, plan.OWNED_VARIANT_FIELDS)
    assert set(patch) == set(plan.OWNED_VARIANT_FIELDS)
    assert patch["resolvedGPUClass"] is None
    assert patch["predicted"] is None
    assert patch["tensorParallelSize"] is None
    assert {c["type"] for c in patch["conditions"]} == {"Fits", "Ready"}
    assert all(None not in c.values() for c in patch["conditions"])

    patch = plan.status_patch(fitting, plan.OWNED_VARIANT_FIELDS)
    assert patch["predicted"]["workload"] == "multi-turn-chat"
    assert patch["endpoint"] is None  # nothing deployed: an endpoint left from before is removed
    assert "liveCostPer1MTokensUSD" not in patch  # not this module's to write


def test_invalid_spec_status_names_the_problem_and_drops_the_placement() -> None:
    fitting = status_of(variant())
    status = plan.invalid_variant_status(fitting, "spec.architecture: heads", 3, T1)
    for type_ in (ConditionType.FITS, ConditionType.READY):
        c = condition(status, type_)
        assert (c.status, c.reason, c.observed_generation) == (ConditionStatus.FALSE, Reason.INVALID_SPEC, 3)
        assert "spec.architecture" in c.message
    assert status.resolved_gpu_class is None
    assert status.predicted is None


# --- the catalog -------------------------------------------------------------------------------------------------
def test_cluster_gpu_classes_override_and_extend_the_default_catalog() -> None:
    cheap_h100 = gpu_class("h100", cc=9.0, on_demand=1.0, fp8=1979.0)
    one = plan.cluster_catalog([cheap_h100, gpu_class(CUSTOM)])
    other = plan.cluster_catalog([gpu_class(CUSTOM), cheap_h100])
    assert one == other  # listing order does not matter
    assert one.get("h100").price_per_gpu_hour.on_demand == 1.0
    assert CUSTOM in one.names
    assert set(default_catalog().names) <= set(one.names)
    price_drop = status_of(variant(), catalog=one).predicted
    list_price = status_of(variant()).predicted
    assert price_drop is not None
    assert list_price is not None
    assert price_drop.cost_per_1m_output_tokens_usd is not None
    assert list_price.cost_per_1m_output_tokens_usd is not None
    assert price_drop.cost_per_1m_output_tokens_usd < list_price.cost_per_1m_output_tokens_usd


# --- BakeOff -------------------------------------------------------------------------------------------------------
BAKEOFF_CASES: list[tuple[str, BakeOff, list[plan.ObservedVariant], bool, str, list[str]]] = [
    (
        "named-variant-missing",
        bakeoff(variants=["a", "b", "c"]),
        [observed("a")],
        False,
        Reason.VARIANT_NOT_FOUND,
        ["b, c", "namespace ns", "ModelVariants there: a"],
    ),
    (
        "selector-matches-nothing",
        bakeoff(variantSelector={"matchLabels": {"model": "llama"}}),
        [observed("a", labels={"model": "mistral"})],
        False,
        Reason.NO_VARIANTS_SELECTED,
        ["variantSelector matches no ModelVariant", "(1 there)"],
    ),
    (
        "found-but-not-deployed",
        bakeoff(variants=["a", "b"]),
        [observed("a"), observed("b", ready=None), observed("c")],
        False,
        Reason.VARIANT_NOT_READY,
        ["2 variant(s) found", "a (Progressing)", "b (not sized yet)"],
    ),
    (
        "all-ready",
        bakeoff(variantSelector={"matchExpressions": [{"key": "model", "operator": "Exists"}]}),
        [observed("b", True, {"model": "x"}), observed("a", True, {"model": "y"}), observed("z", True)],
        True,
        Reason.VARIANTS_FOUND,
        ["all 2 variant(s) found and Ready: a, b"],
    ),
]


@pytest.mark.parametrize(
    ("bo", "variants", "resolved", "reason", "texts"), [c[1:] for c in BAKEOFF_CASES], ids=[c[0] for c in BAKEOFF_CASES]
)
def test_bakeoff_validation(
    bo: BakeOff, variants: list[plan.ObservedVariant], resolved: bool, reason: str, texts: list[str]
) -> None:
    status = plan.bakeoff_status(bo, variants, 1, T0)
    c = condition(status, ConditionType.VARIANTS_RESOLVED)
    assert c.status is (ConditionStatus.TRUE if resolved else ConditionStatus.FALSE)
    assert c.reason == reason
    for text in texts:
        assert text in c.message
    # Validation says nothing of runs: planning.runs writes Running and Complete.
    assert find_condition(status.conditions, ConditionType.RUNNING) is None
    assert status.observed_generation == 1


def test_bakeoff_status_keeps_transition_times_and_results() -> None:
    bo = bakeoff(variants=["a"])
    first = plan.bakeoff_status(bo, [], 1, T0)
    first = first.model_copy(update={"pareto_frontier": ["a"]})
    again = plan.bakeoff_status(bo.model_copy(update={"status": first}), [], 1, T1)
    assert not plan.status_changed(first, again)
    assert again.pareto_frontier == ["a"]
    found = plan.bakeoff_status(bo.model_copy(update={"status": again}), [observed("a")], 1, T1)
    assert condition(found, ConditionType.VARIANTS_RESOLVED).last_transition_time == T0  # False -> False
    assert condition(found, ConditionType.VARIANTS_RESOLVED).reason == Reason.VARIANT_NOT_READY
    assert plan.status_changed(again, found)


# --- what the handlers read from a stored object --------------------------------------------------------------------
def stored_body(kind: str, spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object as the API server returns it, with the metadata the models do not read."""
    body: dict[str, Any] = {
        "apiVersion": "bakeoff.dev/v1alpha1",
        "kind": kind,
        "metadata": {
            "name": "v",
            "namespace": "ns",
            "generation": 4,
            "resourceVersion": "123",
            "uid": "0f3e",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
            "annotations": {"operator.bakeoff.dev/last-handled-configuration": "{}"},
            "finalizers": ["example.com/other"],
        },
        "spec": spec,
    }
    if status is not None:
        body["status"] = status
    return body


MV_SPEC: dict[str, Any] = {
    "model": {"source": "hf://meta-llama/Llama-3.1-8B-Instruct"},
    "architecture": {"catalog": "llama-3.1-8b"},
    "format": "bf16",
    "gpuClass": "h100",
}


def test_variant_outcome_reads_a_stored_object() -> None:
    outcome = variant_outcome(stored_body("ModelVariant", MV_SPEC), CATALOG, T0)
    assert outcome.invalid is None
    assert outcome.stored is None
    assert outcome.changed
    assert isinstance(outcome.desired, ModelVariantStatus)
    assert outcome.desired.observed_generation == 4
    settled = variant_outcome(
        stored_body("ModelVariant", MV_SPEC, outcome.desired.to_wire() | {"unknownField": 1}), CATALOG, T1
    )
    assert settled.stored is None  # a status this version cannot read is rewritten whole
    settled = variant_outcome(stored_body("ModelVariant", MV_SPEC, outcome.desired.to_wire()), CATALOG, T1)
    assert not settled.changed


def test_variant_outcome_of_a_spec_only_the_models_reject() -> None:
    spec = dict(MV_SPEC, architecture={
        "numLayers": 4, "hiddenSize": 960, "numAttentionHeads": 30, "numKVHeads": 8, "headDim": 32,
        "intermediateSize": 2048, "vocabSize": 32000,
    })  # fmt: skip
    outcome = variant_outcome(stored_body("ModelVariant", spec), CATALOG, T0)
    assert outcome.invalid is not None
    assert outcome.invalid.startswith("spec.architecture: ")
    assert "multiple of num_kv_heads" in outcome.invalid
    assert condition(outcome.desired, ConditionType.FITS).reason == Reason.INVALID_SPEC


def test_bakeoff_outcome_and_observed_variants_from_stored_objects() -> None:
    mv = stored_body("ModelVariant", MV_SPEC, {"conditions": [_ready().to_wire(), {"type": "Broken"}]})
    mv["metadata"]["labels"] = {"model": "llama"}
    seen = observed_variant(mv)
    assert (seen.name, seen.labels, [c.type for c in seen.conditions]) == ("v", {"model": "llama"}, ["Ready"])
    outcome = bakeoff_outcome(stored_body("BakeOff", {"variants": ["v"], "workload": {"useCase": "rag"}}), [seen], T0)
    assert outcome.invalid is None
    assert condition(outcome.desired, ConditionType.VARIANTS_RESOLVED).reason == Reason.VARIANT_NOT_READY
    bad = bakeoff_outcome(
        stored_body("BakeOff", {"variants": ["v"], "workload": {"useCase": "rag"}, "schedule": {"cron": "61 * * * *"}}),
        [seen],
        T0,
    )
    assert bad.invalid is not None
    assert "spec.schedule.cron" in bad.invalid


# --- the operator's environment --------------------------------------------------------------------------------------
CHART_ENV = {
    "BAKEOFF_NAMESPACE": "bakeoff-system",
    "BAKEOFF_METRICS_PORT": "9090",
    "BAKEOFF_PROMETHEUS_URL": "http://prometheus-operated.monitoring.svc:9090",
    "BAKEOFF_VLLM_IMAGE": "vllm/vllm-openai:v0.32.0",
    "BAKEOFF_SIMULATOR_IMAGE": "bakeoff:0.1.0",
    "BAKEOFF_DEFAULT_ENGINE": "simulator",
    "BAKEOFF_SIMULATOR_REQUESTS_GPUS": "false",
    "BAKEOFF_CPU_PER_GPU": "4",
    "BAKEOFF_MEMORY_GIB_PER_GPU": "32",
    "BAKEOFF_LOADTEST_STREAMS_PER_PROCESS": "150",
    "BAKEOFF_LOADTEST_NODE_SELECTOR": '{"pool": "cpu"}',
    "BAKEOFF_LOADTEST_TOLERATIONS": '[{"key": "load", "operator": "Exists", "effect": "NoSchedule"}]',
}


def test_operator_config_reads_the_charts_environment() -> None:
    cfg = OperatorConfig.from_env(CHART_ENV)
    assert (cfg.namespace, cfg.metrics_port, cfg.vllm_image) == ("bakeoff-system", 9090, "vllm/vllm-openai:v0.32.0")
    settings = cfg.render_settings()
    assert (settings.default_engine, settings.simulator_requests_gpus, settings.simulator_image) == (
        "simulator",
        False,
        "bakeoff:0.1.0",
    )
    assert (settings.host.cpu_per_gpu, settings.host.memory_gib_per_gpu) == (4, 32)
    assert cfg.loadtest_streams_per_process == 150
    jobs = cfg.job_settings()
    assert jobs.node_selector == {"pool": "cpu"}
    assert jobs.tolerations == ({"key": "load", "operator": "Exists", "effect": "NoSchedule"},)
    assert OperatorConfig.from_env({"BAKEOFF_METRICS_PORT": ""}) == OperatorConfig()  # empty means unset


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("BAKEOFF_METRICS_PORT", "nine"),
        ("BAKEOFF_NAMESPACE", "Bakeoff_System"),
        ("BAKEOFF_PROMETHEUS_URL", "prom:9090"),
        ("BAKEOFF_DEFAULT_ENGINE", "tgi"),
        ("BAKEOFF_LOADTEST_STREAMS_PER_PROCESS", "0"),
        ("BAKEOFF_LOADTEST_NODE_SELECTOR", "pool=cpu"),
        ("BAKEOFF_LOADTEST_TOLERATIONS", '{"key": "load"}'),
    ],
    ids=[
        "port-not-a-number",
        "namespace-not-a-dns-label",
        "prometheus-url-without-scheme",
        "unknown-engine",
        "no-streams-per-process",
        "node-selector-not-json",
        "tolerations-not-a-list",
    ],
)
def test_operator_config_names_the_bad_variable(var: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"{var}='{value}'"):
        OperatorConfig.from_env(CHART_ENV | {var: value})
