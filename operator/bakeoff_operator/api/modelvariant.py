"""`ModelVariant` (namespaced): one model in one format on one GPU class, served by vLLM on KServe.

Cross-field rules live twice on purpose: as CEL `x-kubernetes-validations` (the API server rejects
a bad object at `kubectl apply`) and as pydantic validators with the same messages (local mode and
the operator reject the same objects without an API server). `tests/api` checks both.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from bakeoff_runtime.architectures import Architecture, ArchitectureKind, MambaCacheDtype, builtin_architectures
from bakeoff_runtime.formats import ExecutionMode, Format, KVCacheDtype, resolve_execution
from bakeoff_runtime.gpus import default_catalog
from bakeoff_runtime.vllm_args import MANAGED_FLAGS
from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from bakeoff_operator.api.common import (
    API_VERSION,
    DNS_1035_LABEL,
    DNS_LABEL,
    MAX_DESCRIPTION,
    MAX_NAME,
    MAX_REPLICAS,
    RFC3339,
    SLO,
    ApiModel,
    Condition,
    Duration,
    ObjectMeta,
    cel,
    cel_rules,
    conditions_field,
)

AUTO: Final = "auto"

BUILTIN_ARCHITECTURE_IDS: Final[tuple[str, ...]] = tuple(sorted(builtin_architectures()))
HYBRID_ARCHITECTURE_IDS: Final[tuple[str, ...]] = tuple(
    sorted(n for n, a in builtin_architectures().items() if a.kind is ArchitectureKind.HYBRID)
)
# GPU classes of the default catalog on which FP8 W8A8 does not run natively (compute capability
# below 8.9): vLLM falls back to weight-only FP8, which keeps the memory saving but not the speed.
# CEL cannot look up GPUClass objects, so the API server checks these catalog names; for any other
# GPU class the operator resolves the class and reports `Fits=False, reason=FormatUnsupported`.
FP8_FALLBACK_GPU_CLASSES: Final[tuple[str, ...]] = tuple(
    sorted(
        g.name
        for g in default_catalog().gpus
        if resolve_execution(Format.FP8, g.compute_capability).mode is not ExecutionMode.NATIVE
    )
)
TENSOR_PARALLEL_SIZES: Final[tuple[int, ...]] = (1, 2, 4, 8, 16, 32, 64)
# Where each variant field that the runtime renders into a vLLM flag comes from in a ModelVariant.
VARIANT_FIELD_SOURCES: Final[dict[str, str]] = {
    "enable_chunked_prefill": "the operator (vLLM V1 always chunks prefills)",
    "enable_prefix_caching": "spec.serving.enablePrefixCaching",
    "format": "spec.format",
    "gpu_memory_utilization": "spec.serving.gpuMemoryUtilization",
    "kv_cache_dtype": "spec.kvCacheDtype",
    "listener": "the operator (it owns the listener)",
    "mamba_ssm_cache_dtype": "spec.serving.mambaSSMCacheDtype",
    "max_model_len": "spec.serving.maxModelLen",
    "max_num_batched_tokens": "spec.serving.maxNumBatchedTokens",
    "max_num_seqs": "spec.serving.maxNumSeqs",
    "model_revision": "spec.model.revision",
    "model_source": "spec.model.source",
    "online_quantization": "spec.format",
    "pipeline_parallel": "the operator (pipeline stages across nodes, from the GPU class's GPUs per node)",
    "served_model_name": "spec.model.servedName",
    "tensor_parallel": "spec.tensorParallelSize",
}
# vLLM flags Bakeoff derives from spec fields (the runtime's own list, `MANAGED_FLAGS`); setting them in
# extraArgs would contradict the spec.
RESERVED_VLLM_FLAGS: Final[dict[str, str]] = {
    flag: VARIANT_FIELD_SOURCES[field] for flag, field in sorted(MANAGED_FLAGS.items())
}
# Validation context key: a collection of vLLM flag names (e.g. `--enable-prefix-caching`); when
# given, every flag in `serving.extraArgs` must be one of them.
KNOWN_VLLM_FLAGS_CONTEXT: Final = "known_vllm_flags"


def _cel_list(items: Collection[str] | Collection[int]) -> str:
    return "[" + ", ".join(f"'{i}'" if isinstance(i, str) else str(i) for i in items) + "]"


# --- model source -------------------------------------------------------------------------------------
MODEL_SOURCE_PATTERN: Final = r"^(hf|pvc|s3|gs|oci|file)://[^\s]+$"


class ModelSource(ApiModel):
    """Where the weights come from and the name clients use."""

    source: str = Field(
        max_length=2048,
        pattern=MODEL_SOURCE_PATTERN,
        description="Weights location: `hf://org/name`, `pvc://claim/path`, `s3://bucket/path`, `gs://...`, "
        "`oci://...` or `file:///path` (local mode).",
    )
    served_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        pattern=r"^[^\s]+$",
        description="Model name in the OpenAI API (`--served-model-name`); defaults to the variant's name.",
    )
    revision: str | None = Field(
        default=None, max_length=128, pattern=r"^[^\s]+$", description="Hugging Face revision (branch, tag or commit)."
    )


# --- architecture -------------------------------------------------------------------------------------
_SHAPE_FIELDS: Final = (
    "numLayers",
    "hiddenSize",
    "numAttentionHeads",
    "numKVHeads",
    "headDim",
    "intermediateSize",
    "vocabSize",
)
_OPTIONAL_SHAPE_FIELDS: Final = (
    "attentionLayers",
    "mambaLayers",
    "mlpLayers",
    "stateSize",
    "mambaInnerSize",
    "convWidth",
    "mambaGroups",
    "tieWordEmbeddings",
)
_HAS_ANY_SHAPE = " || ".join(f"has(self.{f})" for f in (*_SHAPE_FIELDS, *_OPTIONAL_SHAPE_FIELDS))
_HAS_ALL_SHAPES = " && ".join(f"has(self.{f})" for f in _SHAPE_FIELDS)

ARCHITECTURE_RULES: Final = (
    cel(
        f"has(self.catalog) ? !({_HAS_ANY_SHAPE}) : ({_HAS_ALL_SHAPES})",
        "give either catalog (a built-in architecture id) or the inline shapes numLayers, hiddenSize, "
        "numAttentionHeads, numKVHeads, headDim, intermediateSize and vocabSize, not both",
    ),
    cel(
        "!has(self.kind) || self.kind != 'hybrid' || has(self.catalog) || "
        "(has(self.mambaLayers) && self.mambaLayers > 0)",
        "a hybrid architecture needs mambaLayers > 0",
        ".mambaLayers",
    ),
    cel(
        "!has(self.kind) || self.kind != 'dense' || !has(self.mambaLayers) || self.mambaLayers == 0",
        "a dense architecture has no Mamba layers; set kind: hybrid or remove mambaLayers",
        ".mambaLayers",
    ),
    cel(
        "!has(self.mambaLayers) || self.mambaLayers == 0 || "
        "(has(self.stateSize) && has(self.mambaInnerSize) && has(self.convWidth))",
        "Mamba layers need stateSize, mambaInnerSize and convWidth",
    ),
    cel(
        "!has(self.catalog) || !has(self.kind) || "
        f"(self.kind == 'hybrid') == (self.catalog in {_cel_list(HYBRID_ARCHITECTURE_IDS)})",
        "kind contradicts the catalog architecture; remove kind (the catalog knows it)",
        ".kind",
    ),
    cel(
        "!has(self.numLayers) || ((has(self.attentionLayers) ? self.attentionLayers : self.numLayers - "
        "(has(self.mambaLayers) ? self.mambaLayers : 0)) + (has(self.mambaLayers) ? self.mambaLayers : 0) >= 1 "
        "&& (has(self.mambaLayers) ? self.mambaLayers : 0) <= self.numLayers "
        "&& (!has(self.attentionLayers) || self.attentionLayers <= self.numLayers))",
        "attentionLayers and mambaLayers must each be at most numLayers, and together at least 1",
    ),
)


class ArchitectureSpec(ApiModel):
    """The model's shapes: a built-in catalog id, or inline shapes (dense, or a hybrid with Mamba layers).

    Inline hybrids follow Apriel-H1: each of `numLayers` blocks has an attention or a Mamba mixer and
    an MLP, so `attentionLayers` defaults to `numLayers - mambaLayers`.
    """

    model_config = ConfigDict(json_schema_extra=cel_rules(*ARCHITECTURE_RULES))

    catalog: str | None = Field(
        default=None,
        max_length=MAX_NAME,
        description="A built-in architecture id; its shapes are known (omit the inline fields).",
        json_schema_extra={"enum": list(BUILTIN_ARCHITECTURE_IDS)},
    )
    kind: ArchitectureKind | None = Field(
        default=None, description="dense, or hybrid (attention and Mamba mixers); derived when omitted."
    )
    num_layers: int | None = Field(default=None, ge=1, le=1024, description="Decoder blocks.")
    attention_layers: int | None = Field(
        default=None, ge=0, le=1024, description="Blocks with an attention mixer (default numLayers - mambaLayers)."
    )
    mamba_layers: int | None = Field(default=None, ge=0, le=1024, description="Blocks with a Mamba mixer.")
    mlp_layers: int | None = Field(default=None, ge=0, le=1024, description="Blocks with an MLP (default numLayers).")
    hidden_size: int | None = Field(default=None, ge=1, le=65536, description="Model width.")
    num_attention_heads: int | None = Field(default=None, ge=1, le=1024, description="Query heads.")
    num_kv_heads: int | None = Field(
        default=None, ge=1, le=1024, alias="numKVHeads", description="Key/value heads (grouped-query attention)."
    )
    head_dim: int | None = Field(default=None, ge=1, le=1024, description="Size of one attention head.")
    intermediate_size: int | None = Field(default=None, ge=1, le=262144, description="Gated MLP inner size.")
    vocab_size: int | None = Field(default=None, ge=1, le=1_048_576, description="Vocabulary size.")
    tie_word_embeddings: bool | None = Field(default=None, description="The LM head shares the embedding matrix.")
    state_size: int | None = Field(default=None, ge=1, le=1024, description="Mamba SSM state size per channel.")
    mamba_inner_size: int | None = Field(default=None, ge=1, le=131072, description="Mamba inner (expanded) size.")
    conv_width: int | None = Field(default=None, ge=1, le=16, description="Mamba causal convolution width.")
    mamba_groups: int | None = Field(default=None, ge=1, le=1024, description="Groups sharing B/C (Mamba-2).")

    @field_validator("catalog")
    @classmethod
    def _known_catalog(cls, value: str | None) -> str | None:
        if value is not None and value not in BUILTIN_ARCHITECTURE_IDS:
            close = difflib.get_close_matches(value, BUILTIN_ARCHITECTURE_IDS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(
                f"unknown architecture {value!r}; {hint}use one of {', '.join(BUILTIN_ARCHITECTURE_IDS)} "
                "or give the inline shapes"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ArchitectureSpec:
        shapes = {f: getattr(self, _py(f)) for f in (*_SHAPE_FIELDS, *_OPTIONAL_SHAPE_FIELDS)}
        given = sorted(f for f, v in shapes.items() if v is not None)
        if self.catalog is not None:
            if given:
                raise ValueError(
                    f"give either catalog or inline shapes, not both; remove {', '.join(given)} (catalog "
                    f"{self.catalog!r} knows its shapes)"
                )
            hybrid = self.catalog in HYBRID_ARCHITECTURE_IDS
            if self.kind is not None and (self.kind is ArchitectureKind.HYBRID) != hybrid:
                actual = "hybrid" if hybrid else "dense"
                raise ValueError(f"kind {self.kind.value!r} contradicts catalog {self.catalog!r}, which is {actual}")
            return self
        missing = [f for f in _SHAPE_FIELDS if shapes[f] is None]
        if missing:
            raise ValueError(
                f"give catalog (one of {', '.join(BUILTIN_ARCHITECTURE_IDS)}) or the inline shapes; missing "
                f"{', '.join(missing)}"
            )
        mamba = self.mamba_layers or 0
        if self.kind is ArchitectureKind.HYBRID and mamba == 0:
            raise ValueError("a hybrid architecture needs mambaLayers > 0")
        if self.kind is ArchitectureKind.DENSE and mamba > 0:
            raise ValueError("a dense architecture has no Mamba layers; set kind: hybrid or remove mambaLayers")
        if mamba and not (self.state_size and self.mamba_inner_size and self.conv_width):
            raise ValueError("Mamba layers need stateSize, mambaInnerSize and convWidth")
        self.to_architecture("inline")  # the runtime's own shape rules (e.g. heads divisible by KV heads)
        return self

    def to_architecture(self, name: str) -> Architecture:
        """The runtime's architecture: the catalog entry, or one built from the inline shapes."""
        if self.catalog is not None:
            return builtin_architectures()[self.catalog]
        if self.num_layers is None or self.hidden_size is None:
            raise ValueError("inline architecture needs numLayers and hiddenSize")
        mamba = self.mamba_layers or 0
        return Architecture(
            name=_slug(name),
            hf_architecture="LlamaForCausalLM" if mamba == 0 else "AprielHybridSSMForCausalLM",
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            attention_layers=self.attention_layers if self.attention_layers is not None else self.num_layers - mamba,
            mamba_layers=mamba,
            mlp_layers=self.mlp_layers if self.mlp_layers is not None else self.num_layers,
            num_attention_heads=self.num_attention_heads or 1,
            num_kv_heads=self.num_kv_heads or 1,
            head_dim=self.head_dim or 1,
            intermediate_size=self.intermediate_size or 1,
            vocab_size=self.vocab_size or 1,
            tie_word_embeddings=bool(self.tie_word_embeddings),
            mamba_d_inner=self.mamba_inner_size or 0,
            mamba_d_state=self.state_size or 0,
            mamba_d_conv=self.conv_width or 0,
            mamba_n_groups=self.mamba_groups or 1,
            source="ModelVariant spec.architecture",
        )

    @property
    def resolved_kind(self) -> ArchitectureKind:
        if self.kind is not None:
            return self.kind
        if self.catalog is not None:
            return builtin_architectures()[self.catalog].kind
        return ArchitectureKind.HYBRID if self.mamba_layers else ArchitectureKind.DENSE


