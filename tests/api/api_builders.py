"""Small builders for valid API objects as wire-format dicts; tests change one field at a time."""

from __future__ import annotations

import copy
from typing import Any


def variant(name: str = "llama-8b-fp8", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": {"source": "hf://RedHatAI/Meta-Llama-3.1-8B-Instruct-FP8"},
        "architecture": {"catalog": "llama-3.1-8b"},
        "format": "fp8",
        "gpuClass": "h100",
    }
    body.update(spec)
    return {"apiVersion": "bakeoff.dev/v1alpha1", "kind": "ModelVariant", "metadata": {"name": name}, "spec": body}


def bakeoff(name: str = "chat", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"variants": ["llama-8b-fp8"], "workload": {"useCase": "multi-turn-chat"}}
    body.update(spec)
    body = {k: v for k, v in body.items() if v is not None}
    return {"apiVersion": "bakeoff.dev/v1alpha1", "kind": "BakeOff", "metadata": {"name": name}, "spec": body}


def gpu_class(name: str = "h100", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "product": "NVIDIA-H100-80GB-HBM3",
        "memoryGiB": 79.6,
        "bandwidthTBps": 3.35,
        "tflops": {"bf16": 989, "fp8": 1979, "int8": 1979},
        "computeCapability": 9.0,
        "pricePerGPUHour": {"onDemand": 3.29, "spot": 2.1},
    }
    body.update(spec)
    return {"apiVersion": "bakeoff.dev/v1alpha1", "kind": "GPUClass", "metadata": {"name": name}, "spec": body}


