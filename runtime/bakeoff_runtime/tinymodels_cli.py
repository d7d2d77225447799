"""`bakeoff tiny-models`: build the tiny models real vLLM serves on CPU, print the `--set` flags for them.

    bakeoff run --engine vllm examples/tiny-vllm-cpu.yaml $(bakeoff tiny-models)

Builds a dense Llama in BF16, INT8 W8A8 and INT4 W4A16 and a NemotronH hybrid in BF16 (random
weights, no download) with the real-vLLM environment's Python (hack/install-vllm-cpu.sh), once:
later calls find them in the cache. Stdout gets one `--set NAME=PATH` per model, for the
`${NAME}` placeholders of examples/tiny-vllm-cpu.yaml; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from bakeoff_runtime.launcher import VLLM_ENV_VAR, find_vllm_python
from bakeoff_runtime.tinymodels import BUILT, TinyModelBuildError, cache_root, placeholder, tiny_model

EXIT_OK = 0
EXIT_BUILD_FAILED = 1
EXIT_NO_VLLM = 2
INSTALL_HINT = f"install real vLLM on CPU with: bash hack/install-vllm-cpu.sh (or set {VLLM_ENV_VAR})"


def build_all(python: str, root: Path, log: TextIO) -> dict[str, Path]:
    """Every tiny model, by its placeholder name; raises TinyModelBuildError on the first failure."""
    paths: dict[str, Path] = {}
    for kind, fmt in BUILT:
        started = time.monotonic()
        print(f"tiny model {kind}/{fmt} ...", end=" ", file=log, flush=True)
        path = tiny_model(kind, fmt, python, root)
        print(f"{path} ({time.monotonic() - started:.1f} s)", file=log, flush=True)
        paths[placeholder(kind, fmt)] = path
    return paths


def set_flags(paths: dict[str, Path]) -> list[str]:
    """`--set NAME=PATH` for each model, the form `bakeoff run` takes."""
    return [f"--set {name}={path}" for name, path in paths.items()]


def _handle(args: argparse.Namespace) -> int:
    if args.python is not None and not (Path(args.python).is_file() and os.access(args.python, os.X_OK)):
        print(f"bakeoff tiny-models: --python {args.python} is not an executable file; {INSTALL_HINT}", file=sys.stderr)
        return EXIT_NO_VLLM
    python = find_vllm_python(args.python)
    if python is None:
        print(f"bakeoff tiny-models: real vLLM is not installed; {INSTALL_HINT}", file=sys.stderr)
        return EXIT_NO_VLLM
    root: Path = args.out if args.out is not None else cache_root()
    started = time.monotonic()
    try:
        paths = build_all(python, root.resolve(), sys.stderr)
    except (TinyModelBuildError, OSError) as err:
        print(f"\nbakeoff tiny-models: {err}", file=sys.stderr)
        return EXIT_BUILD_FAILED
    print(f"built or found {len(paths)} tiny models in {time.monotonic() - started:.1f} s", file=sys.stderr)
    if any(" " in str(p) for p in paths.values()):
        print("note: a path has a space; quote the --set values when pasting them", file=sys.stderr)
    if args.env_file is not None:
        args.env_file.write_text("".join(f"{name}={path}\n" for name, path in paths.items()))
        print(f"wrote {args.env_file}", file=sys.stderr)
    print("\n".join(set_flags(paths)))
    print(
        "run the tiny bake-off with: bakeoff run --engine vllm examples/tiny-vllm-cpu.yaml $(bakeoff tiny-models)",
        file=sys.stderr,
    )
    return EXIT_OK


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "tiny-models",
        help="build the tiny models real vLLM serves on CPU and print the --set flags for `bakeoff run`",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="where to keep the models (default: $BAKEOFF_TINYMODEL_CACHE or <tmp>/bakeoff-tinymodels)",
    )
    parser.add_argument(
        "--python",
        default=None,
        metavar="PATH",
        help=f"Python of the real-vLLM environment (default: ${VLLM_ENV_VAR}, else .venv-vllm/bin/python)",
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write NAME=PATH lines to FILE (for scripts)",
    )
    parser.set_defaults(func=_handle)
