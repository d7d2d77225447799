"""Bad Helm values: `helm template` (real Helm) refuses them before anything is installed, naming the
value and what it should be; the documented price override renders.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.chart.chart_support import CHART, KUBE_VERSION, helm

pytestmark = pytest.mark.helm

# (id, --set assignments, what the error names: the value's path, then what it should be)
BAD_SETS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    (
        "price-of-an-unknown-class",
        ("gpuClassPrices.h1000.onDemand=2.99",),
        ("gpuClassPrices.h1000", 'no GPU class "h1000"', "price one of: h100, h200"),
    ),
    (
        "spot-above-the-new-on-demand",
        ("gpuClassPrices.h100.onDemand=1",),
        ("gpuClassPrices.h100", "spot (2.1) must not exceed onDemand (1)", "set gpuClassPrices.h100.spot too"),
    ),
    ("price-in-words", ("gpuClassPrices.h100.onDemand=cheap",), ("/gpuClassPrices/h100/onDemand", "want number")),
    ("negative-price", ("gpuClassPrices.h100.onDemand=-1",), ("/gpuClassPrices/h100/onDemand", "minimum")),
    ("misspelled-price", ("gpuClassPrices.h100.onDemnd=2.99",), ("/gpuClassPrices/h100", "'onDemnd' not allowed")),
    ("class-name-in-capitals", ("gpuClassPrices.H100.onDemand=2.99",), ("/gpuClassPrices", "'H100' not allowed")),
    (
        # What the README used to say: --set on a list index replaces the whole list with one bare entry.
        "list-index-replaces-the-catalog",
        ("gpuClasses[0].pricePerGPUHour.onDemand=2.99",),
        ("/gpuClasses/0", "missing properties"),
    ),
    ("two-operator-replicas", ("operator.replicas=2",), ("/operator/replicas", "want 1")),
    ("unknown-log-level", ("operator.logLevel=trace",), ("/operator/logLevel", "'debug', 'info', 'warning'")),
    ("prometheus-url-without-scheme", ("prometheus.url=prometheus:9090",), ("/prometheus/url", "^https?://")),
    ("misspelled-top-level-value", ("imagee.tag=x",), ("additional properties 'imagee' not allowed",)),
]


def _template(helm_binary: Path, home: Path, sets: tuple[str, ...]) -> tuple[int, str, str]:
    args = [a for s in sets for a in ("--set", s)]
    result = helm(helm_binary, home, "template", "bakeoff", str(CHART), "--kube-version", KUBE_VERSION, *args)
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize(("sets", "says"), [b[1:] for b in BAD_SETS], ids=[b[0] for b in BAD_SETS])
def test_helm_refuses_bad_values_naming_the_value(
    helm_binary: Path, tmp_path: Path, sets: tuple[str, ...], says: tuple[str, ...]
) -> None:
    code, out, err = _template(helm_binary, tmp_path, sets)
    assert code != 0, out[:2000]
    for fragment in says:
        assert fragment in err, err


@pytest.mark.parametrize(
    ("sets", "prices"),
    [
        (("gpuClassPrices.h100.onDemand=2.99",), {"h100": {"onDemand": 2.99, "spot": 2.1}}),
        (("gpuClassPrices.h100.spot=1.5",), {"h100": {"onDemand": 3.29, "spot": 1.5}}),
        (
            ("gpuClassPrices.l4.onDemand=0.9", "gpuClassPrices.l4.spot=0.3", "gpuClassPrices.h200.onDemand=4"),
            {"l4": {"onDemand": 0.9, "spot": 0.3}, "h200": {"onDemand": 4}},
        ),
    ],
    ids=["one-on-demand-price", "one-spot-price", "two-classes"],
)
def test_price_overrides_render_as_numbers(
    helm_binary: Path, tmp_path: Path, sets: tuple[str, ...], prices: dict[str, dict[str, float]]
) -> None:
    code, out, err = _template(helm_binary, tmp_path, sets)
    assert code == 0, err
    rendered = {d["metadata"]["name"]: d["spec"] for d in yaml.safe_load_all(out) if d and d["kind"] == "GPUClass"}
    for name, price in prices.items():
        for key, value in price.items():
            assert rendered[name]["pricePerGPUHour"][key] == value
            assert not isinstance(rendered[name]["pricePerGPUHour"][key], str)
