"""vLLM V1 metrics for the simulator: the same names, types, labels and buckets as vLLM 0.32.0.

Names, help texts and bucket boundaries follow `vllm/v1/metrics/loggers.py` and
`vllm/v1/metrics/buckets.py` of vLLM 0.32.0; every family carries the labels `model_name` and
`engine` ("0"). The simulator exposes a subset of vLLM's families (those a bake-off reads, and a
few cheap ones), plus its own `bakeoff_sim_*` families for schedule lag and modelled step times.
`tests/conformance/vllm_metric_families.txt` is the snapshot of real vLLM's families; a test checks
that every `vllm:` family here is in it with the same type and labels.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bakeoff_runtime.sim.scheduler import FinishReason, SimRequest, StepCounts
from bakeoff_runtime.vllm_version import VLLM_VERSION

__all__ = ["VLLM_VERSION"]

# vllm/v1/metrics/buckets.py (0.32.0)
REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
    120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
TIME_TO_FIRST_TOKEN_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
    10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
INTER_TOKEN_LATENCY_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
ITERATION_TOKENS_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
REQUEST_PARAMS_N_BUCKETS = (1, 2, 5, 10, 20)
REQUEST_NUM_PREEMPTIONS_BUCKETS = (1, 2, 3, 4, 5, 10, 20)
SCHEDULE_LAG_BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0)
STEP_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


def request_tokens_buckets(max_model_len: int) -> list[float]:
    """vLLM's 1-2-5 series capped at max_model_len (`build_1_2_5_buckets`)."""
    out: list[float] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > max_model_len:
                return out
            out.append(value)
        exponent += 1


