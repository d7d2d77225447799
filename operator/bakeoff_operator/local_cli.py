"""`bakeoff run`'s command line: flags bounded as the load plan bounds them, then `local.run_local`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bakeoff_operator import local
from bakeoff_operator.local import ENGINES, EXIT_BAD_INPUT, Options, run_local


def _number(kind: type[float] | type[int], *, low: float, high: float, low_open: bool = False) -> Any:
    """An argparse type: a number within [low, high] ((low, high] with `low_open`), bounds as the load
    plan has them, so a flag is refused where it is typed, not after the runtimes started."""
    what = "a positive number" if low_open and low == 0 else f"a whole number from {_show(low)}"

    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low or (low_open and value == low) or value > high:
            raise argparse.ArgumentTypeError(f"expected {what} up to {_show(high)}, got {text!r}")
        return value

    return parse


def _show(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


MAX_DURATION_S = 86_400  # the load plan's bound of one load level
MAX_REQUESTS = 100_000_000
MAX_SEED = 2**63 - 1


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a bake-off on this machine from ModelVariant/BakeOff YAML (no cluster needed)",
        description=local.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="YAML with GPUClass/ModelVariant/BakeOff")
    parser.add_argument("--engine", choices=ENGINES, default="sim", help="runtime per variant (default: sim)")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="parent of the run directory (default: runs)")
    parser.add_argument("--bakeoff", action="append", default=[], metavar="NAME", help="run only this BakeOff")
    parser.add_argument(
        "--seed", type=_number(int, low=0, high=MAX_SEED), default=None, help="override every BakeOff's seed"
    )
    parser.add_argument(
        "--duration",
        type=_number(float, low=0, high=MAX_DURATION_S, low_open=True),
        default=None,
        metavar="SECONDS",
        help="override the wall-clock bound of each load level",
    )
    parser.add_argument(
        "--max-requests",
        type=_number(int, low=1, high=MAX_REQUESTS),
        default=None,
        metavar="N",
        help="override the request bound of each load level",
    )
    parser.add_argument("--no-report", action="store_true", help="skip the HTML report")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fill a ${NAME} placeholder in the YAML (e.g. a local model path)",
    )
    parser.set_defaults(func=_handle)


def _handle(args: argparse.Namespace) -> int:
    subs: dict[str, str] = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"bakeoff run: --set expects NAME=VALUE, got {item!r}", file=sys.stderr)
            return EXIT_BAD_INPUT
        subs[name] = value
    missing = [str(p) for p in args.files if not p.is_file()]
    if missing:
        print(f"bakeoff run: no such file: {', '.join(missing)} (try examples/*.yaml)", file=sys.stderr)
        return EXIT_BAD_INPUT
    options = Options(
        engine=args.engine,
        out=args.out,
        seed=args.seed,
        duration_s=args.duration,
        max_requests=args.max_requests,
        only=tuple(args.bakeoff),
        report=not args.no_report,
        substitutions=subs,
    )
    return run_local(args.files, options)
