"""The whole loop in the playground: a simulated ModelVariant becomes KServe's pods on kwok GPU nodes, each
pod a local `bakeoff sim` process that Prometheus scrapes and the variant's endpoint serves; scaling the
variant starts and stops processes, deleting it stops them all, and none outlives its pod.

Times and memory are printed, not asserted.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.endpoints import REPLICA_HEADER
from tests.support.playground import Playground
from tests.support.pod_runner import PodRunner, group_alive

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]

POD_LABEL = "serving.kserve.io/inferenceservice"


def simulated_variant(name: str, replicas: int = 1, gpu_class: str = "h100") -> dict[str, Any]:
    return {
        "apiVersion": "bakeoff.dev/v1alpha1",
        "kind": "ModelVariant",
        "metadata": {"name": name},
        "spec": {
            "model": {"source": "hf://meta-llama/Llama-3.1-8B-Instruct"},
            "architecture": {"catalog": "llama-3.1-8b"},
            "format": "int8",
            "gpuClass": gpu_class,
            "tensorParallelSize": 1,
            "engine": "simulator",
            "replicas": replicas,
        },
    }


def chat(url: str, model: str, max_tokens: int = 32, *, stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """One streamed chat completion through `url`: who answered, how many SSE events, the usage."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Say something."}],
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events: list[str] = []
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(line.removeprefix("data:").strip())
            if stop is not None and stop():
                break  # leave mid-stream: the endpoint closes the replica's stream too
        replica = response.headers[REPLICA_HEADER]
    usage = next((json.loads(e).get("usage") for e in reversed(events) if e.startswith("{")), None)
    return {"replica": replica, "events": events, "usage": usage}


class Clock:
    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.lines: list[str] = []

    def mark(self, what: str) -> None:
        self.lines.append(f"{what}: {time.perf_counter() - self.start:.1f} s")


def test_a_simulated_variant_serves_scales_and_stops(playground: Playground, playground_namespace: str) -> None:
    ns, name = playground_namespace, "llama-sim"
    clock = Clock()
    # The operator's own /metrics is scraped too.
    playground.prometheus.wait_for('up{job="bakeoff-operator"}', lambda v: v == 1, timeout=30)
    playground.apply([simulated_variant(name)], namespace=ns)
    playground.cluster.wait_pods_running(ns, f"{POD_LABEL}={name}", count=1, timeout=60)
    clock.mark("apply -> pod Running")
    (replica,) = playground.wait_serving(name, 1, namespace=ns, scraped=False)
    clock.mark("apply -> local replica serving")
    playground.wait_serving(name, 1, namespace=ns)
    clock.mark("apply -> replica scraped by Prometheus")
    first_group = replica.pid
    assert group_alive(first_group)

    # Prometheus sees the replica's vLLM metrics under the variant's label, and the queue moves.
    selector = f'namespace="{ns}",variant="{name}"'
    series = playground.prometheus.query(f"vllm:num_requests_running{{{selector}}}")
    assert [s["metric"]["pod"] for s in series] == [replica.pod]
    assert series[0]["metric"]["model_name"] == replica.model_name
    url = playground.endpoint(name, namespace=ns)
    seen = threading.Event()
    long_request = threading.Thread(
        target=chat, args=(url, replica.model_name, 4000), kwargs={"stop": seen.is_set}, daemon=True
    )
    long_request.start()
    running = playground.prometheus.wait_for(
        f"sum(vllm:num_requests_running{{{selector}}})", lambda v: (v or 0) >= 1, timeout=20
    )
    clock.mark("a request in flight -> vllm:num_requests_running >= 1 in Prometheus")
    seen.set()
    long_request.join(timeout=30)
    playground.prometheus.wait_for(f"sum(vllm:num_requests_running{{{selector}}})", lambda v: v == 0, timeout=20)
    assert running is not None

    # The endpoint answers a streamed chat completion with the server's usage.
    answer = chat(url, replica.model_name, max_tokens=16)
    assert answer["replica"] == replica.pod
    assert answer["events"][-1] == "[DONE]"
    assert answer["usage"]["completion_tokens"] == 16

    # Two replicas: two processes, and the endpoint spreads requests over both.
    playground.scale(name, 2, namespace=ns)
    playground.cluster.wait_pods_running(ns, f"{POD_LABEL}={name}", count=2, timeout=60)
    scaled = playground.wait_serving(name, 2, namespace=ns)
    clock.mark("scale to 2 -> both replicas serving and scraped")
    assert len({r.pid for r in scaled}) == 2
    answered = [chat(url, replica.model_name, max_tokens=8)["replica"] for _ in range(6)]
    assert sorted(set(answered)) == sorted(r.pod for r in scaled)
    assert sorted(answered.count(r.pod) for r in scaled) == [3, 3]
    playground.prometheus.wait_for(
        f"count(sum by (pod) (vllm:request_success_total{{{selector}}}) > 0)", lambda v: v == 2, timeout=20
    )
    memory = playground.memory_mib()

    # Back to one: the other process stops; deleting the variant stops the last one.
    playground.scale(name, 1, namespace=ns)
    playground.wait_serving(name, 1, namespace=ns)
    clock.mark("scale to 1 -> one replica left")
    groups = [r.pid for r in scaled]
    playground.kubectl("delete", "modelvariant", name, "-n", ns)
    playground.cluster.wait_for(
        f"{name}'s local replicas to stop",
        lambda: not playground.replicas(name, namespace=ns, serving=False) and not any(map(group_alive, groups)),
        timeout=60,
    )
    clock.mark("delete -> every process of the variant stopped")
    playground.prometheus.wait_for(f"count(up{{{selector}}})", lambda v: v is None, timeout=20)
    response = httpx.post(url + "/v1/chat/completions", json={"model": replica.model_name}, timeout=10)
    assert response.status_code == 503
    print("\n" + "\n".join(clock.lines))
    print(f"playground memory with 2 local replicas: {memory}")


def test_a_stopped_runner_leaves_no_process_behind(
    playground: Playground, playground_namespace: str, tmp_path: Path
) -> None:
    """A second runner on the same namespace (the playground's own keeps serving it) starts its own
    processes; stopping it stops each of their process groups whole."""
    ns, name = playground_namespace, "llama-two"
    playground.apply([simulated_variant(name, replicas=2, gpu_class="l40s")], namespace=ns)
    playground.wait_serving(name, 2, namespace=ns, scraped=False)
    ours = [r.pid for r in playground.replicas(name, namespace=ns)]
    with PodRunner(playground.kubeconfig, tmp_path, namespaces=[ns]) as runner:
        playground.cluster.wait_for(
            "the second runner's replicas to serve",
            lambda: len([r for r in runner.replicas(ns, name) if r.healthy]) == 2,
            timeout=60,
        )
        groups = runner.process_groups()
    assert len(groups) == 2
    assert not [g for g in groups if group_alive(g)], "the runner left processes behind"
    assert all(map(group_alive, ours)), "stopping another runner touched the playground's replicas"
    playground.kubectl("delete", "modelvariant", name, "-n", ns)
    playground.cluster.wait_for(
        "the playground's replicas to stop", lambda: not any(map(group_alive, ours)), timeout=60
    )
