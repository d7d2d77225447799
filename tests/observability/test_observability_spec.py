"""`bakeoff_variant_spec`: what the operator exports of each variant for the rules, from the ModelVariant and
its placement, for every deployed variant (autoscaled or not), and that a changed or deleted variant leaves
no stale series."""

from __future__ import annotations

from typing import Any

import pytest
from bakeoff_operator.api.modelvariant import ModelVariant, ModelVariantStatus
from bakeoff_operator.autoscaler import Autoscaler, spec_series
from bakeoff_operator.autoscaling.inventory import policy_of
from bakeoff_operator.io.metrics import OperatorMetrics
from bakeoff_operator.io.prometheus import Prometheus
from bakeoff_operator.observability.spec import SpecField, variant_spec
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families


def model_variant(name: str = "llama-int4", **spec: Any) -> ModelVariant:
    return ModelVariant.model_validate(
        {
            "apiVersion": "bakeoff.dev/v1alpha1",
            "kind": "ModelVariant",
            "metadata": {"name": name, "namespace": "llm"},
            "spec": {
                "model": {"source": "hf://org/model"},
                "architecture": {"catalog": "llama-3.1-8b"},
                "format": "int4",
                "gpuClass": "h100",
                **spec,
            },
        }
    )


def spec_samples(metrics: OperatorMetrics) -> dict[tuple[tuple[str, str], ...], float]:
    text = generate_latest(metrics.registry).decode()
    families = [f for f in text_string_to_metric_families(text) if f.name == "bakeoff_variant_spec"]
    return {tuple(sorted(s.labels.items())): s.value for f in families for s in f.samples}


def spec_fields(metrics: OperatorMetrics) -> dict[tuple[str, str], float]:
    """(variant, field) -> value of every exported `bakeoff_variant_spec` sample."""
    return {(dict(k)["variant"], dict(k)["field"]): v for k, v in spec_samples(metrics).items()}


@pytest.mark.parametrize(
    ("slo", "expected"),
    [
        (None, {}),
        (
            {"ttftMs": 500, "itlMs": 50, "percentile": "p95"},
            {SpecField.SLO_QUANTILE: 0.95, SpecField.SLO_TTFT_SECONDS: 0.5, SpecField.SLO_ITL_SECONDS: 0.05},
        ),
        ({"e2eMs": 30000}, {SpecField.SLO_QUANTILE: 0.9, SpecField.SLO_E2E_SECONDS: 30.0}),
    ],
    ids=["no-slo", "ttft-itl-p95", "e2e-default-p90"],
)
def test_spec_fields(slo: dict[str, Any] | None, expected: dict[SpecField, float]) -> None:
    mv = model_variant(baseline="llama-bf16", **({"slo": slo} if slo else {}))
    spec = variant_spec(mv, gpu_class="h100", gpus_per_replica=2, max_num_seqs=128, hybrid=False)
    assert spec.labels == ("llama-bf16", "h100", "int4", "dense")
    assert spec.values == {
        SpecField.GPUS_PER_REPLICA: 2.0,
        SpecField.REPLICAS: 1.0,
        SpecField.MAX_NUM_SEQS: 128.0,
        **expected,
    }


def test_a_changed_variant_leaves_no_stale_series() -> None:
    metrics = OperatorMetrics()
    metrics.set_variant_spec("llm", "v", ("", "l40s", "fp8", "dense"), {"gpus_per_replica": 1, "slo_quantile": 0.9})
    metrics.set_variant_spec("llm", "v", ("", "h100", "fp8", "dense"), {"gpus_per_replica": 2})
    metrics.set_variant_spec("llm", "w", ("v", "h100", "int4", "hybrid"), {"gpus_per_replica": 1})
    samples = spec_samples(metrics)
    assert {dict(k)["variant"]: (dict(k)["gpu_class"], dict(k)["field"], v) for k, v in samples.items()} == {
        "v": ("h100", "gpus_per_replica", 2.0),
        "w": ("h100", "gpus_per_replica", 1.0),
    }


def placed(mv: ModelVariant, gpu_class: str = "h100", tp: int = 2) -> ModelVariant:
    return mv.model_copy(
        update={"status": ModelVariantStatus.model_validate({"resolvedGPUClass": gpu_class, "tensorParallelSize": tp})}
    )


AUTOSCALED = {"autoscaling": {"minReplicas": 1, "maxReplicas": 4}}


