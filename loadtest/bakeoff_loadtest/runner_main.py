"""Child-process entry of ``run_spec``: imports Locust first, runs, writes the result JSON."""

from __future__ import annotations

# isort: off
from bakeoff_loadtest import locust_runners  # first: Locust patches the standard library
# isort: on

import argparse
import contextlib
import sys
from pathlib import Path

from bakeoff_loadtest.result_files import write_result_json
from bakeoff_loadtest.results import RunResult
from bakeoff_loadtest.runner import EXIT_INTERRUPTED, run_spec
from bakeoff_loadtest.spec import RunSpec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bakeoff_loadtest.runner_main")
    ap.add_argument("--spec", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--out-dir", type=Path)
    ap.add_argument("--metrics-port", type=int)
    a = ap.parse_args(argv)
    locust_runners.INTERRUPT.install()
    spec = RunSpec.model_validate_json(a.spec.read_text())

    def save(result: RunResult) -> None:
        write_result_json(a.out, result)

    def save_so_far(result: RunResult) -> None:
        with contextlib.suppress(OSError):  # the final hand-over reports it
            save(result)

    result = run_spec(spec, out_dir=a.out_dir, isolation="inline", metrics_port=a.metrics_port, on_point=save_so_far)
    try:
        save(result)
    except OSError as e:
        print(f"cannot hand the results over: cannot write {a.out}: {e}", file=sys.stderr)
        return 1
    return EXIT_INTERRUPTED if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
