"""Child-process entry of ``run_spec``: imports Locust first, reads the spec on stdin, runs, and sends
each result (after every load point, then the whole run) as one JSON line on the pipe it is given."""

from __future__ import annotations

# isort: off
from bakeoff_loadtest import locust_runners  # first: Locust patches the standard library
# isort: on

import argparse
import os
import sys
from pathlib import Path

from bakeoff_loadtest.results import RunResult
from bakeoff_loadtest.runner import EXIT_INTERRUPTED, run_spec
from bakeoff_loadtest.spec import RunSpec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bakeoff_loadtest.runner_main")
    ap.add_argument("--result-fd", type=int, required=True, help="pipe that gets one JSON result per line")
    ap.add_argument("--out-dir", type=Path)
    ap.add_argument("--metrics-port", type=int)
    a = ap.parse_args(argv)
    locust_runners.INTERRUPT.install()
    spec = RunSpec.model_validate_json(sys.stdin.buffer.read())
    results = os.fdopen(a.result_fd, "wb")

    def send(result: RunResult) -> None:
        results.write(result.model_dump_json().encode() + b"\n")
        results.flush()

    result = run_spec(spec, out_dir=a.out_dir, isolation="inline", metrics_port=a.metrics_port, on_point=send)
    try:
        send(result)
        results.close()
    except OSError as e:
        print(f"cannot hand the results over: {e}", file=sys.stderr)
        return 1
    return EXIT_INTERRUPTED if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
