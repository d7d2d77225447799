"""The test control plane behaves like a cluster: real CRD schemas, garbage collection,
Deployments, ServiceAccount tokens under RBAC, and Helm talking to it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.controlplane import CommandError, ControlPlane, ControlPlaneError, wait_until

pytestmark = pytest.mark.cluster


def test_control_plane_serves_the_pinned_kubernetes_version(control_plane: ControlPlane) -> None:
    version = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.")
    assert version["serverVersion"]["minor"].rstrip("+").isdigit()
    names = control_plane.kubectl("get", "namespaces", "-o", "name").stdout.split()
    assert "namespace/kube-system" in names


def _contains(stored: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict):
        return isinstance(stored, dict) and all(k in stored and _contains(stored[k], v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(stored, list) and len(stored) == len(wanted) and all(map(_contains, stored, wanted))
    return bool(stored == wanted)


def _inference_service(name: str, **predictor: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {"predictor": predictor} if predictor else {},
    }


VALID_SAMPLES: list[dict[str, Any]] = [
    _inference_service(
        "tiny-bf16",
        minReplicas=1,
        model={
            "modelFormat": {"name": "huggingface"},
            "runtime": "bakeoff-vllm",
            "storageUri": "pvc://models/tiny",
            "resources": {"limits": {"nvidia.com/gpu": "1"}},
        },
    ),
    {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": "bakeoff-vllm"},
        "spec": {
            "supportedModelFormats": [{"name": "huggingface", "autoSelect": True}],
            "containers": [{"name": "kserve-container", "image": "vllm/vllm-openai:v0", "args": ["--port=8080"]}],
        },
    },
    {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "tiny-bf16"},
        "spec": {
            "scaleTargetRef": {"name": "tiny-bf16-predictor"},
            "minReplicaCount": 1,
            "maxReplicaCount": 4,
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {
                        "serverAddress": "http://prometheus:9090",
                        "query": "sum(vllm:num_requests_waiting)",
                        "threshold": "5",
                    },
                }
            ],
        },
    },
    {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "vllm"},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/part-of": "bakeoff"}},
            "podMetricsEndpoints": [{"port": "http", "path": "/metrics", "interval": "15s", "scheme": "http"}],
        },
    },
    {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "bakeoff"},
        "spec": {
            "groups": [
                {
                    "name": "bakeoff.slo",
                    "rules": [{"alert": "HighLatency", "expr": "vllm:e2e_request_latency_seconds > 2"}],
                }
            ]
        },
    },
]

# Each breaks the upstream schema in a way only the real CRD knows about.
INVALID_SAMPLES: list[tuple[dict[str, Any], str]] = [
    (_inference_service("no-predictor"), "spec.predictor"),
    (
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "ServingRuntime",
            "metadata": {"name": "no-containers"},
            "spec": {"supportedModelFormats": [{"name": "huggingface"}]},
        },
        "spec.containers",
    ),
    (
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "no-triggers"},
            "spec": {"scaleTargetRef": {"name": "x"}},
        },
        "spec.triggers",
    ),
    (
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PodMonitor",
            "metadata": {"name": "bad-scheme"},
            "spec": {"selector": {}, "podMetricsEndpoints": [{"port": "http", "scheme": "ftp"}]},
        },
        "scheme",
    ),
    (
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": {"name": "bad-duration"},
            "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0", "for": "5 minutes"}]}]},
        },
        "spec.groups[0].rules[0].for",
    ),
]


def test_upstream_crds_are_established(upstream_crds: list[str]) -> None:
    for crd in (
        "inferenceservices.serving.kserve.io",
        "servingruntimes.serving.kserve.io",
        "clusterservingruntimes.serving.kserve.io",
        "scaledobjects.keda.sh",
        "triggerauthentications.keda.sh",
        "podmonitors.monitoring.coreos.com",
        "servicemonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
    ):
        assert crd in upstream_crds


@pytest.mark.usefixtures("upstream_crds")
@pytest.mark.parametrize("sample", VALID_SAMPLES, ids=lambda s: str(s["kind"]))
def test_upstream_schema_accepts_a_valid_object(
    control_plane: ControlPlane, namespace: str, sample: dict[str, Any]
) -> None:
    control_plane.apply(sample, namespace=namespace)
    kind = f"{sample['kind'].lower()}.{sample['apiVersion'].split('/')[0]}"
    stored = control_plane.get(kind, sample["metadata"]["name"], namespace=namespace)
    assert stored is not None
    # A structural schema prunes fields it does not know; every field set here must survive.
    assert _contains(stored["spec"], sample["spec"]), stored["spec"]


@pytest.mark.usefixtures("upstream_crds")
@pytest.mark.parametrize(
    ("sample", "field"), INVALID_SAMPLES, ids=lambda s: str(s["kind"]) if isinstance(s, dict) else s
)
def test_upstream_schema_rejects_an_invalid_object(
    control_plane: ControlPlane, namespace: str, sample: dict[str, Any], field: str
) -> None:
    with pytest.raises(CommandError) as raised:
        control_plane.apply(sample, namespace=namespace)
    message = raised.value.stderr
    assert any(reason in message for reason in ("Required value", "Unsupported value", "Invalid value")), message
    assert field in message


def test_garbage_collector_deletes_owned_objects(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}, "data": {"role": "owner"}},
        namespace=namespace,
    )
    owner = control_plane.get("configmap", "owner", namespace=namespace)
    assert owner is not None
    control_plane.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "child",
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
                ],
            },
        },
        namespace=namespace,
    )
    control_plane.kubectl("delete", "configmap", "owner", "--namespace", namespace)
    wait_until(
        lambda: control_plane.get("configmap", "child", namespace=namespace) is None,
        timeout=60,
        what="the garbage collector to delete the owned ConfigMap",
    )


def test_deployment_controller_creates_a_replicaset(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.kubectl("create", "deployment", "web", "--image=registry.invalid/web:1", "--namespace", namespace)
    wait_until(
        lambda: bool(
            control_plane.kubectl(
                "get", "replicasets", "-l", "app=web", "-o", "name", "--namespace", namespace
            ).stdout.strip()
        ),
        timeout=60,
        what="the Deployment controller to create a ReplicaSet",
    )


def test_service_account_is_forbidden_until_rbac_allows_it(control_plane: ControlPlane, namespace: str) -> None:
    kubeconfig = control_plane.service_account_kubeconfig(namespace, "reader")
    denied = control_plane.kubectl("get", "configmaps", "--namespace", namespace, kubeconfig=kubeconfig, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    assert f"system:serviceaccount:{namespace}:reader" in denied.stderr

    control_plane.apply(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "configmap-reader", "namespace": namespace},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "reader", "namespace": namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmap-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
            },
        ]
    )
    # RBAC changes reach the authorizer through an informer, so allow a moment.
    wait_until(
        lambda: control_plane.can_i("list", "configmaps", namespace=namespace, kubeconfig=kubeconfig),
        timeout=30,
        what="the RoleBinding to take effect",
    )
    allowed = control_plane.kubectl("get", "configmaps", "--namespace", namespace, kubeconfig=kubeconfig)
    assert "kube-root-ca.crt" in allowed.stdout
    assert not control_plane.can_i("delete", "configmaps", namespace=namespace, kubeconfig=kubeconfig)


@pytest.mark.helm
@pytest.mark.usefixtures("helm_binary")
def test_helm_installs_a_chart_into_the_control_plane(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    assert control_plane.helm("version", "--short").stdout.startswith("v3.")
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\nkubeVersion: '>=1.30.0-0'\n")
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-probe\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"
    )
    (chart / "values.yaml").write_text("greeting: hello\n")
    control_plane.helm("install", "probe", str(chart), "--namespace", namespace, "--wait", "--timeout=60s")
    stored = control_plane.get("configmap", "probe-probe", namespace=namespace)
    assert stored is not None
    assert stored["data"] == {"greeting": "hello"}
    releases = json.loads(control_plane.helm("list", "--namespace", namespace, "-o", "json").stdout)
    assert [(r["name"], r["status"]) for r in releases] == [("probe", "deployed")]


def test_fake_gpu_node_advertises_gpu_capacity(control_plane: ControlPlane) -> None:
    node = control_plane.add_gpu_node("gpu-node-a", gpus=4, gpu_product="NVIDIA-H100-80GB-HBM3")
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "4"
    listed = control_plane.kubectl("get", "nodes", "-l", "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3", "-o", "name")
    assert listed.stdout.split() == ["node/gpu-node-a"]


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


@pytest.mark.usefixtures("control_plane_binaries")
def test_failed_start_reports_logs_and_leaves_no_process(tmp_path: Path) -> None:
    workdir = tmp_path / "broken"
    plane = ControlPlane(workdir, extra_apiserver_args=["--no-such-flag=1"], startup_timeout=60)
    with pytest.raises(ControlPlaneError) as raised:
        plane.start()
    assert "kube-apiserver" in str(raised.value)
    assert "no-such-flag" in str(raised.value)
    # etcd was already running when the API server failed; it must be gone too.
    assert (workdir / "etcd.log").exists()
    assert _processes_mentioning(str(workdir)) == []
