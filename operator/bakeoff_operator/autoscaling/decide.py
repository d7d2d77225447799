"""GPU-aware autoscaling: replicas for every variant at once, from the signals that matter for its format
and architecture, the capacity one replica was measured (or predicted) to carry, and the GPUs free.

Pure: `decide(observed, policies, capacity, free_gpus, history, now)` is a function of data and returns
the decisions with a reason a person can read, plus the history the next call takes. The loop that
reads Prometheus and applies the decisions lives in `bakeoff_operator.io`.

Signals per variant (from vLLM's V1 metrics, summed over its replicas):
- **token rate**: output tokens/s against `targets.tokensPerSecondPerReplica` (default 0.8) of one
  replica's capacity: the last BakeOff's measured tokens/s for that variant, else the performance
  model's prediction. This is the signal that also scales down.
- **queue**: `vllm:num_requests_waiting` per replica against `targets.queueDepth` (scale-up only).
- **saturation**: dense models, `vllm:kv_cache_usage_perc` against `targets.kvCacheUsage`; hybrids,
  whose Mamba state per sequence is constant (KV usage does not track their load), running sequences
  against the engine's `maxNumSeqs` (its state slots) at the same target fraction.
The wanted count is the largest any signal asks for, within `[minReplicas, maxReplicas]`.

Stability: up at once; down only to the highest count wanted during the last `scaleDownDelay` (the
stabilisation window, as Kubernetes' HPA), and not for a change within 10 % of the current load
(no flapping under a steady load). Scale to zero only after `scaleDownDelay` without any load, and
never on missing data: a variant whose metrics are missing keeps its last count, and says so.

Measurement: a variant a BakeOff run is measuring (`held`) keeps its count until the run ends, whatever
its load (the run's own load) or its metrics say: the run measures capacity and cost per replica at a
fixed count, and the autoscaler then scales it on that measured capacity.

GPUs: growth is granted per GPU class from the GPUs free on its nodes, one replica at a time, by this
rule: first variants below their `minReplicas`; then the variant with the most unmet demand per GPU
(output tokens/s it cannot serve today ÷ GPUs one more replica takes); ties by name. A variant that
cannot grow for lack of GPUs is capped at what fits and marked `ScalingLimited` (`InsufficientGPU`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_TOKEN_TARGET: Final = 0.8
DEFAULT_SATURATION_TARGET: Final = 0.8
TOLERANCE: Final = 0.1  # a load within 10 % of what the current replicas are sized for changes nothing


class Limit(StrEnum):
    """Why a variant got fewer replicas than it wanted (or kept its count)."""

    NONE = "none"
    INSUFFICIENT_GPU = "InsufficientGPU"
    METRICS_MISSING = "MetricsMissing"
    MAX_REPLICAS = "MaxReplicas"
    BAKEOFF_RUN = "BakeOffRun"


class VariantLoad(BaseModel):
    """What Prometheus shows of one variant now, summed (or averaged) over its replicas."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    waiting: float = Field(ge=0, description="Requests waiting (`vllm:num_requests_waiting`).")
    running: float = Field(ge=0, description="Requests running (`vllm:num_requests_running`).")
    output_tokens_per_s: float = Field(ge=0, description="rate(`vllm:generation_tokens_total`).")
    prompt_tokens_per_s: float = Field(default=0.0, ge=0, description="rate(`vllm:prompt_tokens_total`).")
    kv_cache_usage: float | None = Field(default=None, ge=0, le=1, description="Mean `vllm:kv_cache_usage_perc`.")
    replicas_reporting: int = Field(default=0, ge=0, description="Replicas whose metrics were scraped.")

    @property
    def idle(self) -> bool:
        return self.waiting == 0 and self.running == 0 and self.output_tokens_per_s == 0


class Policy(BaseModel):
    """One variant's scaling rules (its ModelVariant's autoscaling spec, resolved)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: str
    namespace: str = ""
    gpu_class: str
    gpus_per_replica: int = Field(ge=1)
    min_replicas: int = Field(ge=0)
    max_replicas: int = Field(ge=1)
    scale_to_zero: bool = False
    scale_down_delay_s: float = Field(default=300.0, ge=0)
    queue_depth: float | None = Field(default=None, gt=0, description="Waiting requests per replica.")
    kv_cache_usage: float | None = Field(default=None, gt=0, le=1, description="Saturation target (0..1).")
    tokens_per_second_per_replica: float | None = Field(
        default=None, gt=0, le=1, description="Fraction of one replica's capacity."
    )
    hybrid: bool = Field(default=False, description="Mamba hybrid: saturation from running sequences.")
    max_num_seqs: int = Field(default=256, ge=1, description="The engine's sequence (state slot) limit.")

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.variant}" if self.namespace else self.variant


class Capacity(BaseModel):
    """Output tokens/s one replica carries within its SLO, and where the figure comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens_per_second: float = Field(gt=0)
    source: str = Field(description="`measured` (a BakeOff run) or `predicted` (the performance model).")


