"""The playground's parts without a cluster: which pods the runner runs and how, the endpoint's choice of
replica and its streaming proxy (against real simulator processes), and the Prometheus fixture (a real
Prometheus scraping a simulator through its file_sd target list)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from bakeoff_operator.api.modelvariant import Engine, ModelVariant
from bakeoff_operator.planning.deployment import Target, plan_deployment
from bakeoff_operator.render.kserve import GPUPlacement, Owner, RenderSettings, Replicas, render_children
from bakeoff_runtime.gpus import default_catalog
from bakeoff_runtime.launcher import RunningRuntime, RuntimeSpec, launch

from tests.sim.conftest import SERVED, sim_variant
from tests.support.endpoints import REPLICA_HEADER, Endpoints, Replica, VariantEndpoint
from tests.support.pod_runner import PodNotRunnable, local_args, simulated_pod, wanted
from tests.support.prometheus import (
    REPLICAS_JOB,
    Prometheus,
    PrometheusError,
    TargetGroup,
    missing_prometheus_tools,
    scrape_config,
)


# --- which pods, run how ---------------------------------------------------------------------------------
def simulated_variant_pod(name: str = "llama", **status: Any) -> dict[str, Any]:
    """A pod as KServe builds it from the operator's rendering of a simulated variant."""
    mv = ModelVariant.model_validate(
        {
            "apiVersion": "bakeoff.dev/v1alpha1",
            "kind": "ModelVariant",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {
                "model": {"source": "hf://meta-llama/Llama-3.1-8B-Instruct"},
                "architecture": {"catalog": "llama-3.1-8b"},
                "format": "int8",
                "gpuClass": "h100",
                "tensorParallelSize": 1,
                "engine": "simulator",
            },
        }
    )
    deployment = plan_deployment(mv, default_catalog(), Target.KSERVE, engine=Engine.SIMULATOR)
    assert deployment.variant is not None
    gpu = deployment.variant.gpu
    children = render_children(
        deployment,
        RenderSettings(),
        Owner(name=name, uid="uid-1"),
        GPUPlacement(resource_name=gpu.resource_name, products=(gpu.product,)),
        Replicas(desired=1, maximum=1),
        engine=Engine.SIMULATOR,
    )
    runtime = children.of_kind("ServingRuntime")
    isvc = children.of_kind("InferenceService")
    assert runtime is not None
    assert isvc is not None
    container = dict(runtime["spec"]["containers"][0])
    labels = {**isvc["spec"]["predictor"]["labels"], "serving.kserve.io/inferenceservice": name}
    return {
        "metadata": {"name": f"{name}-predictor-abc", "namespace": "ns", "uid": "pod-uid", "labels": labels},
        "spec": {"nodeName": "gpu-h100-0", "containers": [container]},
        "status": {"phase": "Running", **status},
    }


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--host=0.0.0.0", "--port=8080", "--variant-env=V"],
            ["--variant-env=V", "--host=127.0.0.1", "--port=0"],
        ),
        (["--host", "0.0.0.0", "--port", "8080", "--seed", "3"], ["--seed", "3", "--host=127.0.0.1", "--port=0"]),
        ([], ["--host=127.0.0.1", "--port=0"]),
    ],
    ids=["equals-form", "separate-values", "none"],
)
def test_a_replica_listens_on_loopback_on_a_port_the_os_picks(args: list[str], expected: list[str]) -> None:
    assert local_args(args) == expected


def test_the_runner_runs_the_rendered_container_with_its_env_and_labels_its_target() -> None:
    pod = simulated_variant_pod()
    parsed = simulated_pod(pod)
    container = pod["spec"]["containers"][0]
    assert parsed.argv[0].endswith("bakeoff")
    assert list(parsed.argv[1:]) == ["sim", *local_args(container["args"])]
    assert parsed.env == {e["name"]: e["value"] for e in container["env"]}
    variant = json.loads(parsed.env["BAKEOFF_SIM_VARIANT"])
    assert parsed.model_name == variant["served_model_name"]
    assert parsed.target_labels() == {
        "namespace": "ns",
        "pod": "llama-predictor-abc",
        "container": "kserve-container",
        "node": "gpu-h100-0",
        "variant": "llama",
        "inferenceservice": "llama",
        "format": "int8",
        "model_name": variant["served_model_name"],
    }