@pytest.mark.parametrize(
    ("mv", "expected"),
    [
        (
            placed(model_variant("auto", slo={"ttftMs": 200, "percentile": "p99"}, replicas=3, **AUTOSCALED),
                   "h100", 4),
            (("", "h100", "int4", "dense"), {"gpus_per_replica": 4.0, "replicas": 3.0, "max_num_seqs": 256.0,
                                             "slo_quantile": 0.99, "slo_ttft_seconds": 0.2}),
        ),
        (
            placed(model_variant("fixed", baseline="auto", serving={"maxNumSeqs": 64}, replicas=2), "l40s", 1),
            (("auto", "l40s", "int4", "dense"), {"gpus_per_replica": 1.0, "replicas": 2.0, "max_num_seqs": 64.0}),
        ),
        (
            placed(model_variant("hybrid", architecture={"catalog": "apriel-h1-h25"}), "h100", 1),
            (("", "h100", "int4", "hybrid"), {"gpus_per_replica": 1.0, "replicas": 1.0, "max_num_seqs": 256.0}),
        ),
        (model_variant("unplaced"), None),
        (placed(model_variant("no-tp", **AUTOSCALED)).model_copy(
            update={"status": ModelVariantStatus.model_validate({"resolvedGPUClass": "h100"})}), None),
    ],
    ids=["autoscaled", "fixed-replicas", "hybrid", "not-placed", "no-tensor-parallel-size"],
)  # fmt: skip
def test_spec_series_of_every_deployed_variant(
    mv: ModelVariant, expected: tuple[tuple[str, ...], dict[str, float]] | None
) -> None:
    """Autoscaled or not, a placed variant has its series; one not placed yet holds no GPUs and has none."""
    spec = spec_series(mv)
    if expected is None:
        assert spec is None
        return
    assert spec is not None
    assert (spec.namespace, spec.variant) == ("llm", mv.metadata.name)
    assert (spec.labels, spec.samples) == expected


def test_an_autoscaled_variant_is_priced_as_its_policy_says() -> None:
    """The spec's GPUs, class, sequence limit and architecture are those of the autoscaler's policy."""
    mv = placed(model_variant("auto", serving={"maxNumSeqs": 32}, **AUTOSCALED), "h200", 8)
    policy, spec = policy_of(mv), spec_series(mv)
    assert policy is not None
    assert spec is not None
    assert (spec.gpu_class, spec.values[SpecField.GPUS_PER_REPLICA], spec.values[SpecField.MAX_NUM_SEQS]) == (
        policy.gpu_class,
        policy.gpus_per_replica,
        policy.max_num_seqs,
    )
    assert spec.architecture == ("hybrid" if policy.hybrid else "dense")


def test_the_autoscaler_exports_the_spec_of_every_deployed_variant_and_removes_it_when_it_goes() -> None:
    metrics = OperatorMetrics()
    autoscaler = Autoscaler(Prometheus("http://127.0.0.1:9"), metrics)
    auto = placed(model_variant("auto", **AUTOSCALED))
    fixed = placed(model_variant("fixed", slo={"e2eMs": 30000}), "l40s", 1)
    autoscaler.export_specs([auto, fixed, model_variant("unplaced")])
    assert spec_fields(metrics) == {
        ("auto", "gpus_per_replica"): 2.0,
        ("auto", "replicas"): 1.0,
        ("auto", "max_num_seqs"): 256.0,
        ("fixed", "gpus_per_replica"): 1.0,
        ("fixed", "replicas"): 1.0,
        ("fixed", "max_num_seqs"): 256.0,
        ("fixed", "slo_quantile"): 0.9,
        ("fixed", "slo_e2e_seconds"): 30.0,
    }
    # the autoscaler's own series of a variant that stops being autoscaled go; its spec stays while deployed
    metrics.desired_replicas.labels("llm", "auto").set(2)
    autoscaler._forget({("llm", "auto")})
    autoscaler._forget(set())
    assert {dict(k)["variant"] for k in spec_samples(metrics)} == {"auto", "fixed"}
    assert 'bakeoff_desired_replicas{namespace="llm",variant="auto"}' not in generate_latest(metrics.registry).decode()
    # a variant that is gone (deleted, or no longer placed) loses its series
    autoscaler.export_specs([fixed])
    assert {dict(k)["variant"] for k in spec_samples(metrics)} == {"fixed"}
    autoscaler.export_specs([])
    assert spec_samples(metrics) == {}
