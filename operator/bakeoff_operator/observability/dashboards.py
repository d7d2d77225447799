"""Grafana dashboards, built with grafana-foundation-sdk (its Grafana 11.6 build). Pure.

- `bakeoff-overview`: the variants of a namespace side by side: cost per 1M output and total tokens,
  output tokens/s per GPU, latency at each variant's SLO percentile against its target, latency
  percentiles, goodput and the SLO's error-budget burn rate, replicas, GPUs per class, saturation, and
  from the BakeOffs of the namespace: every figure of their last run's verdict (`bakeoff_loadtest.verdict`,
  one panel each, the columns of that run's report.html), and whether the last run failed.
- `bakeoff-variant`: one variant: vLLM's queue, batch size, KV-cache and sequence-slot usage,
  preemptions, queue time, TTFT/ITL/E2E heatmaps and quantiles, the autoscaler's decisions and
  reasons, the time it was capped by GPUs, and its cost per 1M tokens.

Queries read the recording rules of `observability.rules` where one exists (cost, quantiles,
saturation), and vLLM's V1 series directly otherwise, with Grafana's `$__rate_interval`. Every query
is checked against a real Prometheus scraping the simulator (tests/observability).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

from bakeoff_loadtest.verdict import FIGURES, Figure, Unit
from grafana_foundation_sdk.builders import bargauge, heatmap, prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from bakeoff_operator.api.common import Reason
from bakeoff_operator.observability import rules as r
from bakeoff_operator.observability.spec import SPEC_METRIC, SpecField

GRAFANA_VERSION: Final = "11.6"
OVERVIEW_UID: Final = "bakeoff-overview"
VARIANT_UID: Final = "bakeoff-variant"
TAGS: Final = ["bakeoff", "vllm"]
DATASOURCE: Final = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
# The selectors of the two dashboards: several variants of a namespace, or one.
VARIANTS: Final = 'namespace="$namespace", variant=~"$variant"'
ONE: Final = 'namespace="$namespace", variant="$variant"'
RATE: Final = "$__rate_interval"

USD: Final = "currencyUSD"
SECONDS: Final = "s"
RATIO: Final = "percentunit"
NUMBER: Final = "short"


def query(expr: str, legend: str = "{{variant}}", *, ref: str = "A", instant: bool = False) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)
    return q.instant() if instant else q.range()


def table_query(expr: str, ref: str) -> prometheus.Dataquery:
    return query(expr, "", ref=ref, instant=True).format(PromQueryFormat.TABLE)


def _series(
    title: str, description: str, unit: str, queries: Sequence[prometheus.Dataquery], *, span: int = 12
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(span)
        .height(8)
        .fill_opacity(10)
        .line_width(1)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING)
        )
    )
    for q in queries:
        panel = panel.with_target(q)
    return panel


def _dashed_targets(panel: timeseries.Panel, ref: str) -> timeseries.Panel:
    """The SLO targets of a panel (query `ref`) as dashed lines."""
    return panel.override_by_query(
        ref,
        [model.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]})],
    )


def _bars(title: str, description: str, unit: str, q: prometheus.Dataquery, *, span: int = 8) -> bargauge.Panel:
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(span)
        .height(8)
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .min(0)
        .with_target(q)
    )


def _heatmap(latency: r.Latency) -> heatmap.Panel:
    return (
        heatmap.Panel()
        .title(f"{latency.title} distribution")
        .description(
            f"`{latency.metric}`: requests (ITL: token gaps) per bucket over each interval, summed over the "
            "variant's replicas; vLLM's bucket bounds."
        )
        .datasource(DATASOURCE)
        .span(8)
        .height(8)
        .calculate(False)
        # vLLM's buckets are cumulative upper bounds: each row is the bucket that ends at its `le`.
        .rows_frame(heatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.LE))
        .y_axis(heatmap.YAxisConfig().unit(SECONDS))
        .with_target(
            query(f"sum by (le) (increase({latency.metric}_bucket{{{ONE}}}[{RATE}]))", "{{le}}").format(
                PromQueryFormat.HEATMAP
            )
        )
    )


def _slo_latency(latency: r.Latency, selector: str, *, span: int) -> timeseries.Panel:
    panel = _series(
        f"{latency.title} at the SLO percentile",
        f"{latency.title} over the last {r.RATE_WINDOW} at each variant's own SLO percentile (from "
        f"`{latency.metric}`), with the variant's {latency.title} target dashed. Variants without an SLO "
        "are not drawn.",
        SECONDS,
        [
            query(f"{latency.at_slo(r.RATE_WINDOW)}{{{selector}}}", "{{variant}} (quantile {{quantile}})"),
            query(
                f'max by (variant) ({SPEC_METRIC}{{{selector}, field="{latency.slo_field.value}"}})',
                "{{variant}} target",
                ref="B",
            ),
        ],
        span=span,
    )
    return _dashed_targets(panel, "B")


def _quantiles(latency: r.Latency) -> timeseries.Panel:
    panel = _series(
        f"{latency.title} quantiles",
        f"p50, p90 and p99 of `{latency.metric}` over the last {r.RATE_WINDOW} (recorded), the SLO target dashed.",
        SECONDS,
        [
            query(
                f'{latency.quantiles(r.RATE_WINDOW)}{{{ONE}, quantile=~"0.5|0.9|0.99"}}',
                "p{{quantile}}",
            ),
            query(f'max({SPEC_METRIC}{{{ONE}, field="{latency.slo_field.value}"}})', "SLO target", ref="B"),
        ],
        span=8,
    )
    return _dashed_targets(panel, "B")


def _variables(multi: bool) -> list[db.DatasourceVariable | db.QueryVariable]:
    namespace = (
        db.QueryVariable("namespace")
        .label("Namespace")
        .datasource(DATASOURCE)
        .query(f"label_values({SPEC_METRIC}, namespace)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )
    variant = (
        db.QueryVariable("variant")
        .label("Variant")
        .datasource(DATASOURCE)
        .query(f'label_values({SPEC_METRIC}{{namespace="$namespace"}}, variant)')
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(multi)
    )
    return [db.DatasourceVariable("datasource").label("Data source").type("prometheus"), namespace, variant]


def _dashboard(uid: str, title: str, description: str, multi: bool) -> db.Dashboard:
    out = (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .editable()
    )
    for v in _variables(multi):
        out = out.with_variable(v)
    return out.link(
        db.DashboardLink("Bakeoff")
        .type(model.DashboardLinkType.DASHBOARDS)
        .tags(["bakeoff"])
        .as_dropdown(False)
        .include_vars(True)
        .keep_time(True)
    )


LAST_RUN: Final = "Last run: "
_UNITS: Final = {
    Unit.USD: USD,
    Unit.TOKENS_PER_SECOND: NUMBER,
    Unit.REQUESTS_PER_SECOND: "reqps",
    Unit.MILLISECONDS: "ms",
    Unit.RATIO: RATIO,
    Unit.FLAG: NUMBER,
}


def _result(figure: Figure) -> str:
    """The figure's `bakeoff_bakeoff_result` series of the namespace's BakeOffs, per BakeOff and variant."""
    if len(figure.metrics) == 1:
        return (
            f"max by (bakeoff, variant) ({r.BAKEOFF_RESULT}"
            f'{{namespace="$namespace", variant=~"$variant", metric="{figure.metrics[0]}"}})'
        )
    return (
        f"max by (bakeoff, variant, metric) ({r.BAKEOFF_RESULT}"
        f'{{namespace="$namespace", variant=~"$variant", metric=~"{"|".join(figure.metrics)}"}})'
    )


def last_run_panel(figure: Figure) -> table.Panel | stat.Panel | bargauge.Panel:
    """One figure of `bakeoff_loadtest.verdict` as its BakeOffs' last successful run measured it: the column
    of the same title in that run's report.html (its Verdict table)."""
    title = LAST_RUN + figure.title
    description = (
        f"{figure.description} From `{r.BAKEOFF_RESULT}`: each BakeOff's last successful run, measured by the "
        "load harness; the same figure as the Verdict table of that run's report.html."
    )
    if figure.id == "recommended":
        return (
            table.Panel()
            .title(title)
            .description(description)
            .datasource(DATASOURCE)
            .span(8)
            .height(8)
            .with_target(table_query(f"{_result(figure)} == 1", "A"))
            .with_transformation(
                model.DataTransformerConfig(id_val="organize", options={"excludeByName": {"Time": True, "Value": True}})
            )
        )
    if figure.unit is Unit.FLAG:
        return (
            stat.Panel()
            .title(title)
            .description(description)
            .datasource(DATASOURCE)
            .span(8)
            .height(8)
            .color_mode(common.BigValueColorMode.BACKGROUND)
            .graph_mode(common.BigValueGraphMode.NONE)
            .mappings(
                [
                    model.ValueMap(
                        options={
                            "0": model.ValueMappingResult(text="no", color="orange"),
                            "1": model.ValueMappingResult(text="yes", color="green"),
                        }
                    )
                ]
            )
            .with_target(query(_result(figure), "{{variant}} ({{bakeoff}})", instant=True))
        )
    legend = "{{variant}} ({{bakeoff}})" if len(figure.metrics) == 1 else "{{variant}} ({{bakeoff}}) {{metric}}"
    return _bars(title, description, _UNITS[figure.unit], query(_result(figure), legend, instant=True))


