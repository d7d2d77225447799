"""Time `bakeoff predict` over the whole table: 4 formats x every GPU class x the 7 study use cases,
sync and async, for the 8B and 70B models. Prints the figures; asserts nothing.

    .venv/bin/python benchmarks/predict_table.py
"""

from __future__ import annotations

import argparse
import time

from bakeoff_runtime.cli import add_arguments, predict_rows
from bakeoff_runtime.gpus import default_catalog
from bakeoff_runtime.workloads import STUDY_WORKLOADS

TARGET_S = 1.0


def main() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    gpus = default_catalog().names
    for model in ("llama-3.1-8b", "llama-3.1-70b"):
        args = parser.parse_args(
            ["--model", model, "--format", "all", "--gpu", "all", "--workload", ",".join(STUDY_WORKLOADS)]
        )
        start = time.perf_counter()
        rows = predict_rows(args)
        elapsed = time.perf_counter() - start
        fits = sum(r["fits"] for r in rows)
        print(
            f"{model}: {len(rows)} predictions (4 formats x {len(gpus)} GPU classes x {len(STUDY_WORKLOADS)} "
            f"use cases x sync/async, {fits} fit) in {elapsed * 1000:.0f} ms "
            f"({'within' if elapsed < TARGET_S else 'over'} the {TARGET_S:.0f} s target)"
        )


if __name__ == "__main__":
    main()
