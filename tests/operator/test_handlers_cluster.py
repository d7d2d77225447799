"""The operator's kopf handlers against the real control plane, under the chart's RBAC.

The operator runs in this process (`kopf.testing.KopfRunner`, as `kopf run --standalone` with the
chart's arguments) and authenticates as the chart's ServiceAccount with a TokenRequest token, so
every request it makes is authorized by the ClusterRoles `helm template` renders: a permission the
chart lacks fails these tests. The user's side (applying examples, editing specs and GPU classes)
runs as cluster admin. Times until status appears are printed, not asserted.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from bakeoff_operator.api import BakeOff, GPUClass, ModelVariant
from bakeoff_operator.api.common import GROUP, VERSION, find_condition
from bakeoff_operator.api.modelvariant import ModelVariantStatus
from bakeoff_operator.io import kube
from bakeoff_operator.planning import status as plan
from bakeoff_runtime.gpus import GPUCatalog
from kopf.testing import KopfRunner
from kubernetes import client, config
from kubernetes.config import kube_config

from tests.chart.chart_support import KUBE_VERSION
from tests.support.controlplane import REPO_ROOT, ControlPlane, free_port

pytestmark = [pytest.mark.cluster, pytest.mark.helm]

CHART = REPO_ROOT / "charts/bakeoff"
EXAMPLE = REPO_ROOT / "examples/llama-70b-sync-vs-async.yaml"
RELEASE = "bakeoff-op"  # contains the chart name, so objects are named after the release
RELEASE_NAMESPACE = "bakeoff-op-system"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
# Ready reasons of a variant without a KServe controller: the kind is not served (no KServe CRDs in this
# session's control plane), the InferenceService exists but nothing runs it, or the variant does not fit.
NOT_READY_HERE = ("DependencyMissing", "Progressing", "DoesNotFit", "FormatUnsupported")
SETTLE_S = 60.0  # generous upper bound for a busy 2-core CI machine; typical figures are printed

T = TypeVar("T")


@dataclass
class Cluster:
    cp: ControlPlane
    api: client.CustomObjectsApi  # as cluster admin: the user's side
    watched: str
    unwatched: str
    health_url: str
    runner: KopfRunner
    # Printed when the operator has stopped: while it runs, kopf's runner captures this process's output.
    timings: list[str] = field(default_factory=list)

    def took(self, what: str, seconds: float) -> None:
        self.timings.append(f"{what}: {seconds:.2f} s")

    def get(self, plural: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        if plural == "gpuclasses":
            obj = self.api.get_cluster_custom_object(GROUP, VERSION, plural, name)
        else:
            obj = self.api.get_namespaced_custom_object(GROUP, VERSION, namespace or self.watched, plural, name)
        assert isinstance(obj, dict)
        return obj

    def items(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        if namespace is None:
            listed = self.api.list_cluster_custom_object(GROUP, VERSION, plural)
        else:
            listed = self.api.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
        assert isinstance(listed, dict)
        items: list[dict[str, Any]] = listed["items"]
        return items

    def apply(self, objects: list[dict[str, Any]], namespace: str | None = None) -> None:
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        self.cp.kubectl(*args, input=yaml.safe_dump_all(objects))

    def merge_patch(self, resource: str, name: str, patch: dict[str, Any], namespace: str | None = None) -> None:
        args = ["patch", resource, name, "--type=merge", "-p", json.dumps(patch)]
        self.cp.kubectl(*args + (["-n", namespace] if namespace else []))


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = SETTLE_S) -> tuple[T, float]:
    """Poll `probe` until it returns something; that value and the seconds it took."""
    start = time.perf_counter()
    while True:
        value = probe()
        if value is not None:
            return value, time.perf_counter() - start
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), None)


def settled(
    cluster: Cluster, plural: str, name: str, namespace: str | None = None
) -> Callable[[], dict[str, Any] | None]:
    """A probe: the object once its status is for its current generation."""

    def probe() -> dict[str, Any] | None:
        obj = cluster.get(plural, name, namespace)
        done = (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]
        return obj if done else None

    return probe


def quiet(cluster: Cluster, plural: str, name: str, quiet_s: float = 1.5) -> dict[str, Any]:
    """The object once nothing has written it for `quiet_s` (within SETTLE_S; a retry loop never is)."""
    obj = cluster.get(plural, name)
    since, deadline = time.monotonic(), time.monotonic() + SETTLE_S
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, f"{plural}/{name} kept changing for {SETTLE_S:.0f} s"
        time.sleep(0.2)
        now = cluster.get(plural, name)
        if now["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]:
            obj, since = now, time.monotonic()
    return obj


def variant_body(name: str, gpu_class: str, fmt: str = "int8", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": {"source": "hf://meta-llama/Llama-3.1-8B-Instruct"},
        "architecture": {"catalog": "llama-3.1-8b"},
        "format": fmt,
        "gpuClass": gpu_class,
    }
    body.update(spec)
    return {"apiVersion": "bakeoff.dev/v1alpha1", "kind": "ModelVariant", "metadata": {"name": name}, "spec": body}


def ampere_class(name: str, on_demand: float) -> dict[str, Any]:
    """A GPU class that is not in the catalog, so the API server's CEL rule for fp8 does not know it."""
    return {
        "apiVersion": "bakeoff.dev/v1alpha1",
        "kind": "GPUClass",
        "metadata": {"name": name},
        "spec": {
            "displayName": "Ampere card for tests",
            "product": "TEST-AMPERE-80GB",
            "memoryGiB": 79.2,
            "bandwidthTBps": 2.0,
            "tflops": {"bf16": 312.0, "int8": 624.0},
            "computeCapability": 8.0,
            "pricePerGPUHour": {"onDemand": on_demand},
        },
    }


