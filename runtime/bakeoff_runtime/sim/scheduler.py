"""A continuous-batching scheduler shaped like vLLM V1's, without the model.

Pure bookkeeping: no clock, no asyncio. Every engine step it picks the requests to run within the
limits vLLM enforces (`max_num_seqs` running sequences, a `max_num_batched_tokens` token budget with
chunked prefill, KV cache blocks of `block_size` tokens, one Mamba state slot per running sequence
of a hybrid), and describes the step as counts the performance model turns into a duration.

Like vLLM V1, a request is "num_tokens (prompt + output so far) of which num_computed have KV":
each step schedules `num_tokens - num_computed` new tokens (capped by the budget); a step that
brings a request to `num_computed == num_tokens` samples one output token. Running requests go
first, in arrival order; when their KV blocks run out the most recently admitted running request
is preempted (its blocks freed, recomputed later from scratch, like vLLM's recompute preemption),
and no waiting request is admitted in a step that preempted.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum


class RequestStatus(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"
    ABORTED = "aborted"


class FinishReason(StrEnum):
    """vLLM's finished_reason label values."""

    STOP = "stop"
    LENGTH = "length"
    ABORT = "abort"
    ERROR = "error"


@dataclass(eq=False)
class SimRequest:
    """One sequence in the engine (vLLM's `Request`, reduced to the counts that cost time)."""

    request_id: str
    prompt_tokens: int
    max_output_tokens: int  # the sequence finishes after this many output tokens
    stop_reason: FinishReason = FinishReason.LENGTH  # what finishing at max_output_tokens means
    arrival: float = 0.0
    num_computed: int = 0
    output_tokens: int = 0
    blocks: int = 0
    holds_state_slot: bool = False
    status: RequestStatus = RequestStatus.WAITING
    preemptions: int = 0
    first_scheduled: float | None = None
    finish_reason: FinishReason | None = None

    @property
    def num_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    @property
    def done(self) -> bool:
        return self.status in (RequestStatus.FINISHED, RequestStatus.ABORTED)


@dataclass(frozen=True)
class StepCounts:
    """What one engine step computes; the fields of the performance model's StepShape."""

    prefill_tokens: int = 0
    prefill_attention_pairs: float = 0.0
    decode_sequences: int = 0
    decode_context_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prefill_tokens + self.decode_sequences

    @property
    def empty(self) -> bool:
        return self.total_tokens == 0


@dataclass(frozen=True)
class ScheduledChunk:
    request: SimRequest
    new_tokens: int
    computed_before: int
    is_decode: bool


@dataclass
class StepPlan:
    chunks: list[ScheduledChunk] = field(default_factory=list)
    preempted: list[SimRequest] = field(default_factory=list)
    counts: StepCounts = field(default_factory=StepCounts)

    @property
    def empty(self) -> bool:
        return not self.chunks


@dataclass(frozen=True)
class StepResult:
    """Requests that sampled a token in the step, and those that finished with it."""

    sampled: list[SimRequest]
    finished: list[SimRequest]
    preempted: list[SimRequest]


@dataclass(frozen=True)
class SchedulerLimits:
    max_num_seqs: int
    max_num_batched_tokens: int
    num_kv_blocks: int
    block_size: int = 16
    mamba_state_slots: int | None = None  # None: dense model, no Mamba state
    max_model_len: int = 8192

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_num_batched_tokens", "num_kv_blocks", "block_size", "max_model_len"):
            if getattr(self, name) <= 0:
                raise ValueError(f"scheduler limit {name} must be > 0, got {getattr(self, name)}")
        if self.mamba_state_slots is not None and self.mamba_state_slots <= 0:
            raise ValueError(f"scheduler limit mamba_state_slots must be > 0, got {self.mamba_state_slots}")


