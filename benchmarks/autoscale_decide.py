"""Time of one autoscaling decision for many variants at once (`autoscaling.decide`), GPUs short.

.venv/bin/python benchmarks/autoscale_decide.py --variants 200
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from bakeoff_operator.autoscaling.decide import Capacity, Policy, VariantHistory, VariantLoad, decide


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    rng = random.Random(0)
    classes = ["h100", "h200", "a100-80gb", "l40s", "l4"]
    policies = [
        Policy(
            variant=f"v{i:03d}",
            namespace=f"team-{i % 7}",
            gpu_class=classes[i % len(classes)],
            gpus_per_replica=rng.choice([1, 1, 2, 4]),
            min_replicas=1,
            max_replicas=16,
            queue_depth=4.0,
            hybrid=i % 5 == 0,
            max_num_seqs=256,
        )
        for i in range(args.variants)
    ]
    capacity = {p.key: Capacity(tokens_per_second=rng.uniform(500, 5000), source="predicted") for p in policies}
    history = {p.key: VariantHistory(replicas=rng.randint(1, 4)) for p in policies}
    free = dict.fromkeys(classes, args.variants // len(classes))  # fewer than the variants wish for
    times = []
    for r in range(args.rounds):
        observed = {
            p.key: VariantLoad(
                waiting=rng.uniform(0, 20),
                running=rng.uniform(0, 300),
                output_tokens_per_s=rng.uniform(0, 30000),
                kv_cache_usage=rng.uniform(0, 1),
            )
            for p in policies
        }
        start = time.perf_counter()
        out = decide(observed, policies, capacity, free, history, float(r * 15))
        times.append(time.perf_counter() - start)
        history = dict(out.history)
    capped = sum(1 for d in out.decisions if d.limit.value == "InsufficientGPU")
    print(f"{args.variants} variants, {len(classes)} GPU classes, {args.rounds} rounds")
    print(f"decision time: median {statistics.median(times) * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms")
    print(f"last round: {capped} variants capped by GPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
