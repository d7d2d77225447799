"""Every dashboard query returns data from a real Prometheus.

One simulator (`bakeoff sim` through the launcher) serves a little load; Prometheus scrapes it with the
labels a variant's PodMonitor gives its replicas (`namespace`, `variant`), scrapes the operator's
metrics as its autoscaler sets them (`Autoscaler.export_specs` and `_export`), and evaluates the chart's
rule file. Then each panel's queries and each dashboard variable must answer with data, and the recorded
cost per 1M output tokens must be `bakeoff_runtime.cost`'s formula of the recorded inputs.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from bakeoff_loadtest.verdict import METRICS, Percentiles, VerdictRow, figures
from bakeoff_operator.autoscaler import Autoscaler
from bakeoff_operator.autoscaling.decide import Decision, Limit, Policy, VariantLoad
from bakeoff_operator.io.metrics import OperatorMetrics
from bakeoff_operator.io.prometheus import Prometheus as PrometheusClient
from bakeoff_operator.observability import rules
from bakeoff_runtime.cost import usd_per_million_tokens_at_rate
from bakeoff_runtime.formats import Format

from tests.observability.promql import PanelQuery, awaited_in, expand, panel_queries, variable_queries
from tests.observability.scraped import placed_variant, scraped_simulator
from tests.support.prometheus import Prometheus

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

NAMESPACE = "llm"
VARIANT = "llama-int4"
SERVED = "llama-int4"
PRICE = 3.29
GPUS_PER_REPLICA = 2
VARIABLES = {"datasource": "prometheus", "namespace": NAMESPACE, "variant": VARIANT}
READY_TIMEOUT_S = 120.0


def _export_as_the_autoscaler(metrics: OperatorMetrics) -> None:
    mv = placed_variant(
        NAMESPACE,
        VARIANT,
        Format.INT4,
        GPUS_PER_REPLICA,
        slo={"ttftMs": 2000, "itlMs": 200, "e2eMs": 60000, "percentile": "p90"},
        serving={"maxNumSeqs": 16},
    )
    policy = Policy(
        variant=VARIANT, namespace=NAMESPACE, gpu_class="h100", gpus_per_replica=GPUS_PER_REPLICA,
        min_replicas=1, max_replicas=4, max_num_seqs=16,
    )  # fmt: skip
    decision = Decision(
        key=f"{NAMESPACE}/{VARIANT}", variant=VARIANT, namespace=NAMESPACE, current=1, wanted=2, desired=1,
        limit=Limit.INSUFFICIENT_GPU, reason="capped at 1 of 2 replicas: not enough free h100 GPUs",
        capacity_tokens_per_second=500.0, capacity_source="predicted",
    )  # fmt: skip
    load = VariantLoad(waiting=0, running=2, output_tokens_per_s=100.0, replicas_reporting=1)
    metrics.price.labels("h100").set(PRICE)
    autoscaler = Autoscaler(PrometheusClient("http://127.0.0.1:9"), metrics)
    autoscaler.export_specs([mv])
    autoscaler._export(decision, policy, load, (("NVIDIA-H100-80GB-HBM3",), "nvidia.com/gpu", PRICE))
    # The BakeOff controller's verdict of a run: every figure of the report's verdict table.
    latency = Percentiles(p50=40.0, p90=80.0, p95=95.0, p99=120.0)
    row = VerdictRow(
        variant=VARIANT, gpus=GPUS_PER_REPLICA, ttft_ms=latency, itl_ms=latency, e2e_ms=latency,
        output_tokens_per_second=1800.0, max_qps_under_slo=6.0, cost_per_1m_output_tokens_usd=1.5,
        cost_per_1m_total_tokens_usd=0.4, meets_slo=True, accuracy_recovery=0.98,
    )  # fmt: skip
    verdict = figures(row, on_pareto_frontier=True, recommended=True)
    assert set(verdict) == set(METRICS)
    reason = f"{VARIANT}: the cheapest per 1M output tokens within the SLO (USD 1.50)"
    metrics.set_bakeoff(NAMESPACE, "nightly", {VARIANT: verdict}, False, recommendation=(VARIANT, reason))


class Load:
    """A few closed-loop clients sending short completions until stopped."""

    def __init__(self, url: str, clients: int = 3) -> None:
        self.url = url
        self.stop = threading.Event()
        self.sent = 0
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def _run(self, seed: int) -> None:
        prompt = " ".join(f"w{i}" for i in range(64))
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                body = {"model": SERVED, "prompt": prompt, "max_tokens": 24, "seed": seed}
                client.post(self.url + "/v1/completions", json=body).raise_for_status()
                self.sent += 1

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


@dataclass
class Stack:
    prometheus: Prometheus
    load: Load


def _answers(prom: Prometheus, expr: str) -> list[float]:
    return [float(s["value"][1]) for s in prom.query(expr)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    metrics = OperatorMetrics()
    _export_as_the_autoscaler(metrics)
    tmp = tmp_path_factory.mktemp("observability")
    with (
        scraped_simulator(tmp, metrics, namespace=NAMESPACE, variant=VARIANT, fmt=Format.INT4, seed=3) as (sim, prom),
        Load(sim.url) as load,
    ):
        _wait_until_every_query_answers(prom)
        yield Stack(prom, load)


def _wait_until_every_query_answers(prom: Prometheus) -> None:
    pending = {q.id: expand(q.expr, VARIABLES) for q in panel_queries() if not awaited_in(q.expr)}
    deadline = time.monotonic() + READY_TIMEOUT_S
    while pending:
        pending = {k: e for k, e in pending.items() if not any(map(math.isfinite, _answers(prom, e)))}
        if time.monotonic() > deadline:
            raise AssertionError(f"no data after {READY_TIMEOUT_S:.0f}s for: {sorted(pending)}")
        time.sleep(1)


@pytest.mark.parametrize("q", panel_queries(), ids=[q.id for q in panel_queries()])
def test_panel_query_returns_data(stack: Stack, q: PanelQuery) -> None:
    awaited = awaited_in(q.expr)
    if awaited:
        pytest.skip(f"{', '.join(awaited)}: not exported by the operator yet")
    values = _answers(stack.prometheus, expand(q.expr, VARIABLES))
    assert values, f"{q.id}: no series for {q.expr}"
    assert any(map(math.isfinite, values)), f"{q.id}: only NaN for {q.expr}: {values}"


@pytest.mark.parametrize(
    ("dashboard", "variable", "selector", "label"),
    variable_queries(),
    ids=[f"{d}/{v}" for d, v, _, _ in variable_queries()],
)
def test_dashboard_variable_lists_the_variant(
    stack: Stack, dashboard: str, variable: str, selector: str, label: str
) -> None:
    found = {
        s["metric"].get(label) for s in stack.prometheus.query(f"count by ({label}) ({expand(selector, VARIABLES)})")
    }
    assert VARIABLES[variable] in found, f"{dashboard}: ${variable} offers {found}"


def test_recorded_cost_is_the_cost_formula_of_the_recorded_inputs(stack: Stack) -> None:
    prom = stack.prometheus
    sel = f'{{namespace="{NAMESPACE}", variant="{VARIANT}"}}'
    # The instant of the last evaluation of the group: all its rules were evaluated then.
    at = prom.query_value(f"timestamp({rules.COST_PER_1M_OUTPUT}{sel})")
    assert at is not None
    rate = prom.query_value(f"{rules.OUTPUT_TOKENS_RATE}{sel}", at=at)
    replicas = prom.query_value(f"{rules.REPLICAS}{sel}", at=at)
    gpus = prom.query_value(f"{rules.GPUS}{sel}", at=at)
    cost = prom.query_value(f"{rules.COST_PER_1M_OUTPUT}{sel}", at=at)
    assert rate is not None
    assert rate > 0
    assert (replicas, gpus) == (1, GPUS_PER_REPLICA)
    expected = usd_per_million_tokens_at_rate(
        price_per_gpu_hour=PRICE, gpus=GPUS_PER_REPLICA, replicas=1, tokens_per_second=rate
    )
    assert cost == pytest.approx(expected, rel=1e-9)
    assert stack.load.sent > 0


def test_the_simulator_is_scraped_with_the_variant_labels(stack: Stack) -> None:
    running = stack.prometheus.query("vllm:num_requests_running")
    assert {(s["metric"]["namespace"], s["metric"]["variant"], s["metric"]["model_name"]) for s in running} == {
        (NAMESPACE, VARIANT, SERVED)
    }


def test_rule_file_is_loaded(stack: Stack) -> None:
    loaded = httpx.get(stack.prometheus.url + "/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert sorted(g["name"] for g in loaded) == sorted(g.name for g in rules.rule_groups())
    broken = [(r["name"], r.get("lastError")) for g in loaded for r in g["rules"] if r["health"] != "ok"]
    assert not broken


@pytest.mark.parametrize("latency", rules.LATENCIES, ids=[latency.key for latency in rules.LATENCIES])
def test_the_slo_rules_bucket_bounds_are_the_scraped_le_labels(stack: Stack, latency: rules.Latency) -> None:
    """The `le` values the SLO rules match on are those Prometheus stores for the simulator's histograms."""
    scraped = {s["metric"]["le"] for s in stack.prometheus.query(f"count by (le) ({latency.metric}_bucket)")}
    assert scraped == {rules.le_label(b) for b in latency.bounds} | {"+Inf"}
