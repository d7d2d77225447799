"""Model architectures as data: dense transformers and attention/Mamba hybrids.

Layer counts are kept per mixer kind, because hybrids differ in exactly that: Apriel-H1 swaps some
of its 50 attention layers for Mamba mixers (each block keeps its MLP); NemotronH stacks separate
Mamba, attention and MLP blocks; Falcon-H1 runs attention and Mamba in parallel in every block.
From the counts follow the parameters (weight bytes), the KV cache per token (attention layers only)
and the Mamba state per sequence (constant in context length).
"""

from __future__ import annotations

import json
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ArchitectureKind(StrEnum):
    DENSE = "dense"
    HYBRID = "hybrid"


MambaCacheDtype = Literal["auto", "float32", "float16", "bfloat16"]


class Architecture(BaseModel):
    """Shapes of one model; enough for memory fit and the roofline performance model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=63, description="Catalog id.")
    hf_architecture: str = Field(default="LlamaForCausalLM", description="Hugging Face architecture class.")
    hidden_size: int = Field(gt=0, le=65536)
    num_layers: int = Field(gt=0, le=1024, description="Decoder blocks.")
    attention_layers: int = Field(ge=0, le=1024, description="Blocks with an attention mixer.")
    mamba_layers: int = Field(default=0, ge=0, le=1024, description="Blocks with a Mamba mixer.")
    mlp_layers: int = Field(ge=0, le=1024, description="Blocks with an MLP.")
    num_attention_heads: int = Field(gt=0, le=1024)
    num_kv_heads: int = Field(gt=0, le=1024)
    head_dim: int = Field(gt=0, le=1024)
    intermediate_size: int = Field(gt=0, le=262144, description="Gated MLP inner size.")
    vocab_size: int = Field(gt=0, le=1_048_576)
    tie_word_embeddings: bool = False
    mamba_d_inner: int = Field(default=0, ge=0, le=131072, description="Mamba inner (expanded) size.")
    mamba_d_state: int = Field(default=0, ge=0, le=1024, description="Mamba SSM state size per channel.")
    mamba_d_conv: int = Field(default=0, ge=0, le=16, description="Mamba causal conv width.")
    mamba_n_groups: int = Field(default=1, ge=1, le=1024, description="Groups sharing B/C (Mamba-2).")
    mamba_ssm_cache_dtype: MambaCacheDtype = Field(
        default="auto", description="Recommended `--mamba-ssm-cache-dtype` (float32 keeps long runs exact)."
    )
    source: str = Field(default="", description="Where the shapes come from.")

    @model_validator(mode="after")
    def _consistent(self) -> Architecture:
        if self.attention_layers + self.mamba_layers == 0:
            raise ValueError(f"architecture {self.name}: needs at least one attention or Mamba layer")
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError(
                f"architecture {self.name}: num_attention_heads ({self.num_attention_heads}) must be a "
                f"multiple of num_kv_heads ({self.num_kv_heads})"
            )
        if self.mamba_layers and not (self.mamba_d_inner and self.mamba_d_state and self.mamba_d_conv):
            raise ValueError(
                f"architecture {self.name}: a hybrid with {self.mamba_layers} Mamba layers needs "
                "mamba_d_inner, mamba_d_state and mamba_d_conv"
            )
        return self

    @property
    def kind(self) -> ArchitectureKind:
        return ArchitectureKind.HYBRID if self.mamba_layers else ArchitectureKind.DENSE

    # --- parameters -------------------------------------------------------------------------------
    @property
    def attention_params_per_layer(self) -> int:
        q_o = 2 * self.hidden_size * self.num_attention_heads * self.head_dim
        k_v = 2 * self.hidden_size * self.num_kv_heads * self.head_dim
        return q_o + k_v

    @property
    def mlp_params_per_layer(self) -> int:
        return 3 * self.hidden_size * self.intermediate_size

    @property
    def mamba_conv_channels(self) -> int:
        return self.mamba_d_inner + 2 * self.mamba_n_groups * self.mamba_d_state

    @property
    def mamba_params_per_layer(self) -> int:
        if not self.mamba_layers:
            return 0
        # in_proj makes z, x, B, C and one dt per head (head dim 64 as in Mamba-2); out_proj maps back.
        in_proj = self.hidden_size * (2 * self.mamba_d_inner + 2 * self.mamba_n_groups * self.mamba_d_state)
        dt = self.hidden_size * max(1, self.mamba_d_inner // 64)
        out_proj = self.mamba_d_inner * self.hidden_size
        conv = self.mamba_conv_channels * self.mamba_d_conv
        return in_proj + dt + out_proj + conv

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        return 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size

    @property
    def body_params(self) -> int:
        """Parameters of the decoder blocks: the ones a format quantizes."""
        return (
            self.attention_layers * self.attention_params_per_layer
            + self.mlp_layers * self.mlp_params_per_layer
            + self.mamba_layers * self.mamba_params_per_layer
        )

    @property
    def total_params(self) -> int:
        return self.body_params + self.embedding_params + self.lm_head_params

    # --- per-token and per-sequence state -----------------------------------------------------------
    def kv_bytes_per_token(self, kv_element_bytes: float) -> float:
        """KV cache per token across all attention layers (K and V)."""
        return 2 * self.attention_layers * self.num_kv_heads * self.head_dim * kv_element_bytes

    def mamba_state_bytes_per_sequence(self, ssm_element_bytes: float, conv_element_bytes: float = 2) -> float:
        """Mamba state per sequence, constant in context length: SSM state plus conv window."""
        if not self.mamba_layers:
            return 0.0
        ssm = self.mamba_d_inner * self.mamba_d_state * ssm_element_bytes
        conv = self.mamba_conv_channels * (self.mamba_d_conv - 1) * conv_element_bytes
        return self.mamba_layers * (ssm + conv)

    def attention_flops_per_token(self, context_tokens: float) -> float:
        """Score and value FLOPs of one new token attending to `context_tokens` earlier ones."""
        return 4 * self.attention_layers * self.num_attention_heads * self.head_dim * context_tokens


# --- the built-in catalog ---------------------------------------------------------------------------
def _llama(name: str, layers: int, hidden: int, heads: int, mlp: int) -> Architecture:
    return Architecture(
        name=name,
        hidden_size=hidden,
        num_layers=layers,
        attention_layers=layers,
        mlp_layers=layers,
        num_attention_heads=heads,
        num_kv_heads=8,
        head_dim=128,
        intermediate_size=mlp,
        vocab_size=128256,
        source="Llama-3.1 config.json",
    )


APRIEL_H1_LAYERS = 50
APRIEL_H1_MAMBA_COUNTS = (25, 27, 30, 34, 37, 40)


def _apriel(mamba_layers: int) -> Architecture:
    hybrid = mamba_layers > 0
    return Architecture(
        name=f"apriel-h1-h{mamba_layers}" if hybrid else "apriel-h1-teacher",
        hf_architecture="AprielHybridSSMForCausalLM" if hybrid else "MistralForCausalLM",
        hidden_size=5120,
        num_layers=APRIEL_H1_LAYERS,
        attention_layers=APRIEL_H1_LAYERS - mamba_layers,
        mamba_layers=mamba_layers,
        mlp_layers=APRIEL_H1_LAYERS,
        num_attention_heads=32,
        num_kv_heads=8,
        head_dim=128,
        intermediate_size=14336,
        vocab_size=131072,
        mamba_d_inner=4096 if hybrid else 0,
        mamba_d_state=16 if hybrid else 0,
        mamba_d_conv=4 if hybrid else 0,
        mamba_ssm_cache_dtype="float32" if hybrid else "auto",
        source="Apriel-H1 (arXiv 2511.02651)",
    )


@cache
def builtin_architectures() -> dict[str, Architecture]:
    archs = [
        _llama("llama-3.1-8b", 32, 4096, 32, 14336),
        _llama("llama-3.1-70b", 80, 8192, 64, 28672),
        _llama("llama-3.1-405b", 126, 16384, 128, 53248),
        _apriel(0),
        *(_apriel(m) for m in APRIEL_H1_MAMBA_COUNTS),
    ]
    return {a.name: a for a in archs}


class UnknownModelError(KeyError):
    def __init__(self, name: str, valid: list[str]) -> None:
        self.name = name
        self.valid = valid
        super().__init__(name)

    def __str__(self) -> str:
        return (
            f"unknown model {self.name!r}; valid models: {', '.join(sorted(self.valid))} "
            "(or a path to a Hugging Face config.json)"
        )


def get_architecture(name_or_path: str) -> Architecture:
    """A built-in architecture by id, or one read from a `config.json` (or a folder holding one)."""
    catalog = builtin_architectures()
    if name_or_path in catalog:
        return catalog[name_or_path]
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".json" and path.is_file():
        return from_hf_config(path)
    raise UnknownModelError(name_or_path, list(catalog))


# --- Hugging Face config.json -------------------------------------------------------------------------
class ConfigError(ValueError):
    pass


def _req(cfg: dict[str, Any], key: str, where: Path) -> Any:
    if key not in cfg:
        raise ConfigError(f"{where}: field {key!r} is missing; it is needed to size the model")
    return cfg[key]


def _slug(text: str) -> str:
    out = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
    while "--" in out:
        out = out.replace("--", "-")
    return out[:63].strip("-") or "model"


def from_hf_config(path: Path, name: str | None = None) -> Architecture:
    """Read an architecture from a Hugging Face `config.json` (dense, NemotronH, Falcon-H1, Apriel-H)."""
    try:
        cfg: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: cannot read a JSON config: {err}") from err
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    hf_arch = (cfg.get("architectures") or ["LlamaForCausalLM"])[0]
    hidden = int(_req(cfg, "hidden_size", path))
    heads = int(_req(cfg, "num_attention_heads", path))
    common: dict[str, Any] = {
        "name": name or _slug(path.parent.name or hf_arch),
        "hf_architecture": hf_arch,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_kv_heads": int(cfg.get("num_key_value_heads") or heads),
        "head_dim": int(cfg.get("head_dim") or hidden // heads),
        "intermediate_size": int(_req(cfg, "intermediate_size", path)),
        "vocab_size": int(_req(cfg, "vocab_size", path)),
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", False)),
        "source": str(path),
    }
    try:
        if "hybrid_override_pattern" in cfg:  # NemotronH: one char per block, M / * / - (MLP)
            pattern = str(cfg["hybrid_override_pattern"])
            n_heads = int(_req(cfg, "mamba_num_heads", path))
            return Architecture(
                **common,
                num_layers=len(pattern),
                attention_layers=pattern.count("*"),
                mamba_layers=pattern.count("M"),
                mlp_layers=pattern.count("-"),
                mamba_d_inner=n_heads * int(_req(cfg, "mamba_head_dim", path)),
                mamba_d_state=int(_req(cfg, "ssm_state_size", path)),
                mamba_d_conv=int(cfg.get("conv_kernel", 4)),
                mamba_n_groups=int(cfg.get("n_groups", 1)),
            )
        layers = int(_req(cfg, "num_hidden_layers", path))
        if "mamba_d_state" in cfg and "mamba_d_ssm" in cfg:  # Falcon-H1: attention and Mamba in parallel
            d_ssm = cfg.get("mamba_d_ssm") or int(cfg.get("mamba_expand", 2)) * hidden
            return Architecture(
                **common,
                num_layers=layers,
                attention_layers=layers,
                mamba_layers=layers,
                mlp_layers=layers,
                mamba_d_inner=int(d_ssm),
                mamba_d_state=int(cfg["mamba_d_state"]),
                mamba_d_conv=int(cfg.get("mamba_d_conv", 4)),
                mamba_n_groups=int(cfg.get("mamba_n_groups", 1)),
            )
        if "hybrid_block_layout" in cfg:  # Apriel-H: "t" attention, "m*" Mamba; each block has its MLP
            layout = [str(b) for b in cfg["hybrid_block_layout"]]
            ssm = cfg.get("ssm_cfg") or {}
            mamba = sum(1 for b in layout if b.startswith("m"))
            return Architecture(
                **common,
                num_layers=len(layout),
                attention_layers=len(layout) - mamba,
                mamba_layers=mamba,
                mlp_layers=len(layout),
                mamba_d_inner=int(ssm.get("d_inner", 0)),
                mamba_d_state=int(ssm.get("d_state", 0)),
                mamba_d_conv=int(ssm.get("d_conv", 4)),
            )
        return Architecture(**common, num_layers=layers, attention_layers=layers, mlp_layers=layers)
    except ValueError as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{path}: {err}") from err
