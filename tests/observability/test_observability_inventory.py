"""The inventory of what each rule and panel relies on (`python -m tests.observability.inventory`): every
one reads some vLLM or operator metric, through the recorded series it uses."""

from __future__ import annotations

from bakeoff_operator.observability import rules

from tests.observability.inventory import markdown, panel_sources, rule_sources


def test_every_rule_and_panel_relies_on_a_real_metric() -> None:
    empty = [name for name, s in rule_sources().items() if not (s.vllm or s.operator)]
    empty += [f"{d}/{p}" for (d, p), s in panel_sources().items() if not (s.vllm or s.operator)]
    assert not empty


def test_recorded_series_are_resolved_to_what_they_read() -> None:
    by_rule = rule_sources()
    cost = by_rule[rules.COST_PER_1M_OUTPUT]
    assert cost.vllm == {rules.VLLM_GENERATION_TOKENS, rules.VLLM_RUNNING}
    assert cost.operator == {rules.GPU_PRICE, "bakeoff_variant_spec", rules.DESIRED_REPLICAS}
    assert by_rule[rules.GOODPUT].vllm == {rules.VLLM_TTFT, rules.VLLM_E2E}
    assert by_rule["BakeoffVariantSLOBurn"].vllm == {rules.VLLM_TTFT, rules.VLLM_ITL, rules.VLLM_E2E}
    assert markdown().count("\n| ") == len(by_rule) + len(panel_sources()) + 1
