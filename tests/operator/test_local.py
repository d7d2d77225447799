"""`bakeoff run` end to end on this machine: simulator runtimes, the load harness, outputs, exit codes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from bakeoff_operator.local import EXIT_BAD_INPUT, EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_OK

pytestmark = pytest.mark.slow

VARIANTS = """
apiVersion: bakeoff.dev/v1alpha1
kind: ModelVariant
metadata: {name: small-bf16}
spec:
  model: {source: "hf://meta-llama/Llama-3.1-8B-Instruct"}
  architecture: {catalog: llama-3.1-8b}
  format: bf16
  gpuClass: h100
---
apiVersion: bakeoff.dev/v1alpha1
kind: ModelVariant
metadata: {name: small-int4}
spec:
  model: {source: "hf://RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w4a16"}
  architecture: {catalog: llama-3.1-8b}
  format: int4
  gpuClass: h100
  baseline: small-bf16
  accuracy: {recovery: 0.994}
"""

SYNC_BAKEOFF = """
---
apiVersion: bakeoff.dev/v1alpha1
kind: BakeOff
metadata: {name: one-stream}
spec:
  variants: [small-bf16, small-int4]
  workload:
    custom:
      promptTokens: {mean: 64}
      outputTokens: {mean: 64}
  load: {mode: sync, duration: 30s, maxRequests: %d}
  slo: {e2eMs: 5000}
  accuracyBudget: {maxRecoveryLoss: 0.01}
