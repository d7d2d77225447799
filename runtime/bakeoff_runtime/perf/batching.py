"""Continuous batching in steady state: how many sequences run, how the scheduler mixes prompt chunks
with decodes step by step, and the throughput, ITL and TTFT that follow, up to saturation."""

from __future__ import annotations

import math
from enum import StrEnum
from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field

from bakeoff_runtime.memory import MemoryPlan, plan_memory
from bakeoff_runtime.perf.roofline import StepModel


class LimitedBy(StrEnum):
    """What caps how many sequences run at once."""

    MAX_NUM_SEQS = "max_num_seqs"
    KV_CACHE = "kv_cache"
    MAMBA_STATE = "mamba_state"
    TOKEN_BUDGET = "token_budget"
    DOES_NOT_FIT = "does not fit"
    ONE_REQUEST = "one request at a time"  # sync mode: the client, not the engine
    CLIENTS = "clients"  # async at a fixed concurrency below the engine's caps: the load, not the engine


class Saturation(BaseModel):
    """Steady state of continuous batching with an endless queue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_qps: float = Field(ge=0, description="Requests per second at saturation.")
    concurrency: int = Field(ge=0, description="Sequences running in each step.")
    step_time_s: float = Field(ge=0, description="Mean engine step at that concurrency.")
    itl_s: float = Field(ge=0, description="Mean inter-token latency: the mean of the steps a sequence decodes in.")
    ttft_s: float = Field(ge=0, description="Time to first token from admission: the steps carrying its prompt.")
    limited_by: LimitedBy = Field(description="What caps the concurrency.")


class SteadyState(BaseModel):
    """Continuous batching at a fixed number of running sequences, as the scheduler runs it step by step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    concurrency: int = Field(ge=1, description="Sequences running (in prefill or decoding).")
    prefill_steps: int = Field(ge=1, description="Steps each prompt spends in chunked prefill.")
    prompt_steps: float = Field(ge=1, description="Steps from a prompt's admission to its first token.")
    chunks_per_step: float = Field(ge=0, description="Prompt chunks in an average step.")
    requests_per_step: float = Field(ge=0, description="Requests that start (and finish) per step.")
    mean_step_s: float = Field(ge=0, description="Mean engine step over the mix of chunked and decode-only steps.")
    itl_s: float = Field(ge=0, description="Mean inter-token latency: the mean of the steps a sequence decodes in.")
    ttft_s: float = Field(ge=0, description="Time to first token from admission (no queueing).")
    requests_per_s: float = Field(ge=0, description="Requests completed per second.")
    output_tokens_per_s: float = Field(ge=0, description="Output tokens per second.")
    budget_bound: bool = Field(description="Whether every step runs full at max_num_batched_tokens.")


def prompt_steps_in_fifo(prompts_per_step: float, prompt_tokens: int, room: float) -> float:
    """Mean steps a prompt spans when prompts arrive evenly and share `room` prefill tokens per step first come,
    first served (the scheduler's order); a few periods of the arrival pattern settle it."""
    room = max(1.0, room)
    queue: list[list[float]] = []  # [arrival step, tokens left]
    spans: list[int] = []
    horizon = 64 + math.ceil(8 / max(prompts_per_step, 1e-3))
    for step in range(horizon):
        for _ in range(math.floor(prompts_per_step * (step + 1)) - math.floor(prompts_per_step * step)):
            queue.append([float(step), float(prompt_tokens)])
        left = room
        while queue and left > 0:
            take = min(left, queue[0][1])
            queue[0][1] -= take
            left -= take
            if queue[0][1] <= 0:
                if step >= horizon // 2:
                    spans.append(step - int(queue[0][0]) + 1)
                queue.pop(0)
            else:
                break
    return sum(spans) / len(spans) if spans else float(math.ceil(prompt_tokens / room))


