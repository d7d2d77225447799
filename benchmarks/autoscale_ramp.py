"""How closely replicas track a load ramp in the playground, against an oracle with the true capacity.

A simulated variant (Llama-3.1-8B INT4 on L4, autoscaled on its token rate) gets a Poisson load whose
rate steps up and down (`bakeoff loadtest --rate R` per step, instruction-following: 128 output
tokens per request). Every second the benchmark records the replicas serving; the oracle's count is
ceil(offered output tokens/s / (target x capacity per replica)), the capacity being the one the
simulator really has (the performance model's, which times it). Printed: over- and under-provisioned
replica-seconds, the time from each load step to a new replica serving, the playground's start time
and memory.

    .venv/bin/python benchmarks/autoscale_ramp.py --step-seconds 30
"""

from __future__ import annotations

import argparse
import itertools
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.playground import Playground  # noqa: E402

OUTPUT_TOKENS = 128
TARGET = 0.8
RATES = (2.0, 8.0, 16.0, 24.0, 16.0, 8.0, 2.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step-seconds", type=int, default=30)
    args = parser.parse_args()
    name, ns = "ramp", "bench"
    variant = {
        "apiVersion": "bakeoff.dev/v1alpha1",
        "kind": "ModelVariant",
        "metadata": {"name": name},
        "spec": {
            "model": {"source": "hf://org/model", "servedName": name},
            "architecture": {"catalog": "llama-3.1-8b"},
            "format": "int4",
            "gpuClass": "l4",
            "tensorParallelSize": 1,
            "engine": "simulator",
            "serving": {"maxModelLen": 4096},
            "autoscaling": {
                "minReplicas": 1,
                "maxReplicas": 8,
                "scaleDownDelay": "20s",
                "targets": {"tokensPerSecondPerReplica": TARGET},
            },
        },
    }
    with tempfile.TemporaryDirectory() as tmp, Playground(Path(tmp) / "pg") as pg:
        print(f"playground started in {pg.startup_seconds} s; memory {pg.memory_mib()['total']:.0f} MiB")
        pg.cluster.create_namespace(ns)
        pg.apply([variant], ns)
        pg.wait_serving(name, 1, ns, timeout=120)
        capacity = float(
            pg.kubectl("get", "mv", name, "-n", ns, "-o", "jsonpath={.status.predicted.outputTokensPerSecond}")
        )
        samples: list[tuple[float, float, int]] = []  # (time, rate, replicas serving)
        steps: list[tuple[float, float, int]] = []  # (step start, rate, oracle)
        start = time.monotonic()
        for rate in RATES:
            oracle = math.ceil(rate * OUTPUT_TOKENS / (TARGET * capacity))
            steps.append((time.monotonic() - start, rate, oracle))
            argv = [
                sys.executable, "-m", "bakeoff_operator.cli", "loadtest", "--endpoint", pg.endpoint(name, ns),
                "--model", name, "--workload", "instruction-following", "--rate", str(rate),
                "--duration", str(args.step_seconds), "--out", str(Path(tmp) / f"load-{rate}"),
            ]  # fmt: skip
            load = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            step_end = time.monotonic() + args.step_seconds
            while time.monotonic() < step_end:
                samples.append((time.monotonic() - start, rate, len(pg.replicas(name, ns))))
                time.sleep(1.0)
            load.terminate()
            load.wait(timeout=60)
        memory = pg.memory_mib()
    over = under = 0.0
    for (t0, rate, serving), (t1, _, _) in itertools.pairwise(samples):
        oracle = math.ceil(rate * OUTPUT_TOKENS / (TARGET * capacity))
        over += max(0, serving - oracle) * (t1 - t0)
        under += max(0, oracle - serving) * (t1 - t0)
    oracle_total = sum(
        math.ceil(r * OUTPUT_TOKENS / (TARGET * capacity)) * (t1 - t0)
        for (t0, r, _), (t1, _, _) in itertools.pairwise(samples)
    )
    print(f"capacity per replica {capacity:.0f} output tokens/s (target {TARGET:.0%}); steps {list(RATES)} req/s")
    for t, rate, oracle in steps:
        reached = next((s for s in samples if s[0] >= t and s[2] >= oracle), None)
        after = f"{reached[0] - t:.1f} s" if reached else "not within the step"
        print(f"  step at {t:5.1f} s: {rate:g} req/s, oracle {oracle} replica(s); reached {after}")
    print(
        f"replica-seconds: oracle {oracle_total:.0f}, over-provisioned {over:.0f} ({over / oracle_total:.0%}), "
        f"under-provisioned {under:.0f} ({under / oracle_total:.0%})"
    )
    print(f"playground memory at the end: {memory['total']:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
