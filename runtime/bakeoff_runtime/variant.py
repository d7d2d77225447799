"""A variant resolved onto one GPU class: the unit that memory fit, vLLM arguments and the
performance model all take.

A `Variant` is what one vLLM server would run: an architecture in a format, on `tensor_parallel`
GPUs of one class, with the serving knobs vLLM takes. It is frozen: derive changed copies with
`model_copy(update=...)`; `model_dump_json()` is its stable key.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bakeoff_runtime.architectures import Architecture, ArchitectureKind, MambaCacheDtype
from bakeoff_runtime.formats import (
    FORMATS,
    ExecutionMode,
    Format,
    FormatExecution,
    KVCacheDtype,
    resolve_execution,
)
from bakeoff_runtime.gpus import GPUSpec

MAX_TENSOR_PARALLEL = 64
MAX_PIPELINE_PARALLEL = 64
_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


class Variant(BaseModel):
    """One model in one format on one GPU class, with vLLM's serving knobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=_NAME_PATTERN, max_length=63, description="Variant id, e.g. `llama-3.1-70b-fp8` (DNS label)."
    )
    served_model_name: str = Field(
        min_length=1, max_length=253, description="Model name clients send (`--served-model-name`)."
    )
    model_source: str = Field(
        default="",
        max_length=1024,
        description="Checkpoint vLLM loads (`--model`): a Hugging Face repo id or a local path; empty means "
        "the served model name.",
    )
    model_revision: str | None = Field(
        default=None,
        max_length=128,
        pattern=r"^[^\s]+$",
        description="Hub revision (branch, tag or commit) of `model_source` (`--revision`); None: the default.",
    )
    architecture: Architecture = Field(description="Shapes of the model.")
    format: Format = Field(description="Weight/activation format of the checkpoint.")
    online_quantization: bool = Field(
        default=False,
        description="The checkpoint is BF16 and vLLM quantizes it while loading (`--quantization`); only for "
        "formats vLLM can quantize online (FP8).",
    )
    kv_cache_dtype: KVCacheDtype = Field(default=KVCacheDtype.AUTO, description="KV cache element type.")
    mamba_ssm_cache_dtype: MambaCacheDtype | None = Field(
        default=None,
        description="SSM state element type for hybrids; None takes the architecture's recommendation.",
    )
    gpu: GPUSpec = Field(description="GPU class every tensor-parallel rank runs on.")
    tensor_parallel: int = Field(
        default=1, ge=1, le=MAX_TENSOR_PARALLEL, description="GPUs each layer is split across (within one node)."
    )
    pipeline_parallel: int = Field(
        default=1,
        ge=1,
        le=MAX_PIPELINE_PARALLEL,
        description="Pipeline stages, each a contiguous slice of the layers on its own tensor-parallel group; "
        "vLLM places stages on separate nodes, so a variant with more than one is a multi-node variant.",
    )
    max_model_len: int = Field(default=8192, ge=16, le=10_485_760, description="Longest prompt + output, tokens.")
    max_num_seqs: int = Field(default=256, ge=1, le=65536, description="Most sequences in one engine step.")
    max_num_batched_tokens: int = Field(
        default=8192, ge=16, le=1_048_576, description="Chunked-prefill token budget of one engine step."
    )
    gpu_memory_utilization: float = Field(
        default=0.90, gt=0.05, le=0.99, description="Fraction of each GPU's memory vLLM may use."
    )
    block_size: int = Field(default=16, ge=1, le=1024, description="KV cache block, tokens.")
    enable_prefix_caching: bool | None = Field(
        default=None, description="None applies the default rule for the architecture (see vllm_args)."
    )
    enable_chunked_prefill: bool = Field(
        default=True, description="Mix prompt chunks into decode steps (vLLM V1 always does)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Variant:
        tp = self.tensor_parallel
        if tp & (tp - 1):
            raise ValueError(f"tensor_parallel must be a power of two (1, 2, 4, 8, ...), got {tp}")
        heads = self.architecture.num_attention_heads
        if heads % tp:
            raise ValueError(
                f"tensor_parallel {tp} must divide the {heads} attention heads of {self.architecture.name}; "
                f"choose one of {', '.join(str(t) for t in valid_tensor_parallel_sizes(self.architecture))}"
            )
        if self.pipeline_parallel > self.architecture.num_layers:
            raise ValueError(
                f"pipeline_parallel {self.pipeline_parallel} exceeds the {self.architecture.num_layers} layers of "
                f"{self.architecture.name}: every stage needs at least one layer"
            )
        if self.online_quantization and FORMATS[self.format].vllm_quantization is None:
            online = [f.value for f, spec in FORMATS.items() if spec.vllm_quantization]
            raise ValueError(
                f"online_quantization: vLLM cannot quantize a checkpoint to {self.format.value} while loading "
                f"(only {', '.join(online)}); use a pre-quantized {self.format.value} checkpoint instead"
            )
        kv_heads = self.architecture.num_kv_heads
        if self.architecture.attention_layers and kv_heads % tp and tp % kv_heads:
            raise ValueError(
                f"tensor_parallel {tp} must divide the {kv_heads} KV heads of {self.architecture.name} or be a "
                "multiple of them (vLLM then replicates each KV head)"
            )
        if not self.enable_chunked_prefill and self.max_num_batched_tokens < self.max_model_len:
            raise ValueError(
                f"max_num_batched_tokens ({self.max_num_batched_tokens}) must be at least max_model_len "
                f"({self.max_model_len}) without chunked prefill; raise it or enable chunked prefill"
            )
        if self.max_num_batched_tokens < self.max_num_seqs and self.enable_chunked_prefill:
            # vLLM rejects this too: every running sequence needs at least one token of budget per step.
            raise ValueError(
                f"max_num_batched_tokens ({self.max_num_batched_tokens}) must be at least max_num_seqs "
                f"({self.max_num_seqs})"
            )
        return self

    @property
    def execution(self) -> FormatExecution:
        """How the format runs on this GPU class: natively, weight-only, or not at all."""
        return resolve_execution(self.format, self.gpu.compute_capability, self.gpu.display_name or self.gpu.name)

    @property
    def is_hybrid(self) -> bool:
        return self.architecture.kind is ArchitectureKind.HYBRID

    @property
    def weight_only_fallback(self) -> bool:
        return self.execution.mode is ExecutionMode.WEIGHT_ONLY_FALLBACK

    @property
    def model(self) -> str:
        return self.model_source or self.served_model_name

    @property
    def resolved_mamba_ssm_cache_dtype(self) -> MambaCacheDtype:
        return self.mamba_ssm_cache_dtype or self.architecture.mamba_ssm_cache_dtype

    @property
    def num_gpus(self) -> int:
        """GPUs per replica: tensor-parallel size x pipeline stages."""
        return self.tensor_parallel * self.pipeline_parallel

    @property
    def multi_node(self) -> bool:
        """More than one pipeline stage: vLLM runs the stages on separate nodes (a Ray cluster, or a
        leader/worker group in KServe)."""
        return self.pipeline_parallel > 1

    def hourly_price(self, price_per_gpu_hour: float | None = None, spot: bool = False) -> float:
        """USD per hour for the whole replica (all its GPUs)."""
        per_gpu = self.gpu.hourly_price(spot) if price_per_gpu_hour is None else price_per_gpu_hour
        return per_gpu * self.num_gpus


def valid_tensor_parallel_sizes(arch: Architecture, limit: int = MAX_TENSOR_PARALLEL) -> list[int]:
    """Powers of two that divide the attention heads and divide (or replicate) the KV heads evenly."""
    sizes = []
    tp = 1
    while tp <= limit:
        kv_ok = not arch.attention_layers or arch.num_kv_heads % tp == 0 or tp % arch.num_kv_heads == 0
        if arch.num_attention_heads % tp == 0 and kv_ok:
            sizes.append(tp)
        tp *= 2
    return sizes


def default_variant_name(arch: Architecture, fmt: Format) -> str:
    return f"{arch.name}-{fmt.value}"


def slug(text: str) -> str:
    """A DNS-label-safe variant id from free text."""
    out = re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-.")
    return out[:63].strip("-.") or "variant"


def make_variant(
    arch: Architecture,
    fmt: Format,
    gpu: GPUSpec,
    tensor_parallel: int = 1,
    **knobs: object,
) -> Variant:
    """A variant with the default name and served name for `arch` in `fmt`."""
    name = default_variant_name(arch, fmt)
    fields: dict[str, object] = {
        "name": slug(name),
        "served_model_name": name,
        "architecture": arch,
        "format": fmt,
        "gpu": gpu,
        "tensor_parallel": tensor_parallel,
    }
    fields.update(knobs)
    return Variant.model_validate(fields)
