"""The public entry points: ``run_load`` and ``run_spec``.

A load run needs a process in which Locust (gevent) has patched the standard library before anything
else was imported. ``isolation='auto'`` runs in this process when Locust is already imported here,
and otherwise in a fresh ``python -m bakeoff_loadtest.runner_main`` child process, so callers such as
the operator or a test suite are never monkey-patched. Results are identical either way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any, Final, Literal

from bakeoff_runtime.cost import CostInputs
from bakeoff_runtime.workloads import LoadMode, Workload, use_case_workload

from bakeoff_loadtest import children
from bakeoff_loadtest.records import RequestRecord
from bakeoff_loadtest.result_files import write_results
from bakeoff_loadtest.results import LoadPoint, RunResult, now_utc
from bakeoff_loadtest.slo import SLO
from bakeoff_loadtest.spec import RunSpec
from bakeoff_loadtest.summary import analyse_sweep, no_success, summarize_point

Isolation = Literal["auto", "inline", "subprocess"]
EXIT_INTERRUPTED: Final = 130  # a load process stopped by a signal, its results written


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
    spec: RunSpec,
    started: datetime,
    points: Sequence[LoadPoint],
    warnings: Sequence[str],
    error: str | None,
    *,
    interrupted: bool,
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
        interrupted=interrupted,
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
    started = now_utc()
    if metrics_port is not None:
        exporter = LoadExporter(spec)
        try:
            exporter.start(metrics_port)
        except (OSError, OverflowError) as e:
            busy = f"--metrics-port {metrics_port}: cannot serve metrics there ({e}); choose a free port, or 0"
            return _result(spec, started, [], [], busy, interrupted=False)
        listeners = [*listeners, exporter.observe]
    points: list[LoadPoint] = []
    warnings: list[str] = []
    error: str | None = None
    stop = locust_runners.INTERRUPT
    run = locust_runners.run_point_distributed if spec.workers > 0 else locust_runners.run_point_local
    unwritten: list[str] = []
    interrupted = False

    def save(result: RunResult) -> None:
        # A results folder that turned unwritable (a full disk) must not lose the run: the result still
        # goes back to the caller, which reports where it could not write.
        if out_dir is None:
            return
        try:
            write_results(out_dir, [result])
        except OSError as e:
            if not unwritten:
                unwritten.append(f"cannot write results to {str(out_dir)!r}: {e.strerror or e}")

    try:
        for k, level in enumerate(spec.sweep_levels()):
            label = _level_label(spec, level)
            if stop.signal is not None:
                error, interrupted = f"interrupted by {stop.signal} before {label}", True
                break
            try:
                records, point_warnings, fatal = run(spec, level, listeners)
            except ValueError as e:
                error = str(e)
                break
            point = summarize_point(records, spec, level=level, point_index=k)
            points.append(point)
            warnings.extend(f"{label}: {w}" for w in point_warnings)
            if stop.signal is not None:
                error = f"{label}: interrupted by {stop.signal}; the requests it had measured are kept"
                interrupted = True
            else:
                # A point that no request succeeded in measured nothing: the run failed there.
                why = no_success(point)
                if why is not None:
                    fatal = why if fatal is None else f"{fatal}: {why}"
                if fatal is not None:
                    error = f"{label}: {fatal}"
            if exporter is not None:
                exporter.set_point(point)
            so_far = _result(spec, started, points, warnings, error, interrupted=interrupted)
            save(so_far)
            if on_point is not None:
                on_point(so_far)
            if error is not None:
                break
    finally:
        if exporter is not None:
            exporter.stop()
    result = _result(spec, started, points, [*warnings, *unwritten], error, interrupted=interrupted)
    save(result)
    return result


def _level_label(spec: RunSpec, level: float) -> str:
    if spec.open_loop:
        return f"rate {level:g}/s"
    return f"concurrency {int(level)}"


# Load processes running now, so that an interruption of this process can stop them in order. Once
# interrupted, no new one starts (a caller's thread may be about to start one) until `allow_loads`.
_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.RLock()  # re-entered by a signal handler running on the thread that holds it
_STOPPED: list[signal.Signals] = []


class LoadInterrupted(RuntimeError):
    """The run was interrupted before this load process started."""


def allow_loads() -> None:
    """Let load processes start again after an interruption (a new run of a long-lived process)."""
    with _LIVE_LOCK:
        _STOPPED.clear()


def interrupt_loads(sig: signal.Signals = signal.SIGTERM, *, hard: bool = False) -> None:
    """Ask every load process of this process to stop: ``sig`` (SIGINT or SIGTERM) ends the current load
    point, keeps what it measured and writes the results (the run is marked interrupted by ``sig``);
    ``hard`` kills them. Until :func:`allow_loads`, no new load process starts."""
    with _LIVE_LOCK:
        if not _STOPPED:
            _STOPPED.append(sig)
        live = list(_LIVE)
    for proc in live:
        if hard:
            children.kill_group(proc)
        elif proc.poll() is None:
            proc.send_signal(sig)  # the load process alone: it stops its workers in order


class Interruption:
    """The signal that interrupted the load run of this process, if any (see :func:`interruptible`)."""

    def __init__(self) -> None:
        self.signal: str | None = None


@contextmanager
def interruptible() -> Iterator[Interruption]:
    """SIGINT and SIGTERM stop the running load instead of this process: the load process ends its
    point and hands back what it measured; a second signal kills the load. Main thread only."""
    state = Interruption()
    allow_loads()

    def handle(signum: int, frame: FrameType | None) -> None:
        first = state.signal is None
        state.signal = state.signal or signal.Signals(signum).name
        interrupt_loads(signal.Signals(signum), hard=not first)

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield state
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _run_in_child(spec: RunSpec, out_dir: str | Path | None, metrics_port: int | None) -> RunResult:
    """Run ``spec`` in a load process of its own. The spec goes in on stdin and each result comes back
    as one JSON line on a pipe (the run so far after every point, then the whole run), so that what
    was measured reaches this process even where no file can be written (a full disk)."""
    with tempfile.TemporaryDirectory(prefix="bakeoff-loadtest-") as tmp:
        read_fd, write_fd = os.pipe()
        cmd = [sys.executable, "-m", "bakeoff_loadtest.runner_main", "--result-fd", str(write_fd)]
        if out_dir is not None:
            cmd += ["--out-dir", str(out_dir)]
        if metrics_port is not None:
            cmd += ["--metrics-port", str(metrics_port)]
        env = {**os.environ, "TMPDIR": tmp}  # the load process's own temporary files go with this folder
        latest: list[bytes] = []
        reader = threading.Thread(target=_read_results, args=(read_fd, latest), daemon=True)
        try:
            with _LIVE_LOCK:
                if _STOPPED:
                    os.close(read_fd)
                    raise LoadInterrupted(f"interrupted by {_STOPPED[0].name} before the load started")
                proc = children.start(
                    cmd,
                    own_session=True,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env=env,
                    pass_fds=(write_fd,),
                )
                _LIVE.add(proc)
        finally:
            os.close(write_fd)  # the load process holds its own copy; EOF comes when it exits
        reader.start()
        if _STOPPED:  # a handler that ran on this thread while it held the lock
            proc.send_signal(_STOPPED[0])
        try:
            output, _ = proc.communicate(spec.model_dump_json().encode())
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(proc)
            children.kill_group(proc)  # stragglers of its group (workers)
            reader.join(timeout=30)
        if latest:
            result = RunResult.model_validate_json(latest[-1])
            if proc.returncode not in (0, EXIT_INTERRUPTED) and result.error is None:
                error = f"load process exited with {proc.returncode}: {_tail(output)}"
                return result.model_copy(update={"error": error})
            return result
        raise RuntimeError(f"the load process failed (exit {proc.returncode}): {_tail(output)}")


def _read_results(fd: int, latest: list[bytes]) -> None:
    """Keep the last complete result line the load process sent on ``fd``."""
    with os.fdopen(fd, "rb") as pipe:
        for line in pipe:
            if line.endswith(b"\n") and line.strip():
                latest[:] = [line]


def _tail(data: bytes, n: int = 2000) -> str:
    return data.decode("utf-8", "replace")[-n:].strip()
