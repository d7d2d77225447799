"""The Locust side of the harness: streaming users, and one load point run locally or distributed.

This is the only module that imports Locust, and it imports it first: Locust monkey-patches the
standard library for gevent on import, which must happen before anything imports ``ssl``. Import it
only in a process dedicated to load generation (``bakeoff_loadtest.runner`` starts one when needed).
"""

from __future__ import annotations

# isort: off
import locust  # must stay the first import: it monkey-patches the standard library for gevent
# isort: on

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import gevent
import gevent.pool
from gevent import GreenletExit
from geventhttpclient import HTTPClient
from geventhttpclient.url import URL
from locust import User, constant, task
from locust.env import Environment

from bakeoff_loadtest.records import FailureCause, RequestRecord, StreamTimer
from bakeoff_loadtest.schedule import arrival_offsets, share
from bakeoff_loadtest.spec import RunSpec
from bakeoff_loadtest.tokens import make_counter
from bakeoff_loadtest.workloads import PromptFactory, WorkloadSampler

RecordListener = Callable[[RequestRecord], None]

# A point whose first requests all fail is stopped rather than hammering a dead endpoint.
ABORT_AFTER_CONNECTION_FAILURES = 3
ABORT_AFTER_FAILURES = 20
_BODY_SNIPPET = 300

LOCUST_VERSION = locust.__version__