@pytest.mark.parametrize(
    ("change", "runs"),
    [
        ({}, True),
        ({"status": {"phase": "Pending"}}, False),
        ({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}, False),
        ({"spec": {"nodeName": "not-a-kwok-node"}}, False),
        ({"metadata": {"labels": {"bakeoff.dev/engine": "vllm"}}}, False),
    ],
    ids=["running", "pending", "terminating", "other-node", "vllm-engine"],
)
def test_only_running_simulated_pods_on_kwok_nodes_get_a_process(change: dict[str, Any], runs: bool) -> None:
    pod = simulated_variant_pod()
    for part, values in change.items():
        for key, value in values.items():
            if isinstance(value, dict):
                pod[part][key] = {**pod[part].get(key, {}), **value}
            else:
                pod[part][key] = value
    assert wanted(pod, ["gpu-h100-0"]) is runs


def test_a_container_that_is_not_the_simulator_is_refused_with_the_reason() -> None:
    pod = simulated_variant_pod()
    pod["spec"]["containers"][0]["command"] = ["vllm", "serve"]
    with pytest.raises(PodNotRunnable, match="not `bakeoff sim`"):
        simulated_pod(pod)


# --- the endpoint ----------------------------------------------------------------------------------------
def test_the_endpoint_picks_the_least_busy_replica_and_takes_turns_among_equals() -> None:
    a, b, c = Replica("a", "http://a"), Replica("b", "http://b"), Replica("c", "http://c")
    endpoint = VariantEndpoint("ns", "v", "http://127.0.0.1:1", [a, b, c])
    assert {endpoint.pick().pod for _ in range(3)} == {"a", "b", "c"}  # type: ignore[union-attr]
    a.outstanding, b.outstanding, c.outstanding = 2, 0, 1
    assert [endpoint.pick() for _ in range(3)] == [b, b, b]
    assert endpoint.pick(frozenset({id(b)})) is c
    assert VariantEndpoint("ns", "v", "http://127.0.0.1:1").pick() is None


@pytest.fixture(scope="module")
def two_sims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RunningRuntime]]:
    tmp = tmp_path_factory.mktemp("sims")
    specs = [RuntimeSpec(engine="sim", variant=sim_variant(), log_path=tmp / f"{n}.log") for n in ("a", "b")]
    with launch(specs[0]) as a, launch(specs[1]) as b:
        yield [a, b]


def chat(url: str, max_tokens: int = 32) -> tuple[httpx.Response, list[float], list[str]]:
    """A streamed chat completion: the response, when each SSE event arrived, and the events."""
    body = {"model": SERVED, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens, "stream": True}
    arrivals, events = [], []
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                arrivals.append(time.monotonic())
                events.append(line.removeprefix("data:").strip())
    return response, arrivals, events