"""


def bakeoff(tmp_path: Path, *args: str, text: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "bakeoff.yaml"
    path.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "bakeoff_operator.cli", "run", str(path), "--out", str(tmp_path / "runs"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_dir(tmp_path: Path) -> Path:
    (only,) = list((tmp_path / "runs").iterdir())
    return only


def test_a_sync_bakeoff_measures_every_variant_and_recommends_the_cheapest(tmp_path: Path) -> None:
    proc = bakeoff(tmp_path, text=VARIANTS + SYNC_BAKEOFF % 2)
    assert proc.returncode == EXIT_OK, proc.stdout[-3000:] + proc.stderr
    out = run_dir(tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True
    # One stream: W4A16 reads a quarter of the weight bytes per token on a single GPU (64 tokens of about
    # 2 ms against 5 ms each: a gap no scheduling delay of a busy machine closes).
    assert summary["bakeoffs"][0]["recommendation"] == "small-int4"
    status = json.loads((out / "one-stream" / "status.json").read_text())
    results = {r["variant"]: r for r in status["status"]["results"]}
    assert set(results) == {"small-bf16", "small-int4"}
    for r in results.values():
        assert r["requests"] == 2
        assert r["costPer1MOutputTokensUSD"] > 0
        assert r["e2eMs"]["p50"] > 0
    assert results["small-int4"]["costPer1MOutputTokensUSD"] < results["small-bf16"]["costPer1MOutputTokensUSD"]
    # The variant against its baseline, in the status and in the report.
    compared = {(c["variant"], c["baseline"], c["metric"]) for c in status["status"]["comparisons"]}
    assert compared == {("small-int4", "small-bf16", m) for m in ("ttft_ms", "tpot_ms", "e2e_ms")}
    report = (out / "one-stream" / "report.html").read_text()
    assert report.count("<svg") >= 3
    assert report.count("<td class='l'>small-int4 vs small-bf16</td>") == 3
    # One frontier: the CLI prints what the status and the report state.
    front = ", ".join(status["status"]["paretoFrontier"])
    assert f"Pareto frontier (cost vs p90 E2E): {front}" in proc.stdout
    assert f"<p>{front} <span class='muted'>(cost vs p90 E2E" in report
    assert list((out / "one-stream" / "results").glob("*.json"))
    assert (out / "one-stream" / "logs" / "small-bf16.log").exists()
    assert "Recommendation" in proc.stdout


def test_the_same_seed_gives_the_same_leaderboard_order(tmp_path: Path) -> None:
    orders = []
    for i in range(2):
        proc = bakeoff(tmp_path / str(i), "--seed", "7", text=VARIANTS + SYNC_BAKEOFF % 1)
        assert proc.returncode == EXIT_OK, proc.stdout[-3000:] + proc.stderr
        status = json.loads((run_dir(tmp_path / str(i)) / "one-stream" / "status.json").read_text())
        rows = sorted(status["status"]["results"], key=lambda r: r["costPer1MOutputTokensUSD"])
        orders.append([r["variant"] for r in rows])
    assert orders[0] == orders[1]


def test_bad_yaml_names_the_document_and_field_and_starts_nothing(tmp_path: Path) -> None:
    text = VARIANTS.replace("format: int4", "format: int3") + SYNC_BAKEOFF % 1
    proc = bakeoff(tmp_path, text=text)
    assert proc.returncode == EXIT_BAD_INPUT
    assert "small-int4" in proc.stdout
    assert "format" in proc.stdout
    assert not (tmp_path / "runs").exists()


def test_a_file_without_a_bakeoff_is_refused_with_the_fix(tmp_path: Path) -> None:
    proc = bakeoff(tmp_path, text=VARIANTS)
    assert proc.returncode == EXIT_BAD_INPUT
    assert "kind: BakeOff" in proc.stdout


def test_a_runtime_that_cannot_start_leaves_partial_results_marked_incomplete(tmp_path: Path) -> None:
    # An interpreter that exits at once stands in for a vLLM that crashes while starting.
    env = {**os.environ, "BAKEOFF_VLLM_PYTHON": "/bin/false"}
    path = tmp_path / "bakeoff.yaml"
    path.write_text(VARIANTS + SYNC_BAKEOFF % 1)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bakeoff_operator.cli",
            "run",
            str(path),
            "--engine",
            "vllm",
            "--out",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert proc.returncode == EXIT_INCOMPLETE, proc.stdout + proc.stderr
    summary = json.loads((run_dir(tmp_path) / "summary.json").read_text())
    assert summary["complete"] is False
    failures = summary["bakeoffs"][0]["failures"]
    assert set(failures) == {"small-bf16", "small-int4"}
    for name, why in failures.items():
        assert "exited with status 1" in why
        assert why.count(f"{name}.log") == 1, f"the log is named once: {why}"
        assert "hack/install-vllm-cpu.sh" in why, "and how to install vLLM"


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def test_ctrl_c_stops_every_runtime_and_keeps_partial_results(tmp_path: Path) -> None:
    path = tmp_path / "bakeoff.yaml"
    path.write_text(VARIANTS + SYNC_BAKEOFF % 1000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bakeoff_operator.cli", "run", str(path), "--out", str(tmp_path / "runs")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    runtimes: set[int] = set()
    while time.monotonic() < deadline and len(runtimes) < 2:
        runtimes = {c for c in _children(proc.pid) if b"bakeoff_runtime.sim" in Path(f"/proc/{c}/cmdline").read_bytes()}
        time.sleep(0.2)
    assert len(runtimes) == 2, "both simulator runtimes should be running"
    time.sleep(3)  # some requests complete
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, out
    assert "interrupted" in out
    for pid in runtimes:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    summary = json.loads((run_dir(tmp_path) / "summary.json").read_text())
    assert summary["complete"] is False
    assert summary["exit_code"] == EXIT_INTERRUPTED
    status = json.loads((run_dir(tmp_path) / "one-stream" / "status.json").read_text())
    assert status["complete"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--duration", "0"], "positive"),
        (["--set", "NOEQUALS"], "NAME=VALUE"),
        (["--bakeoff", "nope"], "--bakeoff nope"),
    ],
    ids=["duration", "set", "unknown-bakeoff"],
)
def test_bad_flags_are_refused_with_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    proc = bakeoff(tmp_path, *args, text=VARIANTS + SYNC_BAKEOFF % 1)
    assert proc.returncode == EXIT_BAD_INPUT
    assert message in proc.stdout + proc.stderr


def test_examples_all_load_and_size(tmp_path: Path) -> None:
    from bakeoff_operator.api.bakeoff import BakeOff
    from bakeoff_operator.api.modelvariant import ModelVariant
    from bakeoff_operator.local import catalog_with, load_inputs
    from bakeoff_operator.planning.bakeoff_plan import plan_bakeoff

    root = Path(__file__).resolve().parents[2] / "examples"
    for path in sorted(root.glob("*.yaml")):
        subs = {name: "/models/tiny" for name in re.findall(r"\$\{(\w+)\}", path.read_text())}
        resources = load_inputs([path], subs)
        variants = [r for r in resources if isinstance(r, ModelVariant)]
        for b in (r for r in resources if isinstance(r, BakeOff)):
            plan = plan_bakeoff(b, variants, catalog_with(resources))
            unfit = [r.variant for r in plan.runs if not r.sizing.fits]
            assert not unfit, f"{path.name}: {b.metadata.name}: {unfit} do not fit"


def test_readme_example_command_is_the_quickstart() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert textwrap.dedent("bakeoff run examples/quickstart.yaml") in readme


def test_runs_started_in_the_same_second_get_their_own_directory(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor
    from datetime import UTC, datetime

    from bakeoff_operator.local import new_run_dir

    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with ThreadPoolExecutor(max_workers=8) as pool:
        dirs = list(pool.map(lambda _: new_run_dir(tmp_path, now), range(16)))
    assert len(set(dirs)) == 16
    assert sorted(d.name for d in dirs)[:2] == ["20260102T030405Z", "20260102T030405Z-10"]
    assert all(d.is_dir() for d in dirs)


def test_two_runs_at_once_keep_both_results(tmp_path: Path) -> None:
    path = tmp_path / "bakeoff.yaml"
    path.write_text(VARIANTS + SYNC_BAKEOFF % 1)
    cmd = [sys.executable, "-m", "bakeoff_operator.cli", "run", str(path), "--out", str(tmp_path / "runs")]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [EXIT_OK, EXIT_OK], outs
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:
        assert json.loads((run / "summary.json").read_text())["complete"] is True
