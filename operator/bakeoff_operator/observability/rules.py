"""Prometheus recording and alerting rules for every variant, as data. Pure.

`rule_groups()` is the one definition; `render_rule_file()` writes it as a Prometheus rule file (the
chart ships it as `files/bakeoff-rules.yaml` and, when enabled, as the `spec` of a PrometheusRule).
Every series is per variant, labelled `namespace` and `variant` as the variant's PodMonitor (and the
playground's scrape configuration) labels its replicas, and as the operator labels its own metrics.

Recorded series follow Prometheus's `level:metric:operations` naming. What they compute:

- token rates (output, prompt, total) and requests/s, over `RATE_WINDOW`;
- replicas: those Prometheus scrapes, or the replicas the variant asks for when that is higher (the
  autoscaler's desired count, or the variant's `spec.replicas` from `bakeoff_variant_spec`, autoscaled or
  not: a replica loading its weights already holds its GPUs);
- GPUs: replicas x `bakeoff_variant_spec{field="gpus_per_replica"}`, with its `gpu_class`;
- cost per 1M output (and total) tokens: GPUs x `bakeoff_gpu_price_per_hour_usd` of the class / tokens
  per hour x 1e6, the formula of `bakeoff_runtime.cost` with live inputs; no series while a variant
  produces no tokens;
- output tokens/s per GPU;
- TTFT, ITL and E2E quantiles from vLLM's histograms, and the latency at the variant's own SLO
  percentile (`bakeoff_variant_spec{field="slo_quantile"}`), over `RATE_WINDOW` and `LONG_WINDOW`;
- saturation: requests waiting and running, KV-cache usage, sequence slots used (running sequences
  over replicas x max_num_seqs), and the signal the autoscaler scales on: sequence slots for hybrids,
  KV-cache usage for dense models; preemptions/s.

- against each SLO bound, from the histogram's buckets (`Latency.within`): observations/s at or below
  the largest bucket bound that is at or below the target (a target between two bounds counts the
  requests between the lower bound and the target as misses: never more within than were), the error
  ratio (the fraction over that bound) and the burn rate (error ratio / the error budget 1 - the SLO's
  quantile) over `RATE_WINDOW` and `LONG_WINDOW`;
- goodput: requests/s within the SLO's TTFT and E2E bounds, the smaller of the two counts where both are
  set (vLLM's histograms are per latency, so which requests met both at once is not in them; ITL is per
  token gap, not per request, and does not enter).

The SLO-burn alert is a multi-window burn-rate alert: the burn rate above `SLO_BURN_RATE` over both
`LONG_WINDOW` and `RATE_WINDOW`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Final

import yaml
from bakeoff_runtime.cost import SECONDS_PER_HOUR
from pydantic import BaseModel, ConfigDict, Field

from bakeoff_operator.api.common import Reason
from bakeoff_operator.observability.spec import SPEC_METRIC, SpecField

BY: Final = "namespace, variant"
RATE_WINDOW: Final = "5m"
LONG_WINDOW: Final = "1h"
QUANTILES: Final = (0.5, 0.9, 0.95, 0.99)

# vLLM V1 metric names (tests/conformance/vllm_metric_families.txt).
VLLM_GENERATION_TOKENS: Final = "vllm:generation_tokens_total"
VLLM_PROMPT_TOKENS: Final = "vllm:prompt_tokens_total"
VLLM_REQUEST_SUCCESS: Final = "vllm:request_success_total"
VLLM_RUNNING: Final = "vllm:num_requests_running"
VLLM_WAITING: Final = "vllm:num_requests_waiting"
VLLM_KV_USAGE: Final = "vllm:kv_cache_usage_perc"
VLLM_PREEMPTIONS: Final = "vllm:num_preemptions_total"
VLLM_TTFT: Final = "vllm:time_to_first_token_seconds"
VLLM_ITL: Final = "vllm:inter_token_latency_seconds"
VLLM_E2E: Final = "vllm:e2e_request_latency_seconds"
VLLM_QUEUE_TIME: Final = "vllm:request_queue_time_seconds"
VLLM_ITERATION_TOKENS: Final = "vllm:iteration_tokens_total"

# The operator's metrics (bakeoff_operator.io.metrics).
DESIRED_REPLICAS: Final = "bakeoff_desired_replicas"
CAPACITY: Final = "bakeoff_replica_capacity_tokens_per_second"
OPERATOR_COST: Final = "bakeoff_cost_per_1m_output_tokens_usd"
GPU_PRICE: Final = "bakeoff_gpu_price_per_hour_usd"
DECISION: Final = "bakeoff_autoscaler_decision"
SCALING_LIMITED: Final = "bakeoff_scaling_limited"
# The BakeOff controller's metrics: its last run, and its verdict per variant (label `metric`).
BAKEOFF_LAST_RUN_FAILED: Final = "bakeoff_bakeoff_last_run_failed"
BAKEOFF_RESULT: Final = "bakeoff_bakeoff_result"
BAKEOFF_RECOMMENDATION: Final = "bakeoff_bakeoff_recommendation"

# Recorded series.
OUTPUT_TOKENS_RATE: Final = f"namespace_variant:vllm_generation_tokens:rate{RATE_WINDOW}"
PROMPT_TOKENS_RATE: Final = f"namespace_variant:vllm_prompt_tokens:rate{RATE_WINDOW}"
TOKENS_RATE: Final = f"namespace_variant:vllm_tokens:rate{RATE_WINDOW}"
REQUESTS_RATE: Final = f"namespace_variant:vllm_request_success:rate{RATE_WINDOW}"
REPLICAS_SCRAPED: Final = "namespace_variant:vllm_replicas:count"
REPLICAS: Final = "namespace_variant:bakeoff_replicas:max"
GPUS: Final = "namespace_variant:bakeoff_gpus:sum"
GPU_COST_PER_HOUR: Final = "namespace_variant:bakeoff_gpu_cost_usd_per_hour:sum"
COST_PER_1M_OUTPUT: Final = f"namespace_variant:bakeoff_cost_per_1m_output_tokens_usd:rate{RATE_WINDOW}"
COST_PER_1M_TOKENS: Final = f"namespace_variant:bakeoff_cost_per_1m_tokens_usd:rate{RATE_WINDOW}"
OUTPUT_TOKENS_PER_GPU: Final = f"namespace_variant:vllm_generation_tokens_per_gpu:rate{RATE_WINDOW}"
WAITING: Final = "namespace_variant:vllm_num_requests_waiting:sum"
RUNNING: Final = "namespace_variant:vllm_num_requests_running:sum"
KV_USAGE: Final = "namespace_variant:vllm_kv_cache_usage_perc:avg"
SLOTS_USAGE: Final = "namespace_variant:vllm_sequence_slots_usage:ratio"
SATURATION: Final = "namespace_variant:bakeoff_saturation:ratio"
PREEMPTIONS_RATE: Final = f"namespace_variant:vllm_num_preemptions:rate{RATE_WINDOW}"


class Latency(BaseModel):
    """One of the latencies an SLO bounds, and the vLLM histogram that measures it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(description="ttft, itl or e2e: the `latency` label of the SLO alert.")
    title: str
    metric: str = Field(description="The vLLM histogram (seconds).")
    slo_field: SpecField
    bounds: tuple[float, ...] = Field(
        description="vLLM's bucket bounds of the histogram (vllm/v1/metrics/buckets.py), finite, ascending. A "
        "bound vLLM does not export matches no bucket; one it exports that is not here is never the bucket "
        "within a target, so the next lower one counts: fewer requests within, never more."
    )
    per_request: bool = Field(description="One observation per request (TTFT, E2E), not per token gap (ITL).")

    @property
    def short(self) -> str:
        return self.metric.replace(":", "_")

    def buckets(self, window: str) -> str:
        """Recorded bucket rates, summed over replicas."""
        return f"namespace_variant_le:{self.short}_bucket:rate{window}"

    def quantiles(self, window: str) -> str:
        """Recorded quantiles, one series per `quantile` label (0.5, 0.9, 0.95, 0.99)."""
        return f"namespace_variant:{self.short}:histogram_quantile_rate{window}"

    def at_slo(self, window: str) -> str:
        """Recorded latency at the variant's own SLO percentile (only variants with an SLO)."""
        return f"namespace_variant:{self.short}:slo_percentile_rate{window}"

    @property
    def slo_bounds(self) -> str:
        """Recorded bucket bounds at or below the variant's target, one series per `le` (value: the target)."""
        return f"namespace_variant_le:{self.short}_bucket:slo_bounds"

    def within(self, window: str) -> str:
        """Recorded observations/s at or below the bucket bound at or below the target (only variants with
        this bound)."""
        return f"namespace_variant:{self.short}:within_slo_rate{window}"

    def error_ratio(self, window: str) -> str:
        """Recorded fraction of observations over the bucket bound at or below the target."""
        return f"namespace_variant:{self.short}:slo_error_ratio_rate{window}"

    def burn_rate(self, window: str) -> str:
        """Recorded error ratio / error budget (1 - the SLO's quantile): 1 spends the budget as it accrues."""
        return f"namespace_variant:{self.short}:slo_burn_rate_rate{window}"


