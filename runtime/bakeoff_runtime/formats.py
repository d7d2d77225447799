"""Weight and activation formats of a variant, and how each one runs on a given GPU.

A format is data: bytes per weight, what stays 16-bit, the dtype the matrix products run in, and the
compute capability its kernels need. `resolve_execution` answers the question vLLM answers at load
time: on this GPU, does the format run natively, run as the weight-only fallback vLLM really uses,
or not at all (with the reason).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Format(StrEnum):
    """Weight/activation format of a variant (the quantization study's four)."""

    BF16 = "bf16"
    FP8 = "fp8"  # W8A8-FP: FP8 E4M3 weights per channel, dynamic per-token FP8 activations
    INT8 = "int8"  # W8A8-INT: INT8 weights (GPTQ/SmoothQuant), dynamic per-token INT8 activations
    INT4 = "int4"  # W4A16: INT4 weights, group size 128, 16-bit activations (Marlin / Machete)


class KVCacheDtype(StrEnum):
    """Element type of the attention KV cache (`--kv-cache-dtype`)."""

    AUTO = "auto"  # the model dtype: BF16
    FP8 = "fp8"  # FP8 E4M3, half the bytes per token


class ComputeDtype(StrEnum):
    """Element type of the tensor-core matrix products a format runs (the peak TFLOPS column)."""

    BF16 = "bf16"
    FP8 = "fp8"
    INT8 = "int8"


class ExecutionMode(StrEnum):
    NATIVE = "native"
    WEIGHT_ONLY_FALLBACK = "weight-only-fallback"
    UNSUPPORTED = "unsupported"


# INT4 W4A16 with group size 128 stores one 16-bit scale per 128 weights: 4 + 16/128 bits per weight.
INT4_GROUP_SIZE = 128
INT4_BYTES_PER_WEIGHT = (4 + 16 / INT4_GROUP_SIZE) / 8


class FormatSpec(BaseModel):
    """What a format costs in memory and needs from the GPU."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Format
    description: str
    weight_bytes: float = Field(gt=0, le=2, description="Bytes per quantized weight, scales included.")
    activation_bits: int = Field(description="Bits of the activations fed to the matrix products.")
    compute_dtype: ComputeDtype = Field(description="Tensor-core dtype of the matrix products, natively.")
    min_compute_capability: float = Field(description="Lowest compute capability with native kernels.")
    fallback_min_compute_capability: float | None = Field(
        default=None,
        description="Lowest compute capability where vLLM runs the format weight-only (16-bit compute).",
    )
    kernel: str = Field(description="vLLM kernel family used natively.")
    hopper_kernel: str | None = Field(default=None, description="Kernel used on Hopper (9.0) when it differs.")
    vllm_quantization: str | None = Field(
        description="`--quantization` for an online-quantized BF16 checkpoint; None when the checkpoint's "
        "quantization config (compressed-tensors) is detected by vLLM."
    )
    lm_head_bytes: float = Field(default=2.0, description="The LM head and embeddings stay 16-bit.")


FORMATS: dict[Format, FormatSpec] = {
    Format.BF16: FormatSpec(
        format=Format.BF16,
        description="BF16 weights and activations (the baseline)",
        weight_bytes=2.0,
        activation_bits=16,
        compute_dtype=ComputeDtype.BF16,
        min_compute_capability=8.0,
        kernel="cutlass/cublas bf16",
        vllm_quantization=None,
    ),
    Format.FP8: FormatSpec(
        format=Format.FP8,
        description="FP8 W8A8: per-channel FP8 weights, dynamic per-token FP8 activations",
        weight_bytes=1.0,
        activation_bits=8,
        compute_dtype=ComputeDtype.FP8,
        min_compute_capability=8.9,
        # vLLM runs FP8 checkpoints on Ampere as weight-only FP8 through the Marlin kernel.
        fallback_min_compute_capability=8.0,
        kernel="cutlass scaled_mm fp8",
        vllm_quantization="fp8",
    ),
    Format.INT8: FormatSpec(
        format=Format.INT8,
        description="INT8 W8A8: per-channel INT8 weights, dynamic per-token INT8 activations",
        weight_bytes=1.0,
        activation_bits=8,
        compute_dtype=ComputeDtype.INT8,
        min_compute_capability=8.0,
        kernel="cutlass scaled_mm int8",
        vllm_quantization=None,
    ),
    Format.INT4: FormatSpec(
        format=Format.INT4,
        description="INT4 W4A16: GPTQ INT4 weights with group size 128, 16-bit activations",
        weight_bytes=INT4_BYTES_PER_WEIGHT,
        activation_bits=16,
        compute_dtype=ComputeDtype.BF16,
        min_compute_capability=8.0,
        kernel="marlin",
        hopper_kernel="machete",
        vllm_quantization=None,
    ),
}

KV_CACHE_BYTES: dict[KVCacheDtype, float] = {KVCacheDtype.AUTO: 2.0, KVCacheDtype.FP8: 1.0}
# FP8 KV cache kernels need FP8 support in hardware for attention; vLLM accepts it from Ampere on
# (stored as FP8, upcast in the kernel), so it is a memory saving everywhere from 8.0.
KV_CACHE_FP8_MIN_COMPUTE_CAPABILITY = 8.0


class FormatExecution(BaseModel):
    """How a format runs on one GPU class: the answer vLLM gives at load time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Format
    mode: ExecutionMode
    compute_dtype: ComputeDtype
    kernel: str
    reason: str

    @property
    def runs(self) -> bool:
        return self.mode is not ExecutionMode.UNSUPPORTED


def resolve_execution(fmt: Format, compute_capability: float, gpu_name: str = "this GPU") -> FormatExecution:
    """Native, weight-only fallback, or unsupported (with the reason) for `fmt` on a GPU."""
    spec = FORMATS[fmt]
    if compute_capability >= spec.min_compute_capability:
        kernel = spec.hopper_kernel if spec.hopper_kernel and compute_capability >= 9.0 else spec.kernel
        return FormatExecution(
            format=fmt,
            mode=ExecutionMode.NATIVE,
            compute_dtype=spec.compute_dtype,
            kernel=kernel,
            reason=f"{fmt.value} runs natively on {gpu_name} (compute capability {compute_capability:g} "
            f">= {spec.min_compute_capability:g}) with {kernel} kernels",
        )
    fallback = spec.fallback_min_compute_capability
    if fallback is not None and compute_capability >= fallback:
        return FormatExecution(
            format=fmt,
            mode=ExecutionMode.WEIGHT_ONLY_FALLBACK,
            compute_dtype=ComputeDtype.BF16,
            kernel="marlin (weight-only)",
            reason=f"{fmt.value} needs compute capability >= {spec.min_compute_capability:g} for W8A8; "
            f"on {gpu_name} ({compute_capability:g}) vLLM runs it weight-only with Marlin kernels: "
            "the memory saving stays, the compute runs in 16-bit",
        )
    return FormatExecution(
        format=fmt,
        mode=ExecutionMode.UNSUPPORTED,
        compute_dtype=spec.compute_dtype,
        kernel="none",
        reason=f"{fmt.value} needs compute capability >= {spec.min_compute_capability:g}; {gpu_name} has "
        f"{compute_capability:g}: choose a newer GPU class or another format",
    )