def cluster_catalog_now(cluster: Cluster) -> GPUCatalog:
    return plan.cluster_catalog(GPUClass.model_validate(_wire(o)) for o in cluster.items("gpuclasses"))


def _wire(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: obj["metadata"][k] for k in ("name", "namespace", "labels", "generation") if k in obj["metadata"]}
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": meta, "spec": obj["spec"]}


def _health(url: str) -> bool | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return True if response.status == 200 else None
    except OSError:
        return None


# --- the operator, as the chart would run it ----------------------------------------------------------------
@pytest.fixture(scope="module")
def operator_kubeconfig(control_plane: ControlPlane, helm_binary: Path) -> Iterator[Path]:
    """The chart's CRDs, and its ServiceAccount and RBAC (rendered by helm); a kubeconfig for that account."""
    del helm_binary  # control_plane.helm runs it; the fixture skips or fails when it is missing
    control_plane.install_crds([CHART / "crds"])
    rendered = control_plane.helm(
        "template", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE, "--kube-version", KUBE_VERSION,
        "--set-json", "gpuClasses=[]",
    ).stdout  # fmt: skip
    rbac = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] in RBAC_KINDS]
    assert {d["kind"] for d in rbac} >= {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    control_plane.create_namespace(RELEASE_NAMESPACE)
    control_plane.apply(rbac)
    yield control_plane.service_account_kubeconfig(RELEASE_NAMESPACE, RELEASE, create=False)
    for d in rbac:
        if d["kind"] != "ServiceAccount":
            control_plane.kubectl("delete", d["kind"], d["metadata"]["name"], "--ignore-not-found", check=False)
    control_plane.kubectl("delete", "namespace", RELEASE_NAMESPACE, "--wait=false", check=False)


@pytest.fixture(scope="module")
def cluster(control_plane: ControlPlane, operator_kubeconfig: Path) -> Iterator[Cluster]:
    suffix = uuid.uuid4().hex[:6]
    watched = control_plane.create_namespace(f"operator-{suffix}")
    unwatched = control_plane.create_namespace(f"unwatched-{suffix}")
    port = free_port()
    args = [
        "run",
        "--standalone",
        f"--namespace={watched}",
        f"--liveness=http://127.0.0.1:{port}/healthz",
        "-m",
        "bakeoff_operator.handlers",
    ]
    admin = config.new_client_from_config(config_file=str(control_plane.kubeconfig))  # type: ignore[no-untyped-call]
    api = client.CustomObjectsApi(admin)
    with pytest.MonkeyPatch.context() as env:
        # The operator's identity. kopf's login reads the kubernetes client's default kubeconfig path,
        # which the client took from KUBECONFIG when it was imported, before this fixture ran.
        env.setenv("KUBECONFIG", str(operator_kubeconfig))
        env.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(operator_kubeconfig))
        env.setenv("BAKEOFF_NAMESPACE", RELEASE_NAMESPACE)
        kube.custom_objects.cache_clear()
        start = time.perf_counter()
        with KopfRunner(args, timeout=60) as runner:
            health = f"http://127.0.0.1:{port}/healthz"
            wait_for("the operator's liveness endpoint", lambda: _health(health))
            cluster = Cluster(control_plane, api, watched, unwatched, health, runner)
            cluster.took("operator started, liveness answers", time.perf_counter() - start)
            yield cluster
        kube.custom_objects.cache_clear()
    print("\n" + "\n".join(cluster.timings))
    if os.environ.get("BAKEOFF_SHOW_OPERATOR_LOG"):
        print(runner.output)
    for ns in (watched, unwatched):
        control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    denied = [line for line in runner.output.splitlines() if "Forbidden" in line or " 403" in line]
    assert not denied, "the operator was refused by RBAC:\n" + "\n".join(denied)
    assert runner.exit_code == 0, runner.output


