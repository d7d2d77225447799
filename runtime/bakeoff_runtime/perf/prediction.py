"""Everything `bakeoff predict` reports for one variant and workload: latency, throughput, the rate
under an SLO, tokens per second and cost, in sync (one request at a time) or async mode: continuous batching
at saturation, or at a fixed number of requests in flight (a closed loop of clients, as a load test at one
concurrency drives it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from bakeoff_runtime.cost import usd_per_million_tokens_at_rate
from bakeoff_runtime.formats import Format
from bakeoff_runtime.perf.batching import ContinuousBatching, LimitedBy
from bakeoff_runtime.perf.queueing import qps_at_slo
from bakeoff_runtime.workloads import Workload


class Prediction(BaseModel):
    """What `bakeoff predict` reports for one variant and workload."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: str
    model: str
    format: Format
    gpu: str
    gpus: int = Field(ge=1)
    tensor_parallel: int = Field(ge=1, description="GPUs per pipeline stage (inside one node).")
    pipeline_parallel: int = Field(ge=1, description="Pipeline stages, one node each (1: the variant fits one node).")
    workload: str
    prompt_tokens: int
    output_tokens: int
    mode: str = Field(
        description="sync (one request at a time) or async (continuous batching: at saturation, or with `clients`)."
    )
    clients: int | None = Field(
        default=None,
        ge=1,
        description="Requests the load keeps in flight (async at a fixed concurrency); None: saturation, or sync.",
    )
    fits: bool
    reason: str
    execution: str = Field(description="native, weight-only-fallback or unsupported.")
    kernel: str
    latency_s: float | None = Field(
        description="End-to-end latency (sync: alone; async: at saturation, or with `clients` in flight, queueing "
        "included)."
    )
    ttft_s: float | None
    itl_s: float | None
    max_qps: float | None
    concurrency: int | None
    limited_by: LimitedBy | None
    qps_at_slo: float | None = Field(default=None, description="Highest Poisson rate meeting the SLO.")
    output_tokens_per_s: float | None = Field(description="Per replica, in this mode.")
    output_tokens_per_s_per_gpu: float | None
    price_per_hour_usd: float
    cost_per_query_usd: float | None
    cost_per_1m_output_tokens_usd: float | None
    kv_cache_tokens: int
    mamba_state_slots: int


def predict(
    batching: ContinuousBatching,
    workload: Workload,
    mode: str = "sync",
    *,
    price_per_gpu_hour: float | None = None,
    ttft_slo_s: float | None = None,
    itl_slo_s: float | None = None,
    slo_percentile: float = 0.99,
    clients: int | None = None,
) -> Prediction:
    """`clients` (async only): that many requests in flight, each replaced as it finishes; without it, the
    queue never empties (saturation)."""
    if clients is not None and (mode != "async" or clients < 1):
        raise ValueError(f"clients {clients}: a whole number >= 1, in async mode only")
    v = batching.variant
    plan = batching.memory
    price = v.hourly_price(price_per_gpu_hour)
    p, o = workload.prompt_tokens, workload.output_tokens
    base = {
        "variant": v.name,
        "model": v.architecture.name,
        "format": v.format,
        "gpu": v.gpu.name,
        "gpus": v.num_gpus,
        "tensor_parallel": v.tensor_parallel,
        "pipeline_parallel": v.pipeline_parallel,
        "workload": workload.name,
        "prompt_tokens": p,
        "output_tokens": o,
        "mode": mode,
        "fits": plan.fits,
        "reason": plan.reason,
        "execution": v.execution.mode.value,
        "kernel": batching.steps.family.value,
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
        return Prediction(**base, **empty, clients=clients)
    slo = ttft_slo_s is not None or itl_slo_s is not None
    if mode == "sync":
        lat = batching.steps.sync_latency(p, o)
        qps = 1.0 / lat.e2e_s
        values = {
            "latency_s": lat.e2e_s,
            "ttft_s": lat.ttft_s,
            "itl_s": lat.itl_s,
            "max_qps": qps,
            "concurrency": 1,
            "limited_by": LimitedBy.ONE_REQUEST,
        }
    elif mode == "async" and clients is not None:
        cap, limit = batching.max_concurrency(p, o)
        running = min(clients, cap)
        state = batching.steady_state(running, p, o)
        qps = state.requests_per_s
        # Beyond the engine's cap the rest wait: by Little's law each spends (clients - running) / qps queued.
        wait = (clients - running) / qps if qps > 0 else 0.0
        values = {
            "latency_s": wait + state.ttft_s + (o - 1) * state.itl_s + batching.steps.eff.request_overhead_s,
            "ttft_s": wait + state.ttft_s,
            "itl_s": state.itl_s,
            "max_qps": qps,
            "concurrency": running,
            "limited_by": LimitedBy.CLIENTS if clients <= cap else limit,
        }
    elif mode == "async":
        sat = batching.saturation(p, o)
        qps = sat.max_qps
        values = {
            "latency_s": sat.ttft_s + (o - 1) * sat.itl_s + batching.steps.eff.request_overhead_s,
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
        clients=clients,
        qps_at_slo=qps_at_slo(batching, p, o, ttft_s=ttft_slo_s, itl_s=itl_slo_s, percentile=slo_percentile)
        if slo
        else None,
        output_tokens_per_s=tokens_per_s,
        output_tokens_per_s_per_gpu=tokens_per_s / v.num_gpus,
        cost_per_query_usd=cost_per_query,
        cost_per_1m_output_tokens_usd=usd_per_million_tokens_at_rate(
            price_per_gpu_hour=price / v.num_gpus, gpus=v.num_gpus, replicas=1, tokens_per_second=tokens_per_s
        ),
    )