class ContinuousBatching:
    """The steady states of one variant's engine with the queue never empty."""

    def __init__(self, steps: StepModel) -> None:
        self.steps = steps
        self.variant = steps.variant

    @cached_property
    def memory(self) -> MemoryPlan:
        return plan_memory(self.variant)

    def prefill_steps(self, concurrency: int, prompt_tokens: int) -> int:
        """Steps a prompt spends in prefill: chunks of what the budget leaves beside the others' decodes."""
        room = max(1, self.variant.max_num_batched_tokens - (concurrency - 1))
        return max(1, math.ceil(prompt_tokens / room))

    def mixed_step(
        self, chunks: float, chunk_tokens: float, concurrency: float, prompt_tokens: int, context: float
    ) -> float:
        """One step carrying `chunks` prompt chunks of `chunk_tokens`, the other sequences decoding."""
        prefill = chunks * chunk_tokens
        decodes = max(0.0, concurrency - chunks)
        # Over a whole prompt the chunks attend to p(p+1)/2 pairs: (p+1)/2 per prompt token.
        pairs = prefill * (prompt_tokens + 1) / 2
        return self.steps.seconds(prefill, pairs, decodes, decodes * context, 1.0 if prefill > 0 else 0.0)

    def steady_state(self, concurrency: int, prompt_tokens: int, output_tokens: int) -> SteadyState:
        """Continuous batching with `concurrency` sequences running and the queue never empty.

        The scheduler runs each request for ceil(prompt / chunk) steps carrying one of its prompt
        chunks (the last one samples the first token) and then `output − 1` decode steps, so with c
        sequences r = c / (prefill steps + output − 1) requests start and finish per step and a = r ×
        prefill steps chunks ride in each step. Steps carry ⌊a⌋ or ⌊a⌋ + 1 chunks (a of them on
        average) beside the other sequences' decodes; step time is convex in that mix (a roofline
        max), so the mean step is the rate-weighted mean of the two step kinds, not the step of the
        mean shape. When prompts and decodes want more tokens per step than `max_num_batched_tokens`,
        every step runs full and the budget sets the rate.
        """
        c = max(1, concurrency)
        p, o = prompt_tokens, output_tokens
        decode_steps = max(0, o - 1)
        budget = self.variant.max_num_batched_tokens
        context = p + o / 2  # decoding sequences are spread evenly over the output
        n = self.prefill_steps(c, p)
        rate = c / (n + decode_steps)  # requests per step
        chunks = rate * n  # prompt chunks per step (sequences in prefill)
        chunk = p / n
        budget_bound = rate * (p + decode_steps) > budget
        spanned = float(n)
        if budget_bound:
            # Every step is full: the budget, not the slots, sets how many requests flow through.
            rate = budget / (p + decode_steps)
            chunks = rate * n
            # Only the sequences the budget sustains run; the rest wait for room to be admitted.
            step = self.mixed_step(chunks, chunk, rate * (n + decode_steps), p, context)
            mean_step = itl = prefill_step = step
        else:
            k = math.floor(chunks)
            share = chunks - k  # fraction of steps carrying k + 1 chunks
            low = self.mixed_step(k, chunk, c, p, context)
            high = self.mixed_step(k + 1, chunk, c, p, context)
            mean_step = (1 - share) * low + share * high
            # A sequence's token gaps are the steps it decodes in; its prefill rides in the chunked ones.
            decoders = ((1 - share) * (c - k), share * (c - k - 1))
            itl = (decoders[0] * low + decoders[1] * high) / max(sum(decoders), 1e-12)
            carriers = ((1 - share) * k, share * (k + 1))
            prefill_step = (carriers[0] * low + carriers[1] * high) / max(sum(carriers), 1e-12)
            if k >= 1 and (k + 1) * chunk + (c - k - 1) > budget:
                # Prompts arriving together do not all fit beside the decodes: some spill into later steps.
                spanned = prompt_steps_in_fifo(chunks / n, p, budget - (c - chunks))
        return SteadyState(
            concurrency=c,
            prefill_steps=n,
            prompt_steps=spanned,
            chunks_per_step=chunks,
            requests_per_step=rate,
            mean_step_s=mean_step,
            itl_s=itl,
            ttft_s=spanned * prefill_step,
            requests_per_s=rate / mean_step,
            output_tokens_per_s=rate * o / mean_step,
            budget_bound=budget_bound,
        )

    def _token_budget_concurrency(self, prompt_tokens: int, output_tokens: int, upper: int) -> int:
        """Most sequences whose prompts and decodes fit the step budget on average (at most `upper`)."""
        budget = self.variant.max_num_batched_tokens
        per_request = prompt_tokens + max(0, output_tokens - 1)

        def fits(c: int) -> bool:
            return c * per_request <= budget * (self.prefill_steps(c, prompt_tokens) + output_tokens - 1)

        lo, hi = 1, max(1, upper)
        if fits(hi):
            return hi
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid - 1
        return lo

    def max_concurrency(self, prompt_tokens: int, output_tokens: int) -> tuple[int, LimitedBy]:
        """Sequences that run at once at saturation, and what limits them.

        KV use per running sequence averages prompt + output/2 tokens (sequences are staggered). The
        scheduler admits a waiting request only while the step budget has room, so beyond the count
        whose prompts and decodes fill the budget more sequences add no throughput.
        """
        plan = self.memory
        if not plan.fits:
            return 0, LimitedBy.DOES_NOT_FIT
        average_context = prompt_tokens + output_tokens / 2
        blocks_per_sequence = max(1, math.ceil(average_context / self.variant.block_size))
        limits = {
            LimitedBy.MAX_NUM_SEQS: self.variant.max_num_seqs,
            LimitedBy.KV_CACHE: plan.num_kv_blocks // blocks_per_sequence,
            LimitedBy.MAMBA_STATE: plan.mamba_state_slots,
        }
        upper = min(limits.values())
        if upper >= 1:
            limits[LimitedBy.TOKEN_BUDGET] = self._token_budget_concurrency(prompt_tokens, output_tokens, upper)
        limited_by = min(
            limits, key=lambda k: (limits[k], k is not LimitedBy.MAX_NUM_SEQS, k is LimitedBy.TOKEN_BUDGET)
        )
        return max(0, limits[limited_by]), limited_by

    def saturation(self, prompt_tokens: int, output_tokens: int) -> Saturation:
        concurrency, limited_by = self.max_concurrency(prompt_tokens, output_tokens)
        if concurrency < 1:
            return Saturation(max_qps=0.0, concurrency=0, step_time_s=0.0, itl_s=0.0, ttft_s=0.0, limited_by=limited_by)
        state = self.steady_state(concurrency, prompt_tokens, output_tokens)
        return Saturation(
            max_qps=state.requests_per_s,
            concurrency=concurrency,
            step_time_s=state.mean_step_s,
            itl_s=state.itl_s,
            ttft_s=state.ttft_s,
            limited_by=limited_by,
        )
