"""Every metric a rule, a panel or a dashboard variable queries exists: in the checked-in snapshot of real
vLLM's metric families, among the operator's own metrics, or as a recorded series of the rule file; and
every label a selector matches on is one that family has (or one the scrape adds)."""

from __future__ import annotations

import pytest

from tests.observability.promql import (
    AWAITED_OPERATOR_METRICS,
    Selector,
    expand,
    operator_families,
    panel_queries,
    recorded_families,
    rule_exprs,
    selectors,
    variable_queries,
    vllm_families,
)

VARIABLES = {"datasource": "prometheus", "namespace": "llm", "variant": "llama-int4"}


def known() -> dict[str, frozenset[str] | None]:
    return {**vllm_families(), **operator_families(), **recorded_families()}


def problems(expr: str, families: dict[str, frozenset[str] | None]) -> list[str]:
    """What is wrong with one query: unknown metric names, labels its family does not have."""
    out = []
    for sel in selectors(expr):
        if sel.name not in families:
            out.append(f"unknown metric {sel.name}")
            continue
        labels = families[sel.name]
        if labels is not None:
            extra = sel.labels - labels - {"namespace", "variant", "instance", "job", "pod"}
            if extra:
                out.append(f"{sel.name} has no label {sorted(extra)}")
    return out


def all_queries() -> list[tuple[str, str]]:
    out = [(f"rule {name}", expr) for name, expr in rule_exprs()]
    out += [(f"panel {q.id}", expand(q.expr, VARIABLES)) for q in panel_queries()]
    out += [(f"variable {d}/{v}", expand(sel, VARIABLES)) for d, v, sel, _ in variable_queries()]
    return out


@pytest.mark.parametrize(("where", "expr"), all_queries(), ids=[w for w, _ in all_queries()])
def test_query_uses_known_metrics_and_labels(where: str, expr: str) -> None:
    assert not problems(expr, known()), f"{where}: {expr}"


def test_the_vllm_families_the_queries_rely_on() -> None:
    """The vLLM series the rules and dashboards read (docs/observability.md lists them); a new one is a
    decision, not an accident."""
    vllm = {s.name for _, e in all_queries() for s in selectors(e) if s.name.startswith("vllm:")}
    assert vllm == {
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:generation_tokens_total",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:iteration_tokens_total_count",
        "vllm:iteration_tokens_total_sum",
        "vllm:kv_cache_usage_perc",
        "vllm:num_preemptions_total",
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:prompt_tokens_total",
        "vllm:request_queue_time_seconds_bucket",
        "vllm:request_success_total",
        "vllm:time_to_first_token_seconds_bucket",
    }


@pytest.mark.parametrize(
    ("expr", "wrong"),
    [
        ("avg(vllm:gpu_cache_usage_perc)", "unknown metric vllm:gpu_cache_usage_perc"),
        (
            "rate(vllm:time_per_output_token_seconds_bucket[5m])",
            "unknown metric vllm:time_per_output_token_seconds_bucket",
        ),
        ('vllm:num_requests_running{gpu="0"}', "vllm:num_requests_running has no label ['gpu']"),
        ('bakeoff_desired_replicas{reason="x"}', "bakeoff_desired_replicas has no label ['reason']"),
        ("namespace_variant:vllm_tokens:rate1m", "unknown metric namespace_variant:vllm_tokens:rate1m"),
    ],
    ids=["removed-kv-name", "removed-tpot-name", "vllm-label", "operator-label", "unrecorded"],
)
def test_a_wrong_name_or_label_is_caught(expr: str, wrong: str) -> None:
    assert problems(expr, known()) == [wrong]


def test_selectors_read_names_and_matchers_from_parsed_promql() -> None:
    expr = 'sum by (le) (rate(vllm:x_bucket{namespace="a", variant=~"b|c"}[5m])) / on (namespace) group_left max(y)'
    assert selectors(expr) == [
        Selector("vllm:x_bucket", frozenset({"namespace", "variant"})),
        Selector("y", frozenset()),
    ]


def test_grafana_variables_expand() -> None:
    assert expand('rate(x{variant=~"${variant:regex}", n="$namespace"}[$__rate_interval])', VARIABLES) == (
        'rate(x{variant=~"llama-int4", n="llm"}[1m])'
    )
    with pytest.raises(KeyError):
        expand('x{a="$missing"}', VARIABLES)


def test_awaited_metrics_keep_their_labels() -> None:
    """A metric another part of the operator exports: when it appears in the registry, with the labels the
    rules expect."""
    families = operator_families()
    for name, labels in AWAITED_OPERATOR_METRICS.items():
        assert families[name] == labels