def overview() -> model.Dashboard:
    """The variants of a namespace side by side."""
    latency_table = (
        table.Panel()
        .title("Latency percentiles (seconds, last 5m)")
        .description(
            "TTFT, ITL and E2E at p50, p90, p95 and p99 from vLLM's histograms over the last "
            f"{r.RATE_WINDOW}, one row per variant and quantile."
        )
        .datasource(DATASOURCE)
        .span(24)
        .height(8)
        .unit(SECONDS)
        .with_target(table_query(f"{r.TTFT.quantiles(r.RATE_WINDOW)}{{{VARIANTS}}}", "A"))
        .with_target(table_query(f"{r.ITL.quantiles(r.RATE_WINDOW)}{{{VARIANTS}}}", "B"))
        .with_target(table_query(f"{r.E2E.quantiles(r.RATE_WINDOW)}{{{VARIANTS}}}", "C"))
        .with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            model.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True, "namespace": True, "__name__": True},
                    "renameByName": {"Value #A": "TTFT", "Value #B": "ITL", "Value #C": "E2E"},
                    "indexByName": {"variant": 0, "quantile": 1, "Value #A": 2, "Value #B": 3, "Value #C": 4},
                },
            )
        )
    )
    recommendation = (
        table.Panel()
        .title("Recommendation and its reason")
        .description(
            f"`{r.BAKEOFF_RECOMMENDATION}`: the variant each BakeOff's last successful run recommends (empty: none "
            "qualifies) and why, with the figures: the cheapest per 1M output tokens within the SLO and the "
            "accuracy budget. The recommendation of that run's report.html."
        )
        .datasource(DATASOURCE)
        .span(24)
        .height(6)
        .with_target(
            table_query(
                f'max by (bakeoff, variant, reason) ({r.BAKEOFF_RECOMMENDATION}{{namespace="$namespace"}})', "A"
            )
        )
        .with_transformation(
            model.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True, "Value": True},
                    "indexByName": {"bakeoff": 0, "variant": 1, "reason": 2},
                },
            )
        )
    )
    last_runs = (
        stat.Panel()
        .title("Last run of each BakeOff")
        .description(f"`{r.BAKEOFF_LAST_RUN_FAILED}`: whether each BakeOff's last run in the namespace failed.")
        .datasource(DATASOURCE)
        .span(24)
        .height(4)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .mappings(
            [
                model.ValueMap(
                    options={
                        "0": model.ValueMappingResult(text="passed", color="green"),
                        "1": model.ValueMappingResult(text="failed", color="red"),
                    }
                )
            ]
        )
        .with_target(query(f'max by (bakeoff) ({r.BAKEOFF_LAST_RUN_FAILED}{{namespace="$namespace"}})', "{{bakeoff}}"))
    )
    out = (
        _dashboard(
            OVERVIEW_UID,
            "Bakeoff / overview",
            "The variants of a namespace side by side: live cost per 1M tokens, tokens/s per GPU, latency against "
            "each SLO, replicas and GPUs. Recording rules: charts/bakeoff/files/bakeoff-rules.yaml.",
            multi=True,
        )
        .with_row(db.Row("Cost per 1M tokens"))
        .with_panel(
            _bars(
                "Cost per 1M output tokens",
                "USD per 1M output tokens now: replicas x GPUs per replica x the GPU class's price per GPU-hour / "
                f"output tokens per hour x 1e6, tokens over the last {r.RATE_WINDOW}. No bar: no output tokens.",
                USD,
                query(f"{r.COST_PER_1M_OUTPUT}{{{VARIANTS}}}", "{{variant}} ({{gpu_class}})", instant=True),
            )
        )
        .with_panel(
            _bars(
                "Cost per 1M tokens (prompt + output)",
                "The same GPU cost over prompt and output tokens together.",
                USD,
                query(f"{r.COST_PER_1M_TOKENS}{{{VARIANTS}}}", "{{variant}} ({{gpu_class}})", instant=True),
            )
        )
        .with_panel(
            _bars(
                "Output tokens/s per GPU",
                f"Output tokens/s over the last {r.RATE_WINDOW} divided by the GPUs the variant holds.",
                NUMBER,
                query(f"{r.OUTPUT_TOKENS_PER_GPU}{{{VARIANTS}}}", "{{variant}} ({{gpu_class}})", instant=True),
            )
        )
        .with_panel(
            _series(
                "Cost per 1M output tokens over time",
                f"The recorded cost per 1M output tokens ({r.RATE_WINDOW} token rate) of each variant.",
                USD,
                [query(f"{r.COST_PER_1M_OUTPUT}{{{VARIANTS}}}")],
            )
        )
        .with_panel(
            _series(
                "Output tokens/s per GPU over time",
                "Output tokens/s per GPU held, per variant.",
                NUMBER,
                [query(f"{r.OUTPUT_TOKENS_PER_GPU}{{{VARIANTS}}}")],
            )
        )
        .with_row(db.Row("Latency against the SLO"))
        .with_panel(_slo_latency(r.TTFT, VARIANTS, span=8))
        .with_panel(_slo_latency(r.ITL, VARIANTS, span=8))
        .with_panel(_slo_latency(r.E2E, VARIANTS, span=8))
        .with_panel(latency_table)
        .with_panel(
            _series(
                "Goodput",
                f"Requests/s within the SLO over the last {r.RATE_WINDOW}: those whose TTFT and E2E are at or below "
                "vLLM's bucket bound at or below each target the SLO sets (the smaller count where it sets both), "
                "beside all finished requests/s. Variants without a TTFT or E2E bound are not drawn.",
                "reqps",
                [
                    query(f"{r.GOODPUT}{{{VARIANTS}}}", "{{variant}} within the SLO"),
                    query(f"{r.REQUESTS_RATE}{{{VARIANTS}}}", "{{variant}} all", ref="B"),
                ],
            )
        )
        .with_panel(
            _series(
                "SLO error budget burn rate (last 1h)",
                f"Share of requests (ITL: token gaps) over each target over the last {r.LONG_WINDOW}, counted at "
                "vLLM's bucket bound at or below it, divided by the error budget 1 - the SLO's percentile: at 1 "
                f"the budget is spent as it accrues. The SLO-burn alert fires above {r.SLO_BURN_RATE:g} over both "
                f"the last {r.LONG_WINDOW} and the last {r.RATE_WINDOW}.",
                NUMBER,
                [
                    query(
                        f"{latency.burn_rate(r.LONG_WINDOW)}{{{VARIANTS}}}", f"{{{{variant}}}} {latency.title}", ref=ref
                    )
                    for latency, ref in zip(r.LATENCIES, ("A", "B", "C"), strict=True)
                ],
            )
        )
        .with_row(db.Row("Replicas and GPUs"))
        .with_panel(
            _series(
                "Replicas",
                "Replicas of each variant: those Prometheus scrapes, or those it asks for (the autoscaler's count, "
                "else its spec.replicas) when that is higher.",
                NUMBER,
                [query(f"{r.REPLICAS}{{{VARIANTS}}}")],
                span=8,
            )
        )
        .with_panel(
            _bars(
                "GPUs per class",
                "GPUs the selected variants hold, per GPU class.",
                NUMBER,
                query(f"sum by (gpu_class) ({r.GPUS}{{{VARIANTS}}})", "{{gpu_class}}", instant=True),
            )
        )
        .with_panel(
            _series(
                "Output tokens/s",
                f"Output tokens/s of each variant over the last {r.RATE_WINDOW}, all replicas.",
                NUMBER,
                [query(f"{r.OUTPUT_TOKENS_RATE}{{{VARIANTS}}}")],
                span=8,
            )
        )
        .with_panel(
            _series(
                "Saturation",
                "What the autoscaler scales on: running sequences over the sequence limit for hybrids, "
                "KV-cache usage for dense models (mean over replicas).",
                RATIO,
                [query(f"{r.SATURATION}{{{VARIANTS}}}")],
            )
        )
        .with_panel(
            _series(
                "Requests waiting",
                "Requests waiting in vLLM's queue, all replicas.",
                NUMBER,
                [query(f"{r.WAITING}{{{VARIANTS}}}")],
            )
        )
        .with_row(db.Row("Bake-offs: the last run (the figures of its report.html)"))
        .with_panel(last_runs)
        .with_panel(recommendation)
    )
    for figure in FIGURES:
        out = out.with_panel(last_run_panel(figure))
    return out.build()