def with_path(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `obj` with the dotted `path` set to `value` (None deletes the key)."""
    out = copy.deepcopy(obj)
    node = out
    *parents, last = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return out


HYBRID_INLINE: dict[str, Any] = {
    "kind": "hybrid",
    "numLayers": 4,
    "attentionLayers": 1,
    "mambaLayers": 1,
    "mlpLayers": 2,
    "hiddenSize": 128,
    "numAttentionHeads": 4,
    "numKVHeads": 2,
    "headDim": 32,
    "intermediateSize": 256,
    "vocabSize": 4096,
    "stateSize": 16,
    "mambaInnerSize": 128,
    "convWidth": 4,
}

# Bad objects: (id, object, text the error must contain, field path it must name). The same table
# runs against the pydantic models (tests/api) and the real API server (tests/chart, cluster).
BAD_RESOURCES: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown-format", variant(format="fp16"), "fp16", "spec.format"),
    ("unknown-field", variant(gpuclass="h100"), "gpuclass", "spec"),
    ("replicas-min-above-max", variant(autoscaling={"minReplicas": 3, "maxReplicas": 2}), "minReplicas", "autoscaling"),
    (
        "scale-to-zero-needs-min-0",
        variant(autoscaling={"minReplicas": 1, "maxReplicas": 2, "scaleToZero": True}),
        "scaleToZero needs minReplicas: 0",
        "autoscaling",
    ),
    (
        "min-0-needs-scale-to-zero",
        variant(autoscaling={"minReplicas": 0, "maxReplicas": 2}),
        "minReplicas: 0 needs scaleToZero",
        "autoscaling",
    ),
    (
        "hybrid-without-mamba",
        variant(architecture={**HYBRID_INLINE, "mambaLayers": 0}),
        "a hybrid architecture needs mambaLayers > 0",
        "architecture",
    ),
    (
        "catalog-and-shapes",
        variant(architecture={"catalog": "llama-3.1-8b", "numLayers": 32}),
        "give either catalog",
        "architecture",
    ),
    (
        "unknown-catalog",
        variant(architecture={"catalog": "llama-9"}),
        "llama-9",
        "spec.architecture.catalog",
    ),
    ("fp8-on-ampere", variant(gpuClass="a100-80gb"), "allowWeightOnlyFallback", "gpuClass"),
    ("tp-three", variant(tensorParallelSize=3), "tensorParallelSize", "tensorParallelSize"),
    ("tp-word", variant(tensorParallelSize="many"), "tensorParallelSize", "tensorParallelSize"),
    ("reserved-vllm-flag", variant(serving={"extraArgs": ["--quantization=fp8"]}), "quantization", "extraArgs"),
    ("memory-utilization-too-high", variant(serving={"gpuMemoryUtilization": 1.5}), "1.5", "gpuMemoryUtilization"),
    ("bad-source", variant(model={"source": "ftp://x/y"}), "ftp://x/y", "spec.model.source"),
    (
        "replicas-outside-bounds",
        variant(replicas=9, autoscaling={"minReplicas": 1, "maxReplicas": 4}),
        "replicas",
        "replicas",
    ),
    ("baseline-self", variant(baseline="llama-8b-fp8"), "baseline names this variant itself", "baseline"),
    ("variant-name-digit-first", variant(name="8b-fp8"), "InferenceService name", "metadata.name"),
    ("slo-without-bounds", variant(slo={"percentile": "p99"}), "at least one of ttftMs", "slo"),
    (
        "variants-and-selector",
        bakeoff(variantSelector={"matchLabels": {"bakeoff.dev/model": "llama"}}),
        "exactly one of variants or variantSelector",
        "spec",
    ),
    ("neither-variants-nor-selector", bakeoff(variants=None), "exactly one of variants or variantSelector", "spec"),
    ("unknown-use-case", bakeoff(workload={"useCase": "poetry"}), "poetry", "spec.workload.useCase"),
    (
        "use-case-and-custom",
        bakeoff(workload={"useCase": "rag", "custom": {"promptTokens": {"mean": 8}, "outputTokens": {"mean": 8}}}),
        "exactly one of useCase or custom",
        "workload",
    ),
    (
        "sweep-without-levels",
        bakeoff(load={"mode": "concurrency-sweep"}),
        "concurrency-sweep needs concurrencies",
        "load",
    ),
    ("rates-in-sync-mode", bakeoff(load={"mode": "sync", "rates": [1.0]}), "rates apply to mode rate-sweep", "load"),
    (
        "normal-without-std",
        bakeoff(workload={"custom": {"promptTokens": {"kind": "normal", "mean": 8}, "outputTokens": {"mean": 8}}}),
        "normal distribution needs std > 0",
        "promptTokens",
    ),
    (
        "min-above-max-tokens",
        bakeoff(workload={"custom": {"promptTokens": {"mean": 8, "min": 10, "max": 9}, "outputTokens": {"mean": 8}}}),
        "min",
        "promptTokens",
    ),
    ("cron-and-interval", bakeoff(schedule={"cron": "@daily", "interval": "6h"}), "exactly one of cron", "schedule"),
    ("bad-duration", bakeoff(load={"duration": "5 minutes"}), "5 minutes", "spec.load.duration"),
    ("zero-duration", bakeoff(load={"duration": "0s"}), "more than 0s and at most 24h", "duration"),
    ("duration-over-a-day", bakeoff(load={"duration": "25h"}), "more than 0s and at most 24h", "duration"),
    # Quoted numbers and booleans are strings to the API server; the local loader agrees.
    ("quoted-integer", variant(serving={"maxNumSeqs": "64"}), "integer", "maxNumSeqs"),
    ("quoted-tensor-parallel", variant(tensorParallelSize="1"), "tensorParallelSize", "tensorParallelSize"),
    ("boolean-tensor-parallel", variant(tensorParallelSize=True), "integer", "tensorParallelSize"),
    ("quoted-boolean", variant(serving={"enablePrefixCaching": "true"}), "boolean", "enablePrefixCaching"),
    ("quoted-number", variant(serving={"gpuMemoryUtilization": "0.9"}), "number", "gpuMemoryUtilization"),
    ("budget-above-one", bakeoff(accuracyBudget={"maxRecoveryLoss": 2}), "maxRecoveryLoss", "maxRecoveryLoss"),
    ("spot-above-on-demand", gpu_class(pricePerGPUHour={"onDemand": 1.0, "spot": 2.0}), "spot", "pricePerGPUHour"),
    ("negative-memory", gpu_class(memoryGiB=-1), "memoryGiB", "spec.memoryGiB"),
]
