"""SIGINT and SIGTERM at each stage of `bakeoff loadtest` and `bakeoff run`: the command exits 130,
keeps every measurement it took (marked interrupted), and leaves nothing running and no temp folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import Endpoint, Sandbox, marked_processes, start_faultserver
from tests.faults.test_endpoint_faults import TWO_VARIANTS

pytestmark = pytest.mark.slow

EXIT_INTERRUPTED = 130


@pytest.fixture
def slow_streams() -> Iterator[Endpoint]:
    """A reference server of its own (its request count is this test's): 40 tokens take about 0.3 s."""
    srv = start_faultserver()
    yield srv
    srv.stop()


def requests_seen(srv: Endpoint) -> int:
    import urllib.request

    with urllib.request.urlopen(srv.url + "/stats", timeout=5) as r:
        return int(json.loads(r.read())["requests"])


def wait_for(what: str, ready: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the command ended (exit {proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def interrupt(proc: subprocess.Popen[str], sig: signal.Signals, timeout: float = 60) -> tuple[int, str, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def load_processes(box: Sandbox) -> list[str]:
    return [p for p in box.leftovers() if "bakeoff_loadtest.runner_main" in p]


SIGNALS = [signal.SIGINT, signal.SIGTERM]


def points_written(out: Path) -> int:
    path = out / "points.csv"
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
@pytest.mark.parametrize(
    ("flags", "points"),
    [
        (("--duration", "60"), 1),
        (("--mode", "concurrency-sweep", "--levels", "1,2", "--duration", "8"), 2),
        (("--concurrency", "4", "--workers", "2", "--duration", "60"), 1),
    ],
    ids=["single-level", "second-sweep-level", "two-workers"],
)
def test_loadtest_interrupted_keeps_what_it_measured(
    flags: tuple[str, ...], points: int, sig: signal.Signals, slow_streams: Endpoint, sandbox: Sandbox
) -> None:
    out = sandbox.root / "results"
    proc = sandbox.start(
        "loadtest", "--endpoint", slow_streams.url, "--model", "ref", "--workload", "custom",
        "--prompt-tokens", "8", "--output-tokens", "40", "--out", str(out), "--no-report", *flags,
    )  # fmt: skip
    seen = requests_seen(slow_streams)
    if points > 1:
        wait_for("the first level ended", lambda: points_written(out) == 1, proc)
        seen = requests_seen(slow_streams)
    wait_for("some requests were served", lambda: requests_seen(slow_streams) >= seen + 8, proc)
    code, _, err = interrupt(proc, sig)
    assert code == EXIT_INTERRUPTED, err
    assert f"interrupted by {sig.name}" in err
    (path,) = out.glob("*.json")
    result = json.loads(path.read_text())
    assert result["interrupted"] is True
    assert f"interrupted by {sig.name}" in result["error"]
    assert len(result["points"]) == points
    last = result["points"][-1]
    assert last["requests_ok"] >= 2, "the requests completed before the signal are kept"
    assert last["requests_failed"] == 0  # cut streams are cancelled, not failures
    sandbox.assert_clean()


def test_loadtest_killed_leaves_no_load_running(slow_streams: Endpoint, sandbox: Sandbox) -> None:
    # SIGKILL runs no cleanup at all: the load process and its workers die with their parent.
    proc = sandbox.start(
        "loadtest", "--endpoint", slow_streams.url, "--model", "ref", "--workload", "custom",
        "--prompt-tokens", "8", "--output-tokens", "40", "--concurrency", "2", "--workers", "2",
        "--duration", "60", "--out", str(sandbox.root / "out"), "--no-report",
    )  # fmt: skip
    wait_for("some requests were served", lambda: requests_seen(slow_streams) >= 3, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the command's own group: its load process has a session of its own
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while load_processes(sandbox) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in sandbox.leftovers() if "bakeoff" in p]
    assert not left, left


SLOW_VLLM = """#!/bin/sh
# Stands in for a vLLM that takes minutes to load its weights: never healthy.
exec sleep 600
"""


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_run_interrupted_while_runtimes_start(sig: signal.Signals, sandbox: Sandbox) -> None:
    fake = sandbox.root / "slow-vllm"
    fake.write_text(SLOW_VLLM)
    fake.chmod(0o755)
    sandbox.extra_env["BAKEOFF_VLLM_PYTHON"] = str(fake)
    (sandbox.root / "b.yaml").write_text(TWO_VARIANTS)
    proc = sandbox.start("run", "b.yaml", "--engine", "vllm", "--out", "runs")
    wait_for("both runtimes started", lambda: sum("sleep 600" in p for p in sandbox.leftovers()) == 2, proc)
    code, out, _ = interrupt(proc, sig)
    assert code == EXIT_INTERRUPTED, out
    assert f"interrupted ({sig.name})" in out
    (run_dir,) = (sandbox.root / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["exit_code"] == EXIT_INTERRUPTED
    status = json.loads((run_dir / "one-stream" / "status.json").read_text())
    assert status["complete"] is False
    assert all("before it was measured" in why for why in status["failures"].values())
    sandbox.assert_clean()


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_run_interrupted_while_measuring_keeps_the_measurements(sig: signal.Signals, sandbox: Sandbox) -> None:
    text = TWO_VARIANTS.replace("duration: 3s, maxRequests: 2", "duration: 120s").replace(
        "outputTokens: {mean: 8}", "outputTokens: {mean: 64}"
    )
    (sandbox.root / "b.yaml").write_text(text)
    proc = sandbox.start("run", "b.yaml", "--out", "runs")
    wait_for("both load processes run", lambda: len(load_processes(sandbox)) == 2, proc)
    time.sleep(4)  # each variant completes some requests
    started = time.monotonic()
    code, out, _ = interrupt(proc, sig)
    assert time.monotonic() - started < 30, "the loads stop when told, not at the end of their 120 s"
    assert code == EXIT_INTERRUPTED, out
    (run_dir,) = (sandbox.root / "runs").iterdir()
    status = json.loads((run_dir / "one-stream" / "status.json").read_text())
    assert status["complete"] is False
    rows = {r["variant"]: r for r in status["status"]["results"]}
    for name in ("small-bf16", "small-int4"):
        assert rows[name]["requests"] >= 1, f"{name}: its measurements were lost"
        assert f"interrupted by {sig.name}" in status["failures"][name]
        kept = json.loads((run_dir / "one-stream" / "results" / f"{name}-one-stream-custom-sync.json").read_text())
        assert kept["interrupted"] is True
    assert json.loads((run_dir / "summary.json").read_text())["exit_code"] == EXIT_INTERRUPTED
    sandbox.assert_clean()
    assert not marked_processes(sandbox.marker)
