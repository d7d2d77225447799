"""The e2e cluster's pure parts: fake GPU nodes from the catalog, scheduling reasons, webhook
registration by URL and the vendored kwok stages. No cluster needed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from bakeoff_runtime.gpus import default_catalog

from tests.support.controlplane import ToolsMissingError
from tests.support.e2e import (
    DEFAULT_GPU_NODES,
    GPU_COUNT_LABEL,
    GPU_PRODUCT_LABEL,
    KWOK_NODE_ANNOTATION,
    KWOK_STAGES,
    E2ECluster,
    GPUNodes,
    gpu_nodes,
    gpu_requests,
    kserve_webhook_configurations,
    node_ready,
    pending_reason,
)


def test_default_nodes_are_two_h100_servers_one_a100_and_one_l4() -> None:
    nodes = gpu_nodes(DEFAULT_GPU_NODES)
    by_name = {n["metadata"]["name"]: n for n in nodes}
    assert sorted(by_name) == ["gpu-a100-80gb-0", "gpu-h100-0", "gpu-h100-1", "gpu-l4-0"]
    catalog = default_catalog()
    for name, gpu_class, gpus in (
        ("gpu-h100-0", "h100", 8),
        ("gpu-h100-1", "h100", 8),
        ("gpu-a100-80gb-0", "a100-80gb", 8),
        ("gpu-l4-0", "l4", 4),
    ):
        node = by_name[name]
        labels = node["metadata"]["labels"]
        assert node["metadata"]["annotations"] == {KWOK_NODE_ANNOTATION: "fake"}
        assert labels[GPU_PRODUCT_LABEL] == catalog.get(gpu_class).product
        assert labels[GPU_COUNT_LABEL] == str(gpus)
        assert labels["nvidia.com/gpu.present"] == "true"
        assert labels["type"] == "kwok"
        assert labels["kubernetes.io/hostname"] == name
        assert node["status"]["capacity"]["nvidia.com/gpu"] == str(gpus)
        assert node["status"]["allocatable"] == node["status"]["capacity"]


def test_a_prefix_names_extra_nodes_of_a_class() -> None:
    nodes = gpu_nodes([GPUNodes("h100", gpus=4, count=2, prefix="spare-h100")])
    assert [n["metadata"]["name"] for n in nodes] == ["spare-h100-0", "spare-h100-1"]


@pytest.mark.parametrize("entry", [GPUNodes("h100", gpus=0), GPUNodes("h100", count=0)], ids=["no-gpus", "no-nodes"])
def test_empty_node_entries_are_refused(entry: GPUNodes) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        gpu_nodes([entry])


def test_an_unknown_gpu_class_names_the_valid_ones() -> None:
    with pytest.raises(KeyError, match="valid GPU classes"):
        gpu_nodes([GPUNodes("h1000")])


UNSCHEDULABLE = {
    "type": "PodScheduled",
    "status": "False",
    "reason": "Unschedulable",
    "message": "0/4 nodes are available: 2 Insufficient nvidia.com/gpu.",
}


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ([], None),
        ([{"type": "PodScheduled", "status": "True"}], None),
        ([UNSCHEDULABLE], "Unschedulable: 0/4 nodes are available: 2 Insufficient nvidia.com/gpu."),
    ],
    ids=["new", "scheduled", "unschedulable"],
)
def test_pending_reason(conditions: list[dict[str, str]], expected: str | None) -> None:
    assert pending_reason({"status": {"phase": "Pending", "conditions": conditions}}) == expected


def test_gpu_requests_counts_containers_and_the_largest_init_container() -> None:
    def container(gpus: int, where: str = "requests") -> dict[str, object]:
        return {"resources": {where: {"nvidia.com/gpu": str(gpus)}}}

    pod = {"spec": {"containers": [container(2), container(1, "limits")], "initContainers": [container(1)]}}
    assert gpu_requests(pod) == 3
    assert gpu_requests({"spec": {"containers": [{}], "initContainers": [container(4)]}}) == 4


def test_a_node_is_ready_once_the_not_ready_taint_is_gone() -> None:
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    tainted = {**ready, "spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]}}
    assert node_ready(ready)
    assert not node_ready(tainted)
    assert not node_ready({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}})


def test_webhooks_are_registered_by_url(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests.yaml"
    manifests.write_text(
        """---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  creationTimestamp: null
  name: servingruntime.serving.kserve.io
webhooks:
  - clientConfig:
      service:
        name: $(webhookServiceName)
        namespace: $(kserveNamespace)
        path: /validate-serving-kserve-io-v1alpha1-servingruntime
    failurePolicy: Fail
    name: servingruntime.kserve-webhook-server.validator
"""
    )
    [config] = kserve_webhook_configurations(manifests, "https://127.0.0.1:9999", "Q0E=")
    assert config["metadata"] == {"name": "servingruntime.serving.kserve.io"}
    assert config["webhooks"][0]["clientConfig"] == {
        "url": "https://127.0.0.1:9999/validate-serving-kserve-io-v1alpha1-servingruntime",
        "caBundle": "Q0E=",
    }
    assert config["webhooks"][0]["failurePolicy"] == "Fail"


def test_kwok_stages_are_the_five_defaults_with_their_license() -> None:
    text = KWOK_STAGES.read_text()
    assert "Licensed under the Apache License, Version 2.0" in text
    assert "sigs.k8s.io/kwok v0.8.0" in text
    stages = [d for d in yaml.safe_load_all(text) if d]
    assert [s["metadata"]["name"] for s in stages] == [
        "node-initialize",
        "node-heartbeat-with-lease",
        "pod-ready",
        "pod-complete",
        "pod-delete",
    ]
    assert {s["kind"] for s in stages} == {"Stage"}


def test_a_missing_kserve_manager_names_its_build_script_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "tools" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("kube-scheduler", "kwok"):
        (bin_dir / name).write_text("#!/bin/sh\nexit 1\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("BAKEOFF_TOOLS_DIR", str(tmp_path / "tools"))
    cluster = E2ECluster(tmp_path / "work")
    with pytest.raises(ToolsMissingError, match=r"kserve-manager not found .*run hack/build-kserve\.sh"):
        cluster.start()
    assert not cluster.server
    assert not list((tmp_path / "work").iterdir())
