"""`bakeoff predict`: memory fit, vLLM arguments and predicted latency, throughput and cost of
variants before any GPU is spent.

    bakeoff predict --model llama-3.1-70b --format fp8 --gpu h100 --gpus 1 --workload code-completion --mode sync
    bakeoff predict --model llama-3.1-8b --format all --gpu all --workload all --mode both --json
    bakeoff predict --model llama-3.1-70b --format bf16,fp8,int4 --gpus 4 --workload rag --mode async --concurrency 32

`--model`, `--format`, `--gpu` and `--workload` take one name, a comma-separated list or `all`.
Variants are sized by the same policy as a ModelVariant's status and deployment
(`bakeoff_runtime.placement`): without `--gpus` each gets the smallest tensor-parallel size that
fits; without `--max-model-len`, exactly room for its workload (prompt + output tokens); without
`--max-num-batched-tokens`, that length clamped to 8192..16384. Async mode predicts saturation (the
queue never empties); `--concurrency N` predicts N requests in flight instead, each replaced as it
finishes, as a load test at one concurrency drives the server.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from bakeoff_runtime.architectures import (
    Architecture,
    ConfigError,
    UnknownModelError,
    builtin_architectures,
    get_architecture,
)
from bakeoff_runtime.formats import ExecutionMode, Format, KVCacheDtype, resolve_execution
from bakeoff_runtime.gpus import GPUSpec, UnknownGPUClassError, default_catalog
from bakeoff_runtime.memory import plan_memory
from bakeoff_runtime.perf import PerformanceModel, Prediction
from bakeoff_runtime.placement import (
    default_max_model_len,
    default_max_num_batched_tokens,
    node_tensor_parallel,
    place,
    split_across_nodes,
)
from bakeoff_runtime.variant import Variant, make_variant, valid_tensor_parallel_sizes
from bakeoff_runtime.vllm_args import vllm_args
from bakeoff_runtime.workloads import WORKLOADS, UnknownWorkloadError, Workload

EXIT_USAGE = 2
MODES = ("sync", "async", "both")

# Variant fields -> the flags of `bakeoff predict` that set them, so errors name what to fix.
PREDICT_FLAGS: Final[dict[str, str]] = {
    "max_model_len": "--max-model-len",
    "max_num_seqs": "--max-num-seqs",
    "max_num_batched_tokens": "--max-num-batched-tokens",
    "gpu_memory_utilization": "--gpu-memory-utilization",
    "kv_cache_dtype": "--kv-cache-dtype",
    "tensor_parallel": "--gpus",
}
# Sizes a config.json must give as positive whole numbers (a zero divides by zero further on).
_POSITIVE_CONFIG_FIELDS: Final = (
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "num_hidden_layers",
    "head_dim",
    "intermediate_size",
    "vocab_size",
)


class PredictUsageError(ValueError):
    """Bad input to `bakeoff predict`: the message names the field and the valid values."""


def explain_flags(err: ValidationError, flags: Mapping[str, str]) -> str:
    """A pydantic error in the words of the command line: each problem names the flag, the value given
    and the fix (model-wide rules get the flags spelled into their message)."""
    problems = []
    for e in err.errors(include_url=False):
        field = str(e["loc"][-1]) if e["loc"] else ""
        msg = str(e["msg"]).removeprefix("Value error, ")
        if field in flags:
            bound = _bound(e.get("ctx") or {})
            problems.append(f"{flags[field]} {e.get('input')}: {msg}" + (f"; give a value {bound}" if bound else ""))
            continue
        for name, flag in sorted(flags.items(), key=lambda kv: -len(kv[0])):
            msg = msg.replace(name, flag)
        problems.append(f"{field}: {msg}" if field else msg)
    return "; ".join(problems)


def _bound(ctx: Mapping[str, Any]) -> str:
    parts = [f"{op} {ctx[key]}" for key, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")) if key in ctx]
    return " and ".join(parts)


def load_architecture(model: str, flag: str = "--model") -> Architecture:
    """The built-in architecture or config.json ``model`` names; a ValueError naming ``flag`` otherwise."""
    try:
        return get_architecture(model)
    except UnknownModelError as err:
        raise PredictUsageError(f"{flag}: {err}") from None
    except ConfigError as err:
        raise PredictUsageError(f"{flag} {model}: {err}") from None
    except ValidationError as err:
        raise PredictUsageError(f"{flag} {model}: not a usable config.json: {_config_zeros(model) or err}") from None
    except (ArithmeticError, TypeError, ValueError) as err:
        why = _config_zeros(model) or f"{type(err).__name__}: {err}"
        raise PredictUsageError(f"{flag} {model}: not a usable config.json: {why}") from None


def _config_zeros(model: str) -> str:
    """Which sizes of a config.json are not positive whole numbers, with the fix ('' when none)."""
    path = Path(model)
    path = path / "config.json" if path.is_dir() else path
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError):
        return ""
    if not isinstance(cfg, dict):
        return ""
    bad = [
        f"{key} is {cfg[key]!r}"
        for key in _POSITIVE_CONFIG_FIELDS
        if key in cfg and cfg[key] is not None and not (isinstance(cfg[key], int) and cfg[key] > 0)
    ]
    return f"{', '.join(bad)}; these sizes must be positive whole numbers" if bad else ""


def weight_only_refusal(fmt: Format, gpu: GPUSpec, *, format_flag: str = "--format", gpu_flag: str = "--gpu") -> str:
    """Why ``fmt`` on ``gpu`` is refused unless the weight-only fallback is allowed ('' when it runs
    natively): the same rule as a ModelVariant's `allowWeightOnlyFallback`."""
    execution = resolve_execution(fmt, gpu.compute_capability, gpu.name)
    if execution.mode is not ExecutionMode.WEIGHT_ONLY_FALLBACK:
        return ""
    return (
        f"{format_flag} {fmt.value} {gpu_flag} {gpu.name}: {execution.reason}; choose another {gpu_flag} or "
        f"{format_flag}, or pass --allow-weight-only-fallback"
    )


