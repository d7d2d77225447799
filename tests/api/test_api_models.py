"""The bakeoff.dev API models: good objects load, bad ones fail naming the field and the fix."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bakeoff_operator.api import (
    API_VERSION,
    GROUP,
    VERSION,
    BakeOff,
    Condition,
    ConditionStatus,
    ConditionType,
    GPUClass,
    ModelVariant,
    Reason,
    parse_documents,
    set_condition,
)
from bakeoff_operator.api.bakeoff import MAX_LAST_RUNS, RunOutcome, RunRecord, record_run
from bakeoff_operator.api.common import duration_seconds
from bakeoff_operator.api.gpuclass import GPUClassSpec
from bakeoff_operator.api.loader import validate_document
from bakeoff_operator.api.modelvariant import FP8_FALLBACK_GPU_CLASSES, KNOWN_VLLM_FLAGS_CONTEXT
from bakeoff_runtime.architectures import ArchitectureKind, builtin_architectures
from bakeoff_runtime.formats import ExecutionMode, Format, resolve_execution
from bakeoff_runtime.gpus import default_catalog
from pydantic import BaseModel, ValidationError

from tests.api.api_builders import BAD_RESOURCES, HYBRID_INLINE, bakeoff, gpu_class, variant

KINDS: dict[str, type[BaseModel]] = {"ModelVariant": ModelVariant, "BakeOff": BakeOff, "GPUClass": GPUClass}


def _validate(obj: dict[str, Any], context: dict[str, Any] | None = None) -> BaseModel:
    # As `bakeoff run` and the API server read a document: as JSON, strictly.
    return validate_document(KINDS[obj["kind"]], obj, context)


def _errors(obj: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        _validate(obj)
    return "\n".join(
        ".".join(str(p) for p in e["loc"]) + ": " + e["msg"] + f" (input {e.get('input')!r})"
        for e in info.value.errors()
    )


def test_api_version_is_group_and_version() -> None:
    assert f"{GROUP}/{VERSION}" == API_VERSION


GOOD: list[tuple[str, dict[str, Any]]] = [
    ("variant-minimal", variant()),
    ("variant-hybrid-inline", variant(format="bf16", architecture=HYBRID_INLINE)),
    ("variant-hybrid-catalog", variant(format="bf16", architecture={"catalog": "apriel-h1-h30", "kind": "hybrid"})),
    ("variant-fp8-ampere-fallback", variant(gpuClass="a100-80gb", allowWeightOnlyFallback=True)),
    ("variant-auto-everything", variant(gpuClass="auto", tensorParallelSize="auto")),
    (
        "variant-scale-to-zero",
        variant(replicas=0, autoscaling={"minReplicas": 0, "maxReplicas": 3, "scaleToZero": True}),
    ),
    ("variant-tp-8", variant(tensorParallelSize=8)),
    ("variant-extra-args-with-value", variant(serving={"extraArgs": ["--long-prefill-token-threshold", "512"]})),
    ("bakeoff-selector", bakeoff(variants=None, variantSelector={"matchLabels": {"bakeoff.dev/model": "llama"}})),
    (
        "bakeoff-custom-normal",
        bakeoff(
            workload={
                "custom": {
                    "promptTokens": {"kind": "normal", "mean": 100, "std": 10, "min": 50, "max": 150},
                    "outputTokens": {"mean": 32},
                }
            }
        ),
    ),
    ("bakeoff-rate-sweep", bakeoff(load={"mode": "rate-sweep", "rates": [0.5, 1, 2], "duration": "1m30s"})),
    ("bakeoff-cron", bakeoff(schedule={"cron": "0 */6 * * *"})),
    ("bakeoff-interval", bakeoff(schedule={"interval": "6h"})),
    ("gpuclass-no-fp8", gpu_class(name="a10g", tflops={"bf16": 70, "int8": 140}, computeCapability=8.6)),
]


@pytest.mark.parametrize(("obj"), [g[1] for g in GOOD], ids=[g[0] for g in GOOD])
def test_good_objects_load(obj: dict[str, Any]) -> None:
    model = _validate(obj)
    # The wire form round-trips: what the operator writes is what it reads back.
    again = type(model).model_validate(model.to_wire())  # type: ignore[attr-defined]
    assert again == model


@pytest.mark.parametrize(("obj", "text", "field"), [b[1:] for b in BAD_RESOURCES], ids=[b[0] for b in BAD_RESOURCES])
def test_bad_objects_fail_naming_the_field(obj: dict[str, Any], text: str, field: str) -> None:
    errors = _errors(obj)
    assert text in errors
    assert field in errors


def test_wire_names_are_camel_case_with_explicit_acronyms() -> None:
    """No alias is a to_camel accident such as `e2EMs` or `costPer1MOutputTokensUsd`."""
    seen: set[type[BaseModel]] = set()

    def walk(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, f in model.model_fields.items():
            wire = f.alias or name
            assert re.fullmatch(r"[a-z][A-Za-z0-9]*", wire), f"{model.__name__}.{name}: {wire}"
            acronym = name.endswith(("_usd", "_gib", "_tbps", "_gbps", "_gpu_class", "_gpus"))
            if ("_" in name and any(c.isdigit() for c in name)) or acronym:
                assert f.alias_priority == 2, f"{model.__name__}.{name} needs an explicit alias, got {wire}"
            for sub in _models_in(f.annotation):
                walk(sub)

    for kind in KINDS.values():
        walk(kind)
    assert len(seen) > 20


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _models_in(a)]


@pytest.mark.parametrize("gpu", default_catalog().gpus, ids=lambda g: g.name)
def test_gpu_class_round_trips_through_the_runtime_spec(gpu: Any) -> None:
    obj = GPUClass.from_gpu_spec(gpu)
    assert obj.to_gpu_spec() == gpu
    assert GPUClass.model_validate(obj.to_wire()).to_gpu_spec() == gpu


def test_gpu_class_wire_names() -> None:
    spec = GPUClassSpec.model_validate(gpu_class()["spec"])
    wire = spec.to_wire()
    assert {"memoryGiB", "bandwidthTBps", "computeCapability", "interconnectGBps", "pricePerGPUHour"} <= set(wire)
    assert wire["pricePerGPUHour"] == {"onDemand": 3.29, "spot": 2.1}


def test_fp8_fallback_classes_follow_the_format_table() -> None:
    """The CEL rule's list of GPU classes is derived from the catalog, not typed in."""
    expected = sorted(
        g.name
        for g in default_catalog().gpus
        if resolve_execution(Format.FP8, g.compute_capability).mode is ExecutionMode.WEIGHT_ONLY_FALLBACK
    )
    assert list(FP8_FALLBACK_GPU_CLASSES) == expected
    assert {"a100-80gb", "a10g", "a6000"} <= set(FP8_FALLBACK_GPU_CLASSES)
    assert "l40s" not in FP8_FALLBACK_GPU_CLASSES


