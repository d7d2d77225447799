"""The chart against the real control plane: `helm install`, every example applied with kubectl,
bad resources rejected by the API server with messages naming the field, RBAC as granted.

Timings (helm install + applying all examples; target < 20 s) are printed, not asserted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.api.api_builders import BAD_RESOURCES
from tests.chart.chart_support import CHART, REPO
from tests.support.controlplane import ControlPlane

pytestmark = [pytest.mark.cluster, pytest.mark.helm]

RELEASE = "bakeoff"
RELEASE_NAMESPACE = "bakeoff-system"
SERVICE_ACCOUNT = f"system:serviceaccount:{RELEASE_NAMESPACE}:{RELEASE}"
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


@dataclass
class Installed:
    cp: ControlPlane
    install_s: float


@pytest.fixture(scope="module")
def installed(control_plane: ControlPlane, upstream_crds: list[str], helm_binary: Path) -> Iterator[Installed]:
    start = time.perf_counter()
    control_plane.helm(
        "install", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE, "--create-namespace", timeout=180
    )
    installed = Installed(control_plane, time.perf_counter() - start)
    yield installed
    control_plane.helm("uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE, check=False)


def _count(cp: ControlPlane, resource: str, namespace: str | None = None) -> int:
    args = ["get", resource, "-o", "json"] + (["-n", namespace] if namespace else [])
    return len(json.loads(cp.kubectl(*args).stdout)["items"])


def test_install_and_apply_every_example(installed: Installed, namespace: str) -> None:
    cp = installed.cp
    start = time.perf_counter()
    for path in EXAMPLES:
        # Client-side apply with strict field validation, as a user would run it.
        cp.kubectl("apply", "--validate=strict", "-n", namespace, "-f", str(path))
    apply_s = time.perf_counter() - start
    docs = [d for p in EXAMPLES for d in yaml.safe_load_all(p.read_text()) if d]
    print(
        f"\nhelm install: {installed.install_s:.2f} s; kubectl apply of {len(EXAMPLES)} examples "
        f"({len(docs)} objects): {apply_s:.2f} s; total {installed.install_s + apply_s:.2f} s (target < 20 s)"
    )
    kinds = [d["kind"] for d in docs]
    # Every example can share a namespace: no two define an object of the same kind and name.
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(set(names)) == len(names), sorted(n for n in names if names.count(n) > 1)
    assert _count(cp, "modelvariants.bakeoff.dev", namespace) == kinds.count("ModelVariant") == 30
    assert _count(cp, "bakeoffs.bakeoff.dev", namespace) == kinds.count("BakeOff") == 10
    assert _count(cp, "gpuclasses.bakeoff.dev") >= 7

    stored = cp.get("modelvariant", "llama-8b-fp8-l40s", namespace=namespace)
    assert stored is not None
    # The API server applied the schema's defaults.
    assert stored["spec"]["serving"]["gpuMemoryUtilization"] == 0.9
    assert stored["spec"]["kvCacheDtype"] == "auto"

    table = cp.kubectl("get", "mv", "-n", namespace).stdout.splitlines()[0].split()
    assert table == ["NAME", "FORMAT", "GPU", "TP", "READY", "REPLICAS", "ENDPOINT", "COST/1M", "AGE"]
    category = cp.kubectl("get", "bakeoff", "-n", namespace, "-o", "name").stdout.split()
    assert sum(n.startswith("modelvariant") for n in category) == kinds.count("ModelVariant")
    assert sum(n.startswith("bakeoff.bakeoff.dev") for n in category) == kinds.count("BakeOff")


def test_scale_subresource_respects_autoscaling_bounds(installed: Installed, namespace: str) -> None:
    cp = installed.cp
    cp.kubectl("apply", "-n", namespace, "-f", str(REPO / "examples/llama-70b-sync-vs-async.yaml"))
    cp.kubectl("scale", "mv/llama-70b-fp8", "--replicas=2", "-n", namespace)
    stored = cp.get("modelvariant", "llama-70b-fp8", namespace=namespace)
    assert stored is not None
    assert stored["spec"]["replicas"] == 2
    result = cp.kubectl("scale", "mv/llama-70b-fp8", "--replicas=5", "-n", namespace, check=False)
    assert result.returncode != 0
    assert "replicas must lie within autoscaling.minReplicas" in result.stderr


@pytest.mark.parametrize(("obj", "text", "field"), [b[1:] for b in BAD_RESOURCES], ids=[b[0] for b in BAD_RESOURCES])
def test_api_server_rejects_bad_resources(
    installed: Installed, namespace: str, obj: dict[str, Any], text: str, field: str
) -> None:
    result = installed.cp.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", "-",
        input=yaml.safe_dump(obj), check=False,
    )  # fmt: skip
    assert result.returncode != 0, f"accepted: {obj}"
    assert text in result.stderr, result.stderr
    assert field in result.stderr, result.stderr


CAN: list[tuple[str, str, str]] = [
    ("list", "modelvariants.bakeoff.dev", "--all-namespaces"),
    ("patch", "modelvariants.bakeoff.dev/status", "-n=default"),
    ("update", "modelvariants.bakeoff.dev/scale", "-n=default"),
    ("patch", "bakeoffs.bakeoff.dev", "-n=default"),
    ("watch", "gpuclasses.bakeoff.dev", ""),
    ("create", "inferenceservices.serving.kserve.io", "-n=default"),
    ("patch", "inferenceservices.serving.kserve.io", "-n=default"),
    ("delete", "servingruntimes.serving.kserve.io", "-n=default"),
    ("patch", "podmonitors.monitoring.coreos.com", "-n=default"),
    ("watch", "pods", "--all-namespaces"),
    ("watch", "deployments.apps", "--all-namespaces"),
    ("create", "events", "-n=default"),
    ("list", "nodes", ""),
    # BakeOff runs: their Jobs, result ConfigMaps, and the identity the Jobs run as.
    ("create", "jobs.batch", "-n=default"),
    ("delete", "jobs.batch", "-n=default"),
    ("watch", "jobs.batch", "--all-namespaces"),
    ("list", "configmaps", "-n=default"),
    ("create", "configmaps", "-n=default"),
    ("delete", "configmaps", "-n=default"),
    ("create", "serviceaccounts", "-n=default"),
    ("create", "rolebindings.rbac.authorization.k8s.io", "-n=default"),
    ("get", "persistentvolumeclaims", "-n=default"),
]
CANNOT: list[tuple[str, str, str]] = [
    ("get", "secrets", "-n=default"),
    ("create", "pods", "-n=default"),
    ("delete", "inferenceservices.serving.kserve.io", "-n=default"),
    ("update", "servingruntimes.serving.kserve.io", "-n=default"),
    ("update", "jobs.batch", "-n=default"),
    ("get", "configmaps", "-n=default"),
    ("update", "configmaps", "-n=default"),
    ("delete", "serviceaccounts", "-n=default"),
    ("list", "persistentvolumeclaims", "-n=default"),
    ("create", "roles.rbac.authorization.k8s.io", "-n=default"),
    ("bind", "clusterroles.rbac.authorization.k8s.io/cluster-admin", "-n=default"),
    ("bind", f"clusterroles.rbac.authorization.k8s.io/{RELEASE}-loadtest", "-n=default"),
    ("create", "prometheusrules.monitoring.coreos.com", "-n=default"),
    ("delete", "modelvariants.bakeoff.dev", "-n=default"),
    ("delete", "gpuclasses.bakeoff.dev", ""),
    ("patch", "nodes", ""),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", ""),
    ("create", "deployments.apps", "-n=default"),
    ("create", "leases.coordination.k8s.io", "-n=default"),
    ("create", "clusterkopfpeerings.kopf.dev", ""),
]


@pytest.mark.parametrize(
    ("verb", "resource", "scope"),
    CAN + CANNOT,
    ids=[f"{'can' if c in CAN else 'cannot'}-{c[0]}-{c[1]}" for c in CAN + CANNOT],
)
def test_operator_rbac_is_least_privilege(installed: Installed, verb: str, resource: str, scope: str) -> None:
    args = ["auth", "can-i", verb, resource, f"--as={SERVICE_ACCOUNT}"] + ([scope] if scope else [])
    answer = installed.cp.kubectl(*args, check=False).stdout.strip()
    assert answer == ("yes" if (verb, resource, scope) in CAN else "no"), f"{verb} {resource}: {answer}"


# What a BakeOff's run Job may do once the operator binds its ServiceAccount to the loadtest ClusterRole.
RUN_JOB_CAN = [("create", "configmaps")]
RUN_JOB_CANNOT = [("get", "configmaps"), ("list", "configmaps"), ("delete", "configmaps"), ("list", "pods"),
                  ("get", "secrets"), ("patch", "bakeoffs.bakeoff.dev"), ("create", "jobs.batch")]  # fmt: skip


def test_a_run_job_may_create_configmaps_and_nothing_else(installed: Installed, namespace: str) -> None:
    cp = installed.cp
    cp.kubectl("create", "serviceaccount", "bo-loadtest", "-n", namespace)
    cp.kubectl(
        "create", "rolebinding", "bo-loadtest", "-n", namespace, f"--clusterrole={RELEASE}-loadtest",
        f"--serviceaccount={namespace}:bo-loadtest",
    )  # fmt: skip
    job = f"system:serviceaccount:{namespace}:bo-loadtest"
    for verb, resource in RUN_JOB_CAN + RUN_JOB_CANNOT:
        answer = cp.kubectl("auth", "can-i", verb, resource, f"--as={job}", "-n", namespace, check=False).stdout.strip()
        assert answer == ("yes" if (verb, resource) in RUN_JOB_CAN else "no"), f"{verb} {resource}: {answer}"
