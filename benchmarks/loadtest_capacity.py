"""How many concurrent streams and output tokens/s one Locust process on one core drives while
keeping its accuracy, and where that breaks down.

The reference server runs pinned to one core, the load generator (one Locust process, no workers)
to another. Each level runs closed-loop streams of 256 output tokens at 40 ms per token (25 tokens/s
per stream), so 200 streams offer 5,000 output tokens/s. Accuracy is client minus server for the
same request (paired by prompt), so a late server does not count against the harness. Target:
>= 200 streams and >= 5,000 output tokens/s with errors within max(2 ms, 3%).

    .venv/bin/python benchmarks/loadtest_capacity.py [--levels 50,100,200,400,800] [--duration 12]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

from bakeoff_loadtest.runner import run_load
from bakeoff_runtime.workloads import LengthDistribution, Workload
from loadtest_common import cores, errors, machine, pair, start_server, start_times

ITL_MS = 40.0
TTFT_MS = 100.0


def _child_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", default="50,100,200,400,800")
    ap.add_argument("--duration", type=float, default=12.0)
    a = ap.parse_args()
    cs = cores()
    server_core = cs[-1] if len(cs) > 1 else None
    if server_core is not None:
        os.sched_setaffinity(0, {cs[0]})
    print(f"machine: {machine()}; server on core {server_core}, one Locust process on core {cs[0]}")
    wl = Workload(name="custom", prompt=LengthDistribution(mean=128), output=LengthDistribution(mean=256))
    print(
        f"{'streams':>7} {'offered tok/s':>13} {'got tok/s':>9} {'client CPU':>10} {'ITL p50 ours':>12} "
        f"{'server':>7} {'ITL err p50':>11} {'p99':>6} {'TTFT err p50':>12} {'queue p50':>10} "
        f"{'p99':>7} {'srv late p99':>12} {'fail':>5}"
    )
    for level in [int(x) for x in a.levels.split(",")]:
        srv = start_server(TTFT_MS, ITL_MS, spin_ms=0.0, core=server_core)
        try:
            cpu0, t0 = _child_cpu(), time.monotonic()
            r = run_load(
                srv.url, "ref", wl, "concurrency-sweep", levels=(level,), duration_s=a.duration, drain_timeout_s=60
            )
            cpu = (_child_cpu() - cpu0) / (time.monotonic() - t0)
            stats = srv.stats()
        finally:
            srv.stop()
        (p,) = r.points
        pairs = pair(r, p, stats["sent"])
        e = errors(pairs, start_times(p))
        server_itl = statistics.median(g for s in stats["sent"] for g in s["itl_ms"]) if stats["sent"] else 0.0
        offered = level * 1000.0 / ITL_MS
        print(
            f"{level:>7} {offered:>13.0f} {p.output_tokens_per_s:>9.0f} {cpu:>9.0%} {p.itl_ms.p50 or 0:>9.2f} ms "
            f"{server_itl:>7.2f} {e['itl_mean_p50']:>8.3f} ms {e['itl_mean_p99']:>6.2f} {e['ttft_p50']:>9.2f} ms "
            f"{e['queue_p50']:>7.2f} ms "
            f"{e['ttft_p99']:>7.2f} {stats['lateness']['p99_ms']:>9.1f} ms {p.requests_failed:>5}"
        )
    print(
        "tok/s counts the whole point (ramp-up and drain included); client CPU is the Locust process's "
        "CPU time over wall time (includes its start-up); errors are client minus server per request."
    )


if __name__ == "__main__":
    main()
