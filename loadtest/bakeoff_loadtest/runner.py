"""The public entry points: ``run_load`` and ``run_spec``.

A load run needs a process in which Locust (gevent) has patched the standard library before anything
else was imported. ``isolation='auto'`` runs in this process when Locust is already imported here,
and otherwise in a fresh ``python -m bakeoff_loadtest.runner_main`` child process, so callers such as
the operator or a test suite are never monkey-patched. Results are identical either way.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from bakeoff_runtime.cost import CostInputs
from bakeoff_runtime.workloads import LoadMode, Workload, use_case_workload

from bakeoff_loadtest.records import RequestRecord
from bakeoff_loadtest.result_files import load_result, write_results
from bakeoff_loadtest.results import LoadPoint, RunResult, now_utc
from bakeoff_loadtest.slo import SLO
from bakeoff_loadtest.spec import RunSpec
from bakeoff_loadtest.summary import analyse_sweep, summarize_point

Isolation = Literal["auto", "inline", "subprocess"]


def run_load(
    endpoint: str,
    model: str,
    workload: str | Workload,
    mode: str | LoadMode = LoadMode.SYNC,
    *,
    slo: SLO | None = None,
    cost: CostInputs | None = None,
    out_dir: str | Path | None = None,
    isolation: Isolation = "auto",
    metrics_port: int | None = None,
    **options: Any,
) -> RunResult:
    """Run a load test of one variant and return its results.

    ``workload`` is a use-case id (e.g. 'summarization') or a :class:`Workload`; ``options`` are the
    other :class:`RunSpec` fields (``levels``, ``duration_s``, ``max_requests``, ``workers``,
    ``variant``, ``api``, ``seed``, ...).
    """
    wl = use_case_workload(workload) if isinstance(workload, str) else workload
    spec = RunSpec(
        endpoint=endpoint,
        model=model,
        workload=wl,
        mode=LoadMode(mode),
        slo=slo,
        cost=cost or CostInputs(),
        **options,
    )
    return run_spec(spec, out_dir=out_dir, isolation=isolation, metrics_port=metrics_port)


def run_spec(
    spec: RunSpec,
    *,
    out_dir: str | Path | None = None,
    isolation: Isolation = "auto",
    metrics_port: int | None = None,
    listeners: Sequence[Callable[[RequestRecord], None]] = (),
    on_point: Callable[[RunResult], None] | None = None,
) -> RunResult:
    """Run ``spec``; with ``out_dir``, results so far are written after every load point."""
    inline = isolation == "inline" or (isolation == "auto" and "locust" in sys.modules)
    if not inline:
        if listeners:
            raise ValueError("record listeners need isolation='inline' (a process that imported Locust first)")
        return _run_in_child(spec, out_dir, metrics_port)
    return _run_inline(spec, out_dir, metrics_port, list(listeners), on_point)


def _locust_version() -> str:
    try:
        return metadata.version("locust")
    except metadata.PackageNotFoundError:
        return ""


def _result(
    spec: RunSpec, started: datetime, points: Sequence[LoadPoint], warnings: Sequence[str], error: str | None
) -> RunResult:
    """The run as it stands: built whole from what was measured so far."""
    return RunResult(
        locust_version=_locust_version(),
        spec=spec,
        started_at=started,
        finished_at=now_utc(),
        points=tuple(points),
        sweep=analyse_sweep(points, spec) if spec.mode is not LoadMode.SYNC else None,
        warnings=tuple(warnings),
        error=error,
    )


def _run_inline(
    spec: RunSpec,
    out_dir: str | Path | None,
    metrics_port: int | None,
    listeners: list[Callable[[RequestRecord], None]],
    on_point: Callable[[RunResult], None] | None,
) -> RunResult:
    from bakeoff_loadtest import locust_runners  # patches this process: see the module doc
    from bakeoff_loadtest.exporter import LoadExporter

    exporter: LoadExporter | None = None
    if metrics_port is not None:
        exporter = LoadExporter(spec)
        exporter.start(metrics_port)
        listeners = [*listeners, exporter.observe]
    started = now_utc()
    points: list[LoadPoint] = []
    warnings: list[str] = []
    error: str | None = None
    run = locust_runners.run_point_distributed if spec.workers > 0 else locust_runners.run_point_local
    try:
        for k, level in enumerate(spec.sweep_levels()):
            try:
                records, point_warnings, fatal = run(spec, level, listeners)
            except ValueError as e:
                error = str(e)
                break
            point = summarize_point(records, spec, level=level, point_index=k)
            points.append(point)
            label = _level_label(spec, level)
            warnings.extend(f"{label}: {w}" for w in point_warnings)
            if fatal is not None:
                error = f"{label}: {fatal}"
            if exporter is not None:
                exporter.set_point(point)
            so_far = _result(spec, started, points, warnings, error)
            if out_dir is not None:
                write_results(out_dir, [so_far])
            if on_point is not None:
                on_point(so_far)
            if fatal is not None:
                break
    finally:
        if exporter is not None:
            exporter.stop()
    result = _result(spec, started, points, warnings, error)
    if out_dir is not None:
        write_results(out_dir, [result])
    return result


def _level_label(spec: RunSpec, level: float) -> str:
    if spec.open_loop:
        return f"rate {level:g}/s"
    return f"concurrency {int(level)}"


def _run_in_child(spec: RunSpec, out_dir: str | Path | None, metrics_port: int | None) -> RunResult:
    with tempfile.TemporaryDirectory(prefix="bakeoff-loadtest-") as tmp:
        spec_path = Path(tmp) / "spec.json"
        out_path = Path(tmp) / "result.json"
        spec_path.write_text(spec.model_dump_json())
        cmd = [sys.executable, "-m", "bakeoff_loadtest.runner_main", "--spec", str(spec_path)]
        cmd += ["--out", str(out_path)]
        if out_dir is not None:
            cmd += ["--out-dir", str(out_dir)]
        if metrics_port is not None:
            cmd += ["--metrics-port", str(metrics_port)]
        proc = subprocess.run(cmd, capture_output=True, check=False)
        if out_path.exists():
            result = load_result(out_path)
            if proc.returncode != 0 and result.error is None:
                error = f"load process exited with {proc.returncode}: {_tail(proc.stderr)}"
                return result.model_copy(update={"error": error})
            return result
        raise RuntimeError(f"the load process failed (exit {proc.returncode}): {_tail(proc.stderr)}")


def _tail(data: bytes, n: int = 2000) -> str:
    return data.decode("utf-8", "replace")[-n:].strip()
