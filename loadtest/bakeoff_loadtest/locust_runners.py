"""One load point run by Locust: in this process (a LocalRunner), or by a master here with worker
processes on 127.0.0.1 (``run_point_distributed`` and ``worker_main``).

Runs in a process that imported Locust first (gevent): see :mod:`bakeoff_loadtest.locust_users`.
"""

from __future__ import annotations

# isort: off
import locust  # noqa: F401  first: Locust monkey-patches the standard library for gevent
# isort: on

import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gevent
from locust.env import Environment

from bakeoff_loadtest import children
from bakeoff_loadtest.locust_users import PointHolder, user_class, users_for
from bakeoff_loadtest.point_run import PointRun, RecordListener
from bakeoff_loadtest.records import RequestRecord
from bakeoff_loadtest.spec import RunSpec

PointOutcome = tuple[list[RequestRecord], list[str], str | None]
# How long a master waits for its workers' last records once the run is interrupted.
INTERRUPT_GRACE_S = 5.0


class Interrupt:
    """A request to stop this process's load run (a signal, or the master's stop message to a worker):
    the current load point ends at once, the requests in flight are cancelled, what it measured is kept."""

    def __init__(self) -> None:
        self.signal: str | None = None

    def request(self, name: str) -> None:
        self.signal = self.signal or name

    def install(self) -> None:
        """SIGINT and SIGTERM request the stop (in the load process, which runs one run only)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: self.request(signal.Signals(signum).name))


INTERRUPT = Interrupt()


def _watch(point: PointRun, warnings: list[str]) -> None:
    """Wait until the point is done: bounds reached and nothing in flight, the endpoint silent (the
    requests in flight are then cut as timeouts), the run interrupted, or the drain times out."""
    drain_end: float | None = None
    while not point.finished:
        gevent.sleep(0.01)
        if INTERRUPT.signal is not None:
            point.cancelled_because = f"still in flight when the run was interrupted ({INTERRUPT.signal})"
            point.stopping = True
            break
        if point.fatal is not None and point.in_flight == 0:
            break
        if point.exhausted:
            now = time.perf_counter()
            cut = point.silence(now)
            if cut is not None:
                point.cut = cut
                warnings.append(f"{point.in_flight} requests in flight were cut: {cut}")
                break
            if drain_end is None:
                drain_end = now + point.spec.drain_timeout_s
            elif now >= drain_end:
                warnings.append(
                    f"{point.in_flight} requests were still in flight {point.spec.drain_timeout_s:g}s after "
                    "the load point ended and were cancelled"
                )
                break


def _stop(point: PointRun, warnings: list[str]) -> None:
    """No new requests; open-loop arrivals still in flight are cancelled."""
    point.stopping = True
    point.cancel_open_loop()
    warnings.extend(point.notes())


def run_point_local(spec: RunSpec, level: float, listeners: list[RecordListener] | None = None) -> PointOutcome:
    """Run one load point in this process with a Locust LocalRunner: (records, warnings, fatal)."""
    holder = PointHolder()
    env = Environment(user_classes=[user_class(spec, holder)], host=spec.endpoint)
    point = holder.hold(PointRun(spec, level, events=env.events, listeners=listeners))
    runner = env.create_local_runner()
    warnings: list[str] = []
    n = users_for(spec, level)
    runner.start(n, spawn_rate=float(max(1, n) * 100))
    _watch(point, warnings)
    _stop(point, warnings)
    runner.quit()
    return point.records, warnings, point.fatal


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_point_distributed(spec: RunSpec, level: float, listeners: list[RecordListener] | None = None) -> PointOutcome:
    """Run one load point with a Locust master here and worker processes on 127.0.0.1.

    Workers stream their records to the master in each ``report_to_master`` report and send the rest
    with a final ``bakeoff_done`` message; the master stops when every worker is done.
    """
    workers = spec.workers if spec.open_loop else max(1, min(spec.workers, int(level)))
    holder = PointHolder()
    env = Environment(user_classes=[user_class(spec, holder)], host=spec.endpoint)
    port = free_port()
    master = env.create_master_runner("127.0.0.1", port)
    records: list[RequestRecord] = []
    done: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    fatal: str | None = None
    calls = listeners or []

    def take(wire: list[dict[str, Any]]) -> None:
        for d in wire:
            rec = RequestRecord.from_wire(d)
            records.append(rec)
            for listener in calls:
                listener(rec)

    def on_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
        take(data.get("bakeoff_records", []))

    def on_done(environment: Any, msg: Any, **_: Any) -> None:
        take(msg.data.get("records", []))
        done[msg.node_id] = msg.data

    env.events.worker_report.add_listener(on_worker_report)  # type: ignore[no-untyped-call]
    master.register_message("bakeoff_done", on_done)

    tmp = tempfile.TemporaryDirectory(prefix="bakeoff-loadtest-workers-")
    spec_path = Path(tmp.name) / "spec.json"
    spec_path.write_text(spec.model_dump_json())
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for k in range(workers):
            log = Path(tmp.name) / f"worker-{k}.log"
            cmd = [
                sys.executable,
                "-m",
                "bakeoff_loadtest.worker",
                "--master-port",
                str(port),
                "--spec",
                str(spec_path),
                "--level",
                repr(level),
                "--workers",
                str(workers),
            ]
            with log.open("wb") as f:
                # In this process's group (stopped with it) and dying with it.
                procs.append((children.start(cmd, own_session=False, stdout=f, stderr=subprocess.STDOUT), log))
        wait_until = time.monotonic() + 60
        while len(master.clients.ready) < workers:
            gevent.sleep(0.05)
            if INTERRUPT.signal is not None:
                master.quit()
                return records, warnings, None
            dead = [(p, log) for p, log in procs if p.poll() is not None]
            if dead or time.monotonic() > wait_until:
                tail = dead[0][1].read_text()[-2000:] if dead else ""
                master.quit()
                return records, warnings, f"Locust workers did not connect to the master: {tail}".strip()
        n = users_for(spec, level, workers)
        master.start(n, spawn_rate=float(max(1, n) * 100))
        limit = time.monotonic() + spec.duration_s + spec.drain_timeout_s + 60
        stop_sent = False
        while len(done) < workers:
            gevent.sleep(0.05)
            if INTERRUPT.signal is not None and not stop_sent:
                # The workers end the point at once and send what they measured.
                master.send_message("bakeoff_stop", {"signal": INTERRUPT.signal})
                stop_sent = True
                limit = min(limit, time.monotonic() + INTERRUPT_GRACE_S)
            if time.monotonic() > limit:
                warnings.append(f"only {len(done)} of {workers} workers reported the end of the point")
                break
            if all(p.poll() is not None for p, _ in procs):
                warnings.append("every worker exited before reporting the end of the point")
                break
        for data in done.values():
            warnings.extend(w for w in data.get("warnings", []) if w not in warnings)
            if data.get("fatal") and fatal is None:
                fatal = str(data["fatal"])
        master.quit()
    finally:
        grace = INTERRUPT_GRACE_S if INTERRUPT.signal is not None else 20.0
        for p, _ in procs:
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                children.stop(p, grace_s=1.0)
        tmp.cleanup()
    return records, warnings, fatal


def worker_main(master_port: int, spec: RunSpec, level: float, workers: int) -> None:
    """A Locust worker for one load point; exits when the master quits."""
    holder = PointHolder()
    env = Environment(user_classes=[user_class(spec, holder)], host=spec.endpoint)
    runner = env.create_worker_runner("127.0.0.1", master_port)

    def finish() -> None:
        point, _ = holder.get()
        warnings: list[str] = []
        _watch(point, warnings)
        _stop(point, warnings)
        runner.stop()
        runner.send_message(
            "bakeoff_done", {"records": point.drain_unsent(), "warnings": warnings, "fatal": point.fatal}
        )

    def on_test_start(environment: Any, **_: Any) -> None:
        holder.hold(PointRun(spec, level, worker=runner.worker_index, workers=workers, events=env.events))
        gevent.spawn(finish)

    def on_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
        if holder.point is not None:
            data["bakeoff_records"] = holder.point.drain_unsent()

    def on_stop(environment: Any, msg: Any, **_: Any) -> None:
        INTERRUPT.request(str(msg.data.get("signal", "the master")))

    env.events.test_start.add_listener(on_test_start)  # type: ignore[no-untyped-call]
    env.events.report_to_master.add_listener(on_report)  # type: ignore[no-untyped-call]
    runner.register_message("bakeoff_stop", on_stop)
    runner.greenlet.join()
