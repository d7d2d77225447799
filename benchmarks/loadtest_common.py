"""Shared parts of the load-harness benchmarks: a pinned reference server and request pairing."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from typing import Any

from bakeoff_loadtest.results import LoadPoint, RunResult
from bakeoff_loadtest.workloads import WorkloadSampler


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[str]

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/stats", timeout=30) as r:
            return dict(json.loads(r.read()))

    def reset(self) -> None:
        req = urllib.request.Request(self.url + "/stats/reset", data=b"{}", method="POST")
        urllib.request.urlopen(req, timeout=30).read()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def start_server(ttft_ms: float, itl_ms: float, spin_ms: float, core: int | None) -> Server:
    """The reference server, pinned to ``core`` when given (it needs its own core to be fair)."""
    cmd = [sys.executable, "-m", "bakeoff_loadtest.refserver", "--port", "0"]
    cmd += ["--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms), "--spin-ms", str(spin_ms)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    if core is not None:
        os.sched_setaffinity(proc.pid, {core})
    assert proc.stdout is not None
    port = int(proc.stdout.readline().split()[1])
    return Server(f"http://127.0.0.1:{port}", proc)


def start_times(point: LoadPoint) -> dict[int, float]:
    """Each request's start on the wall clock (the point's first start + its offset)."""
    base = point.started_unix or 0.0
    return {r.index: base + r.start_offset_s for r in point.requests}


def pair(result: RunResult, point: LoadPoint, sent: list[dict[str, Any]]) -> list[tuple[Any, dict[str, Any]]]:
    """Each successful request of the point with what the server sent for it (by prompt words)."""
    sampler = WorkloadSampler(result.spec.workload, result.spec.seed)
    by_key = {s["key"]: s for s in sent}
    out = []
    for r in point.requests:
        if not r.ok:
            continue
        key = " ".join(sampler.request(r.index).prompt.split()[:16])
        if key in by_key:
            out.append((r, by_key[key]))
    return out


def q(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def errors(pairs: list[tuple[Any, dict[str, Any]]], starts: dict[int, float]) -> dict[str, float]:
    """Client minus server, in ms.

    TTFT: when the client timed the first token (its start + TTFT, on the shared wall clock) minus
    when the server wrote it: the harness's own error, excluding the time a busy server took to
    accept and read the request (which a real TTFT rightly includes; reported as ``queue``).
    ITL: each request's mean gap, client minus server.
    """
    ttft = [(starts[c.index] + c.ttft_ms / 1000 - s["first_unix"]) * 1000 for c, s in pairs]
    queue = [(s["t0_unix"] - starts[c.index]) * 1000 for c, s in pairs]
    itl = [c.itl_mean_ms - statistics.fmean(s["itl_ms"]) for c, s in pairs if s["itl_ms"] and c.itl_mean_ms]
    return {
        "n": float(len(pairs)),
        "ttft_p50": q(ttft, 50),
        "ttft_p99": q(ttft, 99),
        "ttft_max": max(ttft, default=float("nan")),
        "queue_p50": q(queue, 50),
        "itl_mean_p50": q(itl, 50),
        "itl_mean_p99": q(itl, 99),
    }


def machine() -> str:
    return f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start"