class VariantHistory(BaseModel):
    """What one variant's earlier decisions leave for the next one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    replicas: int = Field(ge=0, description="The count last applied.")
    wanted: list[tuple[float, int]] = Field(default_factory=list, description="(time, count wanted) in the window.")
    last_active: float | None = Field(default=None, description="Last time any load was seen.")


class Decision(BaseModel):
    """The replicas one variant gets now, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    variant: str
    namespace: str
    current: int
    wanted: int = Field(description="What the signals ask for, within the bounds, before GPUs are counted.")
    desired: int = Field(description="What it gets.")
    limit: Limit = Limit.NONE
    reason: str
    capacity_tokens_per_second: float | None = None
    capacity_source: str | None = None

    @property
    def changed(self) -> bool:
        return self.desired != self.current


class Decisions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    decisions: list[Decision]
    history: dict[str, VariantHistory]

    def get(self, key: str) -> Decision | None:
        return next((d for d in self.decisions if d.key == key), None)


def _ceil(x: float) -> int:
    return max(0, math.ceil(x - 1e-9))


def _signals(load: VariantLoad, policy: Policy, capacity: Capacity | None, current: int) -> list[tuple[int, str]]:
    """(replicas wanted, why) for every signal this variant has a target for."""
    out: list[tuple[int, str]] = []
    if capacity is not None:
        target = policy.tokens_per_second_per_replica or DEFAULT_TOKEN_TARGET
        per_replica = target * capacity.tokens_per_second
        need = load.output_tokens_per_s / per_replica
        if current > 0 and abs(need / current - 1) <= TOLERANCE:
            need = current
        per = f"{target:.0%} of {capacity.tokens_per_second:.0f}/s per replica ({capacity.source})"
        out.append((_ceil(need), f"{load.output_tokens_per_s:.0f} output tokens/s against {per}"))
    if policy.queue_depth is not None and load.waiting > policy.queue_depth * max(current, 1):
        need = max(current, 1) * load.waiting / (policy.queue_depth * max(current, 1))
        out.append((_ceil(need), f"{load.waiting:.0f} waiting, over {policy.queue_depth:g} per replica"))
    target = policy.kv_cache_usage or DEFAULT_SATURATION_TARGET
    if policy.hybrid:
        used = load.running / (policy.max_num_seqs * max(current, 1))
        if used > target:
            slots = f"{used:.0%} of {policy.max_num_seqs} state slots per replica (target {target:.0%})"
            out.append((_ceil(current * used / target), f"{load.running:.0f} running sequences, {slots}"))
    elif load.kv_cache_usage is not None and load.kv_cache_usage > target and current > 0:
        out.append(
            (
                _ceil(current * load.kv_cache_usage / target),
                f"KV cache {load.kv_cache_usage:.0%} used (target {target:.0%})",
            )
        )
    return out


def _wanted(
    load: VariantLoad | None,
    policy: Policy,
    capacity: Capacity | None,
    past: VariantHistory,
    now: float,
) -> tuple[int, str, Limit, VariantHistory]:
    """The count the signals ask for (bounded, stabilised), the reason, and the new history."""
    current = past.replicas
    if load is None:
        held = max(current, policy.min_replicas)
        return (
            held,
            f"holding {held}: no metrics for this variant (Prometheus down or not scraped)",
            (Limit.METRICS_MISSING),
            past,
        )
    last_active = past.last_active if load.idle else now
    signals = _signals(load, policy, capacity, current)
    if signals:
        raw, why = max(signals, key=lambda s: s[0])
    else:
        raw, why = current, "no signal over its target"
    if current == 0 and (load.waiting > 0 or load.running > 0):
        raw, why = max(raw, 1), "requests arrived while scaled to zero"
    floor = policy.min_replicas
    if policy.scale_to_zero and load.idle:
        quiet_since = last_active if last_active is not None else -math.inf
        if now - quiet_since >= policy.scale_down_delay_s:
            raw, why = 0, f"no load for {policy.scale_down_delay_s:.0f} s: scaled to zero"
            floor = 0
        else:
            floor = max(floor, 1 if current > 0 else 0)
    elif policy.scale_to_zero and current > 0:
        floor = max(floor, 1)
    limit = Limit.NONE
    bounded = max(floor, raw)
    if bounded > policy.max_replicas:
        bounded, limit = policy.max_replicas, Limit.MAX_REPLICAS
        why += f"; capped at maxReplicas {policy.max_replicas}"
    # With no earlier wish (a new variant, an operator restart), the current count stands for the whole
    # window: nothing scales down on the first look.
    earlier = [(t, n) for t, n in past.wanted if now - t < policy.scale_down_delay_s] or [(now, current)]
    window = [*earlier, (now, bounded)]
    desired = bounded
    if bounded < current and not (bounded == 0 and raw == 0 and policy.scale_to_zero):
        # Down slowly: the most any moment of the stabilisation window wanted.
        desired = min(current, max(n for _, n in window))
        if desired > bounded:
            why += f"; holding {desired} for the {policy.scale_down_delay_s:.0f} s stabilisation window"
    history = VariantHistory(replicas=current, wanted=window, last_active=last_active)
    return desired, why, limit, history