@pytest.fixture(scope="module")
def example(cluster: Cluster) -> dict[str, float]:
    """examples/llama-70b-sync-vs-async.yaml applied, and how long each object took to get its status."""
    start = time.perf_counter()
    cluster.cp.kubectl("apply", "-n", cluster.watched, "-f", str(EXAMPLE))
    took: dict[str, float] = {}
    for doc in (d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d):
        plural = "modelvariants" if doc["kind"] == "ModelVariant" else "bakeoffs"
        wait_for(f"{doc['kind']} {doc['metadata']['name']} status", settled(cluster, plural, doc["metadata"]["name"]))
        took[doc["metadata"]["name"]] = time.perf_counter() - start
    for name, seconds in took.items():
        cluster.took(f"{EXAMPLE.name}: {name} has status after apply", seconds)
    return took


# --- tests ------------------------------------------------------------------------------------------------------
def test_liveness_endpoint_answers(cluster: Cluster) -> None:
    with urllib.request.urlopen(cluster.health_url, timeout=5) as response:
        assert response.status == 200


def test_example_variants_get_placement_and_predicted_cost(cluster: Cluster, example: dict[str, float]) -> None:
    catalog = cluster_catalog_now(cluster)
    names = ["llama-70b-bf16", "llama-70b-fp8", "llama-70b-int4"]
    for name in names:
        stored = cluster.get("modelvariants", name)
        status = stored["status"]
        fits = condition(stored, "Fits")
        ready = condition(stored, "Ready")
        assert fits is not None, status
        assert ready is not None, status
        # No KServe controller runs in this tier (the e2e tier has one): nothing becomes ready.
        assert ready["status"] == "False"
        assert ready["reason"] in NOT_READY_HERE, ready
        assert fits["observedGeneration"] == stored["metadata"]["generation"]
        # Placement and prediction are exactly what the planner says for this spec and the cluster's GPU classes.
        mv = ModelVariant.model_validate(_wire(stored))
        expected = plan.desired_variant_status(mv, catalog, datetime.now(UTC))  # times are not compared
        got = ModelVariantStatus.model_validate(status)
        for field_name in ("resolved_gpu_class", "tensor_parallel_size", "format_execution", "predicted"):
            assert getattr(got, field_name) == getattr(expected, field_name), (name, field_name)
        want_fits = find_condition(expected.conditions, "Fits")
        assert want_fits is not None
        assert (fits["status"], fits["reason"], fits["message"]) == (
            want_fits.status.value,
            want_fits.reason,
            want_fits.message,
        )
        if fits["status"] == "True":
            assert status["resolvedGPUClass"] == "h100"
            assert status["tensorParallelSize"] == mv.spec.tensor_parallel_size
            assert status["formatExecution"] == "native"
            assert status["predicted"]["costPer1MOutputTokensUSD"] > 0
            assert status["predicted"]["workload"] == plan.PREDICTION_WORKLOAD
        else:
            assert "resolvedGPUClass" not in status
            assert fits["reason"] in {"DoesNotFit", "FormatUnsupported"}
            assert "tensorParallelSize" in fits["message"] or "maxModelLen" in fits["message"]
    bf16 = cluster.get("modelvariants", "llama-70b-bf16")["status"]
    assert (bf16["resolvedGPUClass"], bf16["tensorParallelSize"]) == ("h100", 2)
    int4 = cluster.get("modelvariants", "llama-70b-int4")["status"]
    assert (int4["resolvedGPUClass"], int4["tensorParallelSize"]) == ("h100", 1)
    # Four-bit weights on one GPU cost less per token than BF16 on two.
    assert int4["predicted"]["costPer1MOutputTokensUSD"] < bf16["predicted"]["costPer1MOutputTokensUSD"]


