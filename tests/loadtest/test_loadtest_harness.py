"""The harness against reference servers with exactly known timings: real Locust, real sockets.

Every run goes through ``run_load``, which starts a Locust process of its own (this pytest process
is never monkey-patched by gevent). Tolerances: TTFT and ITL within max(2 ms, 3%) of what the
server actually sent; token counts exact.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bakeoff_loadtest.result_files import load_result
from bakeoff_loadtest.results import SCHEMA_VERSION
from bakeoff_loadtest.runner import run_load
from bakeoff_loadtest.slo import SLO
from bakeoff_runtime.cost import CostInputs
from bakeoff_runtime.workloads import LengthDistribution, Workload

RefServer = Any  # the fixture type lives in conftest.py

WL = Workload(name="custom", prompt=LengthDistribution(mean=48), output=LengthDistribution(mean=24))


def _tol(expected_ms: float) -> float:
    return max(2.0, 0.03 * expected_ms)


def _load() -> str:
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_sync_timings_and_tokens_match_the_reference_server(refserver: RefServer, api: str) -> None:
    refserver.reset()
    r = run_load(refserver.url, "ref", WL, "sync", api=api, max_requests=8, duration_s=60)
    assert r.error is None, r.error
    (p,) = r.points
    assert (p.requests_ok, p.requests_failed) == (8, 0)
    # The truth is what the server actually sent, request by request (sync: same order), so a
    # late server does not count against the harness; only the client's own error does. Medians
    # over requests: a systematic error fails every request, while one request descheduled by a
    # busy machine (the first one also sets up its connection) does not measure the harness.
    sent = refserver.stats()["sent"]
    assert len(sent) == 8
    ours = sorted(p.requests, key=lambda s: s.index)
    ttft_err = [abs(c.ttft_ms - s["ttft_ms"]) for c, s in zip(ours, sent, strict=True)]
    itl_mean_err = [abs(c.itl_mean_ms - sum(s["itl_ms"]) / len(s["itl_ms"])) for c, s in zip(ours, sent, strict=True)]
    ttft_tol = _tol(refserver.ttft_ms)
    itl_tol = _tol(refserver.itl_ms)
    assert statistics.median(ttft_err) <= ttft_tol, (ttft_err, _load())
    assert statistics.median(itl_mean_err) <= itl_tol, (itl_mean_err, _load())
    server_itl = [g for s in sent for g in s["itl_ms"]]
    assert p.itl_ms.p50 == pytest.approx(statistics.median(server_itl), abs=itl_tol), _load()
    # TPOT from usage tokens equals the mean gap here (one token per chunk).
    assert p.tpot_ms.p50 == pytest.approx(statistics.median(c.itl_mean_ms for c in ours), abs=0.05)
    # Exact token counts from usage: 24 out, 48 prompt words per request.
    assert p.output_tokens == 8 * 24
    assert p.prompt_tokens == 8 * 48
    assert p.itl_ms.count == 8 * 23
    assert p.output_length_mismatches == 0
    assert all(s.content_chunks == 24 for s in p.requests)
    assert p.concurrency == 1


def test_output_tokens_come_from_usage_not_chunks(refserver: RefServer) -> None:
    r = run_load(refserver.url, "multi", WL, "sync", max_requests=2)
    (p,) = r.points
    assert p.requests_ok == 2
    assert p.output_tokens == 48  # usage says 24 per request; only 12 chunks each arrived
    assert {s.content_chunks for s in p.requests} == {12}
    # TPOT divides by tokens, so it halves the per-chunk gap.
    assert p.tpot_ms.p50 == pytest.approx(refserver.itl_ms * 11 / 23, abs=_tol(refserver.itl_ms))


@pytest.mark.parametrize(
    ("model", "cause", "fragment"),
    [
        ("fail-500", "http_status", "HTTP 500"),
        ("not-sse", "not_sse", "is not text/event-stream"),
        ("no-usage", "no_usage", "include_usage"),
        ("truncate", "truncated", "[DONE]"),
        ("error-event", "stream_error", "reference error event"),
    ],
)
def test_failures_are_counted_with_their_cause(refserver: RefServer, model: str, cause: str, fragment: str) -> None:
    r = run_load(refserver.url, model, WL, "concurrency-sweep", levels=(2,), max_requests=4)
    (p,) = r.points
    assert p.requests_ok == 0
    assert p.failures_by_cause == {cause: 4}
    assert fragment in p.failure_examples[0]
    assert p.meets_slo is None
    assert p.output_tokens == 0


def test_unreachable_endpoint_ends_the_run_cleanly(tmp_path: Path) -> None:
    r = run_load("http://127.0.0.1:1", "ref", WL, "concurrency-sweep", levels=(1, 2), duration_s=30, out_dir=tmp_path)
    assert r.error is not None
    assert "endpoint unreachable" in r.error
    assert len(r.points) == 1  # the sweep stopped at its first level
    assert r.points[0].failures_by_cause == {"connection": 3}
    assert load_result(tmp_path / "ref-custom-concurrency-sweep.json").error == r.error


def test_concurrency_sweep_with_slo_cost_and_partial_results(refserver: RefServer, tmp_path: Path) -> None:
    r = run_load(
        refserver.url,
        "ref",
        WL,
        "concurrency-sweep",
        levels=(1, 4),
        max_requests=12,
        slo=SLO(ttft_ms=200, itl_ms=50),
        cost=CostInputs(gpu_class="H100", price_per_gpu_hour=3.29),
        out_dir=tmp_path,
        variant="fp8",
    )
    assert [p.concurrency for p in r.points] == [1, 4]
    assert all(p.requests_ok == 12 for p in r.points)
    # four streams in flight carry about four times the tokens per second
    ratio = r.points[1].output_tokens_per_s / r.points[0].output_tokens_per_s
    assert 2.8 < ratio < 4.4
    assert all(p.meets_slo for p in r.points)
    assert r.sweep is not None
    assert r.sweep.max_concurrency_under_slo == 4
    best = r.chosen_point()
    assert best is r.points[1]
    assert best.usd_per_1m_output_tokens == pytest.approx(
        3.29 * best.wall_s / 3600 / best.output_tokens * 1e6, rel=1e-9
    )
    assert (tmp_path / "fp8-custom-concurrency-sweep.json").exists()
    assert (tmp_path / "points.csv").read_text().count("\n") == 3


def test_rate_mode_is_open_loop_at_the_offered_rate(refserver: RefServer) -> None:
    r = run_load(refserver.url, "ref", WL, "rate-sweep", levels=(20,), arrival="constant", duration_s=2.0)
    (p,) = r.points
    assert p.rate_rps == 20
    assert p.arrival == "constant"
    assert p.requests_started == 40  # arrivals at 0, 50 ms, ..., 1950 ms
    starts = sorted(s.start_offset_s for s in p.requests)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert sum(gaps) / len(gaps) == pytest.approx(0.05, abs=0.002)
    assert p.requests_ok == 40


def test_distributed_master_and_worker_on_loopback(refserver: RefServer) -> None:
    r = run_load(refserver.url, "ref", WL, "concurrency-sweep", levels=(2,), max_requests=10, workers=1)
    assert r.error is None, r.error
    (p,) = r.points
    assert p.requests_ok == 10
    assert sorted(s.index for s in p.requests) == list(range(10))
    assert p.output_tokens == 240
    # the server never sends early, so no measured TTFT can be below its schedule
    assert p.ttft_ms.min is not None
    assert p.ttft_ms.min >= refserver.ttft_ms


def test_cli_runs_and_writes_results(refserver: RefServer, tmp_path: Path) -> None:
    base = [sys.executable, "-m", "bakeoff_loadtest.cli", "loadtest", "--endpoint", refserver.url]
    ok = subprocess.run(
        [*base, "--model", "ref", "--workload", "custom", "--prompt-tokens", "8", "--output-tokens", "4",
         "--max-requests", "3", "--price-per-gpu-hour", "1.0", "--out", str(tmp_path)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "c=1" in ok.stdout
    data = json.loads((tmp_path / "ref-custom-sync.json").read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["points"][0]["requests_ok"] == 3
    assert (tmp_path / "report.html").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--mode", "rate-sweep"], "--rate"),
        (["--concurrency", "0"], "--concurrency"),
        (["--mode", "sync", "--concurrency", "4"], "--concurrency applies to --mode concurrency-sweep"),
        (["--slo-ttft-ms", "100", "--slo-percentile", "p97"], "p50, p90, p95, p99"),
        (["--slo-ttft-ms", "-5"], "--slo-ttft-ms"),
        (["--workload", "chatbot"], "unknown workload 'chatbot'"),
        (["--workload", "custom"], "needs --prompt-tokens and --output-tokens"),
        (["--mode", "warp"], "invalid choice"),
        (["--levels", "1,x"], "comma-separated numbers"),
    ],
    ids=[
        "rate-without-rate",
        "zero-concurrency",
        "concurrency-in-sync",
        "percentile",
        "negative-slo",
        "unknown-workload",
        "custom",
        "mode",
        "levels",
    ],
)
def test_cli_bad_flags_exit_2_naming_the_flag(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from bakeoff_loadtest.cli import main

    argv = ["loadtest", "--endpoint", "http://127.0.0.1:9", "--model", "m", *flags]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = int(e.code or 0)
    assert code == 2
    assert message in capsys.readouterr().err
    assert "locust" not in sys.modules  # rejecting flags never loads the load generator