def _py(camel: str) -> str:
    if camel == "numKVHeads":
        return "num_kv_heads"
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), camel)


def _slug(name: str) -> str:
    out = re.sub(r"[^a-z0-9.-]+", "-", name.lower()).strip("-.")
    return out[:MAX_NAME].strip("-.") or "model"


# --- serving ------------------------------------------------------------------------------------------
ExtraArg = Annotated[str, Field(min_length=1, max_length=256)]
_RESERVED_PATTERN = "^(" + "|".join(RESERVED_VLLM_FLAGS) + ")(=.*)?$"  # flags are [-a-z]: no escaping


class Serving(ApiModel):
    """vLLM serving knobs that are not derived from the format, GPU class or architecture."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                f"!has(self.extraArgs) || self.extraArgs.all(a, !a.matches('{_RESERVED_PATTERN}'))",
                "extraArgs must not set flags Bakeoff derives from the spec ("
                + ", ".join(RESERVED_VLLM_FLAGS)
                + "); set the spec field instead",
                ".extraArgs",
            )
        )
    )

    image: str | None = Field(
        default=None,
        max_length=512,
        pattern=r"^[^\s]+$",
        description="vLLM container image; defaults to the operator's configured image.",
    )
    max_model_len: int | None = Field(
        default=None, ge=16, le=1_048_576, description="Longest context (prompt + output tokens) served."
    )
    max_num_seqs: int | None = Field(default=None, ge=1, le=4096, description="Most sequences batched together.")
    max_num_batched_tokens: int | None = Field(
        default=None,
        ge=16,
        le=1_048_576,
        description="Token budget of one engine step (chunked prefill); default: maxModelLen between 8192 and 16384.",
    )
    gpu_memory_utilization: float = Field(
        default=0.9, ge=0.1, le=0.99, description="Fraction of GPU memory vLLM may use (weights, cache, activations)."
    )
    enable_prefix_caching: bool | None = Field(
        default=None,
        description="Reuse the KV cache of shared prompt prefixes; default: on for dense models, off for hybrids "
        "(their Mamba state is cached only at block-aligned checkpoints).",
    )
    mamba_ssm_cache_dtype: MambaCacheDtype | None = Field(
        default=None,
        alias="mambaSSMCacheDtype",
        description="Element type of the Mamba SSM state for hybrids; default: the architecture's recommendation.",
    )
    extra_args: list[ExtraArg] = Field(
        default_factory=list,
        max_length=64,
        description="Further vLLM arguments, e.g. `--enable-prefix-caching`; checked against vLLM's known flags.",
    )

    @field_validator("extra_args")
    @classmethod
    def _check_extra_args(cls, args: list[str], info: ValidationInfo) -> list[str]:
        known: Collection[str] | None = (info.context or {}).get(KNOWN_VLLM_FLAGS_CONTEXT)
        for arg in args:
            if not arg.startswith("--"):
                continue  # the value of the flag before it
            flag = arg.split("=", 1)[0]
            if flag in RESERVED_VLLM_FLAGS:
                raise ValueError(f"{flag} is set by Bakeoff from {RESERVED_VLLM_FLAGS[flag]}; set that field instead")
            if known is not None and flag not in known:
                close = difflib.get_close_matches(flag, list(known), n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                raise ValueError(f"{flag} is not a vLLM flag{hint}")
        return args


# --- autoscaling --------------------------------------------------------------------------------------
class AutoscalingTargets(ApiModel):
    """Per-replica saturation targets; the autoscaler adds replicas when any is exceeded."""

    queue_depth: float | None = Field(
        default=None, gt=0, le=10_000, description="Waiting requests per replica (`vllm:num_requests_waiting`)."
    )
    kv_cache_usage: float | None = Field(
        default=None, gt=0, le=1, description="KV-cache usage fraction per replica (`vllm:kv_cache_usage_perc`)."
    )
    tokens_per_second_per_replica: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Output token rate per replica as a fraction of the replica's calibrated capacity under the "
        "SLO (0.8: add a replica above 80% of what one sustains).",
    )


class Autoscaling(ApiModel):
    """Replica bounds and targets; the operator's autoscaler writes `spec.replicas` within them."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            {
                "rule": "self.minReplicas <= self.maxReplicas",
                "message": "minReplicas must not exceed maxReplicas",
                "fieldPath": ".minReplicas",
            },
            cel(
                "!self.scaleToZero || self.minReplicas == 0",
                "scaleToZero needs minReplicas: 0",
                ".minReplicas",
            ),
            cel(
                "self.minReplicas > 0 || self.scaleToZero",
                "minReplicas: 0 needs scaleToZero: true",
                ".scaleToZero",
            ),
        )
    )

    min_replicas: int = Field(default=1, ge=0, le=MAX_REPLICAS, description="Fewest replicas (0 with scaleToZero).")
    max_replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS, description="Most replicas.")
    scale_to_zero: bool = Field(default=False, description="Remove every replica when idle (needs minReplicas: 0).")
    scale_down_delay: Duration = Field(default="5m", description="Idle time before a replica is removed.")
    targets: AutoscalingTargets = Field(
        default_factory=AutoscalingTargets, description="Saturation targets per replica."
    )

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas ({self.min_replicas}) must not exceed maxReplicas ({self.max_replicas})")
        if self.scale_to_zero and self.min_replicas != 0:
            raise ValueError("scaleToZero needs minReplicas: 0")
        if self.min_replicas == 0 and not self.scale_to_zero:
            raise ValueError("minReplicas: 0 needs scaleToZero: true")
        return self