@pytest.mark.parametrize("arch_id", sorted(builtin_architectures()))
def test_catalog_architectures_resolve(arch_id: str) -> None:
    mv = ModelVariant.model_validate(variant(format="bf16", architecture={"catalog": arch_id}))
    arch = mv.to_architecture()
    assert arch == builtin_architectures()[arch_id]
    assert mv.spec.architecture.resolved_kind is arch.kind


def test_inline_hybrid_becomes_a_runtime_architecture() -> None:
    mv = ModelVariant.model_validate(variant(name="tiny-hybrid", format="bf16", architecture=HYBRID_INLINE))
    arch = mv.to_architecture()
    assert arch.kind is ArchitectureKind.HYBRID
    assert (arch.attention_layers, arch.mamba_layers, arch.mlp_layers) == (1, 1, 2)
    assert arch.mamba_state_bytes_per_sequence(4) > 0
    assert arch.kv_bytes_per_token(2) == 2 * 1 * 2 * 32 * 2


def test_inline_heads_must_divide_by_kv_heads() -> None:
    errors = _errors(variant(format="bf16", architecture={**HYBRID_INLINE, "numKVHeads": 3}))
    assert "num_kv_heads" in errors
    assert "spec.architecture" in errors


def test_extra_args_are_checked_against_known_flags_when_given() -> None:
    obj = variant(serving={"extraArgs": ["--enable-prefix-cachng"]})
    _validate(obj)  # without a flag list only reserved flags are refused
    with pytest.raises(ValidationError, match="did you mean --enable-prefix-caching"):
        _validate(obj, {KNOWN_VLLM_FLAGS_CONTEXT: {"--enable-prefix-caching", "--max-num-batched-tokens"}})