class Scheduler:
    """Continuous batching over `SimRequest`s; call `schedule()` then `complete(plan)` per step."""

    def __init__(self, limits: SchedulerLimits) -> None:
        self.limits = limits
        self.waiting: deque[SimRequest] = deque()
        self.running: list[SimRequest] = []
        self.free_blocks = limits.num_kv_blocks
        self.free_state_slots = limits.mamba_state_slots
        self.num_preemptions = 0

    # --- admission and removal -----------------------------------------------------------------
    def add(self, request: SimRequest) -> None:
        if request.prompt_tokens <= 0:
            raise ValueError("a request needs at least one prompt token")
        self.waiting.append(request)

    def abort(self, request: SimRequest) -> None:
        """Drop a request wherever it is (client gone) and free its KV blocks and state slot."""
        if request.done:
            return
        if request.status is RequestStatus.RUNNING:
            self.running.remove(request)
        else:
            with contextlib.suppress(ValueError):
                self.waiting.remove(request)
        self._free(request)
        request.status = RequestStatus.ABORTED
        request.finish_reason = FinishReason.ABORT

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    @property
    def used_blocks(self) -> int:
        return self.limits.num_kv_blocks - self.free_blocks

    @property
    def kv_cache_usage(self) -> float:
        return self.used_blocks / self.limits.num_kv_blocks

    def blocks_for(self, tokens: int) -> int:
        return math.ceil(tokens / self.limits.block_size)

    def fits_alone(self, total_tokens: int) -> bool:
        """Whether one sequence of `total_tokens` can ever run (else it would wait forever)."""
        return self.blocks_for(total_tokens) <= self.limits.num_kv_blocks

    # --- one step ---------------------------------------------------------------------------------
    def schedule(self, now: float = 0.0) -> StepPlan:
        budget = self.limits.max_num_batched_tokens
        plan = StepPlan()
        scheduled: list[ScheduledChunk] = []

        i = 0
        while i < len(self.running) and budget > 0:
            req = self.running[i]
            new = min(req.num_tokens - req.num_computed, budget)
            if new <= 0:
                i += 1
                continue
            while not self._allocate(req, new):
                victim = self.running.pop()
                self._preempt(victim)
                plan.preempted.append(victim)
                scheduled = [c for c in scheduled if c.request is not victim]
                if victim is req:
                    break
            if req.status is not RequestStatus.RUNNING:
                break  # it preempted itself: everything after it is gone too
            scheduled.append(self._chunk(req, new))
            budget -= new
            i += 1

        if not plan.preempted:
            while self.waiting and budget > 0 and len(self.running) < self.limits.max_num_seqs:
                req = self.waiting[0]
                if self.free_state_slots is not None and self.free_state_slots <= 0:
                    break
                new = min(req.num_tokens - req.num_computed, budget)
                if not self._allocate(req, new):
                    break
                self.waiting.popleft()
                if self.free_state_slots is not None:
                    self.free_state_slots -= 1
                    req.holds_state_slot = True
                req.status = RequestStatus.RUNNING
                if req.first_scheduled is None:
                    req.first_scheduled = now
                self.running.append(req)
                scheduled.append(self._chunk(req, new))
                budget -= new

        plan.chunks = scheduled
        plan.counts = _counts(scheduled)
        return plan

    def complete(self, plan: StepPlan) -> StepResult:
        """Apply a step's work: computed tokens advance, finished prefills sample a token."""
        sampled: list[SimRequest] = []
        finished: list[SimRequest] = []
        for chunk in plan.chunks:
            req = chunk.request
            if req.status is not RequestStatus.RUNNING:
                continue  # aborted while the step ran
            req.num_computed = chunk.computed_before + chunk.new_tokens
            if req.num_computed < req.num_tokens:
                continue  # a chunk of a longer prefill: no token yet
            req.output_tokens += 1
            sampled.append(req)
            if req.output_tokens >= req.max_output_tokens:
                self.running.remove(req)
                self._free(req)
                req.status = RequestStatus.FINISHED
                req.finish_reason = req.stop_reason
                finished.append(req)
        return StepResult(sampled=sampled, finished=finished, preempted=list(plan.preempted))

    # --- internals --------------------------------------------------------------------------------
    def _chunk(self, req: SimRequest, new: int) -> ScheduledChunk:
        is_decode = new == 1 and req.output_tokens > 0 and req.num_computed == req.num_tokens - 1
        return ScheduledChunk(request=req, new_tokens=new, computed_before=req.num_computed, is_decode=is_decode)

    def _allocate(self, req: SimRequest, new_tokens: int) -> bool:
        need = self.blocks_for(req.num_computed + new_tokens) - req.blocks
        if need <= 0:
            return True
        if need > self.free_blocks:
            return False
        self.free_blocks -= need
        req.blocks += need
        return True

    def _free(self, req: SimRequest) -> None:
        self.free_blocks += req.blocks
        req.blocks = 0
        if req.holds_state_slot and self.free_state_slots is not None:
            self.free_state_slots += 1
        req.holds_state_slot = False

    def _preempt(self, req: SimRequest) -> None:
        self._free(req)
        req.num_computed = 0
        req.status = RequestStatus.WAITING
        req.preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(req)


def _counts(chunks: list[ScheduledChunk]) -> StepCounts:
    prefill = 0
    pairs = 0.0
    decodes = 0
    context = 0
    for c in chunks:
        if c.is_decode:
            decodes += 1
            context += c.computed_before + 1
        else:
            prefill += c.new_tokens
            pairs += c.new_tokens * (c.computed_before + (c.new_tokens + 1) / 2)
    return StepCounts(
        prefill_tokens=prefill, prefill_attention_pairs=pairs, decode_sequences=decodes, decode_context_tokens=context
    )