class Plan:
    """What one process's users share while running one load point."""

    def __init__(
        self,
        spec: RunSpec,
        level: float,
        *,
        worker: int = 0,
        workers: int = 1,
        events: Any = None,
        listeners: list[RecordListener] | None = None,
    ) -> None:
        self.spec = spec
        self.level = level
        self.worker = worker
        self.workers = workers
        self.events = events
        self.listeners = listeners or []
        counter = make_counter(spec.tokenizer, spec.endpoint, spec.model)
        self.sampler = WorkloadSampler(spec.workload, spec.seed, PromptFactory(counter))
        self.sampler.prompts.calibrate()
        self.budget = share(spec.max_requests, worker, workers) if spec.max_requests else None
        self.taken = 0
        self.in_flight = 0
        self.records: list[RequestRecord] = []
        self.unsent: list[RequestRecord] = []
        self.started: float | None = None
        self.deadline = float("inf")
        self.stopping = False
        self.fatal: str | None = None
        self.pools: list[gevent.pool.Pool] = []
        self.open_loop_waits = 0
        self.name = f"{spec.api} {spec.workload.name}"
        self.url = spec.endpoint + spec.path
        self.headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        key = os.environ.get("BAKEOFF_API_KEY") or os.environ.get("OPENAI_API_KEY")
        if key:
            self.headers["Authorization"] = f"Bearer {key}"
        self._warm_resolver()
        self._ok = 0
        self._failed = 0
        self._conn_failed = 0
        self.inexact_prompts = 0

    def _warm_resolver(self) -> None:
        """Resolve the host once before timing: gevent's resolver starts lazily (a thread pool) on
        its first lookup, which would otherwise land in the first request's TTFT."""
        url = URL(self.spec.endpoint)
        # An unresolvable host is reported per request, with the URL.
        with contextlib.suppress(OSError):
            socket.getaddrinfo(url.host, url.port, 0, socket.SOCK_STREAM)

    # -- bounds --------------------------------------------------------------------------------
    def begin(self) -> float:
        if self.started is None:
            self.started = time.perf_counter()
            self.deadline = self.started + self.spec.duration_s
        return self.started

    @property
    def exhausted(self) -> bool:
        if self.stopping or self.fatal is not None:
            return True
        if self.started is not None and time.perf_counter() >= self.deadline:
            return True
        return self.budget is not None and self.taken >= self.budget

    @property
    def finished(self) -> bool:
        return self.exhausted and self.in_flight == 0

    def take(self) -> int | None:
        """The next request index for this worker, or None when a bound is reached."""
        self.begin()
        if self.exhausted:
            return None
        idx = self.worker + self.taken * self.workers
        self.taken += 1
        return idx

    # -- requests ------------------------------------------------------------------------------
    def make_client(self, concurrency: int) -> HTTPClient:
        return HTTPClient.from_url(
            URL(self.spec.endpoint),
            concurrency=concurrency,
            connection_timeout=self.spec.connect_timeout_s,
            network_timeout=self.spec.request_timeout_s,
            block_size=64 * 1024,
        )

    def run_request(self, http: HTTPClient, index: int) -> RequestRecord:
        planned = self.sampler.request(index)
        if not planned.prompt_exact:
            self.inexact_prompts += 1
        body = json.dumps(planned.body(self.spec.api, self.spec.model)).encode()
        rec = RequestRecord(
            index=index,
            worker=self.worker,
            start_unix=0.0,
            requested_prompt_tokens=planned.prompt_tokens,
            requested_output_tokens=planned.output_tokens,
        )
        self.in_flight += 1
        resp: Any = None
        start = time.perf_counter()
        try:
            rec.start_unix = time.time()
            start = time.perf_counter()
            timer = StreamTimer(rec, start)
            try:
                resp = http.request("POST", self.spec.path, body=body, headers=self.headers)
            except GreenletExit:
                raise
            except TimeoutError as e:
                _fail(rec, FailureCause.TIMEOUT, f"no response within {self.spec.request_timeout_s}s: {e}")
            except Exception as e:
                _fail(rec, FailureCause.CONNECTION, f"{type(e).__name__}: {e} ({self.url})")
            else:
                rec.status_code = int(resp.status_code)
                ctype = str(resp.get("content-type") or "")
                if not 200 <= rec.status_code < 300:
                    _fail(rec, FailureCause.HTTP_STATUS, f"HTTP {rec.status_code}: {_snippet(resp)}")
                elif not ctype.startswith("text/event-stream"):
                    _fail(
                        rec,
                        FailureCause.NOT_SSE,
                        f"Content-Type {ctype!r} is not text/event-stream: {_snippet(resp)}",
                    )
                else:
                    self._read_stream(resp, timer, rec)
            end = time.perf_counter()
            if rec.cause is None:
                timer.finish(end)
            else:
                rec.e2e_s = end - start
                rec.ok = False
        except GreenletExit:
            rec.cause = FailureCause.CANCELLED
            rec.detail = "still in flight when the load point ended"
            rec.ok = False
            rec.e2e_s = time.perf_counter() - start
            self._add(rec)
            raise
        except Exception as e:
            # A fault of the harness itself must show in the results, never vanish with the greenlet.
            rec.ok = False
            rec.e2e_s = time.perf_counter() - start
            _fail(rec, FailureCause.CLIENT_ERROR, f"load generator error: {type(e).__name__}: {e}")
        finally:
            self.in_flight -= 1
            if resp is not None:
                resp.release()
        self._add(rec)
        return rec

    def _read_stream(self, resp: Any, timer: StreamTimer, rec: RequestRecord) -> None:
        readline = resp.readline
        perf = time.perf_counter
        feed = timer.feed_line
        try:
            while True:
                line = readline(b"\n")
                t = perf()
                if not line:
                    return
                feed(line.rstrip(b"\r\n").decode("utf-8", "replace"), t)
                if timer.failed:
                    return
        except GreenletExit:
            raise
        except TimeoutError as e:
            _fail(rec, FailureCause.TIMEOUT, f"stream stalled for {self.spec.request_timeout_s}s: {e}")
        except Exception as e:
            # A connection cut mid-stream: finish() reports it as truncated with this detail.
            rec.detail = f"{type(e).__name__}: {e}"[:_BODY_SNIPPET]

    def _add(self, rec: RequestRecord) -> None:
        self.records.append(rec)
        self.unsent.append(rec)
        if rec.ok:
            self._ok += 1
        elif rec.cause is not FailureCause.CANCELLED:
            self._failed += 1
            if rec.cause is FailureCause.CONNECTION:
                self._conn_failed += 1
            if self._ok == 0 and self.fatal is None:
                if self._conn_failed >= ABORT_AFTER_CONNECTION_FAILURES:
                    self.fatal = f"endpoint unreachable: {rec.detail}"
                elif self._failed >= ABORT_AFTER_FAILURES:
                    self.fatal = f"the first {self._failed} requests all failed; last: {rec.cause}: {rec.detail}"
        if self.events is not None and rec.cause is not FailureCause.CANCELLED:
            self.events.request.fire(
                request_type="POST",
                name=self.name,
                response_time=(rec.e2e_s or 0.0) * 1000.0,
                response_length=rec.output_tokens or 0,
                exception=None if rec.ok else RuntimeError(f"{rec.cause}: {rec.detail}"),
                context={
                    "ttft_ms": None if rec.ttft_s is None else rec.ttft_s * 1000.0,
                    "tpot_ms": None if rec.tpot_s is None else rec.tpot_s * 1000.0,
                    "output_tokens": rec.output_tokens,
                    "prompt_tokens": rec.prompt_tokens,
                },
                start_time=rec.start_unix,
                url=self.url,
                response=None,
            )
        for listener in self.listeners:
            listener(rec)

    def drain_unsent(self) -> list[dict[str, Any]]:
        out = [r.to_wire() for r in self.unsent]
        self.unsent = []
        return out

    def cancel_open_loop(self) -> None:
        for pool in self.pools:
            pool.kill(block=True)


