"""How exactly the load harness measures TTFT and ITL, against a server whose timings are known.

The reference server runs pinned to its own core and busy-yields the last 2 ms before each send, so
it is on schedule to well under a millisecond; it reports, per request, what it actually sent. The
harness's error is client minus server for the same request. Target: within max(2 ms, 3%).

    .venv/bin/python benchmarks/loadtest_accuracy.py
"""

from __future__ import annotations

import os
import statistics

from bakeoff_loadtest.runner import run_load
from bakeoff_runtime.workloads import LengthDistribution, Workload
from loadtest_common import cores, errors, machine, pair, start_server, start_times

CASES = [
    # (label, TTFT ms, ITL ms, mode, options)
    ("sync, chat", 50.0, 10.0, "sync", {"max_requests": 30, "api": "chat"}),
    ("sync, completions", 50.0, 10.0, "sync", {"max_requests": 30, "api": "completions"}),
    ("sync, fast tokens", 20.0, 2.0, "sync", {"max_requests": 30}),
    ("concurrency 8", 50.0, 10.0, "concurrency-sweep", {"levels": (8,), "max_requests": 120}),
    ("concurrency 32", 50.0, 10.0, "concurrency-sweep", {"levels": (32,), "max_requests": 320}),
    ("poisson 20/s", 50.0, 10.0, "rate-sweep", {"levels": (20.0,), "duration_s": 6.0}),
]


def main() -> None:
    cs = cores()
    server_core = cs[-1] if len(cs) > 1 else None
    if server_core is not None:
        os.sched_setaffinity(0, set(cs[:-1]))  # the Locust child inherits the remaining cores
    print(f"machine: {machine()}; server pinned to core {server_core}, load generator to {cs[:-1] or cs}")
    wl = Workload(name="custom", prompt=LengthDistribution(mean=64), output=LengthDistribution(mean=64))
    head = f"{'case':<20} {'n':>4} {'TTFT err p50':>13} {'queue p50':>10} {'p99':>7} {'max':>7}"
    head += f" {'ITL err p50':>12} {'p99':>7}"
    head += f" {'ITL p50 ours':>13} {'server':>7} {'server late p99':>16}"
    print(head)
    for label, ttft, itl, mode, opts in CASES:
        srv = start_server(ttft, itl, spin_ms=2.0, core=server_core)
        try:
            r = run_load(srv.url, "ref", wl, mode, **opts)  # type: ignore[arg-type]
            stats = srv.stats()
        finally:
            srv.stop()
        (p,) = r.points
        e = errors(pair(r, p, stats["sent"]), start_times(p))
        server_itl = statistics.median(g for s in stats["sent"] for g in s["itl_ms"])
        print(
            f"{label:<20} {int(e['n']):>4} {e['ttft_p50']:>10.3f} ms {e['queue_p50']:>7.2f} ms "
            f"{e['ttft_p99']:>7.3f} {e['ttft_max']:>7.3f} "
            f"{e['itl_mean_p50']:>9.3f} ms {e['itl_mean_p99']:>7.3f} {p.itl_ms.p50 or 0:>10.3f} ms "
            f"{server_itl:>7.3f} {stats['lateness']['p99_ms']:>13.3f} ms"
        )
        if r.error or p.requests_failed:
            print(f"  failures: {p.failures_by_cause} {r.error or ''}")
    print("errors are client minus server for the same request; positive = measured later than sent")


if __name__ == "__main__":
    main()