def _names(value: str, valid: Sequence[str], what: str) -> list[str]:
    if value == "all":
        return list(valid)
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise PredictUsageError(f"--{what} is empty; valid values: {', '.join(valid)}, or all")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="Model id (see the list below), a config.json path, or all.")
    parser.add_argument("--format", default="all", help="bf16, fp8, int8, int4, a comma list, or all (default).")
    parser.add_argument("--gpu", default="h100", help="GPU class id, a comma list, or all (default h100).")
    parser.add_argument("--gpus", type=int, default=None, help="Tensor-parallel size; default: the smallest that fits.")
    parser.add_argument("--workload", default="all", help="Workload id, a comma list, or all (default).")
    parser.add_argument("--mode", default="both", choices=MODES, help="sync, async, or both (default).")
    parser.add_argument("--json", action="store_true", help="Print JSON (an object for one row, else a list).")
    parser.add_argument("--price-per-gpu-hour", type=float, default=None, help="Override the catalog price, USD.")
    parser.add_argument(
        "--max-model-len", type=int, default=None, help="Default: room for the workload, a power of two >= 8192."
    )
    parser.add_argument("--max-num-seqs", type=int, default=256, help="Most running sequences (default 256).")
    parser.add_argument(
        "--max-num-batched-tokens",
        type=int,
        default=None,
        help="Step token budget (default: max model len, 8192..16384).",
    )
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="Default 0.9.")
    parser.add_argument("--kv-cache-dtype", default="auto", choices=[k.value for k in KVCacheDtype])
    parser.add_argument(
        "--allow-weight-only-fallback",
        action="store_true",
        help="Predict a format named with a GPU class it runs weight-only on (fp8 on Ampere), as a ModelVariant's "
        "allowWeightOnlyFallback; refused without it (tables over `all` show such rows, marked).",
    )
    parser.add_argument("--ttft-slo", type=float, default=None, help="TTFT p99 target, seconds: adds qps_at_slo.")
    parser.add_argument("--itl-slo", type=float, default=None, help="ITL p99 target, seconds: adds qps_at_slo.")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="Async mode with this many requests in flight (a closed loop of clients) instead of saturation.",
    )