def test_desired_replicas() -> None:
    assert ModelVariant.model_validate(variant()).spec.desired_replicas == 1
    scaled = variant(autoscaling={"minReplicas": 2, "maxReplicas": 5})
    assert ModelVariant.model_validate(scaled).spec.desired_replicas == 2
    assert ModelVariant.model_validate({**scaled, "spec": {**scaled["spec"], "replicas": 4}}).spec.desired_replicas == 4


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("1h30m", 5400), ("250ms", 0.25), ("1.5h", 5400)], ids=str)
def test_duration_seconds(text: str, seconds: float) -> None:
    assert duration_seconds(text) == pytest.approx(seconds)


def test_duration_rejects_words() -> None:
    with pytest.raises(ValueError, match="90s, 5m or 1h30m"):
        duration_seconds("5 minutes")


def _cond(status: ConditionStatus, at: datetime, reason: str = Reason.FITS_IN_MEMORY) -> Condition:
    return Condition(type=ConditionType.FITS, status=status, reason=reason, message="m", last_transition_time=at)


def test_set_condition_keeps_transition_time_when_status_is_unchanged() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    t1 = t0 + timedelta(minutes=5)
    first = set_condition([], _cond(ConditionStatus.TRUE, t0))
    same = set_condition(first, _cond(ConditionStatus.TRUE, t1))
    assert same[0].last_transition_time == t0
    flipped = set_condition(same, _cond(ConditionStatus.FALSE, t1, Reason.DOES_NOT_FIT))
    assert flipped[0].last_transition_time == t1
    assert flipped[0].reason == Reason.DOES_NOT_FIT
    assert len(flipped) == 1


def test_condition_wire_format() -> None:
    c = _cond(ConditionStatus.TRUE, datetime(2025, 1, 1, 12, tzinfo=UTC))
    assert c.to_wire() == {
        "type": "Fits",
        "status": "True",
        "reason": "FitsInMemory",
        "message": "m",
        "lastTransitionTime": "2025-01-01T12:00:00Z",
    }


def test_reasons_are_camel_case_and_unique() -> None:
    assert len(Reason.ALL) == len(set(Reason.ALL)) > 10
    for r in Reason.ALL:
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", r), r


def test_run_history_is_bounded_newest_first() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    history: list[RunRecord] = []
    for i in range(MAX_LAST_RUNS + 3):
        history = record_run(
            history, RunRecord(name=f"run-{i}", start_time=t0 + timedelta(hours=i), outcome=RunOutcome.SUCCEEDED)
        )
    assert len(history) == MAX_LAST_RUNS
    assert history[0].name == f"run-{MAX_LAST_RUNS + 2}"
    updated = record_run(history, history[3].model_copy(update={"outcome": RunOutcome.FAILED}))
    assert updated[0].outcome is RunOutcome.FAILED
    assert len(updated) == MAX_LAST_RUNS


def test_status_wire_names() -> None:
    mv = ModelVariant.model_validate(
        {
            **variant(),
            "status": {
                "resolvedGPUClass": "h100",
                "tensorParallelSize": 1,
                "predicted": {"maxQps": 3.5, "outputTokensPerSecond": 900.0, "costPer1MOutputTokensUSD": 1.02},
                "liveCostPer1MTokensUSD": 1.1,
                "replicas": 2,
                "readyReplicas": 1,
            },
        }
    )
    assert mv.status is not None
    assert mv.status.predicted is not None
    assert mv.status.predicted.cost_per_1m_output_tokens_usd == pytest.approx(1.02)
    assert mv.to_wire()["status"]["liveCostPer1MTokensUSD"] == pytest.approx(1.1)


def test_snake_case_names_are_accepted_in_python() -> None:
    docs = parse_documents(
        "apiVersion: bakeoff.dev/v1alpha1\nkind: GPUClass\nmetadata: {name: l4}\n"
        "spec: {product: NVIDIA-L4, memory_gib: 22, bandwidth_tbps: 0.3, tflops: {bf16: 121},"
        " compute_capability: 8.9, price_per_gpu_hour: {on_demand: 0.7}}\n"
    )
    assert isinstance(docs[0], GPUClass)
    assert docs[0].spec.memory_gib == 22
