"""How long one continuous-batching engine step takes: a roofline per kernel class.

The classes run one after another, so a step is their sum:

* linear layers (decoder blocks): max(weight bytes / (bandwidth × e_bw[kernel]),
  2 × params × tokens / (peak[compute dtype] × e_compute[kernel]));
* the LM head (16-bit in every format), for the sequences sampled this step;
* attention: max(KV bytes read and written / (bandwidth × e_kv), attention FLOPs / (peak × e_attn));
* Mamba mixers: max(state bytes read and written / (bandwidth × e_kv), scan FLOPs / (peak × e_scan));
* tensor parallel: one all-reduce of the hidden states after every mixer and MLP (latency + ring bytes
  over NVLink inside a node, over the network when the group spans nodes);
* pipeline parallel (stages on separate nodes): each stage holds a slice of the layers; a step's batch
  splits into at most one micro-batch per stage, and a token of a sequence must cross every stage
  before its next token can start, so a step lasts stages x (the slowest stage's time for one
  micro-batch + sending its hidden states to the next node). With one sequence that is the pipeline
  bubble: the stages run one after another;
* fixed costs: a launch/synchronisation gap per decoder block, a per-step engine overhead and a
  per-sequence cost (scheduling, sampling, detokenisation).

One request alone is a sequence of such steps: its prompt in chunks of the step budget, then one
decode step per further token.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from bakeoff_runtime.formats import FORMATS, ComputeDtype
from bakeoff_runtime.memory import (
    kv_bytes_per_token_per_gpu,
    layers_per_stage,
    mamba_state_bytes_per_sequence_per_gpu,
)
from bakeoff_runtime.perf.efficiency import DEFAULT_EFFICIENCY, EfficiencyFactors, KernelFamily, kernel_family
from bakeoff_runtime.variant import Variant

ACTIVATION_BYTES = 2.0
MMA_MIN_ROWS = 16  # tensor-core MMA tiles have at least 16 rows: fewer tokens are padded


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


class StepModel:
    """Step times of one variant on its GPU class, and the latency of one request alone."""

    def __init__(self, variant: Variant, efficiency: EfficiencyFactors = DEFAULT_EFFICIENCY) -> None:
        self.variant = variant
        self.eff = efficiency
        arch = variant.architecture
        gpu = variant.gpu
        tp = variant.tensor_parallel
        pp = variant.pipeline_parallel
        execution = variant.execution
        self.family = kernel_family(variant.format, gpu.compute_capability, execution.mode)
        spec = FORMATS[variant.format]
        compute_dtype = execution.compute_dtype if execution.runs else ComputeDtype.BF16
        self._bw = gpu.bandwidth_bytes_per_s
        self._peak_bf16 = gpu.peak_flops(ComputeDtype.BF16)
        self._peak_matmul = gpu.peak_flops(compute_dtype)
        # Per GPU of the slowest stage (the last one, which also holds the LM head).
        self._stages = pp
        self._body_bytes = arch.body_params * spec.weight_bytes / tp / pp
        self._body_flops_per_token = 2 * arch.body_params / tp / pp
        lm_params = arch.lm_head_params or arch.embedding_params  # tied: the embedding is the head
        self._lm_bytes = lm_params * spec.lm_head_bytes / tp
        self._lm_flops_per_token = 2 * lm_params / tp
        self._kv_token = kv_bytes_per_token_per_gpu(variant)
        attention_layers = layers_per_stage(arch.attention_layers, pp)
        mamba_layers = layers_per_stage(arch.mamba_layers, pp)
        mlp_layers = layers_per_stage(arch.mlp_layers, pp)
        self._attn_flops_per_pair = 4 * attention_layers * arch.num_attention_heads * arch.head_dim / tp
        self._state_seq = mamba_state_bytes_per_sequence_per_gpu(variant)
        self._scan_flops_per_token = 9 * mamba_layers * arch.mamba_d_inner * arch.mamba_d_state / tp
        self._mamba_io_per_token = mamba_layers * 6 * arch.mamba_d_inner * ACTIVATION_BYTES / tp
        self._allreduces = attention_layers + mamba_layers + mlp_layers if tp > 1 else 0
        self._ring = 2 * (tp - 1) / tp
        # A tensor-parallel group inside one node all-reduces over NVLink; one that spans nodes is bound by
        # each GPU's network link.
        self._link = (gpu.interconnect_gbps if tp <= gpu.gpus_per_node else gpu.inter_node_gbps) * 1e9
        self._network = gpu.inter_node_gbps * 1e9
        self._layer_fixed = layers_per_stage(arch.num_layers, pp) * efficiency.layer_latency_s

    # --- one step ------------------------------------------------------------------------------------
    def step_time(self, shape: StepShape) -> float:
        """Seconds for one engine step of `shape`; 0 for an empty step."""
        return self.seconds(
            float(shape.prefill_tokens),
            float(shape.prefill_attention_pairs),
            float(shape.decode_sequences),
            float(shape.decode_context_tokens),
            1.0 if shape.prefill_tokens else 0.0,
        )

    def seconds(
        self, prefill: float, pairs: float, decodes: float, decode_context: float, prefill_sequences: float
    ) -> float:
        """Seconds for one step of `prefill` prompt tokens (`pairs` attention pairs, `prefill_sequences`
        of them sampling) and `decodes` decoding sequences attending to `decode_context` tokens."""
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
        pp = self._stages
        if pp == 1:
            parts = self._stage_parts(prefill, pairs, decodes, decode_context, prefill_sequences)
        else:
            # At most one micro-batch per stage, and no fewer sequences per micro-batch than one.
            sequences = decodes + (1.0 if prefill > 0 else 0.0)
            micro = min(float(pp), max(1.0, float(math.floor(sequences))))
            stage = self._stage_parts(
                prefill / micro, pairs / micro, decodes / micro, decode_context / micro, prefill_sequences / micro
            )
            parts = {name: pp * seconds for name, seconds in stage.items()}
            message = tokens / micro * self.variant.architecture.hidden_size * ACTIVATION_BYTES
            hop = self.eff.allreduce_latency_s + message / (self._network * self.eff.interconnect)
            parts["pipeline_send"] = pp * hop
        parts["step_overhead"] = self.eff.step_overhead_s
        return parts

    def _gemm(self, memory_s: float, compute_s: float) -> float:
        """A GEMM's time from its weight-streaming and compute bounds: the roofline, rounded at the ridge."""
        n = self.eff.roofline_sharpness
        return float((memory_s**n + compute_s**n) ** (1 / n))

    def _stage_parts(
        self, prefill: float, pairs: float, decodes: float, decode_context: float, prefill_sequences: float
    ) -> dict[str, float]:
        """Seconds per kernel class of one pass through the slowest stage (the whole model with one stage)."""
        tokens = prefill + decodes
        eff = self.eff
        fam = self.family
        rows = max(tokens, MMA_MIN_ROWS)
        linear = self._gemm(
            self._body_bytes / (self._bw * eff.weight_bandwidth[fam]),
            self._body_flops_per_token * rows / (self._peak_matmul * eff.compute[fam]),
        )
        sampled = decodes + prefill_sequences
        lm_head = 0.0
        if sampled > 0:
            rows = max(sampled, MMA_MIN_ROWS)
            lm_head = self._gemm(
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
            total += self.seconds(float(chunk), pairs, 0.0, 0.0, 1.0 if last else 0.0)
            done += chunk
        return total

    def decode_step_time(self, sequences: float, context_tokens_each: float) -> float:
        return self.seconds(0.0, 0.0, sequences, sequences * context_tokens_each, 0.0)

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
