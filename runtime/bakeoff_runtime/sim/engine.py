"""The simulator's engine loop: the scheduler run in (virtual) real time on an asyncio loop.

Each step lasts exactly what the step-time function (the performance model) says. Step ends are
absolute deadlines on the loop's monotonic clock: a busy engine starts step n+1 at step n's
deadline, not at the moment it woke up, so wake-up latency never accumulates into drift. How late
each wake-up was (the schedule lag) is measured and exposed (`/metrics`, `/sim/stats`). If the
process falls more than `MAX_CATCH_UP_S` behind (an overloaded host), the engine re-bases on the
current time instead of bursting through the backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bakeoff_runtime.sim.metrics import RequestTimes, SimMetrics
from bakeoff_runtime.sim.scheduler import (
    FinishReason,
    Scheduler,
    SchedulerLimits,
    SimRequest,
    StepCounts,
)
from bakeoff_runtime.sim.tokens import TextGenerator

StepTimeFn = Callable[[StepCounts], float]
MAX_CATCH_UP_S = 1.0
SPIN_MARGIN_S = 0.001
LAG_WINDOW = 10_000  # recent steps kept for lag percentiles


class Faults(BaseModel):
    """Fault injection for tests of clients, load harnesses and autoscalers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="Fraction of requests answered HTTP 500.")
    slow_start_s: float = Field(
        default=0.0, ge=0.0, le=3600.0, description="/health and the API answer 503 this long after start."
    )
    stall_every: int = Field(default=0, ge=0, le=10**9, description="Every Nth engine step stalls (0: never).")
    stall_s: float = Field(default=0.0, ge=0.0, le=600.0, description="Extra seconds a stalled step takes.")


@dataclass(eq=False)
class EngineRequest:
    """A request as the HTTP layer sees it: the scheduler's sequence plus its output stream."""

    sim: SimRequest
    times: RequestTimes
    generator: TextGenerator
    pending: list[tuple[int, str]] = field(default_factory=list)
    finished: bool = False
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self) -> list[tuple[int, str]]:
        out, self.pending = self.pending, []
        self.event.clear()
        return out


@dataclass
class LagStats:
    """How late the engine woke after each step's deadline, against the modelled step times."""

    steps: int = 0
    modelled_s: float = 0.0
    lag_sum_s: float = 0.0
    lag_max_s: float = 0.0
    rebases: int = 0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=LAG_WINDOW))

    def add(self, modelled: float, lag: float) -> None:
        self.steps += 1
        self.modelled_s += modelled
        self.lag_sum_s += lag
        self.lag_max_s = max(self.lag_max_s, lag)
        self.recent.append(lag)

    def as_dict(self) -> dict[str, float | int]:
        mean_step = self.modelled_s / self.steps if self.steps else 0.0
        mean_lag = self.lag_sum_s / self.steps if self.steps else 0.0
        ordered = sorted(self.recent)

        def q(p: float) -> float:
            return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else 0.0

        return {
            "steps": self.steps,
            "mean_step_s": mean_step,
            "mean_lag_s": mean_lag,
            "p50_lag_s": q(0.50),
            "p95_lag_s": q(0.95),
            "p99_lag_s": q(0.99),
            "max_lag_s": self.lag_max_s,
            "lag_fraction_of_step": mean_lag / mean_step if mean_step else 0.0,
            "rebases": self.rebases,
        }


