"""KServe on the e2e cluster: an InferenceService of a vLLM runtime becomes a Deployment whose Pods the
scheduler puts on the right fake GPU nodes, GPUs run out visibly, and deletion cleans up.

These pin the KServe behaviour that Bakeoff's operator builds on (Standard mode, the `none`
autoscaler class, runtime args before InferenceService args, GPU requests and limits).
Timings are printed, not asserted.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from bakeoff_runtime.gpus import get_gpu

from tests.support.controlplane import CommandError
from tests.support.e2e import (
    DEFAULT_GPU_NODES,
    GPU_PRODUCT_LABEL,
    E2ECluster,
    GPUNodes,
    gpu_requests,
    node_ready,
    pending_reason,
    pod_running,
)

pytestmark = pytest.mark.e2e

H100 = get_gpu("h100").product
RUNTIME = "vllm-openai"
RUNTIME_ARGS = ["--port=8080", "--served-model-name={{.Name}}", "--model=meta-llama/Llama-3.1-8B-Instruct"]


def serving_runtime() -> dict[str, Any]:
    """A vLLM ServingRuntime as an operator would write it: no cpu/memory limits of its own, since
    KServe merges them with the InferenceService's and the API server rejects requests above them."""
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": RUNTIME},
        "spec": {
            "supportedModelFormats": [{"name": "vLLM", "version": "1", "autoSelect": False}],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "vllm/vllm-openai:v0.11.0",
                    "command": ["python3", "-m", "vllm.entrypoints.openai.api_server"],
                    "args": RUNTIME_ARGS,
                    "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                    "readinessProbe": {"httpGet": {"path": "/v1/models", "port": 8080}},
                }
            ],
        },
    }


def inference_service(
    name: str,
    *,
    replicas: int,
    gpus: int = 1,
    product: str = H100,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    gpu = str(gpus)
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "labels": {"bakeoff.dev/variant": name},
            "annotations": {
                # Deprecated spelling on purpose: the defaulting webhook rewrites it to Standard.
                "serving.kserve.io/deploymentMode": "RawDeployment",
                # No HPA: the Deployment gets minReplicas directly.
                "serving.kserve.io/autoscalerClass": "none",
                **(annotations or {}),
            },
        },
        "spec": {
            "predictor": {
                "minReplicas": replicas,
                "maxReplicas": replicas,
                "nodeSelector": {GPU_PRODUCT_LABEL: product},
                "model": {
                    "modelFormat": {"name": "vLLM"},
                    "runtime": RUNTIME,
                    "args": [f"--tensor-parallel-size={gpus}", "--max-model-len=8192"],
                    "resources": {
                        "requests": {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": gpu},
                        "limits": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": gpu},
                    },
                },
            }
        },
    }


def selector(name: str) -> str:
    return f"serving.kserve.io/inferenceservice={name}"


def h100_nodes(cluster: E2ECluster) -> set[str]:
    return {n["metadata"]["name"] for n in cluster.nodes() if n["metadata"]["labels"].get(GPU_PRODUCT_LABEL) == H100}


def test_fake_gpu_nodes_follow_the_catalog(e2e_cluster: E2ECluster) -> None:
    nodes = {n["metadata"]["name"]: n for n in e2e_cluster.nodes()}
    for entry in DEFAULT_GPU_NODES:
        gpu = get_gpu(entry.gpu_class)
        for name in entry.names():
            node = nodes[name]
            assert node["metadata"]["labels"][GPU_PRODUCT_LABEL] == gpu.product
            assert node["status"]["allocatable"]["nvidia.com/gpu"] == str(entry.gpus)
            assert node_ready(node), node
    print(f"\ne2e cluster start phases (s since start): {e2e_cluster.timings}")