def add_parser(subparsers: Any) -> None:
    """Register `predict` on the `bakeoff` command's subparsers."""
    parser = subparsers.add_parser(
        "predict",
        help="Predict memory fit, vLLM arguments, latency, throughput and cost of variants.",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def _variant(
    model: str, fmt: Format, gpu_name: str, workload: Workload, args: argparse.Namespace
) -> tuple[Variant, str | None]:
    """The variant for one row, at the requested or the minimal tensor-parallel size."""
    arch = load_architecture(model)
    gpu = default_catalog().get(gpu_name)
    max_len = args.max_model_len or default_max_model_len(workload.context_tokens)
    knobs: dict[str, object] = {
        "max_model_len": max_len,
        "max_num_seqs": args.max_num_seqs,
        "max_num_batched_tokens": args.max_num_batched_tokens or default_max_num_batched_tokens(max_len),
        "gpu_memory_utilization": args.gpu_memory_utilization,
        "kv_cache_dtype": KVCacheDtype(args.kv_cache_dtype),
    }
    try:
        base = make_variant(arch, fmt, gpu, 1, **knobs)
    except ValidationError as err:
        raise PredictUsageError(explain_flags(err, PREDICT_FLAGS)) from None
    if args.gpus is not None:
        # Up to a node the count is the tensor-parallel size; beyond, whole nodes of the widest group.
        try:
            tensor_parallel, _ = split_across_nodes(base, args.gpus)
        except ValueError as err:
            raise PredictUsageError(f"--gpus {args.gpus}: {err}") from None
        if tensor_parallel not in valid_tensor_parallel_sizes(arch, gpu.gpus_per_node):
            sizes = ", ".join(str(t) for t in valid_tensor_parallel_sizes(arch, gpu.gpus_per_node))
            raise PredictUsageError(
                f"--gpus {args.gpus} is not a valid tensor-parallel size for {arch.name}: {sizes} on one node of "
                f"{gpu.name}, or a multiple of {node_tensor_parallel(base)} (one pipeline stage per node)"
            )
    try:
        placement = place(base, args.gpus)
    except ValidationError as err:
        raise PredictUsageError(explain_flags(err, PREDICT_FLAGS)) from None
    if not placement.fits and placement.auto:
        # Nothing up to the largest size tried fits: the row shows the model on one GPU, and why.
        return placement.variant.model_copy(update={"tensor_parallel": 1, "pipeline_parallel": 1}), placement.reason
    return placement.variant, None


def predict_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One dict per (model, format, GPU class, workload, mode): the prediction, the plan and the vLLM args."""
    models = _names(args.model, sorted(builtin_architectures()), "model")
    formats = _names(args.format, [f.value for f in Format], "format")
    gpus = _names(args.gpu, default_catalog().names, "gpu")
    workloads = [WORKLOADS.get(w) or _unknown_workload(w) for w in _names(args.workload, list(WORKLOADS), "workload")]
    for f in formats:
        if f not in {x.value for x in Format}:
            raise PredictUsageError(f"unknown format {f!r}; valid formats: {', '.join(x.value for x in Format)}, all")
    for m in models:
        load_architecture(m)
    for g in gpus:
        default_catalog().get(g)
    for name, value in (
        ("--max-model-len", args.max_model_len),
        ("--max-num-seqs", args.max_num_seqs),
        ("--max-num-batched-tokens", args.max_num_batched_tokens),
        ("--gpus", args.gpus),
        ("--concurrency", args.concurrency),
    ):
        if value is not None and value < 1:
            raise PredictUsageError(f"{name} {value}: give a whole number >= 1")
    if args.concurrency is not None and args.mode == "sync":
        raise PredictUsageError(
            f"--concurrency {args.concurrency} applies to async mode (one request at a time is sync): "
            "use --mode async or --mode both"
        )
    if args.price_per_gpu_hour is not None and args.price_per_gpu_hour < 0:
        raise PredictUsageError("--price-per-gpu-hour must be >= 0")
    modes = ["sync", "async"] if args.mode == "both" else [args.mode]
    rows: list[dict[str, Any]] = []
    refused: list[str] = []
    # A format and GPU class named as a deployment are held to a ModelVariant's rule; a table over `all`
    # shows the weight-only rows, marked as such.
    named_explicitly = args.format != "all" and args.gpu != "all"
    models_cache: dict[str, PerformanceModel] = {}
    for model in models:
        for fmt in formats:
            for gpu in gpus:
                why = weight_only_refusal(Format(fmt), default_catalog().get(gpu))
                if why and named_explicitly and not args.allow_weight_only_fallback:
                    if why not in refused:
                        refused.append(why)
                    continue
                for workload in workloads:
                    try:
                        variant, no_fit = _variant(model, Format(fmt), gpu, workload, args)
                    except ValueError as err:  # a knob vLLM would reject, e.g. budget below max_num_seqs
                        raise PredictUsageError(str(err)) from err
                    key = variant.model_dump_json()
                    pm = models_cache.get(key)
                    if pm is None:
                        pm = models_cache[key] = PerformanceModel(variant)
                    for mode in modes:
                        prediction = pm.predict(
                            workload,
                            mode,
                            price_per_gpu_hour=args.price_per_gpu_hour,
                            ttft_slo_s=args.ttft_slo,
                            itl_slo_s=args.itl_slo,
                            clients=args.concurrency if mode == "async" else None,
                        )
                        row = prediction.model_dump(mode="json")
                        if no_fit:
                            row["reason"] = f"{no_fit}; at 1 GPU: {row['reason']}"
                        row["vllm_args"] = vllm_args(variant) if row["fits"] else []
                        row["memory"] = plan_memory(variant).summary()
                        rows.append(row)
    if refused and not rows:
        raise PredictUsageError("; ".join(refused))
    for why in refused:  # the rest of a table is still worth printing
        print(f"bakeoff predict: skipped {why}", file=sys.stderr)
    return rows


def _unknown_workload(name: str) -> Workload:
    raise UnknownWorkloadError(name)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}" if value >= 0.01 else f"{value:.4f}"
    return str(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    columns = [
        ("model", "model"),
        ("format", "format"),
        ("gpu", "gpu"),
        ("gpus", "gpus"),
        ("workload", "workload"),
        ("mode", "mode"),
        ("fits", "fits"),
        ("latency_s", "latency s"),
        ("max_qps", "max QPS"),
        ("concurrency", "batch"),
        ("output_tokens_per_s_per_gpu", "out tok/s/GPU"),
        ("cost_per_1m_output_tokens_usd", "$/1M out"),
    ]
    if any(r.get("clients") is not None for r in rows):
        columns.insert(columns.index(("latency_s", "latency s")), ("clients", "clients"))
        columns[columns.index(("max_qps", "max QPS"))] = ("max_qps", "QPS")
    if any(r.get("qps_at_slo") is not None for r in rows):
        columns.insert(columns.index(("concurrency", "batch")), ("qps_at_slo", "QPS@SLO"))
    if any(r.get("pipeline_parallel", 1) > 1 for r in rows):
        # A plan that spans nodes: how its GPUs split, tensor parallel in a node x pipeline stages across nodes.
        at = columns.index(("gpus", "gpus")) + 1
        columns[at:at] = [("tensor_parallel", "TP"), ("pipeline_parallel", "PP")]
    cells = [[h for _, h in columns]]
    for row in rows:
        cells.append([_fmt(row.get(k)) for k, _ in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = sorted({f"{r['variant']} on {r['gpu']}: {r['reason']}" for r in rows if not r["fits"]})
    notes += sorted(
        {
            f"{r['variant']} on {r['gpu']}: runs weight-only (16-bit compute): {r['format']} needs a newer GPU "
            "class for its native kernels"
            for r in rows
            if r["fits"] and r.get("execution") == "weight-only-fallback"
        }
    )
    return "\n".join(lines + (["", *notes] if notes else [])) + "\n"


def run(args: argparse.Namespace) -> int:
    try:
        rows = predict_rows(args)
    except ValidationError as err:
        print(f"bakeoff predict: {explain_flags(err, PREDICT_FLAGS)}", file=sys.stderr)
        return EXIT_USAGE
    except (PredictUsageError, UnknownModelError, UnknownGPUClassError, UnknownWorkloadError, ValueError) as err:
        print(f"bakeoff predict: {err}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        payload: Any = rows[0] if len(rows) == 1 else rows
        print(json.dumps(payload, indent=2, sort_keys=True))
    else:
        sys.stdout.write(format_table(rows))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bakeoff")
    add_parser(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["Prediction", "add_parser", "main"]