def _fail(rec: RequestRecord, cause: FailureCause, detail: str) -> None:
    rec.cause = cause
    rec.detail = detail[:_BODY_SNIPPET]


def _snippet(resp: Any) -> str:
    try:
        data = resp.read(_BODY_SNIPPET)
    except Exception as e:
        return f"(body unreadable: {e})"
    return bytes(data).decode("utf-8", "replace").strip()


class PlanHolder:
    """Lets a user class created before a point's plan reach the plan once it exists."""

    def __init__(self) -> None:
        self.plan: Plan | None = None

    def get(self) -> Plan:
        if self.plan is None:
            raise RuntimeError("the load point has no plan yet")
        return self.plan


class ClosedLoopUser(User):
    """One stream at a time, back to back: sync mode is one of these, concurrency N is N."""

    abstract = True
    holder: ClassVar[PlanHolder]
    wait_time = constant(0)

    def on_start(self) -> None:
        self._http: HTTPClient | None = None

    @task
    def stream(self) -> None:
        plan = self.holder.get()
        idx = plan.take()
        if idx is None:
            gevent.sleep(0.05)  # the point's watcher ends the run
            return
        if self._http is None:
            self._http = plan.make_client(1)
        plan.run_request(self._http, idx)

    def on_stop(self) -> None:
        if self._http is not None:
            self._http.close()


class OpenLoopUser(User):
    """Sends requests at scheduled arrival times, whatever the responses do (rate modes)."""

    abstract = True
    holder: ClassVar[PlanHolder]
    wait_time = constant(0)

    def on_start(self) -> None:
        self._done = False

    @task
    def arrivals(self) -> None:
        if self._done:
            gevent.sleep(0.05)
            return
        plan = self.holder.get()
        spec = plan.spec
        cap = spec.max_in_flight
        pool = gevent.pool.Pool(cap)
        plan.pools.append(pool)
        http = plan.make_client(cap)
        start = plan.begin()
        offsets = arrival_offsets(plan.level, spec.arrival, spec.seed, worker=plan.worker, workers=plan.workers)
        for off in offsets:
            at = start + off
            if at >= plan.deadline:
                break
            delay = at - time.perf_counter()
            if delay > 0:
                gevent.sleep(delay)
            idx = plan.take()
            if idx is None:
                break
            if pool.full():
                plan.open_loop_waits += 1
                pool.wait_available()
            pool.spawn(plan.run_request, http, idx)
        pool.join()
        self._done = True


def user_class(spec: RunSpec, holder: PlanHolder) -> type[User]:
    """A concrete user class for this spec, named the same in master and workers."""
    base: type[User] = OpenLoopUser if spec.open_loop else ClosedLoopUser
    name = "BakeoffArrivals" if spec.open_loop else "BakeoffStreams"
    return type(name, (base,), {"holder": holder, "host": spec.endpoint, "abstract": False})


def users_for(spec: RunSpec, level: float, workers: int = 1) -> int:
    return workers if spec.open_loop else int(level)


