"""`bakeoff_variant_spec`: what the operator exports of each variant for the rules, from the ModelVariant and
the autoscaler's policy, and that a changed variant leaves no stale series."""

from __future__ import annotations

from typing import Any

import pytest
from bakeoff_operator.api.modelvariant import ModelVariant
from bakeoff_operator.autoscaler import Autoscaler
from bakeoff_operator.autoscaling.decide import Decision, Limit, Policy, VariantLoad
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
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "bakeoff_variant_spec"]
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples}


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
    assert spec.values == {SpecField.GPUS_PER_REPLICA: 2.0, SpecField.MAX_NUM_SEQS: 128.0, **expected}


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


def test_the_autoscaler_exports_the_spec_with_its_decision() -> None:
    """`Autoscaler._export` sets the spec series from the policy it decided with and the variant's SLO."""
    metrics = OperatorMetrics()
    autoscaler = Autoscaler(Prometheus("http://127.0.0.1:9"), metrics)
    mv = model_variant(slo={"ttftMs": 200, "percentile": "p99"})
    policy = Policy(
        variant=mv.metadata.name, namespace="llm", gpu_class="h100", gpus_per_replica=4, min_replicas=1,
        max_replicas=4, hybrid=True, max_num_seqs=64,
    )  # fmt: skip
    decision = Decision(
        key="llm/llama-int4", variant="llama-int4", namespace="llm", current=1, wanted=2, desired=1,
        limit=Limit.INSUFFICIENT_GPU, reason="capped",
    )  # fmt: skip
    load = VariantLoad(waiting=0, running=3, output_tokens_per_s=100, replicas_reporting=1)
    autoscaler._export(decision, policy, load, (("NVIDIA-H100",), "nvidia.com/gpu", 3.0), mv)
    fields = {dict(k)["field"]: v for k, v in spec_samples(metrics).items()}
    assert fields == {"gpus_per_replica": 4.0, "max_num_seqs": 64.0, "slo_quantile": 0.99, "slo_ttft_seconds": 0.2}
    labels = dict(next(iter(spec_samples(metrics))))
    assert (labels["gpu_class"], labels["format"], labels["architecture"], labels["baseline"]) == (
        "h100",
        "int4",
        "hybrid",
        "",
    )
