"""`bakeoff_variant_spec`: what the operator says of one variant so that PromQL can price and judge it. Pure.

vLLM's metrics say how busy a replica is, not what it costs or what it promised. The cost per 1M
tokens needs the GPUs one replica holds, the replicas the variant asks for (`spec.replicas`, which the
autoscaler writes for an autoscaled one) and its GPU class (whose price is
`bakeoff_gpu_price_per_hour_usd{gpu_class}`); the hybrids' saturation needs the engine's sequence
limit; the SLO alerts need the variant's SLO. The operator exports them as one gauge family, one
series per `field`, each labelled with the variant's baseline, GPU class, format and architecture:

    bakeoff_variant_spec{namespace, variant, baseline, gpu_class, format, architecture, field}

Numbers are sample values (PromQL cannot compute with label values); the labels are what a query
joins or groups on. Latencies are in seconds, as vLLM's histograms are.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from bakeoff_operator.api.common import SLO
from bakeoff_operator.api.modelvariant import ModelVariant

SPEC_METRIC: Final = "bakeoff_variant_spec"
SPEC_LABELS: Final = ("baseline", "gpu_class", "format", "architecture")


class SpecField(StrEnum):
    """The `field` label of `bakeoff_variant_spec`."""

    GPUS_PER_REPLICA = "gpus_per_replica"
    REPLICAS = "replicas"
    MAX_NUM_SEQS = "max_num_seqs"
    SLO_QUANTILE = "slo_quantile"
    SLO_TTFT_SECONDS = "slo_ttft_seconds"
    SLO_ITL_SECONDS = "slo_itl_seconds"
    SLO_E2E_SECONDS = "slo_e2e_seconds"


class VariantSpec(BaseModel):
    """One variant's `bakeoff_variant_spec` series: its labels and a value per field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str
    variant: str
    baseline: str = Field(default="", description="The variant it is compared with; empty: none.")
    gpu_class: str
    format: str
    architecture: str = Field(description="dense or hybrid.")
    values: dict[SpecField, float]

    @property
    def labels(self) -> tuple[str, str, str, str]:
        """Label values in the order of `SPEC_LABELS`."""
        return (self.baseline, self.gpu_class, self.format, self.architecture)

    @property
    def samples(self) -> dict[str, float]:
        """field -> value, the field as the label spells it."""
        return {f.value: v for f, v in self.values.items()}


def slo_fields(slo: SLO | None) -> dict[SpecField, float]:
    """The SLO as fields: its percentile as a quantile (p90 -> 0.9) and each bound that is set, in seconds."""
    if slo is None:
        return {}
    out = {SpecField.SLO_QUANTILE: slo.percentile.percent / 100}
    for f, ms in (
        (SpecField.SLO_TTFT_SECONDS, slo.ttft_ms),
        (SpecField.SLO_ITL_SECONDS, slo.itl_ms),
        (SpecField.SLO_E2E_SECONDS, slo.e2e_ms),
    ):
        if ms is not None:
            out[f] = ms / 1000
    return out


def variant_spec(
    mv: ModelVariant, *, gpu_class: str, gpus_per_replica: int, max_num_seqs: int, hybrid: bool
) -> VariantSpec:
    """The series of a placed variant; GPU class, GPUs and sequence limit as the autoscaler resolved them."""
    return VariantSpec(
        namespace=mv.metadata.namespace or "",
        variant=mv.metadata.name,
        baseline=mv.spec.baseline or "",
        gpu_class=gpu_class,
        format=mv.spec.format.value,
        architecture="hybrid" if hybrid else "dense",
        values={
            SpecField.GPUS_PER_REPLICA: float(gpus_per_replica),
            SpecField.REPLICAS: float(mv.spec.desired_replicas),
            SpecField.MAX_NUM_SEQS: float(max_num_seqs),
            **slo_fields(mv.spec.slo),
        },
    )