def test_example_bakeoffs_are_validated_against_their_variants(cluster: Cluster, example: dict[str, float]) -> None:
    named: dict[str, tuple[str, ...]] = {"llama-70b-sync": ("llama-70b-bf16", "llama-70b-fp8", "llama-70b-int4")}
    named["llama-70b-async"] = tuple(f"{v}-tp4" for v in named["llama-70b-sync"])
    for name in ("llama-70b-sync", "llama-70b-async"):
        # The variants' own statuses arrive after the BakeOff's first validation; it is revalidated.
        # Its runs are looked at right after each validation: wait for both to have seen the variants.
        def all_listed(name: str = name) -> dict[str, Any] | None:
            obj = cluster.get("bakeoffs", name)
            c, r = condition(obj, "VariantsResolved"), condition(obj, "Running")
            listed = c is not None and "not sized yet" not in c["message"]
            return obj if listed and r is not None and r["reason"] == "WaitingForVariants" else None

        stored, _ = wait_for(f"BakeOff {name} to see its variants' status", all_listed)
        resolved = condition(stored, "VariantsResolved")
        running = condition(stored, "Running")
        assert resolved is not None
        assert running is not None
        assert (resolved["status"], resolved["reason"]) == ("False", "VariantNotReady")
        for variant in named[name]:
            assert any(f"{variant} ({reason}" in resolved["message"] for reason in NOT_READY_HERE), resolved
        # Run once, at creation: the run waits for its variants (none is Ready without KServe).
        assert (running["status"], running["reason"]) == ("False", "WaitingForVariants")
        BakeOff.model_validate(_wire(stored))  # the stored spec is one the models accept


def test_status_is_not_rewritten_when_nothing_changed(cluster: Cluster, example: dict[str, float]) -> None:
    def versions() -> dict[str, str]:
        out = {}
        for plural in ("modelvariants", "bakeoffs"):
            for obj in cluster.items(plural, cluster.watched):
                out[f"{plural}/{obj['metadata']['name']}"] = obj["metadata"]["resourceVersion"]
        return out

    # The example's objects settle first (a variant's status change revalidates its BakeOffs): wait until
    # nothing has been written for 2 s, then nothing may be written while nothing changes.
    before, quiet_since = versions(), time.monotonic()
    deadline = quiet_since + SETTLE_S
    while time.monotonic() - quiet_since < 2.0 and time.monotonic() < deadline:
        time.sleep(0.2)
        now = versions()
        if now != before:
            before, quiet_since = now, time.monotonic()
    time.sleep(3)
    assert versions() == before


def test_format_the_gpu_class_cannot_run_then_spec_and_price_updates(cluster: Cluster) -> None:
    gpu = f"ampere-{uuid.uuid4().hex[:6]}"
    cluster.apply([ampere_class(gpu, on_demand=2.0)])
    try:
        cluster.apply([variant_body("fp8-on-ampere", gpu, "fp8")], cluster.watched)
        stored, took = wait_for("Fits on the custom GPU class", settled(cluster, "modelvariants", "fp8-on-ampere"))
        cluster.took("fp8 on a custom Ampere class: status after apply", took)
        fits = condition(stored, "Fits")
        assert fits is not None
        assert (fits["status"], fits["reason"]) == ("False", "FormatUnsupported")
        assert "compute capability >= 8.9" in fits["message"]
        assert "allowWeightOnlyFallback" in fits["message"]
        assert "resolvedGPUClass" not in stored["status"]

        # A spec update: a format Ampere runs natively.
        cluster.merge_patch("modelvariant", "fp8-on-ampere", {"spec": {"format": "int8"}}, cluster.watched)
        stored, took = wait_for("status of generation 2", settled(cluster, "modelvariants", "fp8-on-ampere"))
        cluster.took("format fp8 -> int8: status of generation 2 after the patch", took)
        assert stored["metadata"]["generation"] == 2
        fits = condition(stored, "Fits")
        ready = condition(stored, "Ready")
        assert fits is not None
        assert ready is not None
        assert (fits["status"], fits["reason"], fits["observedGeneration"]) == ("True", "FitsInMemory", 2)
        assert ready["observedGeneration"] == 2
        assert stored["status"]["resolvedGPUClass"] == gpu
        assert stored["status"]["formatExecution"] == "native"
        cost = stored["status"]["predicted"]["costPer1MOutputTokensUSD"]

        # A price change of the GPU class: the variant is re-sized without any change of its own.
        cluster.merge_patch("gpuclass", gpu, {"spec": {"pricePerGPUHour": {"onDemand": 4.0}}})

        def repriced() -> dict[str, Any] | None:
            obj = cluster.get("modelvariants", "fp8-on-ampere")
            return obj if obj["status"]["predicted"]["costPer1MOutputTokensUSD"] != cost else None

        stored, took = wait_for("the new price in the predicted cost", repriced)
        cluster.took("GPU class price change: predicted cost updated after the patch", took)
        assert stored["status"]["predicted"]["costPer1MOutputTokensUSD"] == pytest.approx(2 * cost, rel=1e-3)
        assert stored["metadata"]["generation"] == 2

        # The GPU class goes away: the variant names a class that no longer exists.
        cluster.cp.kubectl("delete", "gpuclass", gpu)

        def unknown() -> dict[str, Any] | None:
            c = condition(cluster.get("modelvariants", "fp8-on-ampere"), "Fits")
            return c if c is not None and c["reason"] == "UnknownGPUClass" else None

        gone, _ = wait_for("UnknownGPUClass after the GPU class is deleted", unknown)
        assert gone["status"] == "False"
        assert gpu in gone["message"]
    finally:
        cluster.cp.kubectl("delete", "gpuclass", gpu, "--ignore-not-found")


