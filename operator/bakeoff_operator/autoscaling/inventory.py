"""What the autoscaler needs to know of the cluster and the variants, as plain data. Pure.

- `free_gpus`: per GPU class, the GPUs its nodes can still give: allocatable on the nodes whose
  `nvidia.com/gpu.product` is one of the class's products, less what pods bound to them request,
  less what pods waiting to be placed on that class request.
- `policy_of`: a ModelVariant's autoscaling spec and status as a `Policy`, or None when it is not
  autoscaled (no `spec.autoscaling`) or not placed yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from bakeoff_operator.api.common import duration_seconds
from bakeoff_operator.api.modelvariant import ModelVariant
from bakeoff_operator.autoscaling.decide import Capacity, Policy

PRODUCT_LABEL: Final = "nvidia.com/gpu.product"
DEFAULT_MAX_NUM_SEQS: Final = 256


def _quantity(value: Any) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0


def _requests(pod: Mapping[str, Any], resource: str) -> int:
    spec = pod.get("spec") or {}
    total = 0
    for container in spec.get("containers") or []:
        res = container.get("resources") or {}
        total += _quantity((res.get("requests") or res.get("limits") or {}).get(resource, 0))
    return total


def free_gpus(
    classes: Mapping[str, tuple[Sequence[str], str]],
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
) -> dict[str, int]:
    """Free GPUs per class; `classes` maps a class to (its products, its extended resource name)."""
    node_class: dict[str, str] = {}
    out: dict[str, int] = dict.fromkeys(classes, 0)
    for node in nodes:
        meta = node.get("metadata") or {}
        product = (meta.get("labels") or {}).get(PRODUCT_LABEL)
        for name, (products, resource) in classes.items():
            if product in products:
                node_class[str(meta.get("name"))] = name
                out[name] += _quantity(((node.get("status") or {}).get("allocatable") or {}).get(resource, 0))
    for pod in pods:
        spec = pod.get("spec") or {}
        bound = spec.get("nodeName")
        if bound:
            cls = node_class.get(str(bound))
        else:
            wanted = (spec.get("nodeSelector") or {}).get(PRODUCT_LABEL)
            cls = next((n for n, (products, _) in classes.items() if wanted in products), None)
        if cls is not None:
            out[cls] -= _requests(pod, classes[cls][1])
    return {k: max(v, 0) for k, v in out.items()}


def policy_of(mv: ModelVariant) -> Policy | None:
    """The variant's scaling rules, or None when it is not autoscaled or not placed yet."""
    auto = mv.spec.autoscaling
    status = mv.status
    if auto is None or status is None or not status.resolved_gpu_class or not status.tensor_parallel_size:
        return None
    targets = auto.targets
    hybrid = mv.spec.architecture.resolved_kind.value == "hybrid"
    return Policy(
        variant=mv.metadata.name,
        namespace=mv.metadata.namespace or "",
        gpu_class=status.resolved_gpu_class,
        gpus_per_replica=status.tensor_parallel_size,
        min_replicas=auto.min_replicas,
        max_replicas=auto.max_replicas,
        scale_to_zero=auto.scale_to_zero,
        scale_down_delay_s=duration_seconds(auto.scale_down_delay),
        queue_depth=targets.queue_depth,
        kv_cache_usage=targets.kv_cache_usage,
        tokens_per_second_per_replica=targets.tokens_per_second_per_replica,
        hybrid=hybrid,
        max_num_seqs=mv.spec.serving.max_num_seqs or DEFAULT_MAX_NUM_SEQS,
    )


def capacity_of(mv: ModelVariant, measured: Mapping[str, float] | None = None) -> Capacity | None:
    """One replica's output tokens/s: the last BakeOff's measurement of this variant when there is one
    (`measured`, keyed "namespace/variant", else the variant's `status.measuredCapacity`), else the
    performance model's prediction in its status."""
    key = f"{mv.metadata.namespace or ''}/{mv.metadata.name}" if mv.metadata.namespace else mv.metadata.name
    if measured and measured.get(key):
        return Capacity(tokens_per_second=measured[key], source="measured")
    recorded = mv.status.measured_capacity if mv.status else None
    if recorded is not None:
        return Capacity(tokens_per_second=recorded.output_tokens_per_second, source="measured")
    predicted = mv.status.predicted if mv.status else None
    if predicted is not None and predicted.output_tokens_per_second:
        return Capacity(tokens_per_second=predicted.output_tokens_per_second, source="predicted")
    return None


def measured_now(bakeoffs: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The variants a BakeOff run is measuring now (its newest run `Running`, from the BakeOffs' status as
    the API returns it), keyed as `Policy.key`, with what measures them."""
    held: dict[str, str] = {}
    for body in bakeoffs:
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        runs = (body.get("status") or {}).get("lastRuns") or []
        newest = runs[0] if runs and isinstance(runs[0], Mapping) else {}
        if newest.get("outcome") != "Running":
            continue
        for variant in newest.get("variants") or []:
            key = f"{namespace}/{variant}" if namespace else str(variant)
            held[key] = f"run {newest.get('name')} of BakeOff {name}"
    return held