class SimMetrics:
    """The simulator's Prometheus registry (its own, never the global one)."""

    def __init__(self, model_name: str, max_model_len: int, cache_config: dict[str, str]) -> None:
        self.registry = CollectorRegistry()
        labels = ["model_name", "engine"]
        values = (model_name, "0")
        reg = self.registry
        token_buckets = request_tokens_buckets(max_model_len)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, labels, registry=reg, multiprocess_mode="mostrecent")

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, labels, registry=reg)

        def histogram(name: str, doc: str, buckets: tuple[float, ...] | list[float]) -> Histogram:
            return Histogram(name, doc, labels, registry=reg, buckets=buckets)

        self.running = gauge("vllm:num_requests_running", "Number of requests in model execution batches.").labels(
            *values
        )
        self.waiting = gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.").labels(*values)
        waiting_by_reason = Gauge(
            "vllm:num_requests_waiting_by_reason",
            "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling capacity; "
            "'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked status). "
            "Sum of all reasons equals vllm:num_requests_waiting.",
            [*labels, "reason"],
            registry=reg,
            multiprocess_mode="mostrecent",
        )
        self.waiting_capacity = waiting_by_reason.labels(*values, "capacity")
        waiting_by_reason.labels(*values, "deferred").set(0)
        sleep_state = Gauge(
            "vllm:engine_sleep_state",
            "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; "
            "weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.",
            [*labels, "sleep_state"],
            registry=reg,
            multiprocess_mode="mostrecent",
        )
        sleep_state.labels(*values, "awake").set(1)
        sleep_state.labels(*values, "weights_offloaded").set(0)
        sleep_state.labels(*values, "discard_all").set(0)
        self.kv_usage = gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.").labels(*values)
        self.prefix_queries = counter(
            "vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens."
        ).labels(*values)
        # No prefix caching in the simulator: hits stay 0 while queries count prompt tokens, as vLLM does.
        self.prefix_hits = counter(
            "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens."
        ).labels(*values)
        self.preemptions = counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.").labels(
            *values
        )
        self.prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.").labels(*values)
        self.generation_tokens = counter("vllm:generation_tokens", "Number of generation tokens processed.").labels(
            *values
        )
        success = Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            [*labels, "finished_reason"],
            registry=reg,
        )
        self.success = {reason: success.labels(*values, reason.value) for reason in FinishReason}
        self.success_repetition = success.labels(*values, "repetition")
        self.request_prompt_tokens = histogram(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", token_buckets
        ).labels(*values)
        self.request_generation_tokens = histogram(
            "vllm:request_generation_tokens", "Number of generation tokens processed.", token_buckets
        ).labels(*values)
        self.iteration_tokens = histogram(
            "vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", ITERATION_TOKENS_BUCKETS
        ).labels(*values)
        self.max_generation_tokens = histogram(
            "vllm:request_max_num_generation_tokens",
            "Histogram of maximum number of requested generation tokens.",
            token_buckets,
        ).labels(*values)
        self.params_n = histogram(
            "vllm:request_params_n", "Histogram of the n request parameter.", REQUEST_PARAMS_N_BUCKETS
        ).labels(*values)
        self.params_max_tokens = histogram(
            "vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", token_buckets
        ).labels(*values)
        self.ttft = histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            TIME_TO_FIRST_TOKEN_BUCKETS,
        ).labels(*values)
        self.itl = histogram(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            INTER_TOKEN_LATENCY_BUCKETS,
        ).labels(*values)
        self.tpot = histogram(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            INTER_TOKEN_LATENCY_BUCKETS,
        ).labels(*values)
        self.e2e = histogram(
            "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", REQUEST_LATENCY_BUCKETS
        ).labels(*values)
        self.queue_time = histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            REQUEST_LATENCY_BUCKETS,
        ).labels(*values)
        self.inference_time = histogram(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            REQUEST_LATENCY_BUCKETS,
        ).labels(*values)
        self.prefill_time = histogram(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            REQUEST_LATENCY_BUCKETS,
        ).labels(*values)
        self.decode_time = histogram(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            REQUEST_LATENCY_BUCKETS,
        ).labels(*values)
        self.request_preemptions = histogram(
            "vllm:request_num_preemptions",
            "Histogram of the number of times a request was preempted.",
            REQUEST_NUM_PREEMPTIONS_BUCKETS,
        ).labels(*values)
        self.prefill_kv_computed = histogram(
            "vllm:request_prefill_kv_computed_tokens",
            "Histogram of new KV tokens computed during prefill (excluding cached tokens).",
            token_buckets,
        ).labels(*values)
        # Like vLLM's, the info gauge is labelled with the engine and the cache configuration only.
        info = Gauge(
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            sorted({"engine", *cache_config}),
            registry=reg,
            multiprocess_mode="mostrecent",
        )
        info.labels(**{"engine": "0", **cache_config}).set(1)

        # The simulator's own families.
        self.schedule_lag = Histogram(
            "bakeoff_sim_schedule_lag_seconds",
            "How late the simulator's engine woke after a step's modelled end (virtual-time accuracy).",
            labels,
            registry=reg,
            buckets=SCHEDULE_LAG_BUCKETS,
        ).labels(*values)
        self.step_time = Histogram(
            "bakeoff_sim_step_duration_seconds",
            "Modelled duration of each engine step (the performance model's step_time).",
            labels,
            registry=reg,
            buckets=STEP_BUCKETS,
        ).labels(*values)
        self.rejected = Counter(
            "bakeoff_sim_injected_errors",
            "Requests failed on purpose by fault injection.",
            labels,
            registry=reg,
        ).labels(*values)

    # --- updates ------------------------------------------------------------------------------------
    def on_step(self, counts: StepCounts, modelled_s: float, lag_s: float, prompts_done: int, sampled: int) -> None:
        """One engine step; like vLLM, prompt tokens count once per request when its prefill completes
        (recomputation after preemption is not counted again) and every sampled token is a generation
        token (the first one included)."""
        self.iteration_tokens.observe(counts.total_tokens)
        self.prompt_tokens.inc(prompts_done)
        self.generation_tokens.inc(sampled)
        self.step_time.observe(modelled_s)
        self.schedule_lag.observe(max(0.0, lag_s))

    def on_state(self, running: int, waiting: int, kv_usage: float) -> None:
        self.running.set(running)
        self.waiting.set(waiting)
        self.waiting_capacity.set(waiting)
        self.kv_usage.set(kv_usage)

    def on_admit(self, prompt_tokens: int, max_tokens: int, max_tokens_param: int | None) -> None:
        self.prefix_queries.inc(prompt_tokens)
        self.params_n.observe(1)
        self.max_generation_tokens.observe(max_tokens)
        if max_tokens_param is not None:
            self.params_max_tokens.observe(max_tokens_param)

    def on_finish(self, req: SimRequest, times: RequestTimes) -> None:
        reason = req.finish_reason or FinishReason.ABORT
        self.success[reason].inc()
        self.request_preemptions.observe(req.preemptions)
        if reason is FinishReason.ABORT or times.first_token is None:
            return
        self.request_prompt_tokens.observe(req.prompt_tokens)
        self.request_generation_tokens.observe(req.output_tokens)
        self.prefill_kv_computed.observe(req.prompt_tokens)
        finished = times.finished if times.finished is not None else times.first_token
        scheduled = times.scheduled if times.scheduled is not None else times.arrival
        self.e2e.observe(finished - times.arrival)
        self.queue_time.observe(scheduled - times.arrival)
        self.inference_time.observe(finished - scheduled)
        self.prefill_time.observe(times.first_token - scheduled)
        self.decode_time.observe(finished - times.first_token)
        if req.output_tokens > 1:
            self.tpot.observe((finished - times.first_token) / (req.output_tokens - 1))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class RequestTimes:
    """Wall-clock timestamps of one request (loop time, seconds)."""

    __slots__ = ("arrival", "finished", "first_token", "last_token", "scheduled")

    def __init__(self, arrival: float) -> None:
        self.arrival = arrival
        self.scheduled: float | None = None
        self.first_token: float | None = None
        self.last_token: float | None = None
        self.finished: float | None = None