def variant() -> model.Dashboard:
    """One variant: engine, saturation, latency, autoscaler and cost."""
    decision = (
        table.Panel()
        .title("Last autoscaling decision")
        .description(f"`{r.DECISION}`: the limit (none, InsufficientGPU, ...) and reason of the last decision.")
        .datasource(DATASOURCE)
        .span(8)
        .height(8)
        .with_target(table_query(f"max by (limit, reason) ({r.DECISION}{{{ONE}}})", "A"))
        .with_transformation(
            model.DataTransformerConfig(id_val="organize", options={"excludeByName": {"Time": True, "Value": True}})
        )
    )
    limited = (
        statetimeline.Panel()
        .title("Scaling limited")
        .description(
            f"`{r.SCALING_LIMITED}` by reason: InsufficientGPU (capped by free GPUs), MaxReplicas, "
            "MetricsMissing (holding blind)."
        )
        .datasource(DATASOURCE)
        .span(16)
        .height(8)
        .mappings(
            [
                model.ValueMap(
                    options={
                        "0": model.ValueMappingResult(text="no", color="green"),
                        "1": model.ValueMappingResult(text="limited", color="orange"),
                    }
                )
            ]
        )
        .with_target(query(f"max by (reason) ({r.SCALING_LIMITED}{{{ONE}}})", "{{reason}}"))
    )
    capped = (
        stat.Panel()
        .title("Time capped by GPUs")
        .description("Share of the time range during which the autoscaler capped this variant for lack of GPUs.")
        .datasource(DATASOURCE)
        .span(8)
        .height(8)
        .unit(RATIO)
        .graph_mode(common.BigValueGraphMode.NONE)
        .with_target(
            query(
                f'max(avg_over_time({r.SCALING_LIMITED}{{{ONE}, reason="{Reason.INSUFFICIENT_GPU}"}}[$__range]))',
                "capped",
                instant=True,
            )
        )
    )
    return (
        _dashboard(
            VARIANT_UID,
            "Bakeoff / variant",
            "One variant: vLLM's queue, batch, KV cache and latency, the autoscaler's decisions, GPU-capped time "
            "and cost.",
            multi=False,
        )
        .with_row(db.Row("Load"))
        .with_panel(
            _series(
                "Requests running and waiting",
                f"`{r.VLLM_RUNNING}` and `{r.VLLM_WAITING}`, all replicas.",
                NUMBER,
                [
                    query(f"sum({r.VLLM_RUNNING}{{{ONE}}})", "running"),
                    query(f"sum({r.VLLM_WAITING}{{{ONE}}})", "waiting", ref="B"),
                ],
                span=8,
            )
        )
        .with_panel(
            _series(
                "Tokens/s",
                f"rate(`{r.VLLM_GENERATION_TOKENS}`) and rate(`{r.VLLM_PROMPT_TOKENS}`), all replicas.",
                NUMBER,
                [
                    query(f"sum(rate({r.VLLM_GENERATION_TOKENS}{{{ONE}}}[{RATE}]))", "output"),
                    query(f"sum(rate({r.VLLM_PROMPT_TOKENS}{{{ONE}}}[{RATE}]))", "prompt", ref="B"),
                ],
                span=8,
            )
        )
        .with_panel(
            _series(
                "Batch size",
                "Sequences in each replica's batch (mean over replicas) and tokens per engine step "
                f"(`{r.VLLM_ITERATION_TOKENS}`).",
                NUMBER,
                [
                    query(f"avg({r.VLLM_RUNNING}{{{ONE}}})", "sequences per replica"),
                    query(
                        f"sum(rate({r.VLLM_ITERATION_TOKENS}_sum{{{ONE}}}[{RATE}]))\n"
                        f"  / sum(rate({r.VLLM_ITERATION_TOKENS}_count{{{ONE}}}[{RATE}]))",
                        "tokens per engine step",
                        ref="B",
                    ),
                ],
                span=8,
            )
        )
        .with_row(db.Row("Saturation"))
        .with_panel(
            _series(
                "KV cache and sequence slots",
                f"`{r.VLLM_KV_USAGE}` per replica; sequence slots used (running sequences over replicas x "
                "max_num_seqs); the signal the autoscaler scales on (slots for hybrids, KV usage for dense).",
                RATIO,
                [
                    query(f"{r.VLLM_KV_USAGE}{{{ONE}}}", "KV cache {{instance}}"),
                    query(f"{r.SLOTS_USAGE}{{{ONE}}}", "sequence slots", ref="B"),
                    query(f"{r.SATURATION}{{{ONE}}}", "scaling signal", ref="C"),
                ],
            )
        )
        .with_panel(
            _series(
                "Preemptions/s",
                f"rate(`{r.VLLM_PREEMPTIONS}`): sequences evicted from the KV cache to make room, all replicas.",
                NUMBER,
                [query(f"sum(rate({r.VLLM_PREEMPTIONS}{{{ONE}}}[{RATE}]))", "preemptions")],
                span=6,
            )
        )
        .with_panel(
            _series(
                "Queue time",
                f"p50 and p90 of `{r.VLLM_QUEUE_TIME}`: how long requests wait before they run.",
                SECONDS,
                [
                    query(
                        f"histogram_quantile({q:g}, sum by (le) (rate({r.VLLM_QUEUE_TIME}_bucket{{{ONE}}}[{RATE}])))",
                        f"p{q * 100:g}",
                        ref=ref,
                    )
                    for q, ref in ((0.5, "A"), (0.9, "B"))
                ],
                span=6,
            )
        )
        .with_row(db.Row("Latency"))
        .with_panel(_heatmap(r.TTFT))
        .with_panel(_heatmap(r.ITL))
        .with_panel(_heatmap(r.E2E))
        .with_panel(_quantiles(r.TTFT))
        .with_panel(_quantiles(r.ITL))
        .with_panel(_quantiles(r.E2E))
        .with_row(db.Row("Autoscaler"))
        .with_panel(
            _series(
                "Replicas: desired and scraped",
                f"`{r.DESIRED_REPLICAS}` (what the autoscaler gives the variant) and the replicas Prometheus scrapes.",
                NUMBER,
                [
                    query(f"max({r.DESIRED_REPLICAS}{{{ONE}}})", "desired"),
                    query(f"{r.REPLICAS_SCRAPED}{{{ONE}}}", "scraped", ref="B"),
                ],
                span=8,
            )
        )
        .with_panel(
            _series(
                "Output tokens/s per replica against capacity",
                f"What each replica serves now, and `{r.CAPACITY}`: what one replica carries within its SLO "
                "(measured by a BakeOff, else predicted).",
                NUMBER,
                [
                    query(f"{r.OUTPUT_TOKENS_RATE}{{{ONE}}} / {r.REPLICAS_SCRAPED}{{{ONE}}}", "per replica"),
                    query(f"max by (source) ({r.CAPACITY}{{{ONE}}})", "capacity ({{source}})", ref="B"),
                ],
                span=8,
            )
        )
        .with_panel(decision)
        .with_panel(limited)
        .with_panel(capped)
        .with_row(db.Row("Cost"))
        .with_panel(
            _series(
                "Cost per 1M tokens",
                f"Recorded cost per 1M output and total tokens ({r.RATE_WINDOW}), and the operator's own "
                f"`{r.OPERATOR_COST}` (its autoscaler's rate window).",
                USD,
                [
                    query(f"{r.COST_PER_1M_OUTPUT}{{{ONE}}}", "per 1M output tokens"),
                    query(f"{r.COST_PER_1M_TOKENS}{{{ONE}}}", "per 1M tokens", ref="B"),
                    query(f"max({r.OPERATOR_COST}{{{ONE}}})", "per 1M output tokens (operator)", ref="C"),
                ],
            )
        )
        .with_panel(
            _series(
                "GPUs held",
                f'Replicas x `{SPEC_METRIC}{{field="{SpecField.GPUS_PER_REPLICA.value}"}}`, by GPU class.',
                NUMBER,
                [query(f"{r.GPUS}{{{ONE}}}", "{{gpu_class}}")],
            )
        )
        .build()
    )


def _numbered(d: model.Dashboard) -> model.Dashboard:
    """Panel ids 1, 2, ... in layout order: links to a panel (`viewPanel=`) stay stable across regenerations."""
    for i, panel in enumerate(d.panels or [], start=1):
        panel.id_val = i
    return d


def dashboards() -> dict[str, model.Dashboard]:
    """File name (without .json) -> dashboard."""
    return {OVERVIEW_UID: _numbered(overview()), VARIANT_UID: _numbered(variant())}


def render(d: model.Dashboard) -> str:
    return json.dumps(d, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
