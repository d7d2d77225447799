"""Prometheus recording and alerting rules for every variant, as data. Pure.

`rule_groups()` is the one definition; `render_rule_file()` writes it as a Prometheus rule file (the
chart ships it as `files/bakeoff-rules.yaml` and, when enabled, as the `spec` of a PrometheusRule).
Every series is per variant, labelled `namespace` and `variant` as the variant's PodMonitor (and the
playground's scrape configuration) labels its replicas, and as the operator labels its own metrics.

Recorded series follow Prometheus's `level:metric:operations` naming. What they compute:

- token rates (output, prompt, total) and requests/s, over `RATE_WINDOW`;
- replicas: those Prometheus scrapes, or the autoscaler's desired count when that is higher
  (a replica loading its weights already holds its GPUs);
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

Goodput (requests/s that met every SLO bound) is not derivable: vLLM's histograms are per latency, so
which requests met all bounds at once is not in them, and a bound between two buckets cannot be
counted exactly. The load harness measures it per request.
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


TTFT: Final = Latency(key="ttft", title="TTFT", metric=VLLM_TTFT, slo_field=SpecField.SLO_TTFT_SECONDS)
ITL: Final = Latency(key="itl", title="ITL", metric=VLLM_ITL, slo_field=SpecField.SLO_ITL_SECONDS)
E2E: Final = Latency(key="e2e", title="E2E", metric=VLLM_E2E, slo_field=SpecField.SLO_E2E_SECONDS)
LATENCIES: Final = (TTFT, ITL, E2E)


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


# --- throughput and cost --------------------------------------------------------------------------------
def _cost_rules() -> Iterator[RecordingRule]:
    w = RATE_WINDOW
    yield RecordingRule(record=OUTPUT_TOKENS_RATE, expr=f"sum by ({BY}) (rate({VLLM_GENERATION_TOKENS}[{w}]))")
    yield RecordingRule(record=PROMPT_TOKENS_RATE, expr=f"sum by ({BY}) (rate({VLLM_PROMPT_TOKENS}[{w}]))")
    yield RecordingRule(record=TOKENS_RATE, expr=f"{OUTPUT_TOKENS_RATE} + {PROMPT_TOKENS_RATE}")
    yield RecordingRule(record=REQUESTS_RATE, expr=f"sum by ({BY}) (rate({VLLM_REQUEST_SUCCESS}[{w}]))")
    # One replica is one scrape target, however many engines it runs.
    yield RecordingRule(record=REPLICAS_SCRAPED, expr=f"count by ({BY}) (count by ({BY}, instance) ({VLLM_RUNNING}))")
    # The larger of what Prometheus scrapes and what the autoscaler gave the variant: a replica that is
    # still loading its weights holds its GPUs before it exports anything.
    yield RecordingRule(
        record=REPLICAS,
        expr=f"""max by ({BY}) (
    label_replace({REPLICAS_SCRAPED}, "source", "scraped", "", "")
  or
    label_replace(max by ({BY}) ({DESIRED_REPLICAS}), "source", "desired", "", "")
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
    hour = f"{SECONDS_PER_HOUR:g}"
    for record, rate in ((COST_PER_1M_OUTPUT, OUTPUT_TOKENS_RATE), (COST_PER_1M_TOKENS, TOKENS_RATE)):
        # USD per hour / tokens per hour x 1e6; `> 0` leaves an idle variant without a cost.
        yield RecordingRule(
            record=record,
            expr=f"{GPU_COST_PER_HOUR}\n  / on ({BY}) group_left ()\n    ({hour} * {rate} > 0)\n  * 1e6",
        )
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


# --- alerts ---------------------------------------------------------------------------------------------
COST_ABOVE_BASELINE_FOR: Final = "30m"
GPU_CAPPED_FOR: Final = "15m"
METRICS_MISSING_FOR: Final = "10m"
SLO_BURN_FOR: Final = "5m"
LAST_RUN_FAILED_FOR: Final = "1m"


def _slo_burn(latency: Latency) -> AlertingRule:
    target = spec_value(latency.slo_field)
    over = [f"({latency.at_slo(w)}\n  > on ({BY}) group_left ()\n  {target})" for w in (LONG_WINDOW, RATE_WINDOW)]
    return _alert(
        "BakeoffVariantSLOBurn",
        f"{over[0]}\nand on ({BY})\n{over[1]}",
        for_=SLO_BURN_FOR,
        severity="warning",
        summary=f"{{{{ $labels.namespace }}}}/{{{{ $labels.variant }}}} misses its {latency.title} SLO",
        description=f"{latency.title} at the SLO percentile (quantile {{{{ $labels.quantile }}}}) is "
        f"{{{{ $value | humanizeDuration }}}} over the last {LONG_WINDOW}, above the variant's target, and still "
        f"above it over the last {RATE_WINDOW}: the SLO's error budget burns at more than its rate.",
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
        f"""max by ({BY}) ({DESIRED_REPLICAS}) > 0
unless on ({BY})
count by ({BY}) ({VLLM_RUNNING})""",
        for_=METRICS_MISSING_FOR,
        severity="warning",
        summary="{{ $labels.namespace }}/{{ $labels.variant }} serves without vLLM metrics in Prometheus",
        description=f"The autoscaler wants {{{{ $value }}}} replicas of {{{{ $labels.variant }}}}, but Prometheus "
        f"has had no {VLLM_RUNNING} series for it for {METRICS_MISSING_FOR}: its PodMonitor or scrape "
        "configuration does not reach the replicas. The autoscaler holds its replicas and cost per 1M tokens is "
        "not computed.",
    )


def rule_groups() -> tuple[RuleGroup, ...]:
    """Every group, in the order Prometheus evaluates them; rules of a group see the ones above them."""
    return (
        RuleGroup(name="bakeoff.variant.cost", rules=tuple(_cost_rules())),
        RuleGroup(name="bakeoff.variant.saturation", rules=tuple(_saturation_rules())),
        RuleGroup(
            name="bakeoff.variant.latency",
            rules=tuple(rule for latency in LATENCIES for rule in _latency_rules(latency)),
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
