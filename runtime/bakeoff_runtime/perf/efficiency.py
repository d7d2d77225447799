"""The performance model's physical efficiency factors, and the matmul kernel family they are keyed by.

Every factor is shared by every model, GPU class and use case: per kernel family (BF16, W8A8,
Marlin, Machete), per phase (weight streaming vs. large-batch compute) and per kernel class;
`docs/performance-model.md` says where each value comes from. Nothing is tuned per model, GPU or
use case.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from bakeoff_runtime.formats import ExecutionMode, Format


class KernelFamily(StrEnum):
    """The matmul kernels a format runs on a GPU: what the efficiency factors are keyed by."""

    BF16 = "bf16"  # cuBLAS / CUTLASS 16-bit GEMM
    W8A8 = "w8a8"  # CUTLASS scaled_mm, FP8 or INT8 tensor cores
    MARLIN = "marlin"  # mixed-input weight-only GEMM (INT4 W4A16 before Hopper, FP8 weight-only fallback)
    MACHETE = "machete"  # Hopper mixed-input weight-only GEMM (INT4 W4A16 on compute capability 9.x)


def kernel_family(fmt: Format, compute_capability: float, mode: ExecutionMode) -> KernelFamily:
    if mode is ExecutionMode.WEIGHT_ONLY_FALLBACK:
        return KernelFamily.MARLIN
    if fmt is Format.BF16:
        return KernelFamily.BF16
    if fmt in (Format.FP8, Format.INT8):
        return KernelFamily.W8A8
    return KernelFamily.MACHETE if compute_capability >= 9.0 else KernelFamily.MARLIN


class EfficiencyFactors(BaseModel):
    """The model's physical efficiency factors; docs/performance-model.md gives each one's source.

    They are shared by every model, GPU class and use case: per kernel family (how well the format's
    GEMMs stream weights and use the tensor cores), per kernel class (attention, Mamba scan,
    all-reduce) and three fixed costs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight_bandwidth: dict[KernelFamily, float] = Field(
        default={
            KernelFamily.BF16: 0.75,
            KernelFamily.W8A8: 0.80,
            KernelFamily.MARLIN: 0.66,
            KernelFamily.MACHETE: 0.47,
        },
        description="Fraction of peak memory bandwidth a kernel family reaches streaming weights when the "
        "GEMMs are memory-bound (small batches). Mixed-input kernels pay for dequantization; Machete is "
        "built for large tiles and streams small batches worst.",
    )
    compute: dict[KernelFamily, float] = Field(
        default={
            KernelFamily.BF16: 0.70,
            KernelFamily.W8A8: 0.66,
            KernelFamily.MARLIN: 0.60,
            KernelFamily.MACHETE: 0.70,
        },
        description="Fraction of the compute dtype's dense peak the GEMMs reach at large M (weight-only "
        "kernels: of the 16-bit peak). Machete matches FP16 GEMMs once compute-bound on Hopper; Marlin, "
        "built for medium batches on Ampere/Ada, falls behind cuBLAS FP16 at large M.",
    )
    roofline_sharpness: float = Field(
        default=2.0,
        ge=1,
        le=64,
        description="How sharply a GEMM turns from memory- to compute-bound: time = (t_mem^n + t_compute^n)^(1/n). "
        "Near the ridge no kernel overlaps weight loads, dequantization and MMAs perfectly (n = 2: sqrt(2) "
        "of the roofline there); far from it, one bound rules.",
    )
    kv_bandwidth: float = Field(
        default=0.83, gt=0, le=1, description="Fraction of bandwidth paged attention and Mamba state updates reach."
    )
    attention_compute: float = Field(
        default=0.50, gt=0, le=1, description="Fraction of the 16-bit peak flash attention reaches in prefill."
    )
    scan_compute: float = Field(
        default=0.03,
        gt=0,
        le=1,
        description="Fraction of the 16-bit tensor peak the Mamba selective scan reaches (CUDA cores, fp32).",
    )
    interconnect: float = Field(default=0.70, gt=0, le=1, description="Fraction of link bandwidth all-reduce reaches.")
    allreduce_latency_s: float = Field(default=5e-6, ge=0, le=1e-3, description="Fixed cost of one all-reduce.")
    layer_latency_s: float = Field(
        default=5e-6, ge=0, le=1e-3, description="Launch gaps per decoder block per step (CUDA graphs)."
    )
    step_overhead_s: float = Field(
        default=1.0e-3, ge=0, le=0.1, description="Scheduling, input preparation and sampling per engine step."
    )
    request_overhead_s: float = Field(
        default=5e-3, ge=0, le=1, description="HTTP, tokenisation and detokenisation per request."
    )


DEFAULT_EFFICIENCY = EfficiencyFactors()
