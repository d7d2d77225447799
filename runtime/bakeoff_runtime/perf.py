"""The calibrated performance model: how long one continuous-batching engine step takes, and
from that sync latency, saturation throughput, QPS under an SLO, tokens/s and cost.

A step is a roofline per kernel class, summed over the classes that run one after another:

* linear layers (decoder blocks): max(weight bytes / (bandwidth × e_bw[kernel]),
  2 × params × tokens / (peak[compute dtype] × e_compute[kernel]));
* the LM head (16-bit in every format), for the sequences sampled this step;
* attention: max(KV bytes read and written / (bandwidth × e_kv), attention FLOPs / (peak × e_attn));
* Mamba mixers: max(state bytes read and written / (bandwidth × e_kv), scan FLOPs / (peak × e_scan));
* tensor parallel: one all-reduce of the hidden states after every mixer and MLP (latency + ring bytes
  over the interconnect);
* fixed costs: a launch/synchronisation gap per decoder block, a per-step engine overhead and a
  per-sequence cost (scheduling, sampling, detokenisation).

Every factor is physical and shared: per kernel family (BF16, W8A8, Marlin, Machete), per phase
(weight streaming vs. large-batch compute) and per kernel class; `docs/performance-model.md` says
where each value comes from. Nothing is tuned per model, GPU or use case.
"""

from __future__ import annotations

import math
from enum import StrEnum
from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field

from bakeoff_runtime.formats import FORMATS, ComputeDtype, ExecutionMode, Format
from bakeoff_runtime.memory import MemoryPlan, kv_bytes_per_token_per_gpu, mamba_state_bytes_per_sequence, plan_memory
from bakeoff_runtime.variant import Variant
from bakeoff_runtime.workloads import Workload

ACTIVATION_BYTES = 2.0
MMA_MIN_ROWS = 16  # tensor-core MMA tiles have at least 16 rows: fewer tokens are padded


class KernelFamily(StrEnum):
    """The matmul kernels a format runs on a GPU: what the efficiency factors are keyed by."""

    BF16 = "bf16"  # cuBLAS / CUTLASS 16-bit GEMM
    W8A8 = "w8a8"  # CUTLASS scaled_mm, FP8 or INT8 tensor cores
    MARLIN = "marlin"  # mixed-input weight-only GEMM (INT4 W4A16 before Hopper, FP8 weight-only fallback)
    MACHETE = "machete"  # Hopper mixed-input weight-only GEMM (INT4 W4A16 on compute capability 9.x)


def kernel_family(fmt: Format, compute_capability: float, mode: ExecutionMode) -> KernelFamily:
    if mode is ExecutionMode.WEIGHT_ONLY_FALLBACK:
        return KernelFamily.MARLIN
    if fmt is Format.BF16:
        return KernelFamily.BF16
    if fmt in (Format.FP8, Format.INT8):
        return KernelFamily.W8A8
    return KernelFamily.MACHETE if compute_capability >= 9.0 else KernelFamily.MARLIN


