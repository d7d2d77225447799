"""values.schema.json accepts the chart's defaults and rejects values the operator could not use.

Checked here with the `jsonschema` library; tests/chart/test_chart_helm.py checks that Helm itself
rejects the same values.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from bakeoff_operator.chartgen import ChartValues, default_gpu_classes
from bakeoff_runtime.gpus import default_catalog

CHART = Path(__file__).resolve().parents[2] / "charts/bakeoff"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
DEFAULTS: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())


def _with(path: str, value: Any) -> dict[str, Any]:
    values = copy.deepcopy(DEFAULTS)
    node = values
    *parents, last = path.split(".")
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    node[last] = value
    return values


# (id, dotted path, bad value, text the error must contain)
BAD_VALUES: list[tuple[str, str, Any, str]] = [
    ("two-replicas", "operator.replicas", 2, "2"),
    ("typo-top-level", "imagee", {"tag": "x"}, "imagee"),
    ("typo-nested", "operator.logLevl", "debug", "logLevl"),
    ("bad-log-level", "operator.logLevel", "trace", "trace"),
    ("bad-pull-policy", "image.pullPolicy", "Sometimes", "Sometimes"),
    ("bad-namespace", "operator.watchNamespaces", ["Not_A_Namespace"], "Not_A_Namespace"),
    ("bad-quantity", "operator.resources.limits.memory", "lots", "lots"),
    ("low-port", "operator.healthPort", 80, "80"),
    ("bad-prometheus-url", "prometheus.url", "prometheus:9090", "prometheus:9090"),
    ("negative-price", "gpuClasses.0.pricePerGPUHour.onDemand", -1, "-1"),
    ("gpu-class-typo", "gpuClasses.0.memoryGib", 80, "memoryGib"),
    ("gpu-class-bad-name", "gpuClasses.0.name", "H100", "H100"),
    ("price-in-words", "gpuClassPrices", {"h100": {"onDemand": "cheap"}}, "cheap"),
    ("negative-price-override", "gpuClassPrices", {"h100": {"onDemand": -1}}, "-1"),
    ("price-override-typo", "gpuClassPrices", {"h100": {"onDemnd": 2.99}}, "onDemnd"),
    ("price-override-bad-name", "gpuClassPrices", {"H100": {"onDemand": 2.99}}, "H100"),
]


def test_defaults_pass_the_schema() -> None:
    jsonschema.validate(DEFAULTS, SCHEMA)
    ChartValues.model_validate(DEFAULTS)


@pytest.mark.parametrize(("path", "value", "text"), [b[1:] for b in BAD_VALUES], ids=[b[0] for b in BAD_VALUES])
def test_bad_values_are_rejected(path: str, value: Any, text: str) -> None:
    with pytest.raises(jsonschema.ValidationError) as info:
        jsonschema.validate(_with(path, value), SCHEMA)
    assert text in str(info.value.message)


def test_gpu_classes_default_to_the_catalog_with_prices() -> None:
    by_name = {g["name"]: g for g in DEFAULTS["gpuClasses"]}
    assert list(by_name) == default_catalog().names
    h100 = default_catalog().get("h100")
    assert by_name["h100"]["pricePerGPUHour"] == {
        "onDemand": h100.price_per_gpu_hour.on_demand,
        "spot": h100.price_per_gpu_hour.spot,
    }
    assert [g.name for g in default_gpu_classes()] == default_catalog().names


def test_every_value_is_documented() -> None:
    text = (CHART / "values.yaml").read_text().splitlines()
    for i, line in enumerate(text):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")) or (line.startswith("    ") and "gpuClasses" not in line):
            continue
        if line.startswith("  ") and any(t.startswith("  - ") for t in text[max(0, i - 20) : i]):
            continue  # inside the gpuClasses list
        assert text[i - 1].strip().startswith("#"), f"values.yaml line {i + 1} has no comment: {line}"


@pytest.mark.parametrize("price", [2.99, 3, "2.99"], ids=["number", "whole-number", "string-from-helm-set"])
def test_a_price_override_may_be_what_helm_set_passes(price: Any) -> None:
    values = _with("gpuClassPrices", {"h100": {"onDemand": price}})
    jsonschema.validate(values, SCHEMA)
    ChartValues.model_validate(values)


# --- the documented command, with real Helm -----------------------------------------------------------
README = CHART.parents[1] / "README.md"


def _documented_set() -> str:
    """The `--set ...` the README gives for changing one price."""
    import re

    found = re.search(r"`--set (gpuClassPrices\.[^`]+)`", README.read_text())
    assert found, "README.md documents how to change one price with --set gpuClassPrices..."
    return found.group(1)


def _gpu_classes(helm_binary: Path, home: Path, *args: str) -> dict[str, dict[str, Any]]:
    from tests.chart.chart_support import KUBE_VERSION, helm

    result = helm(helm_binary, home, "template", "bakeoff", str(CHART), "--kube-version", KUBE_VERSION, *args)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "GPUClass"]
    return {d["metadata"]["name"]: d["spec"] for d in docs}


@pytest.mark.helm
def test_the_documented_price_override_changes_one_price_and_keeps_the_catalog(
    helm_binary: Path, tmp_path: Path
) -> None:
    assignment = _documented_set()
    assert assignment == "gpuClassPrices.h100.onDemand=2.99"
    before = _gpu_classes(helm_binary, tmp_path)
    after = _gpu_classes(helm_binary, tmp_path, "--set", assignment)
    assert after["h100"]["pricePerGPUHour"] == {"onDemand": 2.99, "spot": before["h100"]["pricePerGPUHour"]["spot"]}
    assert isinstance(after["h100"]["pricePerGPUHour"]["onDemand"], float)  # a number, as the CRD wants
    assert {k: v for k, v in after.items() if k != "h100"} == {k: v for k, v in before.items() if k != "h100"}
    assert {k: v for k, v in after["h100"].items() if k != "pricePerGPUHour"} == {
        k: v for k, v in before["h100"].items() if k != "pricePerGPUHour"
    }


@pytest.mark.helm
def test_both_prices_of_a_class_can_change(helm_binary: Path, tmp_path: Path) -> None:
    after = _gpu_classes(
        helm_binary, tmp_path, "--set", "gpuClassPrices.l4.onDemand=1", "--set", "gpuClassPrices.l4.spot=0.35"
    )
    assert after["l4"]["pricePerGPUHour"] == {"onDemand": 1, "spot": 0.35}