def _unmet_per_gpu(policy: Policy, load: VariantLoad | None, capacity: Capacity | None, granted: int) -> float:
    if load is None or capacity is None:
        return 0.0
    unmet = load.output_tokens_per_s - granted * capacity.tokens_per_second
    return max(unmet, 0.0) / policy.gpus_per_replica


def decide(  # noqa: PLR0917 (the decision's inputs, named in the docstring)
    observed: Mapping[str, VariantLoad | None],
    policies: Sequence[Policy],
    capacity: Mapping[str, Capacity],
    free_gpus: Mapping[str, int],
    history: Mapping[str, VariantHistory],
    now: float,
    *,
    held: Mapping[str, str] | None = None,
) -> Decisions:
    """Replicas for every variant of `policies` (keys: `Policy.key`); see the module docstring for the rules.
    `held`: the variants a BakeOff run is measuring, with what measures them (e.g. `run r1 of BakeOff bo`)."""
    wanted: dict[str, tuple[int, str, Limit, VariantHistory]] = {}
    for p in policies:
        past = history.get(p.key) or VariantHistory(replicas=p.min_replicas)
        measuring = (held or {}).get(p.key)
        if measuring is not None:
            hold = past.model_copy(update={"wanted": [*past.wanted, (now, past.replicas)], "last_active": now})
            why = f"{measuring} is measuring it at a fixed count"
            wanted[p.key] = (past.replicas, why, Limit.BAKEOFF_RUN, hold)
            continue
        wanted[p.key] = _wanted(observed.get(p.key), p, capacity.get(p.key), past, now)
    granted = {p.key: min(wanted[p.key][0], wanted[p.key][3].replicas) for p in policies}
    free = dict(free_gpus)
    limited: set[str] = set()
    # Growth, one replica at a time, by the priority rule of the module docstring.
    while True:
        candidates = [p for p in policies if granted[p.key] < wanted[p.key][0] and p.key not in limited]
        if not candidates:
            break

        def priority(p: Policy) -> tuple[int, float, str]:
            below_min = granted[p.key] < p.min_replicas
            unmet = _unmet_per_gpu(p, observed.get(p.key), capacity.get(p.key), granted[p.key])
            return (0 if below_min else 1, -unmet, p.key)

        best = min(candidates, key=priority)
        if free.get(best.gpu_class, 0) >= best.gpus_per_replica:
            free[best.gpu_class] = free.get(best.gpu_class, 0) - best.gpus_per_replica
            granted[best.key] += 1
        else:
            limited.add(best.key)
    decisions = []
    new_history: dict[str, VariantHistory] = {}
    for p in policies:
        want, why, limit, past = wanted[p.key]
        desired = granted[p.key]
        if p.key in limited:
            limit = Limit.INSUFFICIENT_GPU
            why += (
                f"; capped at {desired} of {want}: {free.get(p.gpu_class, 0)} {p.gpu_class} GPU(s) free, "
                f"{p.gpus_per_replica} needed per replica"
            )
        cap = capacity.get(p.key)
        current = past.replicas
        verb = "keeps" if desired == current else ("scales up" if desired > current else "scales down")
        decisions.append(
            Decision(
                key=p.key,
                variant=p.variant,
                namespace=p.namespace,
                current=current,
                wanted=want,
                desired=desired,
                limit=limit,
                reason=f"{verb} {current} -> {desired}: {why}" if desired != current else f"{verb} {current}: {why}",
                capacity_tokens_per_second=cap.tokens_per_second if cap else None,
                capacity_source=cap.source if cap else None,
            )
        )
        new_history[p.key] = past.model_copy(update={"replicas": desired})
    return Decisions(decisions=decisions, history=new_history)