class EfficiencyFactors(BaseModel):
    """The model's physical efficiency factors; docs/performance-model.md gives each one's source.

    They are shared by every model, GPU class and use case: per kernel family (how well the format's
    GEMMs stream weights and use the tensor cores), per kernel class (attention, Mamba scan,
    all-reduce) and three fixed costs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight_bandwidth: dict[KernelFamily, float] = Field(
        default={
            KernelFamily.BF16: 0.75,
            KernelFamily.W8A8: 0.80,
            KernelFamily.MARLIN: 0.66,
            KernelFamily.MACHETE: 0.47,
        },
        description="Fraction of peak memory bandwidth a kernel family reaches streaming weights when the "
        "GEMMs are memory-bound (small batches). Mixed-input kernels pay for dequantization; Machete is "
        "built for large tiles and streams small batches worst.",
    )
    compute: dict[KernelFamily, float] = Field(
        default={
            KernelFamily.BF16: 0.70,
            KernelFamily.W8A8: 0.66,
            KernelFamily.MARLIN: 0.50,
            KernelFamily.MACHETE: 0.56,
        },
        description="Fraction of the compute dtype's dense peak the GEMMs reach at large M (weight-only "
        "kernels: of the 16-bit peak, after dequantizing every weight tile).",
    )
    kv_bandwidth: float = Field(
        default=0.83, gt=0, le=1, description="Fraction of bandwidth paged attention and Mamba state updates reach."
    )
    attention_compute: float = Field(
        default=0.50, gt=0, le=1, description="Fraction of the 16-bit peak flash attention reaches in prefill."
    )
    scan_compute: float = Field(
        default=0.03,
        gt=0,
        le=1,
        description="Fraction of the 16-bit tensor peak the Mamba selective scan reaches (CUDA cores, fp32).",
    )
    interconnect: float = Field(default=0.70, gt=0, le=1, description="Fraction of link bandwidth all-reduce reaches.")
    allreduce_latency_s: float = Field(default=5e-6, ge=0, le=1e-3, description="Fixed cost of one all-reduce.")
    layer_latency_s: float = Field(
        default=5e-6, ge=0, le=1e-3, description="Launch gaps per decoder block per step (CUDA graphs)."
    )
    step_overhead_s: float = Field(
        default=1.0e-3, ge=0, le=0.1, description="Scheduling, input preparation and sampling per engine step."
    )
    request_overhead_s: float = Field(
        default=5e-3, ge=0, le=1, description="HTTP, tokenisation and detokenisation per request."
    )


DEFAULT_EFFICIENCY = EfficiencyFactors()


class StepShape(BaseModel):
    """One continuous-batching engine step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefill_tokens: int = Field(default=0, ge=0, description="New prompt tokens computed in this step.")
    prefill_attention_pairs: float = Field(
        default=0, ge=0, description="Sum over chunks of chunk × (cached + (chunk + 1) / 2)."
    )
    decode_sequences: int = Field(default=0, ge=0, description="Sequences generating one token in this step.")
    decode_context_tokens: int = Field(default=0, ge=0, description="Sum of their context lengths.")