# --- accuracy -----------------------------------------------------------------------------------------
class Accuracy(ApiModel):
    """Measured accuracy against the baseline variant."""

    recovery: float = Field(
        ge=0, le=1.5, description="Score as a fraction of the baseline's score (0.994 = 99.4% recovered)."
    )
    source: str = Field(
        default="", max_length=MAX_DESCRIPTION, description="Where the figure comes from (paper, eval run)."
    )


# --- the engine ---------------------------------------------------------------------------------------
class Engine(StrEnum):
    """What serves a variant: real vLLM, or Bakeoff's vLLM-compatible simulator (no GPU needed)."""

    VLLM = "vllm"
    SIMULATOR = "simulator"


# --- the variant --------------------------------------------------------------------------------------
TensorParallelSize = int | Literal["auto"]
_TP_RULE = f"type(self) == string ? self == 'auto' : self in {_cel_list(TENSOR_PARALLEL_SIZES)}"


class ModelVariantSpec(ApiModel):
    """One model in one format on one GPU class, with its serving, autoscaling, SLO and accuracy."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                f"self.format != 'fp8' || !(self.gpuClass in {_cel_list(FP8_FALLBACK_GPU_CLASSES)}) "
                "|| self.allowWeightOnlyFallback",
                "fp8 (W8A8) needs compute capability >= 8.9; on "
                + ", ".join(FP8_FALLBACK_GPU_CLASSES)
                + " vLLM runs it weight-only: choose another gpuClass or format, or set allowWeightOnlyFallback: true",
                ".gpuClass",
            ),
            cel(
                "!has(self.replicas) || !has(self.autoscaling) || "
                "(self.replicas >= self.autoscaling.minReplicas && self.replicas <= self.autoscaling.maxReplicas)",
                "replicas must lie within autoscaling.minReplicas and autoscaling.maxReplicas",
                ".replicas",
            ),
        )
    )

    model: ModelSource = Field(description="Weights location and served name.")
    architecture: ArchitectureSpec = Field(description="Shapes: a built-in id or inline (dense or hybrid).")
    baseline: str | None = Field(
        default=None,
        max_length=MAX_NAME,
        pattern=DNS_1035_LABEL,
        description="Name of the ModelVariant (same namespace) this one is compared with, usually the BF16 one.",
    )
    format: Format = Field(description="Weight/activation format: bf16, fp8 (W8A8), int8 (W8A8) or int4 (W4A16).")
    kv_cache_dtype: KVCacheDtype = Field(
        default=KVCacheDtype.AUTO, description="KV-cache element type: auto (the model dtype) or fp8."
    )
    gpu_class: str = Field(
        default=AUTO,
        max_length=MAX_NAME,
        pattern=DNS_LABEL,
        description="GPUClass name, or `auto` to let the planner pick the cheapest class that fits.",
    )
    allow_weight_only_fallback: bool = Field(
        default=False,
        description="Accept a GPU class where the format runs weight-only (e.g. fp8 on Ampere): the memory "
        "saving stays, the compute runs in 16-bit.",
    )
    tensor_parallel_size: TensorParallelSize = Field(
        default=AUTO,
        description="GPUs per replica (1, 2, 4, 8, ...), or `auto`: the fewest that fit weights and cache.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(_TP_RULE, "tensorParallelSize is 'auto' or one of " + ", ".join(map(str, TENSOR_PARALLEL_SIZES)))
            ]
        },
    )
    replicas: int | None = Field(
        default=None,
        ge=0,
        le=MAX_REPLICAS,
        description="Desired replicas (the scale subresource): the autoscaler writes it within the autoscaling "
        "bounds; without autoscaling it is the fixed count (default 1).",
    )
    engine: Engine | None = Field(
        default=None,
        description="vllm, or simulator: Bakeoff's own image runs `bakeoff sim` for this variant and GPU class, "
        "timed by the performance model (clusters without GPUs, dry runs); default: the operator's setting.",
    )
    serving: Serving = Field(default_factory=Serving, description="vLLM serving knobs.")
    autoscaling: Autoscaling | None = Field(default=None, description="Replica bounds and targets.")
    slo: SLO | None = Field(default=None, description="Latency objective this variant is sized for.")
    accuracy: Accuracy | None = Field(default=None, description="Measured accuracy recovery against the baseline.")

    @field_validator("tensor_parallel_size")
    @classmethod
    def _tp(cls, value: TensorParallelSize) -> TensorParallelSize:
        if value != AUTO and value not in TENSOR_PARALLEL_SIZES:
            raise ValueError(
                f"tensorParallelSize is 'auto' or one of {', '.join(map(str, TENSOR_PARALLEL_SIZES))}, got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _cross_field(self) -> ModelVariantSpec:
        if (
            self.format is Format.FP8
            and self.gpu_class in FP8_FALLBACK_GPU_CLASSES
            and not self.allow_weight_only_fallback
        ):
            raise ValueError(
                f"gpuClass: fp8 (W8A8) needs compute capability >= 8.9; on {self.gpu_class} vLLM runs it "
                "weight-only: choose another gpuClass or format, or set allowWeightOnlyFallback: true"
            )
        a = self.autoscaling
        if self.replicas is not None and a is not None and not a.min_replicas <= self.replicas <= a.max_replicas:
            raise ValueError(
                f"replicas ({self.replicas}) must lie within autoscaling.minReplicas ({a.min_replicas}) and "
                f"autoscaling.maxReplicas ({a.max_replicas})"
            )
        return self

    @property
    def desired_replicas(self) -> int:
        """Replicas wanted now: spec.replicas, else the autoscaling minimum, else 1."""
        if self.replicas is not None:
            return self.replicas
        return self.autoscaling.min_replicas if self.autoscaling is not None else 1


class PredictedCapacity(ApiModel):
    """What the performance model predicts for one replica at the SLO."""

    max_qps: float | None = Field(default=None, ge=0, le=1e6, description="Most requests/s meeting the SLO.")
    output_tokens_per_second: float | None = Field(default=None, ge=0, le=1e9, description="Output tokens/s.")
    cost_per_1m_output_tokens_usd: float | None = Field(
        default=None, ge=0, le=1e9, alias="costPer1MOutputTokensUSD", description="USD per 1M output tokens."
    )
    workload: str | None = Field(default=None, max_length=MAX_NAME, description="Workload the figures are for.")


class MeasuredCapacity(ApiModel):
    """What one replica carried in the last BakeOff run that swept its load: the autoscaler's capacity
    per replica (instead of the prediction) once it exists."""

    output_tokens_per_second: float = Field(
        gt=0, le=1e9, description="Output tokens/s per replica at the run's chosen load level (within its SLO)."
    )
    bakeoff: str = Field(max_length=MAX_NAME, description="The BakeOff that measured it.")
    run: str = Field(max_length=MAX_NAME, description="The run that measured it.")
    workload: str | None = Field(default=None, max_length=MAX_NAME, description="Workload the figure is for.")
    measured_at: RFC3339 = Field(description="When that run finished.")


class ModelVariantStatus(ApiModel):
    """What the operator resolved, predicted and observes."""

    observed_generation: int | None = Field(default=None, ge=0, description="Generation last reconciled.")
    conditions: list[Condition] = conditions_field()
    resolved_gpu_class: str | None = Field(
        default=None, max_length=MAX_NAME, alias="resolvedGPUClass", description="GPU class chosen."
    )
    tensor_parallel_size: int | None = Field(default=None, ge=1, le=64, description="GPUs per replica chosen.")
    format_execution: ExecutionMode | None = Field(
        default=None, description="native, weight-only-fallback or unsupported on the resolved GPU class."
    )
    predicted: PredictedCapacity | None = Field(default=None, description="Predicted capacity and cost.")
    measured_capacity: MeasuredCapacity | None = Field(
        default=None, description="Capacity per replica measured by the last BakeOff run that swept its load."
    )
    endpoint: str | None = Field(default=None, max_length=2048, description="OpenAI-compatible base URL.")
    live_cost_per_1m_tokens_usd: float | None = Field(
        default=None,
        ge=0,
        le=1e9,
        alias="liveCostPer1MTokensUSD",
        description="USD per 1M output tokens over the last window, from live vLLM metrics.",
    )
    replicas: int | None = Field(default=None, ge=0, le=MAX_REPLICAS, description="Replicas that exist.")
    ready_replicas: int | None = Field(default=None, ge=0, le=MAX_REPLICAS, description="Replicas serving.")
    replicas_ready: str | None = Field(
        default=None, max_length=32, pattern=r"^[0-9]+/[0-9]+$", description="Ready/desired replicas, e.g. 2/3."
    )
    selector: str | None = Field(
        default=None, max_length=1024, description="Label selector of the replicas' pods (scale subresource)."
    )


class ModelVariant(ApiModel):
    """A model variant: one model, one format, one GPU class, served by vLLM."""

    api_version: Literal["bakeoff.dev/v1alpha1"] = Field(default=API_VERSION, description="API version.")
    kind: Literal["ModelVariant"] = Field(default="ModelVariant", description="Kind.")
    metadata: ObjectMeta = Field(description="Object metadata.")
    spec: ModelVariantSpec = Field(description="The variant.")
    status: ModelVariantStatus | None = Field(default=None, description="Observed state.")

    @model_validator(mode="after")
    def _name(self) -> ModelVariant:
        name = self.metadata.name
        if len(name) > MAX_NAME or not re.fullmatch(DNS_1035_LABEL, name):
            raise ValueError(
                f"metadata.name {name!r}: a variant's name becomes an InferenceService name; use at most 63 "
                "lowercase letters, digits and '-', starting with a letter"
            )
        if self.spec.baseline == name:
            raise ValueError("spec.baseline names this variant itself; name the variant it is compared with")
        return self

    @property
    def served_name(self) -> str:
        return self.spec.model.served_name or self.metadata.name

    def to_architecture(self) -> Architecture:
        return self.spec.architecture.to_architecture(self.metadata.name)


# Rules on the whole object (they can reach metadata.name), added to the CRD's root schema.
MODEL_VARIANT_ROOT_RULES: Final[list[dict[str, Any]]] = [
    cel(
        f"size(self.metadata.name) <= {MAX_NAME} && self.metadata.name.matches('{DNS_1035_LABEL}')",
        "metadata.name: a variant's name becomes an InferenceService name; use at most 63 lowercase letters, "
        "digits and '-', starting with a letter",
    ),
    cel(
        "!has(self.spec.baseline) || self.spec.baseline != self.metadata.name",
        "spec.baseline names this variant itself; name the variant it is compared with",
    ),
]
