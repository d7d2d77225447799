"""The Prometheus exporter on its own registry, scraped over HTTP from port 0."""

from __future__ import annotations

import urllib.request

from bakeoff_loadtest.exporter import LoadExporter
from bakeoff_loadtest.records import FailureCause, RequestRecord
from bakeoff_loadtest.spec import RunSpec
from bakeoff_runtime.cost import CostInputs
from bakeoff_runtime.workloads import use_case_workload
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families


def _rec(ok: bool) -> RequestRecord:
    r = RequestRecord(index=0, worker=0, start_unix=0.0, requested_prompt_tokens=256, requested_output_tokens=128)
    r.ok = ok
    r.e2e_s = 1.3
    if ok:
        r.ttft_s, r.itl_s, r.output_tokens, r.prompt_tokens = 0.03, [0.01] * 127, 128, 256
    else:
        r.cause = FailureCause.TRUNCATED
    return r


def test_exporter_serves_its_own_registry_over_http() -> None:
    spec = RunSpec(
        endpoint="http://127.0.0.1:9",
        model="m",
        variant="int4",
        workload=use_case_workload("instruction-following"),
        cost=CostInputs(price_per_gpu_hour=3.29),
    )
    ex = LoadExporter(spec)
    port = ex.start(0)
    try:
        assert port > 0
        for _ in range(3):
            ex.observe(_rec(True))
        ex.observe(_rec(False))
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        ex.stop()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(body)
        for s in fam.samples
    }
    lab = (("variant", "int4"), ("workload", "instruction-following"))
    assert samples[("bakeoff_loadtest_requests_total", lab)] == 4
    assert samples[("bakeoff_loadtest_failures_total", tuple(sorted((*lab, ("cause", "truncated")))))] == 1
    assert samples[("bakeoff_loadtest_output_tokens_total", lab)] == 384
    assert samples[("bakeoff_loadtest_ttft_seconds_count", lab)] == 3
    assert samples[("bakeoff_loadtest_itl_seconds_count", lab)] == 381
    assert samples[("bakeoff_loadtest_itl_seconds_bucket", tuple(sorted((*lab, ("le", "0.01")))))] == 381
    assert samples[("bakeoff_loadtest_cost_per_1m_output_tokens_usd", lab)] > 0
    # nothing leaked into the process-wide default registry
    assert REGISTRY.get_sample_value("bakeoff_loadtest_requests_total", dict(lab)) is None


def test_two_exporters_do_not_collide() -> None:
    spec = RunSpec(endpoint="http://127.0.0.1:9", model="m", workload=use_case_workload("rag"))
    a, b = LoadExporter(spec), LoadExporter(spec)
    a.observe(_rec(True))
    assert a.registry.get_sample_value("bakeoff_loadtest_requests_total", a.labels) == 1
    assert b.registry.get_sample_value("bakeoff_loadtest_requests_total", b.labels) is None