def test_inference_service_runs_on_h100_nodes_and_is_collected(e2e_cluster: E2ECluster, e2e_namespace: str) -> None:
    cluster, ns = e2e_cluster, e2e_namespace
    cluster.apply(serving_runtime(), namespace=ns)
    start = time.perf_counter()
    cluster.apply(inference_service("llama-8b-tp1", replicas=2), namespace=ns)
    pods = cluster.wait_pods_running(ns, selector("llama-8b-tp1"), count=2)
    running_s = time.perf_counter() - start

    isvc = cluster.get("inferenceservice", "llama-8b-tp1", namespace=ns)
    assert isvc is not None
    # The defaulting webhook ran: the legacy mode name is normalised, vLLM defaults to protocol v2.
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert isvc["spec"]["predictor"]["model"]["protocolVersion"] == "v2"

    deployment = cluster.wait_object("deployment", "llama-8b-tp1-predictor", namespace=ns)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["labels"]["bakeoff.dev/variant"] == "llama-8b-tp1"
    template = deployment["spec"]["template"]["spec"]
    assert template["nodeSelector"] == {GPU_PRODUCT_LABEL: H100}
    container = template["containers"][0]
    # Runtime args (templated with the InferenceService name), then the InferenceService's.
    assert container["args"] == [
        "--port=8080",
        "--served-model-name=llama-8b-tp1",
        "--model=meta-llama/Llama-3.1-8B-Instruct",
        "--tensor-parallel-size=1",
        "--max-model-len=8192",
    ]
    assert container["resources"] == {
        "requests": {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": "1"},
        "limits": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "1"},
    }
    # autoscalerClass none: no HPA.
    assert cluster.get("hpa", "llama-8b-tp1-predictor", namespace=ns) is None

    assert {p["spec"]["nodeName"] for p in pods} <= h100_nodes(cluster)
    assert all(gpu_requests(p) == 1 for p in pods)

    cluster.wait_for(
        "the InferenceService to be Ready",
        lambda: any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (cluster.get("inferenceservice", "llama-8b-tp1", namespace=ns) or {})
            .get("status", {})
            .get("conditions", [])
        ),
    )
    ready_s = time.perf_counter() - start

    delete_start = time.perf_counter()
    cluster.kubectl("delete", "inferenceservice", "llama-8b-tp1", "-n", ns, "--wait=true")
    cluster.wait_gone("deployment", "llama-8b-tp1-predictor", namespace=ns)
    cluster.wait_gone("service", "llama-8b-tp1-predictor", namespace=ns)
    cluster.wait_for("the predictor pods to be gone", lambda: not cluster.pods(ns, selector("llama-8b-tp1")))
    print(
        f"\napply -> 2 pods Running: {running_s:.2f} s; apply -> InferenceService Ready: {ready_s:.2f} s; "
        f"delete -> Deployment, Service and pods gone: {time.perf_counter() - delete_start:.2f} s"
    )


def test_replicas_beyond_free_gpus_stay_pending(e2e_cluster: E2ECluster, e2e_namespace: str) -> None:
    cluster, ns = e2e_cluster, e2e_namespace
    cluster.apply(serving_runtime(), namespace=ns)
    name = "llama-70b-tp8"
    cluster.apply(inference_service(name, replicas=1, gpus=8), namespace=ns)
    cluster.wait_pods_running(ns, selector(name), count=1)

    # Whole-node replicas: one more than the H100 GPUs left can hold.
    fitting = 1 + cluster.free_gpus(H100) // 8
    start = time.perf_counter()
    cluster.kubectl(
        "patch",
        "inferenceservice",
        name,
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"predictor": {"minReplicas": fitting + 1, "maxReplicas": fitting + 1}}}),
    )
    pending = cluster.wait_pods_pending(ns, selector(name), count=1)
    pending_s = time.perf_counter() - start
    cluster.wait_for(
        f"{fitting} pods to be Running",
        lambda: sum(pod_running(p) for p in cluster.pods(ns, selector(name))) == fitting,
    )
    pods = cluster.pods(ns, selector(name))
    assert len(pods) == fitting + 1
    assert len(pending) == 1
    reason = pending_reason(pending[0])
    assert reason is not None
    assert reason.startswith("Unschedulable:"), reason
    assert "Insufficient nvidia.com/gpu" in reason, reason
    placed = [p for p in pods if p["spec"].get("nodeName")]
    assert len(placed) == fitting
    assert {p["spec"]["nodeName"] for p in placed} <= h100_nodes(cluster)

    # Another H100 server joins: the pending replica lands on it.
    start = time.perf_counter()
    [extra] = cluster.add_gpu_nodes(GPUNodes("h100", gpus=8, count=1, prefix="extra-h100"))
    pods = cluster.wait_pods_running(ns, selector(name), count=fitting + 1)
    scheduled_s = time.perf_counter() - start
    assert pending[0]["metadata"]["name"] in {p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == extra}

    cluster.kubectl("delete", "inferenceservice", name, "-n", ns, "--wait=true")
    cluster.wait_for("all predictor pods to be gone", lambda: not cluster.pods(ns, selector(name)))
    cluster.delete_nodes([extra])
    assert extra not in {n["metadata"]["name"] for n in cluster.nodes()}
    print(
        f"\nreplicas {fitting} -> {fitting + 1} (past the free H100s) -> a pod Unschedulable: {pending_s:.2f} s; "
        f"H100 node added -> that pod Running: {scheduled_s:.2f} s"
    )


def test_validating_webhook_rejects_an_unknown_autoscaler_class(e2e_cluster: E2ECluster, e2e_namespace: str) -> None:
    isvc = inference_service("bogus", replicas=1, annotations={"serving.kserve.io/autoscalerClass": "bogus"})
    with pytest.raises(CommandError) as raised:
        e2e_cluster.apply(isvc, namespace=e2e_namespace)
    message = raised.value.stderr
    assert 'admission webhook "inferenceservice.kserve-webhook-server.validator" denied the request' in message
    assert "[bogus] is not a supported autoscaler class type" in message
    assert e2e_cluster.get("inferenceservice", "bogus", namespace=e2e_namespace) is None
