"""`helm lint` and `helm template` over a matrix of values: every rendered document parses, RBAC has
no wildcards, the operator runs under the restricted Pod Security Standard, and Helm rejects
values the schema forbids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bakeoff_operator.api import GPUClass
from bakeoff_runtime.gpus import default_catalog

from tests.chart.chart_support import CHART, KUBE_VERSION, helm, render

pytestmark = pytest.mark.helm

MATRIX: list[tuple[str, dict[str, Any]]] = [
    ("defaults", {}),
    ("watch-namespaces", {"operator": {"watchNamespaces": ["team-a", "team-b"], "logLevel": "debug"}}),
    ("service-monitor", {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}}}),
    ("existing-service-account", {"serviceAccount": {"create": False, "name": "ops"}, "rbac": {"create": False}}),
    ("no-gpu-classes", {"gpuClasses": []}),
    (
        "scheduling-and-image",
        {
            "image": {"tag": "1.2.3", "pullSecrets": ["regcred"], "pullPolicy": "Always"},
            "operator": {
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
                "priorityClassName": "system-cluster-critical",
                "podLabels": {"team": "ml"},
            },
        },
    ),
    ("scaled-down", {"operator": {"replicas": 0}}),
]


def _by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


def test_helm_lint(helm_binary: Path, tmp_path: Path) -> None:
    result = helm(helm_binary, tmp_path, "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", [m[1] for m in MATRIX], ids=[m[0] for m in MATRIX])
def test_template_renders_safe_objects(helm_binary: Path, tmp_path: Path, values: dict[str, Any]) -> None:
    docs = render(helm_binary, tmp_path, values)
    kinds = _by_kind(docs)
    for doc in docs:
        assert doc["apiVersion"], doc
        assert doc["metadata"]["name"], doc
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "bakeoff"

    for role in kinds.get("ClusterRole", []) + kinds.get("Role", []):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], f"{role['metadata']['name']}: wildcard in {key}"
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
            assert "secrets" not in rule["resources"]

    (deployment,) = kinds["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert {"requests", "limits"} <= set(container["resources"])
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    args = container["args"]
    assert "--standalone" in args
    assert f"--liveness=http://0.0.0.0:{container['ports'][0]['containerPort']}/healthz" in args
    assert deployment["spec"]["replicas"] == values.get("operator", {}).get("replicas", 1)

    for gpu in kinds.get("GPUClass", []):
        GPUClass.model_validate(gpu)  # the chart creates objects the API accepts


def test_default_image_tag_is_the_app_version(helm_binary: Path, tmp_path: Path) -> None:
    (deployment,) = _by_kind(render(helm_binary, tmp_path, {}))["Deployment"]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    app_version = next(
        line.split(":", 1)[1].strip().strip('"')
        for line in (CHART / "Chart.yaml").read_text().splitlines()
        if line.startswith("appVersion:")
    )
    assert image == f"ghcr.io/bakeoff-dev/bakeoff:{app_version}"


def test_gpu_classes_come_from_the_catalog(helm_binary: Path, tmp_path: Path) -> None:
    rendered = _by_kind(render(helm_binary, tmp_path, {}))["GPUClass"]
    gpus = [GPUClass.model_validate(d).to_gpu_spec() for d in rendered]
    assert gpus == default_catalog().gpus


def test_watch_namespaces_bind_namespaced_permissions_per_namespace(helm_binary: Path, tmp_path: Path) -> None:
    kinds = _by_kind(render(helm_binary, tmp_path, {"operator": {"watchNamespaces": ["team-a", "team-b"]}}))
    namespaced = [rb for rb in kinds["RoleBinding"] if rb["roleRef"]["kind"] == "ClusterRole"]
    assert sorted(rb["metadata"]["namespace"] for rb in namespaced) == ["team-a", "team-b"]
    assert [b["roleRef"]["name"] for b in kinds["ClusterRoleBinding"]] == ["bakeoff-cluster"]
    args = kinds["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args
    assert "--all-namespaces" not in args
    env = {
        e["name"]: e.get("value") for e in kinds["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["BAKEOFF_WATCH_NAMESPACES"] == "team-a,team-b"


def test_no_rbac_objects_when_disabled(helm_binary: Path, tmp_path: Path) -> None:
    kinds = _by_kind(render(helm_binary, tmp_path, {"rbac": {"create": False}}))
    assert not {"ClusterRole", "ClusterRoleBinding", "RoleBinding"} & set(kinds)


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("two-replicas", {"operator": {"replicas": 2}}, "replicas"),
    ("typo", {"operator": {"watchNamespace": ["a"]}}, "watchNamespace"),
    ("bad-log-level", {"operator": {"logLevel": "trace"}}, "logLevel"),
    ("bad-price", {"gpuClasses": [{"name": "x", "product": "P", "memoryGiB": 1, "bandwidthTBps": 1,
                                   "tflops": {"bf16": 1}, "computeCapability": 9.0,
                                   "pricePerGPUHour": {"onDemand": -3}}]}, "onDemand"),
]  # fmt: skip


@pytest.mark.parametrize(("values", "field"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_helm_rejects_values_the_schema_forbids(
    helm_binary: Path, tmp_path: Path, values: dict[str, Any], field: str
) -> None:
    with pytest.raises(AssertionError) as info:
        render(helm_binary, tmp_path, values)
    assert "values don't meet the specifications of the schema" in str(info.value)
    assert field in str(info.value)
