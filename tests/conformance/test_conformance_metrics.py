"""vLLM V1 metric names: real vLLM matches the checked-in snapshot; the simulator is a subset of it."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from tests.conformance.conftest import SERVED, Served
from tests.conformance.snapshot import SNAPSHOT, families, read_snapshot, render_snapshot

# What Bakeoff's dashboards, rules, autoscaler and load harness query: both runtimes must expose these.
REQUIRED = {
    "vllm:num_requests_running": "gauge",
    "vllm:num_requests_waiting": "gauge",
    "vllm:kv_cache_usage_perc": "gauge",
    "vllm:prompt_tokens_total": "counter",
    "vllm:generation_tokens_total": "counter",
    "vllm:time_to_first_token_seconds": "histogram",
    "vllm:inter_token_latency_seconds": "histogram",
    "vllm:e2e_request_latency_seconds": "histogram",
    "vllm:request_queue_time_seconds": "histogram",
    "vllm:request_success_total": "counter",
    "vllm:num_preemptions_total": "counter",
    "vllm:cache_config_info": "gauge",
    "vllm:request_prefill_time_seconds": "histogram",
    "vllm:request_decode_time_seconds": "histogram",
    "vllm:request_prompt_tokens": "histogram",
    "vllm:request_generation_tokens": "histogram",
}
# Names vLLM removed with the V0 engine; nothing may expose or query them.
REMOVED = ("vllm:gpu_cache_usage_perc", "vllm:time_per_output_token_seconds", "vllm:cpu_cache_usage_perc")


def scrape(url: str) -> str:
    return httpx.get(url + "/metrics", timeout=10).text


def test_snapshot_has_the_families_bakeoff_relies_on_and_no_removed_ones() -> None:
    version, snap = read_snapshot()
    assert version
    for name, kind in REQUIRED.items():
        assert name in snap, f"{name} missing from {SNAPSHOT.name}"
        assert snap[name][0] == kind
        assert {"model_name", "engine"} <= snap[name][1] or name == "vllm:cache_config_info"
    assert "finished_reason" in snap["vllm:request_success_total"][1]
    assert not set(REMOVED) & set(snap)


def test_runtime_exposes_the_required_families_with_vllm_types_and_labels(runtime: Served) -> None:
    fams = families(scrape(runtime.url))
    for name, kind in REQUIRED.items():
        assert name in fams, f"{runtime.engine} does not expose {name}"
        assert fams[name][0] == kind, f"{runtime.engine}: {name} is a {fams[name][0]}, vLLM's is a {kind}"
        # vllm:cache_config_info carries engine and the cache configuration, not model_name.
        assert {"model_name", "engine"} <= fams[name][1] or name == "vllm:cache_config_info"
    assert not set(REMOVED) & set(fams)


def test_runtime_families_match_the_vllm_snapshot(runtime: Served) -> None:
    """Real vLLM: exactly the snapshot (a renamed or dropped metric fails). Simulator: a subset of it."""
    version, snap = read_snapshot()
    fams = families(scrape(runtime.url))
    if runtime.engine == "vllm":
        served_version = httpx.get(runtime.url + "/version", timeout=10).json()["version"]
        if os.environ.get("UPDATE_GOLDENS") == "1":
            SNAPSHOT.write_text(render_snapshot(fams, served_version))
            pytest.fail(f"rewrote {SNAPSHOT.name} from vLLM {served_version}; review the diff and rerun")
        assert served_version == version, f"snapshot is of vLLM {version}, the server runs {served_version}"
        assert fams == snap, (
            f"vLLM's metric families changed: new {sorted(set(fams) - set(snap))}, "
            f"gone {sorted(set(snap) - set(fams))}, changed "
            f"{sorted(n for n in set(fams) & set(snap) if fams[n] != snap[n])}"
        )
    else:
        extra = {n: f for n, f in fams.items() if n not in snap}
        assert not extra, f"simulator families not in vLLM {version}: {extra}"
        differ = {n: (fams[n], snap[n]) for n in fams if fams[n] != snap[n]}
        assert not differ, f"simulator families whose type or labels differ from vLLM's: {differ}"
        own = families(scrape(runtime.url), prefix="")
        assert all(n.startswith(("vllm:", "bakeoff_sim_")) for n in own), sorted(own)


def test_labels_carry_the_served_model_name_and_engine_zero(runtime: Served) -> None:
    text = scrape(runtime.url)
    line = next(ln for ln in text.splitlines() if ln.startswith("vllm:num_requests_running{"))
    assert f'model_name="{SERVED}"' in line
    assert 'engine="0"' in line


def test_histogram_buckets_are_vllms(runtime: Served) -> None:
    text = scrape(runtime.url)
    ttft = [ln for ln in text.splitlines() if ln.startswith("vllm:time_to_first_token_seconds_bucket{")]
    bounds = [ln.split('le="')[1].split('"')[0] for ln in ttft]
    assert bounds[:4] == ["0.001", "0.005", "0.01", "0.02"]
    assert bounds[-2:] == ["2560.0", "+Inf"]


def test_counters_follow_a_request(runtime: Served) -> None:
    def value(name: str, **labels: str) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        for fam in text_string_to_metric_families(scrape(runtime.url)):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total

    before = {
        "prompt": value("vllm:prompt_tokens_total"),
        "gen": value("vllm:generation_tokens_total"),
        "ok": value("vllm:request_success_total", finished_reason="length"),
        "e2e": value("vllm:e2e_request_latency_seconds_count"),
    }
    body = {"model": SERVED, "prompt": "one two three four five six", "max_tokens": 5, "ignore_eos": True}
    assert httpx.post(runtime.url + "/v1/completions", json=body, timeout=60).status_code == 200
    # vLLM publishes engine stats from its output loop; give it a moment.
    deadline = time.monotonic() + 10
    while value("vllm:e2e_request_latency_seconds_count") < before["e2e"] + 1:
        assert time.monotonic() < deadline, "e2e latency histogram never counted the request"
        time.sleep(0.1)
    assert value("vllm:prompt_tokens_total") - before["prompt"] == 6
    assert value("vllm:generation_tokens_total") - before["gen"] == 5
    assert value("vllm:request_success_total", finished_reason="length") - before["ok"] == 1