class Engine:
    def __init__(
        self,
        limits: SchedulerLimits,
        step_time: StepTimeFn,
        metrics: SimMetrics | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.scheduler = Scheduler(limits)
        self.step_time = step_time
        self.metrics = metrics
        self.faults = faults or Faults()
        self.lag = LagStats()
        self.active: dict[str, EngineRequest] = {}
        self.finished_requests = 0
        self.aborted_requests = 0
        self._work = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.started_at = time.monotonic()

    @property
    def ready(self) -> bool:
        return time.monotonic() - self.started_at >= self.faults.slow_start_s

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self.started_at = time.monotonic()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="bakeoff-sim-engine")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # --- requests ------------------------------------------------------------------------------------
    def submit(self, request: EngineRequest, max_tokens_param: int | None = None) -> None:
        self.scheduler.add(request.sim)
        self.active[request.sim.request_id] = request
        if self.metrics is not None:
            self.metrics.on_admit(request.sim.prompt_tokens, request.sim.max_output_tokens, max_tokens_param)
        self._publish_state()
        self._work.set()

    def abort(self, request: EngineRequest) -> None:
        """The client went away: free the sequence and its KV blocks now."""
        if request.finished:
            return
        self.scheduler.abort(request.sim)
        request.finished = True
        request.times.finished = time.monotonic()
        self.active.pop(request.sim.request_id, None)
        self.aborted_requests += 1
        if self.metrics is not None:
            self.metrics.on_finish(request.sim, request.times)
        self._publish_state()
        request.event.set()
        self._work.set()

    def stats(self) -> dict[str, Any]:
        sched = self.scheduler
        return {
            "running": len(sched.running),
            "waiting": len(sched.waiting),
            "active_requests": len(self.active),
            "finished_requests": self.finished_requests,
            "aborted_requests": self.aborted_requests,
            "num_kv_blocks": sched.limits.num_kv_blocks,
            "free_kv_blocks": sched.free_blocks,
            "kv_cache_usage": sched.kv_cache_usage,
            "mamba_state_slots": sched.limits.mamba_state_slots,
            "free_mamba_state_slots": sched.free_state_slots,
            "num_preemptions": sched.num_preemptions,
            "schedule": self.lag.as_dict(),
        }

    # --- the loop ------------------------------------------------------------------------------------
    def _publish_state(self) -> None:
        if self.metrics is not None:
            sched = self.scheduler
            self.metrics.on_state(len(sched.running), len(sched.waiting), sched.kv_cache_usage)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        sched = self.scheduler
        while True:
            if not sched.has_work:
                self._work.clear()
                self._publish_state()
                await self._work.wait()
                deadline = None
            now = loop.time()
            if deadline is None:
                start = now
            elif now - deadline > MAX_CATCH_UP_S:
                start = now
                self.lag.rebases += 1
            else:
                start = deadline
            plan = sched.schedule(now)
            if plan.empty:
                # Nothing fits until something finishes or is aborted.
                self._work.clear()
                await self._work.wait()
                deadline = None
                continue
            modelled = self.step_time(plan.counts)
            duration = modelled
            if self.faults.stall_every and (self.lag.steps + 1) % self.faults.stall_every == 0:
                duration += self.faults.stall_s
            end = start + duration
            await _sleep_until(loop, end)
            woke = loop.time()
            lag = max(0.0, woke - end)
            self.lag.add(modelled, lag)
            self._finish_step(plan, modelled, lag, woke)
            deadline = end

    def _finish_step(self, plan: Any, modelled: float, lag: float, now: float) -> None:
        for chunk in plan.chunks:
            er = self.active.get(chunk.request.request_id)
            if er is not None and er.times.scheduled is None:
                er.times.scheduled = now - modelled
        result = self.scheduler.complete(plan)
        prompts_done = 0
        for req in result.sampled:
            er = self.active.get(req.request_id)
            if er is None:
                continue
            times = er.times
            if times.first_token is None:
                times.first_token = now
                prompts_done += req.prompt_tokens
                if self.metrics is not None:
                    self.metrics.ttft.observe(now - times.arrival)
            elif times.last_token is not None and self.metrics is not None:
                self.metrics.itl.observe(now - times.last_token)
            times.last_token = now
            er.pending.append(er.generator.next_token())
            er.event.set()
        for req in result.finished:
            er = self.active.pop(req.request_id, None)
            if er is None:
                continue
            er.finished = True
            er.times.finished = now
            self.finished_requests += 1
            if self.metrics is not None:
                self.metrics.on_finish(req, er.times)
        if self.metrics is not None:
            if result.preempted:
                self.metrics.preemptions.inc(len(result.preempted))
            self.metrics.on_step(plan.counts, modelled, lag, prompts_done, len(result.sampled))
        self._publish_state()


async def _sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    """Sleep to an absolute deadline with sub-millisecond accuracy.

    The epoll selector rounds timeouts up to whole milliseconds, so a plain sleep wakes up to 1 ms
    late. Sleep to just before the deadline, then yield to the loop (which keeps serving sockets)
    until it has passed.
    """
    delay = deadline - loop.time()
    if delay > SPIN_MARGIN_S:
        await asyncio.sleep(delay - SPIN_MARGIN_S)
    while loop.time() < deadline:
        await asyncio.sleep(0)


def make_request(
    request_id: str,
    prompt_tokens: int,
    max_output_tokens: int,
    stop_reason: FinishReason,
    seed: int,
) -> EngineRequest:
    now = time.monotonic()
    sim = SimRequest(
        request_id=request_id,
        prompt_tokens=prompt_tokens,
        max_output_tokens=max_output_tokens,
        stop_reason=stop_reason,
        arrival=now,
    )
    return EngineRequest(sim=sim, times=RequestTimes(now), generator=TextGenerator(seed))