def _watch(plan: Plan, warnings: list[str]) -> None:
    """Wait until the point is done: bounds reached and nothing in flight, or the drain times out."""
    drain_end: float | None = None
    while not plan.finished:
        gevent.sleep(0.01)
        if plan.fatal is not None and plan.in_flight == 0:
            break
        if plan.exhausted:
            now = time.perf_counter()
            if drain_end is None:
                drain_end = now + plan.spec.drain_timeout_s
            elif now >= drain_end:
                warnings.append(
                    f"{plan.in_flight} requests were still in flight {plan.spec.drain_timeout_s:g}s after "
                    "the load point ended and were cancelled"
                )
                break


def run_point_local(
    spec: RunSpec, level: float, listeners: list[RecordListener] | None = None
) -> tuple[list[RequestRecord], list[str], str | None]:
    """Run one load point in this process with a Locust LocalRunner: (records, warnings, fatal)."""
    holder = PlanHolder()
    env = Environment(user_classes=[user_class(spec, holder)], host=spec.endpoint)
    plan = Plan(spec, level, events=env.events, listeners=listeners)
    holder.plan = plan
    runner = env.create_local_runner()
    warnings: list[str] = []
    n = users_for(spec, level)
    runner.start(n, spawn_rate=float(max(1, n) * 100))
    _watch(plan, warnings)
    plan.stopping = True
    plan.cancel_open_loop()
    runner.quit()
    _notes(plan, warnings)
    return plan.records, warnings, plan.fatal


def _notes(plan: Plan, warnings: list[str]) -> None:
    if plan.open_loop_waits:
        warnings.append(
            f"open-loop arrivals waited {plan.open_loop_waits} times for a free slot "
            f"(max_in_flight={plan.spec.max_in_flight}): the offered rate was not fully applied"
        )
    if plan.inexact_prompts:
        warnings.append(f"{plan.inexact_prompts} prompts could not be made of the exact token count")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_point_distributed(
    spec: RunSpec, level: float, listeners: list[RecordListener] | None = None
) -> tuple[list[RequestRecord], list[str], str | None]:
    """Run one load point with a Locust master here and worker processes on 127.0.0.1.

    Workers stream their records to the master in each ``report_to_master`` report and send the rest
    with a final ``bakeoff_done`` message; the master stops when every worker is done.
    """
    workers = spec.workers if spec.open_loop else max(1, min(spec.workers, int(level)))
    holder = PlanHolder()
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

    tmp = tempfile.TemporaryDirectory(prefix="bakeoff-loadtest-")
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
                procs.append((subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT), log))
        wait_until = time.monotonic() + 60
        while len(master.clients.ready) < workers:
            gevent.sleep(0.05)
            dead = [(p, log) for p, log in procs if p.poll() is not None]
            if dead or time.monotonic() > wait_until:
                tail = dead[0][1].read_text()[-2000:] if dead else ""
                return records, warnings, f"Locust workers did not connect to the master: {tail}".strip()
        n = users_for(spec, level, workers)
        master.start(n, spawn_rate=float(max(1, n) * 100))
        limit = time.monotonic() + spec.duration_s + spec.drain_timeout_s + 60
        while len(done) < workers:
            gevent.sleep(0.05)
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
        for p, _ in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        tmp.cleanup()
    return records, warnings, fatal


def worker_main(master_port: int, spec: RunSpec, level: float, workers: int) -> None:
    """A Locust worker for one load point; exits when the master quits."""
    holder = PlanHolder()
    env = Environment(user_classes=[user_class(spec, holder)], host=spec.endpoint)
    runner = env.create_worker_runner("127.0.0.1", master_port)

    def finish() -> None:
        plan = holder.get()
        warnings: list[str] = []
        _watch(plan, warnings)
        plan.stopping = True
        plan.cancel_open_loop()
        runner.stop()
        _notes(plan, warnings)
        runner.send_message("bakeoff_done", {"records": plan.drain_unsent(), "warnings": warnings, "fatal": plan.fatal})

    def on_test_start(environment: Any, **_: Any) -> None:
        holder.plan = Plan(spec, level, worker=runner.worker_index, workers=workers, events=env.events, listeners=None)
        gevent.spawn(finish)

    def on_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
        if holder.plan is not None:
            data["bakeoff_records"] = holder.plan.drain_unsent()

    env.events.test_start.add_listener(on_test_start)  # type: ignore[no-untyped-call]
    env.events.report_to_master.add_listener(on_report)  # type: ignore[no-untyped-call]
    runner.greenlet.join()
