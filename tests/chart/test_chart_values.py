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
