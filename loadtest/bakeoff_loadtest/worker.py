"""Entry point of a Locust worker process for one load point (started by the master side)."""

from __future__ import annotations

# isort: off
from bakeoff_loadtest import locust_runners  # first: Locust must patch the standard library early
# isort: on

import argparse
from pathlib import Path

from bakeoff_loadtest.spec import RunSpec


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bakeoff_loadtest.worker")
    ap.add_argument("--master-port", type=int, required=True)
    ap.add_argument("--spec", type=Path, required=True)
    ap.add_argument("--level", type=float, required=True)
    ap.add_argument("--workers", type=int, required=True)
    a = ap.parse_args(argv)
    spec = RunSpec.model_validate_json(a.spec.read_text())
    locust_runners.worker_main(a.master_port, spec, a.level, a.workers)


if __name__ == "__main__":
    main()