class SyncLatency(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ttft_s: float = Field(ge=0, description="Time to first token, one request alone.")
    itl_s: float = Field(ge=0, description="Mean inter-token latency, one request alone.")
    e2e_s: float = Field(ge=0, description="End-to-end latency of one request alone.")


class Saturation(BaseModel):
    """Steady state of continuous batching with an endless queue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_qps: float = Field(ge=0, description="Requests per second at saturation.")
    concurrency: int = Field(ge=0, description="Sequences running in each step.")
    step_time_s: float = Field(ge=0, description="Mean engine step at that concurrency.")
    itl_s: float = Field(ge=0, description="Mean inter-token latency: the mean of the steps a sequence decodes in.")
    ttft_s: float = Field(ge=0, description="Time to first token from admission: the steps carrying its prompt.")
    limited_by: str = Field(description="What caps the concurrency: max_num_seqs, kv_cache, mamba_state, token_budget.")


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


class Prediction(BaseModel):
    """What `bakeoff predict` reports for one variant and workload."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: str
    model: str
    format: Format
    gpu: str
    gpus: int = Field(ge=1)
    tensor_parallel: int = Field(ge=1)
    workload: str
    prompt_tokens: int
    output_tokens: int
    mode: str = Field(description="sync (one request at a time) or async (continuous batching at saturation).")
    fits: bool
    reason: str
    execution: str = Field(description="native, weight-only-fallback or unsupported.")
    kernel: str
    latency_s: float | None = Field(description="End-to-end latency (sync: alone; async: at saturation).")
    ttft_s: float | None
    itl_s: float | None
    max_qps: float | None
    concurrency: int | None
    limited_by: str | None
    qps_at_slo: float | None = Field(default=None, description="Highest Poisson rate meeting the SLO.")
    output_tokens_per_s: float | None = Field(description="Per replica, in this mode.")
    output_tokens_per_s_per_gpu: float | None
    price_per_hour_usd: float
    cost_per_query_usd: float | None
    cost_per_1m_output_tokens_usd: float | None
    kv_cache_tokens: int
    mamba_state_slots: int


def _erlang_c(servers: int, load: float) -> float:
    """Probability that an arrival waits in M/M/c with `load` = λ·S (offered Erlangs), load < servers."""
    if load <= 0:
        return 0.0
    if load >= servers:
        return 1.0
    # Erlang B by its stable recurrence, then C from B.
    b = 1.0
    for k in range(1, servers + 1):
        b = load * b / (k + load * b)
    rho = load / servers
    return b / (1 - rho + rho * b)


def _prompt_steps_in_fifo(prompts_per_step: float, prompt_tokens: int, room: float) -> float:
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


class PerformanceModel:
    """Step times and predictions for one variant on its GPU class."""

    def __init__(self, variant: Variant, efficiency: EfficiencyFactors = DEFAULT_EFFICIENCY) -> None:
        self.variant = variant
        self.eff = efficiency
        arch = variant.architecture
        gpu = variant.gpu
        tp = variant.tensor_parallel
        execution = variant.execution
        self.family = kernel_family(variant.format, gpu.compute_capability, execution.mode)
        spec = FORMATS[variant.format]
        compute_dtype = execution.compute_dtype if execution.runs else ComputeDtype.BF16
        self._bw = gpu.bandwidth_bytes_per_s
        self._peak_bf16 = gpu.peak_flops(ComputeDtype.BF16)
        self._peak_matmul = gpu.peak_flops(compute_dtype)
        self._body_bytes = arch.body_params * spec.weight_bytes / tp
        self._body_flops_per_token = 2 * arch.body_params / tp
        lm_params = arch.lm_head_params or arch.embedding_params  # tied: the embedding is the head
        self._lm_bytes = lm_params * spec.lm_head_bytes / tp
        self._lm_flops_per_token = 2 * lm_params / tp
        self._kv_token = kv_bytes_per_token_per_gpu(variant)
        self._attn_flops_per_pair = 4 * arch.attention_layers * arch.num_attention_heads * arch.head_dim / tp
        self._state_seq = mamba_state_bytes_per_sequence(variant) / tp
        self._scan_flops_per_token = 9 * arch.mamba_layers * arch.mamba_d_inner * arch.mamba_d_state / tp
        self._mamba_io_per_token = arch.mamba_layers * 6 * arch.mamba_d_inner * ACTIVATION_BYTES / tp
        self._allreduces = arch.attention_layers + arch.mamba_layers + arch.mlp_layers if tp > 1 else 0
        self._ring = 2 * (tp - 1) / tp
        self._link = gpu.interconnect_gbps * 1e9
        self._layer_fixed = arch.num_layers * efficiency.layer_latency_s

    @cached_property
    def memory(self) -> MemoryPlan:
        return plan_memory(self.variant)

    # --- one step ------------------------------------------------------------------------------------
    def step_time(self, shape: StepShape) -> float:
        """Seconds for one engine step of `shape`; 0 for an empty step."""
        return self._step(
            float(shape.prefill_tokens),
            float(shape.prefill_attention_pairs),
            float(shape.decode_sequences),
            float(shape.decode_context_tokens),
            1.0 if shape.prefill_tokens else 0.0,
        )

    def _step(
        self, prefill: float, pairs: float, decodes: float, decode_context: float, prefill_sequences: float
    ) -> float:
        return sum(self._parts(prefill, pairs, decodes, decode_context, prefill_sequences).values())

    def step_breakdown(self, shape: StepShape) -> dict[str, float]:
        """Seconds per kernel class of one step (their sum is `step_time`)."""
        return self._parts(
            float(shape.prefill_tokens),
            float(shape.prefill_attention_pairs),
            float(shape.decode_sequences),
            float(shape.decode_context_tokens),
            1.0 if shape.prefill_tokens else 0.0,
        )

    def _parts(
        self, prefill: float, pairs: float, decodes: float, decode_context: float, prefill_sequences: float
    ) -> dict[str, float]:
        tokens = prefill + decodes
        if tokens <= 0:
            return {}
        eff = self.eff
        fam = self.family
        rows = max(tokens, MMA_MIN_ROWS)
        linear = max(
            self._body_bytes / (self._bw * eff.weight_bandwidth[fam]),
            self._body_flops_per_token * rows / (self._peak_matmul * eff.compute[fam]),
        )
        sampled = decodes + prefill_sequences
        lm_head = 0.0
        if sampled > 0:
            rows = max(sampled, MMA_MIN_ROWS)
            lm_head = max(
                self._lm_bytes / (self._bw * eff.weight_bandwidth[KernelFamily.BF16]),
                self._lm_flops_per_token * rows / (self._peak_bf16 * eff.compute[KernelFamily.BF16]),
            )
        attention = 0.0
        if self._kv_token:
            kv_bytes = (decode_context + prefill) * self._kv_token
            attention = max(
                kv_bytes / (self._bw * eff.kv_bandwidth),
                self._attn_flops_per_pair * (pairs + decode_context) / (self._peak_bf16 * eff.attention_compute),
            )
        mamba = 0.0
        if self._state_seq:
            state_bytes = 2 * self._state_seq * (decodes + prefill_sequences) + self._mamba_io_per_token * prefill
            mamba = max(
                state_bytes / (self._bw * eff.kv_bandwidth),
                self._scan_flops_per_token * tokens / (self._peak_bf16 * eff.scan_compute),
            )
        comm = 0.0
        if self._allreduces:
            message = tokens * self.variant.architecture.hidden_size * ACTIVATION_BYTES
            comm = self._allreduces * (eff.allreduce_latency_s + self._ring * message / (self._link * eff.interconnect))
        return {
            "linear": linear,
            "lm_head": lm_head,
            "attention": attention,
            "mamba": mamba,
            "all_reduce": comm,
            "layer_latency": self._layer_fixed,
            "step_overhead": eff.step_overhead_s,
        }

    # --- one request alone -----------------------------------------------------------------------------
    def prefill_time(self, prompt_tokens: int, cached_tokens: int = 0) -> float:
        """Time to compute a prompt alone, in chunks of the step token budget (the first token included)."""
        budget = self.variant.max_num_batched_tokens
        done = cached_tokens
        total = 0.0
        while done < cached_tokens + prompt_tokens:
            chunk = min(budget, cached_tokens + prompt_tokens - done)
            pairs = chunk * (done + (chunk + 1) / 2)
            last = done + chunk >= cached_tokens + prompt_tokens
            total += self._step(float(chunk), pairs, 0.0, 0.0, 1.0 if last else 0.0)
            done += chunk
        return total

    def decode_step_time(self, sequences: float, context_tokens_each: float) -> float:
        return self._step(0.0, 0.0, sequences, sequences * context_tokens_each, 0.0)

    def sync_latency(self, prompt_tokens: int, output_tokens: int) -> SyncLatency:
        """One request with nothing else running: prefill, then one decode step per further token."""
        ttft = self.prefill_time(prompt_tokens)
        steps = output_tokens - 1
        if steps <= 0:
            return SyncLatency(ttft_s=ttft, itl_s=0.0, e2e_s=ttft + self.eff.request_overhead_s)
        # Step time is piecewise linear in context: Simpson's rule over the decode steps is exact enough.
        first, last = prompt_tokens + 1, prompt_tokens + steps
        samples = 8
        xs = [first + (last - first) * i / samples for i in range(samples + 1)]
        ys = [self.decode_step_time(1, x) for x in xs]
        weights = [1 if i in (0, samples) else (4 if i % 2 else 2) for i in range(samples + 1)]
        mean_step = sum(w * y for w, y in zip(weights, ys, strict=True)) / (3 * samples)
        decode = mean_step * steps
        return SyncLatency(ttft_s=ttft, itl_s=mean_step, e2e_s=ttft + decode + self.eff.request_overhead_s)

    # --- continuous batching -----------------------------------------------------------------------------
    def _prefill_steps(self, concurrency: int, prompt_tokens: int) -> int:
        """Steps a prompt spends in prefill: chunks of what the budget leaves beside the others' decodes."""
        room = max(1, self.variant.max_num_batched_tokens - (concurrency - 1))
        return max(1, math.ceil(prompt_tokens / room))

    def _mixed_step(
        self, chunks: float, chunk_tokens: float, concurrency: float, prompt_tokens: int, context: float
    ) -> float:
        """One step carrying `chunks` prompt chunks of `chunk_tokens`, the other sequences decoding."""
        prefill = chunks * chunk_tokens
        decodes = max(0.0, concurrency - chunks)
        # Over a whole prompt the chunks attend to p(p+1)/2 pairs: (p+1)/2 per prompt token.
        pairs = prefill * (prompt_tokens + 1) / 2
        return self._step(prefill, pairs, decodes, decodes * context, 1.0 if prefill > 0 else 0.0)

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
        n = self._prefill_steps(c, p)
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
            step = self._mixed_step(chunks, chunk, rate * (n + decode_steps), p, context)
            mean_step = itl = prefill_step = step
        else:
            k = math.floor(chunks)
            share = chunks - k  # fraction of steps carrying k + 1 chunks
            low = self._mixed_step(k, chunk, c, p, context)
            high = self._mixed_step(k + 1, chunk, c, p, context)
            mean_step = (1 - share) * low + share * high
            # A sequence's token gaps are the steps it decodes in; its prefill rides in the chunked ones.
            decoders = ((1 - share) * (c - k), share * (c - k - 1))
            itl = (decoders[0] * low + decoders[1] * high) / max(sum(decoders), 1e-12)
            carriers = ((1 - share) * k, share * (k + 1))
            prefill_step = (carriers[0] * low + carriers[1] * high) / max(sum(carriers), 1e-12)
            if k >= 1 and (k + 1) * chunk + (c - k - 1) > budget:
                # Prompts arriving together do not all fit beside the decodes: some spill into later steps.
                spanned = _prompt_steps_in_fifo(chunks / n, p, budget - (c - chunks))
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
            return c * per_request <= budget * (self._prefill_steps(c, prompt_tokens) + output_tokens - 1)

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

    def max_concurrency(self, prompt_tokens: int, output_tokens: int) -> tuple[int, str]:
        """Sequences that run at once at saturation, and what limits them.

        KV use per running sequence averages prompt + output/2 tokens (sequences are staggered). The
        scheduler admits a waiting request only while the step budget has room, so beyond the count
        whose prompts and decodes fill the budget more sequences add no throughput.
        """
        plan = self.memory
        if not plan.fits:
            return 0, "does not fit"
        average_context = prompt_tokens + output_tokens / 2
        blocks_per_sequence = max(1, math.ceil(average_context / self.variant.block_size))
        limits = {
            "max_num_seqs": self.variant.max_num_seqs,
            "kv_cache": plan.num_kv_blocks // blocks_per_sequence,
            "mamba_state": plan.mamba_state_slots,
        }
        upper = min(limits.values())
        if upper >= 1:
            limits["token_budget"] = self._token_budget_concurrency(prompt_tokens, output_tokens, upper)
        limited_by = min(limits, key=lambda k: (limits[k], k != "max_num_seqs", k == "token_budget"))
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

    def qps_at_itl(self, prompt_tokens: int, output_tokens: int, itl_s: float) -> float:
        """Highest throughput whose mean inter-token latency stays within `itl_s` (the latency knee)."""
        top, _ = self.max_concurrency(prompt_tokens, output_tokens)
        lo, hi, best = 0, top, 0.0
        while lo < hi:
            mid = (lo + hi + 1) // 2
            state = self.steady_state(mid, prompt_tokens, output_tokens)
            if state.itl_s <= itl_s:
                lo, best = mid, state.requests_per_s
            else:
                hi = mid - 1
        return best

    def qps_at_slo(
        self,
        prompt_tokens: int,
        output_tokens: int,
        *,
        ttft_s: float | None = None,
        itl_s: float | None = None,
        percentile: float = 0.99,
    ) -> float:
        """Highest Poisson arrival rate whose TTFT and ITL percentiles meet the SLO (0 when none does).

        At rate λ the running count b settles where λ = b / (steps per request × mean step(b))
        (Little's law, with `steady_state`'s mix of chunked and decode-only steps). TTFT is the
        prompt's chunked prefill beside b − 1 decodes plus the wait for a free sequence slot, taken
        from M/M/c with c = the saturation concurrency and halved for the near-deterministic service
        time (Allen–Cunneen). ITL is the decode-only step, or the step carrying a prompt chunk when
        such steps are more than 1 − percentile of all steps.
        """
        sat = self.saturation(prompt_tokens, output_tokens)
        if sat.concurrency < 1:
            return 0.0
        c = sat.concurrency
        top = self.steady_state(c, prompt_tokens, output_tokens)
        service = c / top.requests_per_s  # seconds a request holds its slot (Little's law)
        p, o = prompt_tokens, output_tokens
        context = p + o / 2

        def meets(b: int) -> tuple[bool, float]:
            state = self.steady_state(b, p, o)
            rate = state.requests_per_s
            ttft = state.ttft_s
            load = min(rate * service, c - 1e-9)
            waiting = _erlang_c(c, load)
            if waiting > 1 - percentile:
                ttft += 0.5 * service / (c - load) * math.log(waiting / (1 - percentile))
            chunked = state.chunks_per_step
            k = math.floor(chunked)
            # The step kinds a decoding sequence sees: more chunks than ⌊a⌋ in a share a − ⌊a⌋ of steps.
            heavier = k + 1 if chunked - k > 1 - percentile else k
            itl = (
                state.itl_s if state.budget_bound else self._mixed_step(heavier, p / state.prefill_steps, b, p, context)
            )
            ok = (ttft_s is None or ttft <= ttft_s) and (itl_s is None or itl <= itl_s)
            return ok, rate

        lo, hi = 0, c  # meets(lo) is taken as true with rate 0; find the largest b that meets
        best = 0.0
        while lo < hi:
            mid = (lo + hi + 1) // 2
            ok, rate = meets(mid)
            if ok:
                lo, best = mid, rate
            else:
                hi = mid - 1
        return best

    # --- everything for one workload ------------------------------------------------------------------------
    def predict(
        self,
        workload: Workload,
        mode: str = "sync",
        *,
        price_per_gpu_hour: float | None = None,
        ttft_slo_s: float | None = None,
        itl_slo_s: float | None = None,
        slo_percentile: float = 0.99,
    ) -> Prediction:
        v = self.variant
        plan = self.memory
        price = v.hourly_price(price_per_gpu_hour)
        p, o = workload.prompt_tokens, workload.output_tokens
        base = {
            "variant": v.name,
            "model": v.architecture.name,
            "format": v.format,
            "gpu": v.gpu.name,
            "gpus": v.num_gpus,
            "tensor_parallel": v.tensor_parallel,
            "workload": workload.name,
            "prompt_tokens": p,
            "output_tokens": o,
            "mode": mode,
            "fits": plan.fits,
            "reason": plan.reason,
            "execution": v.execution.mode.value,
            "kernel": self.family.value,
            "price_per_hour_usd": price,
            "kv_cache_tokens": plan.kv_cache_tokens,
            "mamba_state_slots": plan.mamba_state_slots,
        }
        empty = {
            "latency_s": None,
            "ttft_s": None,
            "itl_s": None,
            "max_qps": None,
            "concurrency": None,
            "limited_by": None,
            "output_tokens_per_s": None,
            "output_tokens_per_s_per_gpu": None,
            "cost_per_query_usd": None,
            "cost_per_1m_output_tokens_usd": None,
        }
        if not plan.fits or p + o > v.max_model_len:
            if plan.fits:
                base["fits"] = False
                base["reason"] = (
                    f"prompt + output ({p + o} tokens) exceed max_model_len {v.max_model_len}: raise max_model_len"
                )
            return Prediction(**base, **empty)
        slo = ttft_slo_s is not None or itl_slo_s is not None
        if mode == "sync":
            lat = self.sync_latency(p, o)
            qps = 1.0 / lat.e2e_s
            values = {
                "latency_s": lat.e2e_s,
                "ttft_s": lat.ttft_s,
                "itl_s": lat.itl_s,
                "max_qps": qps,
                "concurrency": 1,
                "limited_by": "one request at a time",
            }
        elif mode == "async":
            sat = self.saturation(p, o)
            qps = sat.max_qps
            values = {
                "latency_s": sat.ttft_s + (o - 1) * sat.itl_s + self.eff.request_overhead_s,
                "ttft_s": sat.ttft_s,
                "itl_s": sat.itl_s,
                "max_qps": qps,
                "concurrency": sat.concurrency,
                "limited_by": sat.limited_by,
            }
        else:
            raise ValueError(f"mode must be 'sync' or 'async', got {mode!r}")
        tokens_per_s = qps * o
        cost_per_query = price / 3600 / qps if qps > 0 else None
        return Prediction(
            **base,
            **values,
            qps_at_slo=self.qps_at_slo(p, o, ttft_s=ttft_slo_s, itl_s=itl_slo_s, percentile=slo_percentile)
            if slo
            else None,
            output_tokens_per_s=tokens_per_s,
            output_tokens_per_s_per_gpu=tokens_per_s / v.num_gpus,
            cost_per_query_usd=cost_per_query,
            cost_per_1m_output_tokens_usd=cost_per_query / o * 1e6 if cost_per_query is not None else None,
        )