def test_the_endpoint_streams_through_and_spreads_requests_over_replicas(two_sims: list[RunningRuntime]) -> None:
    a, b = two_sims
    with Endpoints() as endpoints:
        endpoint = endpoints.set_replicas("ns", "v", {"a": a.url, "b": b.url})
        assert endpoints.ensure("ns", "v") is endpoint
        answered_by = []
        for _ in range(4):
            response, arrivals, events = chat(endpoint.url, max_tokens=64)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert events[-1] == "[DONE]"
            # Streamed as generated: the first token long before the last.
            assert arrivals[-1] - arrivals[0] > 0.1
            answered_by.append(response.headers[REPLICA_HEADER])
        assert sorted(answered_by) == ["a", "a", "b", "b"]
        assert endpoint.served() == {"a": 2, "b": 2}

        # Concurrent streams go to the replica with fewer in flight.
        results: list[str] = []
        threads = [
            threading.Thread(target=lambda: results.append(chat(endpoint.url, 128)[0].headers[REPLICA_HEADER]))
            for _ in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == ["a"] * 3 + ["b"] * 3


def test_the_endpoint_skips_a_replica_that_is_gone_and_answers_503_without_any(
    two_sims: list[RunningRuntime], tmp_path: Path
) -> None:
    a, _ = two_sims
    with Endpoints() as endpoints:
        endpoint = endpoints.set_replicas("ns", "v", {"gone": "http://127.0.0.1:1", "a": a.url})
        for _ in range(3):
            response = httpx.get(endpoint.url + "/v1/models", timeout=10)
            assert response.status_code == 200
            assert response.headers[REPLICA_HEADER] == "a"
        endpoints.set_replicas("ns", "v", {})
        response = httpx.post(endpoint.url + "/v1/chat/completions", json={}, timeout=10)
        assert response.status_code == 503
        assert "no replica is serving" in response.json()["error"]["message"]
        assert endpoint.unavailable == 1


# --- Prometheus ------------------------------------------------------------------------------------------
def test_the_scrape_config_has_the_replica_job_the_static_jobs_and_one_second_intervals(tmp_path: Path) -> None:
    config = scrape_config(tmp_path / "t.json", {"bakeoff-operator": ["127.0.0.1:9"]}, [], "127.0.0.1:1", "1s")
    assert config["global"] == {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {REPLICAS_JOB, "prometheus", "bakeoff-operator"}
    assert jobs[REPLICAS_JOB]["honor_labels"] is True
    assert jobs[REPLICAS_JOB]["file_sd_configs"][0]["files"] == [str(tmp_path / "t.json")]


@pytest.fixture
def prometheus_tools() -> None:
    missing = missing_prometheus_tools()
    if missing:
        reason = "; ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


RULES = """\
groups:
- name: bakeoff-playground-test
  rules:
  - record: variant:vllm_num_requests_running:sum
    expr: sum by (variant) (vllm:num_requests_running)
"""


@pytest.mark.prometheus
def test_prometheus_scrapes_a_replica_from_its_target_file_and_evaluates_rules(
    prometheus_tools: None, two_sims: list[RunningRuntime], tmp_path: Path
) -> None:
    a, _ = two_sims
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    with Prometheus(tmp_path / "prom", rule_files=[rules]) as prom:
        prom.write_targets([TargetGroup([a.url.removeprefix("http://")], {"variant": "tiny-a", "pod": "a"})])
        written = time.monotonic()
        prom.wait_for('count(up{variant="tiny-a"} == 1)', lambda v: v == 1, timeout=20)
        scraped = time.monotonic() - written
        series = prom.query('vllm:num_requests_running{variant="tiny-a"}')
        assert [s["metric"]["model_name"] for s in series] == [SERVED]  # the replica's own label is kept
        prom.wait_for('variant:vllm_num_requests_running:sum{variant="tiny-a"}', timeout=10)
        now = time.time()
        ranged = prom.query_range('up{variant="tiny-a"}', now - 5, now, 1)
        assert ranged
        assert ranged[0]["values"]
        with pytest.raises(PrometheusError, match="bad_data"):
            prom.query("sum(")
        pid = prom.pid
        print(
            f"\nprometheus ready in {prom.startup_seconds} s; a new target scraped {scraped:.1f} s after it was written"
        )
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


@pytest.mark.prometheus
def test_a_broken_rule_file_fails_with_promtools_message(prometheus_tools: None, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("groups:\n- name: x\n  rules:\n  - record: a\n    expr: sum(\n")
    with pytest.raises(PrometheusError, match="promtool check rules failed"):
        Prometheus(tmp_path / "prom", rule_files=[rules]).start()
