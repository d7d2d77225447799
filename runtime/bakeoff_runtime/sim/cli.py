"""`bakeoff sim`: serve one variant on one GPU class with vLLM's API, timed by the performance model.

    bakeoff sim --model llama-3.1-8b --format int4 --gpu l40s --port 0

prints `http://HOST:PORT` as its first line on stdout once the socket is bound, then serves until
SIGINT/SIGTERM. `--variant-json FILE` takes a whole `Variant` (what the launcher passes) instead
of the individual flags; `--variant-env NAME` reads it from an environment variable (what the
operator's simulated replicas run).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import os
import socket
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Variant and fault fields -> the flags that set them, so errors name what to fix.
SIM_FLAGS: dict[str, str] = {
    "max_model_len": "--max-model-len",
    "max_num_seqs": "--max-num-seqs",
    "max_num_batched_tokens": "--max-num-batched-tokens",
    "gpu_memory_utilization": "--gpu-memory-utilization",
    "kv_cache_dtype": "--kv-cache-dtype",
    "tensor_parallel": "--tensor-parallel",
    "served_model_name": "--served-model-name",
    "seed": "--seed",
    "error_rate": "--fault-error-rate",
    "slow_start_s": "--fault-slow-start-s",
    "stall_every": "--fault-stall-every",
    "stall_s": "--fault-stall-s",
}


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 0 to 65535 (0: any free port), got {port}")
    return port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    v = parser.add_argument_group("variant")
    v.add_argument("--model", default="llama-3.1-8b", help="built-in model id, or a path to a config.json")
    v.add_argument("--format", default="bf16", help="bf16 | fp8 | int8 | int4")
    v.add_argument("--kv-cache-dtype", default="auto", help="auto | fp8")
    v.add_argument("--gpu", default="h100", help="GPU class id from the catalog (h100, l40s, ...)")
    v.add_argument("--tensor-parallel", type=int, default=1, help="GPUs per replica")
    v.add_argument("--served-model-name", default=None, help="model name clients send (default: <model>-<format>)")
    v.add_argument("--max-model-len", type=int, default=8192)
    v.add_argument("--max-num-seqs", type=int, default=256)
    v.add_argument("--max-num-batched-tokens", type=int, default=8192)
    v.add_argument("--gpu-memory-utilization", type=float, default=0.90)
    v.add_argument(
        "--allow-weight-only-fallback",
        action="store_true",
        help="serve a format that runs weight-only on the GPU class (fp8 on Ampere), as a ModelVariant's "
        "allowWeightOnlyFallback; refused without it",
    )
    v.add_argument("--variant-json", type=Path, default=None, help="a Variant as JSON (overrides the flags above)")
    v.add_argument(
        "--variant-env",
        default=None,
        metavar="NAME",
        help="read the Variant JSON from this environment variable (what a simulated replica in a cluster runs)",
    )
    s = parser.add_argument_group("server")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=_port, default=8000, help="0: a free port chosen by the OS")
    s.add_argument("--seed", type=int, default=0, help="seed for generated words, ids and injected faults")
    s.add_argument("--log-level", default="warning", help="uvicorn log level")
    f = parser.add_argument_group("fault injection")
    f.add_argument("--fault-error-rate", type=float, default=0.0, help="fraction of requests answered HTTP 500")
    f.add_argument("--fault-slow-start-s", type=float, default=0.0, help="answer 503 this long after start")
    f.add_argument("--fault-stall-every", type=int, default=0, help="every Nth engine step stalls")
    f.add_argument("--fault-stall-s", type=float, default=0.0, help="extra seconds of a stalled step")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sim",
        help="serve one variant with vLLM's API, timed by the performance model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(handler=run, func=run)


def build_variant(args: argparse.Namespace) -> Any:
    from bakeoff_runtime.cli import explain_flags, load_architecture, weight_only_refusal
    from bakeoff_runtime.formats import Format, KVCacheDtype
    from bakeoff_runtime.gpus import UnknownGPUClassError, get_gpu
    from bakeoff_runtime.variant import Variant, make_variant

    if args.variant_json is not None:
        try:
            return Variant.model_validate_json(Path(args.variant_json).read_text())
        except OSError as err:
            raise ValueError(f"--variant-json {args.variant_json}: cannot read it ({err.strerror})") from None
        except ValidationError as err:
            raise ValueError(f"--variant-json {args.variant_json}: not a variant: {explain_flags(err, {})}") from None
    if args.variant_env is not None:
        text = os.environ.get(args.variant_env)
        if not text:
            raise ValueError(f"--variant-env {args.variant_env}: the environment variable is not set or empty")
        try:
            return Variant.model_validate_json(text)
        except ValidationError as err:
            raise ValueError(f"--variant-env {args.variant_env}: not a variant: {explain_flags(err, {})}") from None
    try:
        fmt = Format(args.format)
    except ValueError:
        raise ValueError(
            f"--format {args.format!r} is not a format; choose one of {', '.join(f.value for f in Format)}"
        ) from None
    try:
        kv = KVCacheDtype(args.kv_cache_dtype)
    except ValueError:
        raise ValueError(f"--kv-cache-dtype {args.kv_cache_dtype!r}: choose auto or fp8") from None
    arch = load_architecture(args.model)
    try:
        gpu = get_gpu(args.gpu)
    except UnknownGPUClassError as err:
        raise ValueError(f"--gpu: {err}") from None
    refusal = weight_only_refusal(fmt, gpu)
    if refusal and not args.allow_weight_only_fallback:
        raise ValueError(refusal)
    if args.tensor_parallel < 1:
        raise ValueError(f"--tensor-parallel {args.tensor_parallel}: give a whole number >= 1")
    knobs: dict[str, object] = {
        "max_model_len": args.max_model_len,
        "max_num_seqs": args.max_num_seqs,
        "max_num_batched_tokens": args.max_num_batched_tokens,
        "gpu_memory_utilization": args.gpu_memory_utilization,
        "kv_cache_dtype": kv,
    }
    if args.served_model_name:
        knobs["served_model_name"] = args.served_model_name
    if Path(args.model).suffix == ".json" or Path(args.model).is_dir():
        knobs["model_source"] = str(args.model)
    try:
        return make_variant(arch, fmt, gpu, args.tensor_parallel, **knobs)
    except ValidationError as err:
        raise ValueError(explain_flags(err, SIM_FLAGS)) from None


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except KeyboardInterrupt:  # Ctrl-C before the server took over the signals (it then stops cleanly)
        print("bakeoff sim: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    from bakeoff_runtime.architectures import ConfigError, UnknownModelError
    from bakeoff_runtime.cli import explain_flags
    from bakeoff_runtime.gpus import UnknownGPUClassError
    from bakeoff_runtime.sim.engine import Faults
    from bakeoff_runtime.sim.server import SimSettings, Simulator

    try:
        variant = build_variant(args)
        settings = SimSettings(
            seed=args.seed,
            model_root=str(args.model),
            faults=Faults(
                error_rate=args.fault_error_rate,
                slow_start_s=args.fault_slow_start_s,
                stall_every=args.fault_stall_every,
                stall_s=args.fault_stall_s,
            ),
        )
        sim = Simulator(variant, settings)
    except ValidationError as err:
        print(f"bakeoff sim: {explain_flags(err, SIM_FLAGS)}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, UnknownModelError, UnknownGPUClassError, ConfigError, OSError) as err:
        print(f"bakeoff sim: {err}", file=sys.stderr)
        return EXIT_USAGE
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
    except OSError as err:
        print(f"bakeoff sim: cannot listen on {args.host}:{args.port}: {err}; choose another --port", file=sys.stderr)
        return EXIT_USAGE
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"http://{shown}:{port}", flush=True)
    print(
        f"bakeoff sim: {variant.name} ({variant.format.value}) on {variant.tensor_parallel}x {variant.gpu.name}, "
        f"{sim.limits.num_kv_blocks} KV blocks of {sim.limits.block_size} tokens, "
        f"serving {variant.served_model_name!r}",
        file=sys.stderr,
        flush=True,
    )
    # Startup objects (modules, the variant, the vocabulary) never die: keep the collector off them,
    # so that full collections during a run stay short.
    gc.freeze()
    return run_loop(_serve(sim, sock, args.log_level))


def run_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop where it is installed, else on asyncio."""
    try:
        uvloop: Any = importlib.import_module("uvloop")  # optional: not a dependency of Bakeoff
    except ImportError:
        return asyncio.run(main)
    return int(uvloop.run(main))


async def _serve(sim: Any, sock: socket.socket, log_level: str) -> int:
    """Serve until SIGINT or SIGTERM; returns the exit status (128 + the signal, as a shell reports it)."""
    import uvicorn

    loop = asyncio.get_running_loop()

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # Streams in flight end now, so the graceful stop never has to cancel them half-way and
            # print their tracebacks.
            loop.call_soon_threadsafe(sim.abort_all)
            stopped_by.append(sig)
            if self.should_exit:
                return  # a second Ctrl-C: the stop (at most timeout_graceful_shutdown) is under way
            super().handle_exit(sig, frame)
            # uvicorn would raise the signal again once stopped, into asyncio's own handler (a
            # KeyboardInterrupt traceback); the command exits with 128 + the signal instead.
            self._captured_signals.clear()

    # uvicorn handles SIGINT/SIGTERM: a graceful stop.
    config = uvicorn.Config(sim.app, log_level=log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=2)
    stopped_by: list[int] = []
    await Server(config).serve(sockets=[sock])
    return 128 + stopped_by[0] if stopped_by else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bakeoff sim", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(list(argv) if argv is not None else None)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
