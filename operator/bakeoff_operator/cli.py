"""The `bakeoff` command: one entry point, subcommands contributed by each package.

Each package exposes `add_parser(subparsers)` and sets a handler (`func`) on its parser; heavy imports
(Locust's gevent patching, uvicorn) happen inside the handlers, so `bakeoff predict` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130

# Modules that contribute subcommands, in the order `bakeoff --help` lists them.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "bakeoff_operator.local_cli",
    "bakeoff_runtime.cli",
    "bakeoff_runtime.sim.cli",
    "bakeoff_runtime.tinymodels_cli",
    "bakeoff_loadtest.cli",
    "bakeoff_operator.crdgen",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bakeoff",
        description="Bake-offs between quantized and hybrid LLM variants: size, serve, measure, recommend.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        module = importlib.import_module(name)
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    # Subcommands name their handler `func` (argparse's convention) or `handler`.
    handler: Callable[[argparse.Namespace], int] = getattr(args, "handler", None) or args.func
    try:
        return int(handler(args))
    except KeyboardInterrupt:  # Ctrl-C where a command has nothing to keep: no traceback
        print(f"bakeoff {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `bakeoff predict ... | head`
        sys.stderr.close()
        return EXIT_INTERRUPTED
    except OSError as err:  # a path, a permission or a full disk that the command did not name itself
        where = f" {err.filename}" if err.filename else ""
        print(f"bakeoff {args.command}: error: cannot use{where}: {err.strerror or err}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
