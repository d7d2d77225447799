"""The live cost per 1M output tokens of the rules agrees with the load harness's measured cost for the
same window.

The load harness (`bakeoff loadtest`, its own process, as a BakeOff's Job runs it) loads one simulator
that a real Prometheus scrapes with a variant's labels, and prices its load point from the tokens it
received (`usage`) over its wall time. Prometheus prices the same window with the rules' formula
(`rules.cost_per_1m_tokens`, the expression of the recorded cost) from vLLM's token counter and the GPUs
the operator says the variant holds. They must agree within `TOLERANCE`: the harness counts the tokens of
the requests it finished, Prometheus the counter's increase between scrapes one second apart,
extrapolated to the window's edges.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from bakeoff_loadtest.run_summary import read_summary
from bakeoff_operator.autoscaler import Autoscaler
from bakeoff_operator.io.metrics import OperatorMetrics
from bakeoff_operator.io.prometheus import Prometheus as PrometheusClient
from bakeoff_operator.observability import rules
from bakeoff_runtime.cost import usd_per_million_tokens_at_rate
from bakeoff_runtime.formats import Format

from tests.observability.scraped import placed_variant, scraped_simulator

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

NAMESPACE = "llm"
VARIANT = "llama-fp8"
SERVED = "llama-fp8"
PRICE = 2.49
GPUS_PER_REPLICA = 2
DURATION_S = 20
# Stated tolerance of the live cost against the harness's, relative.
TOLERANCE = 0.03


def test_live_cost_per_1m_output_tokens_agrees_with_the_harness(tmp_path: Path) -> None:
    metrics = OperatorMetrics()
    metrics.price.labels("h100").set(PRICE)
    Autoscaler(PrometheusClient("http://127.0.0.1:9"), metrics).export_specs(
        [placed_variant(NAMESPACE, VARIANT, Format.FP8, GPUS_PER_REPLICA)]
    )
    sel = f'{{namespace="{NAMESPACE}", variant="{VARIANT}"}}'
    with scraped_simulator(tmp_path, metrics, namespace=NAMESPACE, variant=VARIANT, fmt=Format.FP8, seed=5) as (
        sim,
        prom,
    ):
        prom.wait_for(f"{rules.GPU_COST_PER_HOUR}{sel}", timeout=60)
        prom.wait_for(f"count({rules.VLLM_GENERATION_TOKENS}{sel})", timeout=60)
        summary = tmp_path / "summary.json"
        run = subprocess.run(
            [sys.executable, "-m", "bakeoff_loadtest.cli", "loadtest", "--endpoint", sim.url,
             "--model", SERVED, "--variant", VARIANT, "--workload", "custom", "--prompt-tokens", "128",
             "--output-tokens", "48", "--concurrency", "4", "--duration", str(DURATION_S), "--seed", "5",
             "--gpu-class", "h100", "--price-per-gpu-hour", str(PRICE), "--gpus", str(GPUS_PER_REPLICA),
             "--replicas", "1", "--no-report", "--out", str(tmp_path / "out"), "--summary-file", str(summary)],
            capture_output=True, text=True, check=False, timeout=DURATION_S + 120,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]
        (point,) = read_summary(summary.read_text()).points
        assert point.started_unix is not None
        assert point.requests_ok > 0
        harness = point.usd_per_1m_output_tokens
        assert harness is not None
        end = point.started_unix + point.wall_s
        # Prometheus has scraped the counter after the window's end.
        while time.time() < end + 3:
            time.sleep(0.5)
        window = f"{round(point.wall_s * 1000)}ms"
        tokens_per_second = f"sum by ({rules.BY}) (rate({rules.VLLM_GENERATION_TOKENS}{sel}[{window}]))"
        live = prom.query_value(rules.cost_per_1m_tokens(f"{rules.GPU_COST_PER_HOUR}{sel}", tokens_per_second), at=end)
        rate = prom.query_value(tokens_per_second, at=end)
    assert live is not None
    assert rate is not None
    # the rules' expression is the harness's formula: the same cost of the same inputs
    assert live == pytest.approx(
        usd_per_million_tokens_at_rate(
            price_per_gpu_hour=PRICE, gpus=GPUS_PER_REPLICA, replicas=1, tokens_per_second=rate
        ),
        rel=1e-9,
    )
    deviation = live / harness - 1
    print(
        f"live cost per 1M output tokens {live:.4f} USD, harness {harness:.4f} USD over {point.wall_s:.1f} s "
        f"({point.output_tokens} tokens; Prometheus {rate:.1f} tokens/s, harness {point.output_tokens_per_s:.1f}): "
        f"{deviation:+.2%}"
    )
    assert abs(deviation) <= TOLERANCE
