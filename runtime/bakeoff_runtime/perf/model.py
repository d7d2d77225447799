"""`PerformanceModel`: one variant on its GPU class, with the step model, continuous batching, the
SLO queueing model and predictions behind one object (what the CLI, the operator and the simulator use)."""

from __future__ import annotations

from bakeoff_runtime.memory import MemoryPlan
from bakeoff_runtime.perf.batching import ContinuousBatching, Saturation, SteadyState
from bakeoff_runtime.perf.efficiency import DEFAULT_EFFICIENCY, EfficiencyFactors
from bakeoff_runtime.perf.prediction import Prediction, predict
from bakeoff_runtime.perf.queueing import qps_at_slo
from bakeoff_runtime.perf.roofline import StepModel, StepShape, SyncLatency
from bakeoff_runtime.variant import Variant
from bakeoff_runtime.workloads import Workload


class PerformanceModel:
    """Step times and predictions for one variant on its GPU class."""

    def __init__(self, variant: Variant, efficiency: EfficiencyFactors = DEFAULT_EFFICIENCY) -> None:
        self.variant = variant
        self.eff = efficiency
        self.steps = StepModel(variant, efficiency)
        self.batching = ContinuousBatching(self.steps)
        self.family = self.steps.family

    @property
    def memory(self) -> MemoryPlan:
        return self.batching.memory

    # --- one step, one request alone ------------------------------------------------------------------
    def step_time(self, shape: StepShape) -> float:
        """Seconds for one engine step of `shape`; 0 for an empty step."""
        return self.steps.step_time(shape)

    def step_breakdown(self, shape: StepShape) -> dict[str, float]:
        """Seconds per kernel class of one step (their sum is `step_time`)."""
        return self.steps.step_breakdown(shape)

    def prefill_time(self, prompt_tokens: int, cached_tokens: int = 0) -> float:
        """Time to compute a prompt alone, in chunks of the step token budget (the first token included)."""
        return self.steps.prefill_time(prompt_tokens, cached_tokens)

    def decode_step_time(self, sequences: float, context_tokens_each: float) -> float:
        return self.steps.decode_step_time(sequences, context_tokens_each)

    def sync_latency(self, prompt_tokens: int, output_tokens: int) -> SyncLatency:
        """One request with nothing else running: prefill, then one decode step per further token."""
        return self.steps.sync_latency(prompt_tokens, output_tokens)

    # --- continuous batching --------------------------------------------------------------------------
    def steady_state(self, concurrency: int, prompt_tokens: int, output_tokens: int) -> SteadyState:
        """Continuous batching with `concurrency` sequences running and the queue never empty."""
        return self.batching.steady_state(concurrency, prompt_tokens, output_tokens)

    def max_concurrency(self, prompt_tokens: int, output_tokens: int) -> tuple[int, str]:
        """Sequences that run at once at saturation, and what limits them."""
        return self.batching.max_concurrency(prompt_tokens, output_tokens)

    def saturation(self, prompt_tokens: int, output_tokens: int) -> Saturation:
        return self.batching.saturation(prompt_tokens, output_tokens)

    def qps_at_slo(
        self,
        prompt_tokens: int,
        output_tokens: int,
        *,
        ttft_s: float | None = None,
        itl_s: float | None = None,
        percentile: float = 0.99,
    ) -> float:
        """Highest Poisson arrival rate whose TTFT and ITL percentiles meet the SLO (0 when none does)."""
        return qps_at_slo(
            self.batching, prompt_tokens, output_tokens, ttft_s=ttft_s, itl_s=itl_s, percentile=percentile
        )

    # --- everything for one workload ------------------------------------------------------------------
    def predict(
        self,
        workload: Workload,
        mode: str = "sync",
        *,
        price_per_gpu_hour: float | None = None,
        ttft_slo_s: float | None = None,
        itl_slo_s: float | None = None,
        slo_percentile: float = 0.99,
        clients: int | None = None,
    ) -> Prediction:
        return predict(
            self.batching,
            workload,
            mode,
            price_per_gpu_hour=price_per_gpu_hour,
            ttft_slo_s=ttft_slo_s,
            itl_slo_s=itl_slo_s,
            slo_percentile=slo_percentile,
            clients=clients,
        )