def test_spec_only_the_models_reject_is_a_condition_not_a_retry_loop(cluster: Cluster) -> None:
    architecture = {
        "numLayers": 4, "hiddenSize": 960, "numAttentionHeads": 30, "numKVHeads": 8, "headDim": 32,
        "intermediateSize": 2048, "vocabSize": 32000,
    }  # fmt: skip
    cluster.apply([variant_body("odd-heads", "h100", "bf16", architecture=architecture)], cluster.watched)
    wait_for("InvalidSpec", settled(cluster, "modelvariants", "odd-heads"))
    # kopf records the permanent failure in its annotations after the status is written: let it settle.
    stored = quiet(cluster, "modelvariants", "odd-heads")
    for type_ in ("Fits", "Ready"):
        c = condition(stored, type_)
        assert c is not None
        assert (c["status"], c["reason"]) == ("False", "InvalidSpec")
        assert "spec.architecture: " in c["message"]
        assert "multiple of num_kv_heads" in c["message"]
    version = stored["metadata"]["resourceVersion"]
    time.sleep(2)  # kopf would retry a temporary error within seconds; a permanent one never
    assert cluster.get("modelvariants", "odd-heads")["metadata"]["resourceVersion"] == version


def test_bakeoff_sees_variants_appear(cluster: Cluster) -> None:
    named = {
        "apiVersion": "bakeoff.dev/v1alpha1",
        "kind": "BakeOff",
        "metadata": {"name": "waits-for-later"},
        "spec": {"variants": ["later"], "workload": {"useCase": "rag"}},
    }
    selected = {
        "apiVersion": "bakeoff.dev/v1alpha1",
        "kind": "BakeOff",
        "metadata": {"name": "selects-team-later"},
        "spec": {"variantSelector": {"matchLabels": {"team": "later"}}, "workload": {"useCase": "rag"}},
    }
    cluster.apply([named, selected], cluster.watched)
    stored, _ = wait_for("VariantNotFound", settled(cluster, "bakeoffs", "waits-for-later"))
    c = condition(stored, "VariantsResolved")
    assert c is not None
    assert (c["status"], c["reason"]) == ("False", "VariantNotFound")
    assert "spec.variants names later," in c["message"]
    stored, _ = wait_for("NoVariantsSelected", settled(cluster, "bakeoffs", "selects-team-later"))
    c = condition(stored, "VariantsResolved")
    assert c is not None
    assert (c["status"], c["reason"]) == ("False", "NoVariantsSelected")

    later = variant_body("later", "h100")
    later["metadata"]["labels"] = {"team": "later"}
    cluster.apply([later], cluster.watched)
    for name in ("waits-for-later", "selects-team-later"):

        def found(name: str = name) -> dict[str, Any] | None:
            c = condition(cluster.get("bakeoffs", name), "VariantsResolved")
            seen = c is not None and any(f"later ({reason}" in c["message"] for reason in NOT_READY_HERE)
            return c if seen else None

        resolved, took = wait_for(f"{name} to see the new variant", found)
        cluster.took(f"BakeOff {name} revalidated after its variant appeared", took)
        assert resolved["reason"] == "VariantNotReady"


def test_unwatched_namespace_is_left_alone(cluster: Cluster) -> None:
    cluster.apply([variant_body("elsewhere", "h100")], cluster.unwatched)
    cluster.apply([variant_body("here", "h100")], cluster.watched)
    wait_for("the watched variant's status", settled(cluster, "modelvariants", "here"))
    time.sleep(1)
    assert "status" not in cluster.get("modelvariants", "elsewhere", cluster.unwatched)
