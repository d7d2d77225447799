"""`bakeoff loadtest` flags to a RunSpec: one load-mode vocabulary, one-level sweeps, the SLO percentile."""

from __future__ import annotations

import argparse

import pytest
from bakeoff_loadtest.cli import add_parser, build_spec
from bakeoff_loadtest.slo import Percentile
from bakeoff_loadtest.spec import RunSpec, workers_for
from bakeoff_runtime.workloads import LoadMode


def spec_of(*flags: str) -> RunSpec:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["loadtest", "--endpoint", "http://127.0.0.1:9", "--model", "m", *flags])
    return build_spec(args)


@pytest.mark.parametrize(
    ("flags", "mode", "levels"),
    [
        ([], LoadMode.SYNC, (1.0,)),
        (["--concurrency", "8"], LoadMode.CONCURRENCY_SWEEP, (8.0,)),
        (["--mode", "concurrency-sweep"], LoadMode.CONCURRENCY_SWEEP, (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)),
        (["--mode", "concurrency-sweep", "--levels", "1,4"], LoadMode.CONCURRENCY_SWEEP, (1.0, 4.0)),
        (["--rate", "2.5"], LoadMode.RATE_SWEEP, (2.5,)),
        (["--mode", "rate-sweep", "--levels", "1,2"], LoadMode.RATE_SWEEP, (1.0, 2.0)),
    ],
    ids=["sync", "one-concurrency", "default-sweep", "sweep", "one-rate", "rate-sweep"],
)
def test_modes_and_levels(flags: list[str], mode: LoadMode, levels: tuple[float, ...]) -> None:
    spec = spec_of(*flags)
    assert (spec.mode, spec.sweep_levels()) == (mode, levels)


@pytest.mark.parametrize(
    ("flag", "percentile"),
    [("p95", Percentile.P95), ("95", Percentile.P95), ("99.0", Percentile.P99), ("p50", Percentile.P50)],
)
def test_the_slo_percentile_is_one_the_api_allows(flag: str, percentile: Percentile) -> None:
    spec = spec_of("--slo-ttft-ms", "200", "--slo-percentile", flag)
    assert spec.slo is not None
    assert spec.slo.percentile is percentile


def test_no_bound_means_no_slo() -> None:
    assert spec_of().slo is None
    assert spec_of("--slo-e2e-ms", "900").slo is not None


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--concurrency", "2", "--rate", "1"], "give one"),
        (["--concurrency", "2", "--levels", "1,2"], "not both"),
        (["--mode", "rate-sweep", "--concurrency", "2"], "applies to --mode concurrency-sweep"),
    ],
    ids=["both-shortcuts", "shortcut-and-levels", "wrong-mode"],
)
def test_conflicting_load_flags_name_the_fix(flags: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spec_of(*flags)


@pytest.mark.parametrize(
    ("streams", "per_process", "workers"),
    [(1, 200, 0), (200, 200, 0), (201, 200, 2), (450, 200, 3), (8, 4, 2), (10**9, 1, 256)],
)
def test_a_load_beyond_one_process_gets_one_worker_per_process(streams: float, per_process: int, workers: int) -> None:
    assert workers_for(streams, per_process) == workers


def test_the_peak_streams_of_each_load_mode() -> None:
    def spec(*flags: str) -> RunSpec:
        parser = argparse.ArgumentParser()
        add_parser(parser.add_subparsers())
        return build_spec(parser.parse_args(["loadtest", "--endpoint", "http://127.0.0.1:1", "--model", "m", *flags]))

    assert spec().peak_streams() == 1  # sync
    assert spec("--mode", "concurrency-sweep", "--levels", "4,64,16").peak_streams() == 64
    rate = spec("--mode", "rate-sweep", "--levels", "2,50", "--max-in-flight", "300")
    assert rate.peak_streams(latency_s=4.0) == 200  # Little's law: 50/s x 4 s
    assert rate.peak_streams(latency_s=60.0) == 300  # the harness never holds more than max_in_flight
    assert rate.peak_streams() == 50
    with pytest.raises(ValueError, match="at least 1"):
        workers_for(10, 0)
