"""The autoscaler closed-loop in the playground: a Locust load (`bakeoff loadtest`) through a variant's
endpoint, Prometheus scraping its simulated replicas, the operator deciding and writing replicas,
KServe and the scheduler placing them on kwok GPU nodes, the pod runner starting them.

Times are printed, not asserted; the operator runs its autoscaler every 2 s with a 10 s rate window
(the playground's settings).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.playground import Playground

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]

GPU_PRODUCT = "nvidia.com/gpu.product"


def autoscaled(
    name: str,
    *,
    gpu_class: str,
    architecture: str = "llama-3.1-8b",
    fmt: str = "int4",
    max_replicas: int = 4,
    max_num_seqs: int = 8,
    delay: str = "15s",
    **targets: float,
) -> dict[str, Any]:
    return {
        "apiVersion": "bakeoff.dev/v1alpha1",
        "kind": "ModelVariant",
        "metadata": {"name": name},
        "spec": {
            "model": {"source": "hf://org/model", "servedName": name},
            "architecture": {"catalog": architecture},
            "format": fmt,
            "gpuClass": gpu_class,
            "tensorParallelSize": 1,
            "engine": "simulator",
            "serving": {"maxNumSeqs": max_num_seqs, "maxModelLen": 4096},
            "autoscaling": {
                "minReplicas": 1,
                "maxReplicas": max_replicas,
                "scaleDownDelay": delay,
                "targets": targets,
            },
        },
    }


def spec_replicas(pg: Playground, name: str, namespace: str) -> int:
    out = pg.kubectl("get", "modelvariant", name, "-n", namespace, "-o", "jsonpath={.spec.replicas}")
    return int(out or 0)


def condition(pg: Playground, name: str, namespace: str, type_: str) -> tuple[str, str]:
    at = f'.status.conditions[?(@.type=="{type_}")]'
    path = f"jsonpath={{{at}.status}}/{{{at}.reason}}"
    status, _, reason = pg.kubectl("get", "modelvariant", name, "-n", namespace, "-o", path).partition("/")
    return status, reason


def wait(what: str, probe: Callable[[], Any], timeout: float = 90.0, interval: float = 0.5) -> float:
    start = time.monotonic()
    while not probe():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - start


@contextmanager
def load(url: str, model: str, concurrency: int, seconds: int, out: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`bakeoff loadtest` at a fixed concurrency through the variant's endpoint, for `seconds`."""
    argv = [
        sys.executable, "-m", "bakeoff_operator.cli", "loadtest", "--endpoint", url, "--model", model,
        "--workload", "instruction-following", "--concurrency", str(concurrency), "--duration", str(seconds),
        "--out", str(out),
    ]  # fmt: skip
    with (out.parent / f"{out.name}.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def decision_reasons(pg: Playground, namespace: str, variant: str) -> list[str]:
    with urllib.request.urlopen(pg.operator_metrics_url, timeout=5) as response:
        text = response.read().decode()
    reasons = []
    for line in text.splitlines():
        if not line.startswith("bakeoff_autoscaler_decision{"):
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', line))
        if labels.get("namespace") == namespace and labels.get("variant") == variant:
            reasons.append(labels.get("reason", ""))
    return reasons


def test_load_beyond_one_replica_scales_up_on_its_class_and_back_down(
    playground: Playground, playground_namespace: str, tmp_path: Path
) -> None:
    pg, ns, name = playground, playground_namespace, "burst"
    pg.apply([autoscaled(name, gpu_class="l4", queueDepth=2)], ns)
    pg.wait_serving(name, 1, ns)
    waiting = f'sum(vllm:num_requests_waiting{{namespace="{ns}",variant="{name}"}})'
    with load(pg.endpoint(name, ns), name, concurrency=24, seconds=120, out=tmp_path / "load"):
        wait("a queue on the one replica", lambda: (pg.prometheus.query_value(waiting) or 0) > 4, timeout=60)
        start = time.monotonic()
        decided = wait("the autoscaler to ask for more replicas", lambda: spec_replicas(pg, name, ns) > 1)
        replicas = pg.wait_serving(name, 4, ns, timeout=90)
        serving = time.monotonic() - start
        # Every replica runs on a node of the variant's GPU class.
        pods = pg.kubectl("get", "pods", "-n", ns, "-o", "jsonpath={range .items[*]}{.spec.nodeName} {end}").split()
        for node in set(pods):
            product = pg.kubectl("get", "node", node, "-o", "jsonpath={.metadata.labels.nvidia\\.com/gpu\\.product}")
            assert product == "NVIDIA-L4", node
        # The queue drains once four replicas share the load.
        drained = wait("the queue to drain", lambda: (pg.prometheus.query_value(waiting) or 0) <= 2, timeout=60)
        print(
            f"\nload step -> more replicas wanted: {decided:.1f} s; -> 4 replicas serving: {serving:.1f} s; "
            f"queue drained {drained:.1f} s later; replicas {[r.pod for r in replicas]}"
        )
    stopped = time.monotonic()
    fell = wait(
        "replicas to fall after the stabilisation window", lambda: spec_replicas(pg, name, ns) == 1, timeout=120
    )
    after = time.monotonic() - stopped
    print(f"load stopped -> back to 1 replica: {after:.1f} s (stabilisation window 15 s)")
    assert after >= 10, f"scaled down after {fell:.1f} s, before the stabilisation window"
    pg.wait_serving(name, 1, ns, scraped=False, timeout=60)


def test_when_a_class_runs_out_of_gpus_scaling_stops_there_and_says_so(
    playground: Playground, playground_namespace: str, tmp_path: Path
) -> None:
    pg, ns, name = playground, playground_namespace, "squeezed"
    # The playground has one 4-GPU A10G node.
    pg.apply([autoscaled(name, gpu_class="a10g", fmt="bf16", max_replicas=8, queueDepth=1, max_num_seqs=4)], ns)
    pg.wait_serving(name, 1, ns)
    with load(pg.endpoint(name, ns), name, concurrency=32, seconds=90, out=tmp_path / "load"):
        took = wait(
            "ScalingLimited InsufficientGPU",
            lambda: condition(pg, name, ns, "ScalingLimited") == ("True", "InsufficientGPU"),
        )
        print(f"\nload -> ScalingLimited InsufficientGPU: {took:.1f} s")
        assert spec_replicas(pg, name, ns) <= 4
        pg.wait_serving(name, spec_replicas(pg, name, ns), ns, scraped=False, timeout=60)
        pending = pg.kubectl(
            "get", "pods", "-n", ns, "--field-selector=status.phase=Pending", "-o", "name"
        ).split()  # fmt: skip
        assert not pending, f"the autoscaler asked for replicas that cannot be placed: {pending}"


def test_a_hybrid_and_a_dense_variant_scale_on_their_own_signals(
    playground: Playground, playground_namespace: str, tmp_path: Path
) -> None:
    pg, ns = playground, playground_namespace
    dense = autoscaled("dense", gpu_class="h100", fmt="int8", max_num_seqs=16, kvCacheUsage=0.5)
    hybrid = autoscaled(
        "hybrid", gpu_class="h100", architecture="apriel-h1-h30", fmt="bf16", max_num_seqs=16, kvCacheUsage=0.5
    )
    pg.apply([dense, hybrid], ns)
    pg.wait_serving("dense", 1, ns)
    pg.wait_serving("hybrid", 1, ns)
    with (
        load(pg.endpoint("dense", ns), "dense", concurrency=16, seconds=60, out=tmp_path / "dense"),
        load(pg.endpoint("hybrid", ns), "hybrid", concurrency=16, seconds=60, out=tmp_path / "hybrid"),
    ):
        took = wait("the hybrid to scale on its state slots", lambda: spec_replicas(pg, "hybrid", ns) > 1)
        reasons = decision_reasons(pg, ns, "hybrid")
        print(f"\nhybrid scaled up after {took:.1f} s: {reasons}")
        assert any("state slots" in r for r in reasons), reasons
        dense_reasons = decision_reasons(pg, ns, "dense")
        print(f"dense: {dense_reasons}")
        assert not any("state slots" in r for r in dense_reasons), dense_reasons


def test_prometheus_gone_holds_replicas_and_says_so(playground: Playground, playground_namespace: str) -> None:
    pg, ns, name = playground, playground_namespace, "blind"
    # A long stabilisation window: without load it would scale down to 1 only after 10 minutes, so a
    # change of the count in this test could only come from acting on missing data.
    variant = autoscaled(name, gpu_class="h100", delay="10m", queueDepth=2)
    variant["spec"]["replicas"] = 2
    variant["spec"]["autoscaling"]["minReplicas"] = 1
    pg.apply([variant], ns)
    pg.wait_serving(name, 2, ns, timeout=90)
    wait("the autoscaler to see the replicas' metrics", lambda: condition(pg, name, ns, "ScalingLimited")[0] == "False")
    pid = pg.prometheus.pid
    assert pid is not None
    os.killpg(pid, signal.SIGSTOP)  # Prometheus hangs: every query times out
    try:
        took = wait(
            "ScalingLimited MetricsMissing",
            lambda: condition(pg, name, ns, "ScalingLimited") == ("True", "MetricsMissing"),
            timeout=120,
        )
        print(f"\nPrometheus stopped -> MetricsMissing: {took:.1f} s")
        time.sleep(6)  # a few more rounds without data
        assert spec_replicas(pg, name, ns) == 2, "replicas changed without data"
    finally:
        os.killpg(pid, signal.SIGCONT)
    wait("the autoscaler to see data again", lambda: condition(pg, name, ns, "ScalingLimited")[1] != "MetricsMissing")