# vLLM 0.32.0's bucket bounds (vllm/v1/metrics/buckets.py; the simulator exports the same).
TTFT_BOUNDS: Final = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
    10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BOUNDS: Final = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
E2E_BOUNDS: Final = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
    120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip

TTFT: Final = Latency(
    key="ttft", title="TTFT", metric=VLLM_TTFT, slo_field=SpecField.SLO_TTFT_SECONDS, bounds=TTFT_BOUNDS,
    per_request=True,
)  # fmt: skip
ITL: Final = Latency(
    key="itl", title="ITL", metric=VLLM_ITL, slo_field=SpecField.SLO_ITL_SECONDS, bounds=ITL_BOUNDS,
    per_request=False,
)  # fmt: skip
E2E: Final = Latency(
    key="e2e", title="E2E", metric=VLLM_E2E, slo_field=SpecField.SLO_E2E_SECONDS, bounds=E2E_BOUNDS,
    per_request=True,
)  # fmt: skip
LATENCIES: Final = (TTFT, ITL, E2E)
GOODPUT: Final = f"namespace_variant:vllm_goodput_requests:rate{RATE_WINDOW}"


def le_label(bound: float) -> str:
    """A bucket bound as Prometheus 3 stores a classic histogram's `le` (1 -> "1.0", 0.25 -> "0.25")."""
    return repr(float(bound))


