"""What one process shares while it runs one load point: its bounds, its request indices, and the
bookkeeping of finished requests (Locust events, listeners, the early stop of a dead endpoint).

Runs in a process that imported Locust first (gevent): see :mod:`bakeoff_loadtest.locust_users`.
"""

from __future__ import annotations

# isort: off
import locust  # noqa: F401  first: Locust monkey-patches the standard library for gevent
# isort: on

import time
from collections.abc import Callable
from typing import Any

import gevent.pool

from bakeoff_loadtest.records import FailureCause, RequestRecord
from bakeoff_loadtest.schedule import share
from bakeoff_loadtest.spec import RunSpec
from bakeoff_loadtest.tokens import make_counter
from bakeoff_loadtest.workloads import PromptFactory, WorkloadSampler

RecordListener = Callable[[RequestRecord], None]

# A point whose first requests all fail is stopped rather than hammering a dead endpoint.
ABORT_AFTER_CONNECTION_FAILURES = 3
ABORT_AFTER_FAILURES = 20
# Once a point's bounds are reached, its drain also ends when no byte has arrived on any stream for
# this long (or for the point's duration, if longer): a server that sends nothing at all is stalled.
MIN_STALL_S = 10.0


class PointRun:
    """One load point in one process: the spec, the level, this worker's share and what it measured."""

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
        self.inexact_prompts = 0
        self.name = f"{spec.api} {spec.workload.name}"
        self.url = spec.endpoint + spec.path
        self.last_heard: float | None = None
        self.cut: str | None = None
        self.cancelled_because = "still in flight when the load point ended"
        self._ok = 0
        self._failed = 0
        self._conn_failed = 0

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

    @property
    def stall_limit_s(self) -> float:
        """Silence on every stream that ends the drain: the point's duration, at least MIN_STALL_S."""
        return min(self.spec.drain_timeout_s, max(MIN_STALL_S, self.spec.duration_s))

    def heard(self, t: float) -> None:
        """Bytes (headers or a line) arrived on some stream at perf_counter time ``t``."""
        self.last_heard = t

    def silence(self, now: float) -> str | None:
        """Why the requests in flight should be cut now that the point's bounds are reached, or None.

        The endpoint answered nothing during the point's whole duration (hung: waiting longer only
        stretches a short test into the drain timeout), or nothing arrived on any stream for
        ``stall_limit_s``.
        """
        if self.in_flight == 0 or self.started is None:
            return None
        if self.last_heard is None and not self.records and now >= self.deadline:
            return (
                f"no response within {now - self.started:.1f}s: the endpoint accepted the request but sent nothing "
                "during the load point (hung, or a proxy buffering the stream; raise --duration if it is only slow)"
            )
        quiet = now - (self.last_heard if self.last_heard is not None else self.started)
        if quiet >= self.stall_limit_s:
            return f"stream stalled: nothing arrived on any stream for {quiet:.1f}s (the load point had ended)"
        return None

    def take(self) -> int | None:
        """The next request index for this worker, or None when a bound is reached."""
        self.begin()
        if self.exhausted:
            return None
        idx = self.worker + self.taken * self.workers
        self.taken += 1
        return idx

    # -- finished requests ---------------------------------------------------------------------
    def add(self, rec: RequestRecord) -> None:
        """Keep a finished request, report it to Locust and the listeners, and stop a point whose
        first requests all fail."""
        self.records.append(rec)
        self.unsent.append(rec)
        if rec.ok:
            self._ok += 1
        elif rec.cause is not FailureCause.CANCELLED:
            self._failed += 1
            if rec.cause is FailureCause.CONNECTION:
                self._conn_failed += 1
            if self._ok == 0 and self.fatal is None:
                # The headline only: the results name the first failure's cause.
                if self._conn_failed >= ABORT_AFTER_CONNECTION_FAILURES:
                    self.fatal = "endpoint unreachable"
                elif self._failed >= ABORT_AFTER_FAILURES:
                    self.fatal = f"stopped after the first {self._failed} requests all failed"
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

    def notes(self) -> list[str]:
        """Warnings about what the point could not do as asked."""
        out = []
        if self.open_loop_waits:
            out.append(
                f"open-loop arrivals waited {self.open_loop_waits} times for a free slot "
                f"(max_in_flight={self.spec.max_in_flight}): the offered rate was not fully applied"
            )
        if self.inexact_prompts:
            out.append(f"{self.inexact_prompts} prompts could not be made of the exact token count")
        return out
