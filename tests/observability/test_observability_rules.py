"""The recording and alerting rules: promtool checks them and runs their unit tests
(rules-test.yaml, answers worked out by hand), every rule has a unit test, and the cost answers are
what `bakeoff_runtime.cost` computes from the same inputs."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from bakeoff_operator.observability import rules
from bakeoff_runtime.cost import usd_per_million_tokens_at_rate

from tests.observability.promql import RULE_FILE, UNIT_TESTS, rule_file, selectors

REPO = Path(__file__).resolve().parents[2]


def _unit_tests() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(UNIT_TESTS.read_text())
    return loaded


def _series_labels(series: str) -> tuple[str, dict[str, str]]:
    """`name{a="b"}` -> (name, labels), as promtool reads an expected sample."""
    import promql_parser

    node = promql_parser.parse(series)
    assert isinstance(node, promql_parser.VectorSelector), series
    return node.name or "", {m.name: m.value for m in node.matchers.matchers}


@pytest.mark.prometheus
def test_promtool_checks_the_rule_file(promtool: Path) -> None:
    result = subprocess.run(
        [str(promtool), "check", "rules", str(RULE_FILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(g.rules) for g in rules.rule_groups())
    assert f"SUCCESS: {count} rules found" in result.stdout


@pytest.mark.prometheus
def test_promtool_unit_tests_pass(promtool: Path) -> None:
    result = subprocess.run(
        [str(promtool), "test", "rules", str(UNIT_TESTS)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_unit_tests_load_the_shipped_rule_file() -> None:
    assert [(UNIT_TESTS.parent / f).resolve() for f in _unit_tests()["rule_files"]] == [RULE_FILE.resolve()]


def test_every_recording_rule_has_a_unit_test() -> None:
    """Each (record, labels) of the rule file is the answer of some promql_expr_test."""
    tested: set[tuple[str, frozenset[tuple[str, str]]]] = set()
    for group in _unit_tests()["tests"]:
        for case in group.get("promql_expr_test", []):
            for sample in case["exp_samples"]:
                name, labels = _series_labels(sample["labels"])
                tested.add((name, frozenset(labels.items())))
            if not case["exp_samples"]:  # an expected absence tests the rule too
                tested |= {(sel.name, frozenset()) for sel in selectors(case["expr"])}
    untested = []
    for group in rule_file()["groups"]:
        for rule in group["rules"]:
            if "record" not in rule:
                continue
            key = (rule["record"], frozenset((rule.get("labels") or {}).items()))
            answered = any(name == key[0] and key[1] <= labels for name, labels in tested)
            if not answered:
                untested.append(f"{key[0]}{dict(key[1])}")
    assert not untested, f"recording rules without a promtool unit test: {untested}"


def test_every_alert_fires_in_a_unit_test() -> None:
    """Each alerting rule (an alert name and its own labels) fires in some alert_rule_test."""
    fired: list[tuple[str, dict[str, str]]] = []
    quiet: set[str] = set()
    for group in _unit_tests()["tests"]:
        for case in group.get("alert_rule_test", []):
            if not case["exp_alerts"]:
                quiet.add(case["alertname"])
            fired += [(case["alertname"], {k: str(v) for k, v in a["exp_labels"].items()}) for a in case["exp_alerts"]]
    missing = []
    for group in rule_file()["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            own = {k: str(v) for k, v in rule["labels"].items()}
            if not any(name == rule["alert"] and own.items() <= labels.items() for name, labels in fired):
                missing.append(f"{rule['alert']}{own}")
    assert not missing, f"alerts that never fire in rules-test.yaml: {missing}"
    # and each is also shown not to fire too early (or for the variant that does not qualify)
    assert rules.alert_names() <= quiet


def _expected(group_name: str, record: str) -> dict[str, float]:
    group = next(g for g in _unit_tests()["tests"] if g["name"] == group_name)
    case = next(c for c in group["promql_expr_test"] if c["expr"] == record)
    return {_series_labels(s["labels"])[1]["variant"]: float(s["value"]) for s in case["exp_samples"]}


@pytest.mark.parametrize(
    ("record", "rate_of"),
    [(rules.COST_PER_1M_OUTPUT, rules.OUTPUT_TOKENS_RATE), (rules.COST_PER_1M_TOKENS, rules.TOKENS_RATE)],
    ids=["output", "total"],
)
def test_cost_answers_are_the_cost_formula(record: str, rate_of: str) -> None:
    """The rule's answers equal `bakeoff_runtime.cost` (the formula of every report) on the same inputs."""
    prices = {"bf16": 4.0, "int4": 4.0, "hybrid": 1.5}
    gpus = {"bf16": 2, "int4": 1, "hybrid": 1}
    replicas = _expected("cost per 1M tokens", rules.REPLICAS)
    rates = _expected("cost per 1M tokens", rate_of)
    costs = _expected("cost per 1M tokens", record)
    assert set(costs) == set(prices)
    for variant, cost in costs.items():
        formula = usd_per_million_tokens_at_rate(
            price_per_gpu_hour=prices[variant],
            gpus=gpus[variant],
            replicas=int(replicas[variant]),
            tokens_per_second=rates[variant],
        )
        assert formula == pytest.approx(cost, rel=1e-12), variant


def test_rule_and_group_names_are_unique_and_documented() -> None:
    groups = rules.rule_groups()
    assert len({g.name for g in groups}) == len(groups)
    doc = (REPO / "docs/observability.md").read_text()
    for name in sorted(rules.recorded_names() | rules.alert_names()):
        assert f"`{name}`" in doc, f"docs/observability.md does not describe {name}"


def test_rule_file_renders_what_the_models_say() -> None:
    assert rule_file() == rules.rule_file()
    assert rules.render_rule_file().startswith("# Bakeoff's recording and alerting rules")


def test_bucket_bounds_are_vllms() -> None:
    """The bounds the SLO rules count within are vLLM's (the simulator exports vLLM 0.32.0's buckets)."""
    from bakeoff_runtime.sim import metrics as vllm

    assert rules.TTFT.bounds == vllm.TIME_TO_FIRST_TOKEN_BUCKETS
    assert rules.ITL.bounds == vllm.INTER_TOKEN_LATENCY_BUCKETS
    assert rules.E2E.bounds == vllm.REQUEST_LATENCY_BUCKETS
    assert [rules.le_label(b) for b in (0.001, 0.25, 1, 10.0, 2560)] == ["0.001", "0.25", "1.0", "10.0", "2560.0"]


def test_goodput_counts_requests_not_token_gaps() -> None:
    """Goodput takes the per-request bounds (TTFT, E2E); ITL counts token gaps."""
    (goodput,) = [r for g in rules.rule_groups() for r in g.rules if getattr(r, "record", None) == rules.GOODPUT]
    assert isinstance(goodput, rules.RecordingRule)
    assert rules.TTFT.within(rules.RATE_WINDOW) in goodput.expr
    assert rules.E2E.within(rules.RATE_WINDOW) in goodput.expr
    assert rules.ITL.within(rules.RATE_WINDOW) not in goodput.expr