def spec_value(field: SpecField, **matchers: str) -> str:
    """`bakeoff_variant_spec` of one field, one series per variant (the scrape's own labels dropped)."""
    extra = "".join(f', {k}="{v}"' for k, v in sorted(matchers.items()))
    return f'max by ({BY}) ({SPEC_METRIC}{{field="{field.value}"{extra}}})'


def quantile_label(q: float) -> str:
    return f"{q:g}"


class RecordingRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    record: str
    expr: str
    labels: dict[str, str] = Field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"record": self.record, "expr": self.expr}
        if self.labels:
            out["labels"] = dict(sorted(self.labels.items()))
        return out


class AlertingRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    alert: str
    expr: str
    for_: str = Field(alias="for", description="How long the condition holds before the alert fires.")
    labels: dict[str, str]
    annotations: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "alert": self.alert,
            "expr": self.expr,
            "for": self.for_,
            "labels": dict(sorted(self.labels.items())),
            "annotations": dict(sorted(self.annotations.items())),
        }


class RuleGroup(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    rules: tuple[RecordingRule | AlertingRule, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rules": [r.as_dict() for r in self.rules]}


def _alert(
    name: str, expr: str, *, for_: str, severity: str, summary: str, description: str, **labels: str
) -> AlertingRule:
    return AlertingRule.model_validate(
        {
            "alert": name,
            "expr": expr,
            "for": for_,
            "labels": {"severity": severity, **labels},
            "annotations": {"summary": summary, "description": description},
        }
    )


# The replicas a variant asks for: the autoscaler's count where it acts, its spec.replicas in any case.
WANTED_REPLICAS: Final = (
    f'max by ({BY}) ({DESIRED_REPLICAS} or on ({BY}) {SPEC_METRIC}{{field="{SpecField.REPLICAS.value}"}})'
)


# --- throughput and cost --------------------------------------------------------------------------------
def cost_per_1m_tokens(gpu_cost_per_hour: str, tokens_per_second: str) -> str:
    """USD per 1M tokens of a variant: USD per hour / tokens per hour x 1e6, `bakeoff_runtime.cost`'s formula
    with live inputs (PromQL of one series per variant each); `> 0` leaves an idle variant without a cost."""
    hour = f"{SECONDS_PER_HOUR:g}"
    return f"{gpu_cost_per_hour}\n  / on ({BY}) group_left ()\n    ({hour} * {tokens_per_second} > 0)\n  * 1e6"


def _cost_rules() -> Iterator[RecordingRule]:
    w = RATE_WINDOW
    yield RecordingRule(record=OUTPUT_TOKENS_RATE, expr=f"sum by ({BY}) (rate({VLLM_GENERATION_TOKENS}[{w}]))")
    yield RecordingRule(record=PROMPT_TOKENS_RATE, expr=f"sum by ({BY}) (rate({VLLM_PROMPT_TOKENS}[{w}]))")
    yield RecordingRule(record=TOKENS_RATE, expr=f"{OUTPUT_TOKENS_RATE} + {PROMPT_TOKENS_RATE}")
    yield RecordingRule(record=REQUESTS_RATE, expr=f"sum by ({BY}) (rate({VLLM_REQUEST_SUCCESS}[{w}]))")
    # One replica is one scrape target, however many engines it runs.
    yield RecordingRule(record=REPLICAS_SCRAPED, expr=f"count by ({BY}) (count by ({BY}, instance) ({VLLM_RUNNING}))")
    # The larger of what Prometheus scrapes and what the variant asks for (the autoscaler's count, or its
    # spec.replicas): a replica that is still loading its weights holds its GPUs before it exports anything.
    yield RecordingRule(
        record=REPLICAS,
        expr=f"""max by ({BY}) (
    label_replace({REPLICAS_SCRAPED}, "source", "scraped", "", "")
  or
    label_replace({WANTED_REPLICAS}, "source", "wanted", "", "")
)""",
    )
    yield RecordingRule(
        record=GPUS,
        expr=f"""{REPLICAS}
  * on ({BY}) group_left (gpu_class)
    max by ({BY}, gpu_class) ({SPEC_METRIC}{{field="{SpecField.GPUS_PER_REPLICA.value}"}})""",
    )
    yield RecordingRule(
        record=GPU_COST_PER_HOUR,
        expr=f"{GPUS}\n  * on (gpu_class) group_left ()\n    max by (gpu_class) ({GPU_PRICE})",
    )
    for record, rate in ((COST_PER_1M_OUTPUT, OUTPUT_TOKENS_RATE), (COST_PER_1M_TOKENS, TOKENS_RATE)):
        yield RecordingRule(record=record, expr=cost_per_1m_tokens(GPU_COST_PER_HOUR, rate))
    yield RecordingRule(
        record=OUTPUT_TOKENS_PER_GPU,
        expr=f"{OUTPUT_TOKENS_RATE}\n  / on ({BY}) group_left (gpu_class)\n    ({GPUS} > 0)",
    )


# --- saturation -----------------------------------------------------------------------------------------
def _saturation_rules() -> Iterator[RecordingRule]:
    hybrid = spec_value(SpecField.MAX_NUM_SEQS, architecture="hybrid")
    yield RecordingRule(record=WAITING, expr=f"sum by ({BY}) ({VLLM_WAITING})")
    yield RecordingRule(record=RUNNING, expr=f"sum by ({BY}) ({VLLM_RUNNING})")
    yield RecordingRule(record=KV_USAGE, expr=f"avg by ({BY}) ({VLLM_KV_USAGE})")
    yield RecordingRule(
        record=SLOTS_USAGE,
        expr=f"""{RUNNING}
  / on ({BY})
    (
        count by ({BY}) (count by ({BY}, instance) ({VLLM_RUNNING}))
      * on ({BY})
        {spec_value(SpecField.MAX_NUM_SEQS)}
    )""",
    )
    # What the autoscaler scales on (autoscaling.decide): a hybrid's Mamba state per sequence is constant,
    # so its KV usage does not track its load; its sequence slots do.
    yield RecordingRule(
        record=SATURATION,
        expr=f"""({SLOTS_USAGE} and on ({BY}) {hybrid})
or
({KV_USAGE} unless on ({BY}) {hybrid})""",
    )
    yield RecordingRule(record=PREEMPTIONS_RATE, expr=f"sum by ({BY}) (rate({VLLM_PREEMPTIONS}[{RATE_WINDOW}]))")


# --- latency --------------------------------------------------------------------------------------------
def _latency_rules(latency: Latency) -> Iterator[RecordingRule]:
    for window in (RATE_WINDOW, LONG_WINDOW):
        yield RecordingRule(
            record=latency.buckets(window),
            expr=f"sum by ({BY}, le) (rate({latency.metric}_bucket[{window}]))",
        )
        for q in QUANTILES:
            yield RecordingRule(
                record=latency.quantiles(window),
                expr=f"histogram_quantile({q:g}, {latency.buckets(window)})",
                labels={"quantile": quantile_label(q)},
            )
        slo_quantile = spec_value(SpecField.SLO_QUANTILE)
        terms = [
            f'({latency.quantiles(window)}{{quantile="{quantile_label(q)}"}}\n'
            f"  and on ({BY}) ({slo_quantile} == {q:g}))"
            for q in QUANTILES
        ]
        yield RecordingRule(record=latency.at_slo(window), expr="\nor\n".join(terms))


def _slo_budget_rules(latency: Latency) -> Iterator[RecordingRule]:
    """Observations within the variant's bound, counted from the buckets; error ratio and burn rate."""
    target = spec_value(latency.slo_field)
    yield RecordingRule(
        record=latency.slo_bounds,
        expr="\nor\n".join(f'label_replace({target} >= {b!r}, "le", "{le_label(b)}", "", "")' for b in latency.bounds),
    )
    for window in (RATE_WINDOW, LONG_WINDOW):
        total = f'{latency.buckets(window)}{{le="+Inf"}}'
        # Buckets are cumulative: the largest at or below the target is the most within it. A target below
        # every bound has nothing within it.
        yield RecordingRule(
            record=latency.within(window),
            expr=f"""max by ({BY}) (
    {latency.buckets(window)}
  and on ({BY}, le)
    {latency.slo_bounds}
)
or
(0 * max by ({BY}) ({total}) and on ({BY}) {target})""",
        )
        yield RecordingRule(
            record=latency.error_ratio(window),
            expr=f"1 - {latency.within(window)} / on ({BY}) (max by ({BY}) ({total}) > 0)",
        )
        budget = f"(1 - {spec_value(SpecField.SLO_QUANTILE)})"
        yield RecordingRule(
            record=latency.burn_rate(window),
            expr=f"{latency.error_ratio(window)}\n  / on ({BY})\n    {budget}",
        )


def _goodput_rule() -> RecordingRule:
    """Requests/s within every per-request bound the variant sets (TTFT, E2E): the smaller count."""
    terms = [
        f'label_replace({latency.within(RATE_WINDOW)}, "latency", "{latency.key}", "", "")'
        for latency in LATENCIES
        if latency.per_request
    ]
    body = "\n  or\n    ".join(terms)
    return RecordingRule(record=GOODPUT, expr=f"min by ({BY}) (\n    {body}\n)")


# --- alerts ---------------------------------------------------------------------------------------------
SLO_BURN_RATE: Final = 1.0
COST_ABOVE_BASELINE_FOR: Final = "30m"
GPU_CAPPED_FOR: Final = "15m"
METRICS_MISSING_FOR: Final = "10m"
SLO_BURN_FOR: Final = "2m"
LAST_RUN_FAILED_FOR: Final = "1m"


def _slo_burn(latency: Latency) -> AlertingRule:
    """Multi-window burn rate: the budget burns faster than `SLO_BURN_RATE` over the last hour (enough
    requests to be sure) and still over the last 5 minutes (so the alert resolves soon after it stops)."""
    what = "requests" if latency.per_request else "token gaps"
    return _alert(
        "BakeoffVariantSLOBurn",
        f"""{latency.burn_rate(LONG_WINDOW)} > {SLO_BURN_RATE:g}
and on ({BY})
{latency.burn_rate(RATE_WINDOW)} > {SLO_BURN_RATE:g}""",
        for_=SLO_BURN_FOR,
        severity="warning",
        summary=f"{{{{ $labels.namespace }}}}/{{{{ $labels.variant }}}} burns its {latency.title} SLO's error budget",
        description=f"{{{{ $labels.variant }}}} spends its {latency.title} error budget (the share of {what} "
        'its SLO percentile lets exceed the target) {{ $value | printf "%.2f" }} times as fast as it accrues '
        f"over the last {LONG_WINDOW}, and still faster than that over the last {RATE_WINDOW}: more {what} than "
        f"the SLO allows are over its {latency.title} target (counted at vLLM's bucket at or below it).",
        latency=latency.key,
    )


def _alert_rules() -> Iterator[AlertingRule]:
    yield from (_slo_burn(latency) for latency in LATENCIES)
    baseline = f'group by ({BY}, baseline) ({SPEC_METRIC}{{field="{SpecField.GPUS_PER_REPLICA.value}", baseline!=""}})'
    yield _alert(
        "BakeoffVariantCostAboveBaseline",
        f"""(
    {COST_PER_1M_OUTPUT}
  * on ({BY}) group_left (baseline)
    {baseline}
)
> on (namespace, baseline) group_left ()
  max by (namespace, baseline) (
    label_replace({COST_PER_1M_OUTPUT}, "baseline", "$1", "variant", "(.+)")
  )""",
        for_=COST_ABOVE_BASELINE_FOR,
        severity="warning",
        summary="{{ $labels.namespace }}/{{ $labels.variant }} costs more per 1M output tokens than its baseline",
        description='{{ $labels.variant }} costs {{ $value | printf "%.3f" }} USD per 1M output tokens on '
        f"{{{{ $labels.gpu_class }}}}, more than its baseline {{{{ $labels.baseline }}}}, for "
        f"{COST_ABOVE_BASELINE_FOR}: at this load its baseline serves output tokens for less.",
    )
    yield _alert(
        "BakeoffBakeOffLastRunFailed",
        f"max by (namespace, bakeoff) ({BAKEOFF_LAST_RUN_FAILED}) > 0",
        for_=LAST_RUN_FAILED_FOR,
        severity="warning",
        summary="BakeOff {{ $labels.namespace }}/{{ $labels.bakeoff }}: its last run failed",
        description="The last run of BakeOff {{ $labels.bakeoff }} failed; its status says why "
        "(kubectl describe bakeoff {{ $labels.bakeoff }} -n {{ $labels.namespace }}).",
    )
    yield _alert(
        "BakeoffVariantGPUCapped",
        f'max by ({BY}) ({SCALING_LIMITED}{{reason="{Reason.INSUFFICIENT_GPU}"}}) > 0',
        for_=GPU_CAPPED_FOR,
        severity="warning",
        summary="{{ $labels.namespace }}/{{ $labels.variant }} gets fewer replicas than its load asks for",
        description=f"The autoscaler has capped {{{{ $labels.variant }}}} for {GPU_CAPPED_FOR}: not enough free "
        "GPUs of its class (its ScalingLimited condition says how many replicas it wants).",
    )
    yield _alert(
        "BakeoffVariantMetricsMissing",
        f"""{WANTED_REPLICAS} > 0
unless on ({BY})
count by ({BY}) ({VLLM_RUNNING})""",
        for_=METRICS_MISSING_FOR,
        severity="warning",
        summary="{{ $labels.namespace }}/{{ $labels.variant }} serves without vLLM metrics in Prometheus",
        description=f"{{{{ $labels.variant }}}} asks for {{{{ $value }}}} replicas, but Prometheus has had no "
        f"{VLLM_RUNNING} series for it for {METRICS_MISSING_FOR}: its PodMonitor or scrape configuration does "
        "not reach the replicas. An autoscaler holds its replicas, and cost per 1M tokens is not computed.",
    )


def rule_groups() -> tuple[RuleGroup, ...]:
    """Every group, in the order Prometheus evaluates them; rules of a group see the ones above them."""
    return (
        RuleGroup(name="bakeoff.variant.cost", rules=tuple(_cost_rules())),
        RuleGroup(name="bakeoff.variant.saturation", rules=tuple(_saturation_rules())),
        RuleGroup(
            name="bakeoff.variant.latency",
            rules=(
                *(rule for latency in LATENCIES for rule in (*_latency_rules(latency), *_slo_budget_rules(latency))),
                _goodput_rule(),
            ),
        ),
        RuleGroup(name="bakeoff.alerts", rules=tuple(_alert_rules())),
    )


def recorded_names(groups: Sequence[RuleGroup] | None = None) -> frozenset[str]:
    return frozenset(r.record for g in groups or rule_groups() for r in g.rules if isinstance(r, RecordingRule))


def alert_names(groups: Sequence[RuleGroup] | None = None) -> frozenset[str]:
    return frozenset(r.alert for g in groups or rule_groups() for r in g.rules if isinstance(r, AlertingRule))


# --- rendering ------------------------------------------------------------------------------------------
RULE_FILE_HEADER: Final = """\
# Bakeoff's recording and alerting rules: cost per 1M tokens, tokens/s per GPU, latency quantiles,
# saturation and alerts per variant. Generated by hack/generate.sh from
# bakeoff_operator.observability.rules; do not edit. docs/observability.md explains every rule.
# Load it with Prometheus's `rule_files`, or let the chart create a PrometheusRule
# (observability.prometheusRule.enabled=true) whose spec is this file.
"""


class _Dumper(yaml.SafeDumper):
    """Multi-line expressions as literal blocks, as a person writes them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def rule_file(groups: Sequence[RuleGroup] | None = None) -> dict[str, Any]:
    return {"groups": [g.as_dict() for g in groups or rule_groups()]}


def render_rule_file(groups: Sequence[RuleGroup] | None = None) -> str:
    body = yaml.dump(rule_file(groups), Dumper=_Dumper, sort_keys=False, width=4096, allow_unicode=True)
    return RULE_FILE_HEADER + body
