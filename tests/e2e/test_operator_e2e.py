"""The operator deploys ModelVariants onto the e2e cluster: KServe's controller turns its children into
Deployments, kube-scheduler places the replicas on kwok GPU nodes of the variant's GPU class, and the
variant's status tells the truth about it.

The operator runs in this process (`kopf.testing.KopfRunner`, as the chart runs it) under the chart's
ServiceAccount and RBAC (rendered by `helm template`), so every request it makes is authorized as in
a cluster. Times are printed, not asserted.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from bakeoff_operator.api.modelvariant import ModelVariant
from bakeoff_operator.io import kube
from bakeoff_operator.planning.deployment import Target, plan_deployment
from bakeoff_operator.render.kserve import ANNOTATION_SPEC_HASH, LABEL_VARIANT
from bakeoff_runtime.gpus import default_catalog
from kopf.testing import KopfRunner
from kubernetes.config import kube_config

from tests.chart.chart_support import KUBE_VERSION
from tests.support.controlplane import REPO_ROOT, free_port
from tests.support.e2e import E2ECluster, GPUNodes, condition, describe_pods, pending_reason, pod_running

pytestmark = [pytest.mark.e2e, pytest.mark.helm]

CHART = REPO_ROOT / "charts/bakeoff"
EXAMPLES = REPO_ROOT / "examples"
RELEASE = "bakeoff"
RELEASE_NAMESPACE = "bakeoff-system"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
CLUSTER_EXAMPLES = (
    "quickstart.yaml",
    "llama-8b-formats.yaml",
    "llama-70b-sync-vs-async.yaml",
    "apriel-h1-hybrids.yaml",
)
POD_LABEL = "serving.kserve.io/inferenceservice"
SETTLE_S = 60.0


@dataclass
class Operator:
    cluster: E2ECluster
    namespace: str
    runner: KopfRunner | None
    kubeconfig: Path
    timings: list[str] = field(default_factory=list)

    def took(self, what: str, seconds: float) -> None:
        self.timings.append(f"{what}: {seconds:.2f} s")

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        return self.cluster.get(kind, name, namespace=self.namespace)

    def variant(self, name: str) -> dict[str, Any]:
        obj = self.get("modelvariant", name)
        assert obj is not None, f"ModelVariant {name} is gone"
        return obj

    def apply(self, objects: list[dict[str, Any]]) -> None:
        self.cluster.kubectl("apply", "-n", self.namespace, "-f", "-", input=yaml.safe_dump_all(objects))

    def report(self, variant: str) -> str:
        """What the cluster shows of a variant's replicas, for a failure message."""
        ns = ["-n", self.namespace]
        parts = [
            self.cluster.kubectl("get", "deploy,rs,pods", "-o", "wide", *ns, check=False).stdout,
            self.cluster.kubectl("get", "events", *ns, check=False).stdout[-4000:],
            describe_pods(self.pods(variant)),
            self.cluster.log_report(lines=30),
        ]
        return "\n".join(parts)

    def pods(self, variant: str) -> list[dict[str, Any]]:
        return [
            p
            for p in self.cluster.pods(self.namespace, f"{POD_LABEL}={variant}")
            if not (p.get("metadata") or {}).get("deletionTimestamp")
        ]


def wait(what: str, probe: Callable[[], Any], timeout: float = SETTLE_S) -> tuple[Any, float]:
    start = time.perf_counter()
    while True:
        value = probe()
        if value:
            return value, time.perf_counter() - start
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def variant_body(name: str, gpu_class: str = "h100", fmt: str = "int8", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": {"source": "hf://meta-llama/Llama-3.1-8B-Instruct"},
        "architecture": {"catalog": "llama-3.1-8b"},
        "format": fmt,
        "gpuClass": gpu_class,
        "tensorParallelSize": 1,
    }
    body.update(spec)
    return {"apiVersion": "bakeoff.dev/v1alpha1", "kind": "ModelVariant", "metadata": {"name": name}, "spec": body}


def status_condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    found = condition(obj, type_)
    return dict(found) if found is not None else None


def ready_replicas(op: Operator, name: str, count: int) -> Callable[[], dict[str, Any] | None]:
    def probe() -> dict[str, Any] | None:
        obj = op.variant(name)
        c = status_condition(obj, "Ready")
        status = obj.get("status") or {}
        ok = c is not None and c["status"] == "True" and status.get("readyReplicas") == count
        return obj if ok else None

    return probe


# --- the operator, as the chart runs it --------------------------------------------------------------------
@pytest.fixture(scope="module")
def chart_installed(e2e_cluster: E2ECluster, helm_binary: Path) -> Path:
    """Bakeoff's CRDs, the default GPUClasses and the operator's ServiceAccount and RBAC, from the chart."""
    del helm_binary
    e2e_cluster.install_crds([CHART / "crds"])
    rendered = e2e_cluster.helm(
        "template", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE, "--kube-version", KUBE_VERSION
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    rbac = [d for d in docs if d["kind"] in RBAC_KINDS]
    gpu_classes = [d for d in docs if d["kind"] == "GPUClass"]
    assert gpu_classes, "the chart renders the default GPU catalog"
    if e2e_cluster.get("namespace", RELEASE_NAMESPACE) is None:
        e2e_cluster.create_namespace(RELEASE_NAMESPACE)
    e2e_cluster.apply(rbac + gpu_classes)
    # Beyond the default nodes (2x8 H100, 1x8 A100, 1x4 L4): the quickstart asks for 19 H100s at once, and
    # the 8B example for L40S.
    e2e_cluster.add_gpu_nodes(GPUNodes("h100", gpus=8, prefix="op-h100"), GPUNodes("l40s", gpus=8, prefix="op-l40s"))
    return e2e_cluster.service_account_kubeconfig(RELEASE_NAMESPACE, RELEASE, create=False)


def _start(cluster: E2ECluster, namespace: str, kubeconfig: Path) -> KopfRunner:
    port = free_port()
    args = ["run", "--standalone", f"--namespace={namespace}", f"--liveness=http://127.0.0.1:{port}/healthz"]
    runner = KopfRunner([*args, "-m", "bakeoff_operator.handlers"], timeout=60)
    runner.__enter__()
    return runner


@pytest.fixture
def operator(e2e_cluster: E2ECluster, chart_installed: Path) -> Iterator[Operator]:
    """The operator watching a fresh namespace, as the chart's ServiceAccount."""
    namespace = f"op-{uuid.uuid4().hex[:8]}"
    e2e_cluster.create_namespace(namespace)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KUBECONFIG", str(chart_installed))
        env.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(chart_installed))
        env.setenv("BAKEOFF_NAMESPACE", RELEASE_NAMESPACE)
        kube.custom_objects.cache_clear()
        kube.api_client.cache_clear()
        op = Operator(e2e_cluster, namespace, None, chart_installed)
        op.runner = _start(e2e_cluster, namespace, chart_installed)
        try:
            yield op
        finally:
            if op.runner is not None:
                op.runner.__exit__(None, None, None)
            kube.custom_objects.cache_clear()
            kube.api_client.cache_clear()
    print("\n" + "\n".join(op.timings))
    output = op.runner.output if op.runner is not None else ""
    # Wait for the namespace to go, so that the next test finds its GPUs free again.
    e2e_cluster.kubectl("delete", "namespace", namespace, "--timeout=90s", check=False)
    denied = [line for line in output.splitlines() if "Forbidden" in line or " 403" in line]
    assert not denied, "the operator was refused by RBAC:\n" + "\n".join(denied)
    tracebacks = [line for line in output.splitlines() if "Traceback" in line]
    assert not tracebacks, output[-5000:]


# --- tests -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("example", CLUSTER_EXAMPLES)
def test_every_example_deploys_and_lands_on_its_gpu_class(operator: Operator, example: str) -> None:
    """Each example's variants become KServe children that pass the real schemas and webhooks; KServe's
    Deployment runs exactly the rendered launch; the pods land only on nodes of the variant's class."""
    path = EXAMPLES / example
    start = time.perf_counter()
    operator.cluster.kubectl("apply", "-n", operator.namespace, "-f", str(path))
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    variants = [ModelVariant.model_validate(d) for d in docs if d["kind"] == "ModelVariant"]
    catalog = default_catalog()
    for parsed in variants:
        mv = parsed.model_copy(
            update={"metadata": parsed.metadata.model_copy(update={"namespace": operator.namespace})}
        )
        plan = plan_deployment(mv, catalog, Target.KSERVE)
        name = mv.metadata.name
        if not plan.deployable:
            obj, _ = wait(f"{name} refused", lambda n=name: _reason(operator, n, "Ready") not in (None, "Progressing"))
            assert operator.get("inferenceservice", name) is None
            continue
        assert plan.launch is not None
        assert plan.variant is not None
        deployment, _ = wait(
            f"KServe's Deployment of {name}", lambda n=name: operator.get("deployment", f"{n}-predictor")
        )
        operator.took(f"{example}: {name} apply -> Deployment", time.perf_counter() - start)
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == plan.launch.serve_args("0.0.0.0", 8080), name
        gpus = str(plan.variant.tensor_parallel)
        assert container["resources"]["limits"]["nvidia.com/gpu"] == gpus
        assert container["resources"]["requests"]["nvidia.com/gpu"] == gpus
        isvc = operator.get("inferenceservice", name)
        assert isvc is not None
        assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
        assert "protocolVersion" in isvc["spec"]["predictor"]["model"], "the KServe defaulting webhook ran"
        product = plan.variant.gpu.product
        desired = mv.spec.desired_replicas
        if desired == 0:
            wait(f"{name} ScaledToZero", lambda n=name: _reason(operator, n, "Ready") == "ScaledToZero")
            continue
        if mv.spec.model.source.startswith("pvc://"):
            # No such claim in this namespace: the scheduler says so, and so does the variant.
            claim = mv.spec.model.source.removeprefix("pvc://").split("/")[0]
            scheduled, _ = wait(
                f"{name} Scheduled=False for its missing claim",
                lambda n=name: with_reason(operator, n, "Scheduled", "Unschedulable"),
            )
            assert f'persistentvolumeclaim "{claim}" not found' in scheduled["message"]
            continue
        try:
            pods, _ = wait(f"{desired} pods of {name} Running", lambda n=name, d=desired: running_pods(operator, n, d))
        except TimeoutError as err:
            raise AssertionError(f"{err}\n{operator.report(name)}") from None
        operator.took(f"{example}: {name} apply -> {desired} pod(s) Running", time.perf_counter() - start)
        for pod in pods:
            node = operator.cluster.get("node", pod["spec"]["nodeName"])
            assert node is not None
            assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == product, (name, node["metadata"]["name"])
        wait(f"{name} Ready", ready_replicas(operator, name, desired))
        try:
            obj, _ = wait(f"{name}'s endpoint", lambda n=name: with_endpoint(operator, n), timeout=20)
        except TimeoutError as err:
            isvc = operator.get("inferenceservice", name)
            raise AssertionError(f"{err}: {json.dumps((isvc or {}).get('status'), indent=1)}") from None
        assert obj["status"]["endpoint"].startswith(f"http://{name}-predictor.{operator.namespace}.svc")
        assert obj["status"]["replicasReady"] == f"{desired}/{desired}"
        scheduled = status_condition(obj, "Scheduled")
        assert scheduled is not None
        assert scheduled["status"] == "True"
    table = operator.cluster.kubectl("get", "mv", "-n", operator.namespace).stdout.splitlines()[0].split()
    assert table[:8] == ["NAME", "FORMAT", "GPU", "TP", "READY", "REPLICAS", "ENDPOINT", "COST/1M"]


def with_reason(op: Operator, name: str, type_: str, reason: str) -> dict[str, Any] | None:
    c = status_condition(op.variant(name), type_)
    return c if c is not None and c["reason"] == reason else None


def with_endpoint(op: Operator, name: str) -> dict[str, Any] | None:
    obj = op.variant(name)
    return obj if (obj.get("status") or {}).get("endpoint") else None


def running_pods(op: Operator, name: str, count: int) -> list[dict[str, Any]] | None:
    pods = op.pods(name)
    return pods if len(pods) == count and all(map(pod_running, pods)) else None


def _reason(op: Operator, name: str, type_: str) -> str | None:
    c = status_condition(op.variant(name), type_)
    return c["reason"] if c is not None else None


def test_replicas_beyond_free_gpus_wait_and_say_so(operator: Operator) -> None:
    """Replicas that need more GPUs than are free stay Pending, the variant says InsufficientGPU with the
    scheduler's message, and freeing GPUs (deleting another variant) lets them run."""
    free = operator.cluster.free_gpus(default_catalog().get("h100").product)
    assert free >= 4, f"the e2e cluster has {free} free H100s; other tests left variants behind"
    hog = variant_body("hog", fmt="bf16", replicas=free - 2)
    wide = variant_body("wide", fmt="bf16", tensorParallelSize=4)  # 4 GPUs, only 2 left
    operator.apply([hog])
    wait("hog Ready", ready_replicas(operator, "hog", free - 2))
    start = time.perf_counter()
    operator.apply([wide])

    def insufficient() -> dict[str, Any] | None:
        c = status_condition(operator.variant("wide"), "Scheduled")
        return c if c is not None and c["reason"] == "InsufficientGPU" else None

    scheduled, took = wait("wide Scheduled=False InsufficientGPU", insufficient)
    operator.took("replica beyond free GPUs -> Scheduled=False InsufficientGPU", took)
    assert scheduled["status"] == "False"
    assert "Insufficient nvidia.com/gpu" in scheduled["message"]
    pods = operator.pods("wide")
    assert pods
    assert all(pending_reason(p) for p in pods)
    ready = status_condition(operator.variant("wide"), "Ready")
    assert ready is not None
    assert ready["status"] == "False"

    operator.cluster.kubectl("delete", "modelvariant", "hog", "-n", operator.namespace)
    start = time.perf_counter()
    obj, took = wait("wide Ready once hog's GPUs are free", ready_replicas(operator, "wide", 1))
    operator.took("GPUs freed -> the waiting variant Ready", time.perf_counter() - start)
    scheduled = status_condition(obj, "Scheduled")
    assert scheduled is not None
    assert (scheduled["status"], scheduled["reason"]) == ("True", "GPUsAvailable")
    assert operator.get("inferenceservice", "hog") is None, "deleting a variant garbage-collects its children"


def test_an_edit_rolls_once_and_delete_removes_only_what_it_owns(operator: Operator) -> None:
    operator.apply([variant_body("roll", serving={"maxNumSeqs": 64})])
    wait("roll Ready", ready_replicas(operator, "roll", 1))
    isvc = operator.get("inferenceservice", "roll")
    assert isvc is not None
    before = isvc["metadata"]["annotations"][ANNOTATION_SPEC_HASH]
    # Something the operator does not own, labelled like its children: it must survive.
    operator.cluster.kubectl(
        "create", "configmap", "roll-notes", "-n", operator.namespace, "--from-literal=owner=someone-else"
    )
    operator.cluster.kubectl("label", "configmap", "roll-notes", "-n", operator.namespace, f"{LABEL_VARIANT}=roll")

    operator.cluster.kubectl(
        "patch", "modelvariant", "roll", "-n", operator.namespace, "--type=merge",
        "-p", json.dumps({"spec": {"serving": {"maxNumSeqs": 32}}}),
    )  # fmt: skip
    start = time.perf_counter()

    def rolled() -> dict[str, Any] | None:
        obj = operator.get("inferenceservice", "roll")
        return obj if obj and obj["metadata"]["annotations"][ANNOTATION_SPEC_HASH] != before else None

    wait("a new spec hash", rolled)
    wait("roll Ready after the edit", ready_replicas(operator, "roll", 1))
    operator.took("edit -> rolled and Ready", time.perf_counter() - start)
    time.sleep(2)  # let any second rollout show itself
    replica_sets = operator.cluster.list_items(f"/apis/apps/v1/namespaces/{operator.namespace}/replicasets")
    ours = [rs for rs in replica_sets if (rs["metadata"].get("labels") or {}).get(POD_LABEL) == "roll"]
    assert len(ours) == 2, f"one edit, one rollout: {[rs['metadata']['name'] for rs in ours]}"
    runtimes = operator.cluster.list_items(
        f"/apis/serving.kserve.io/v1alpha1/namespaces/{operator.namespace}/servingruntimes"
    )
    assert len([r for r in runtimes if (r["metadata"].get("labels") or {}).get(LABEL_VARIANT) == "roll"]) == 1
    deployment = operator.get("deployment", "roll-predictor")
    assert deployment is not None
    assert "--max-num-seqs=32" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]

    operator.cluster.kubectl("delete", "modelvariant", "roll", "-n", operator.namespace)
    for kind, name in (("inferenceservice", "roll"), ("deployment", "roll-predictor")):
        operator.cluster.wait_gone(kind, name, namespace=operator.namespace)
    wait("roll's pods gone", lambda: not operator.pods("roll") or None)
    assert operator.get("configmap", "roll-notes") is not None, "an object the operator does not own survives"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (variant_body("nowhere", gpu_class="b200"), "UnknownGPUClass"),
        (variant_body("too-big", fmt="bf16", architecture={"catalog": "llama-3.1-70b"}, gpuClass="l4"), "DoesNotFit"),
        (variant_body("local-path", model={"source": "file:///models/llama"}), "InvalidSpec"),
    ],
    ids=["unknown-class", "does-not-fit", "local-model-path"],
)
def test_a_variant_that_cannot_run_creates_nothing(operator: Operator, body: dict[str, Any], reason: str) -> None:
    name = body["metadata"]["name"]
    operator.apply([body])
    wait(f"{name} Ready=False {reason}", lambda: _reason(operator, name, "Ready") == reason)
    ready = status_condition(operator.variant(name), "Ready")
    assert ready is not None
    assert ready["message"].startswith("nothing deployed:")
    assert operator.get("inferenceservice", name) is None
    runtimes = operator.cluster.list_items(
        f"/apis/serving.kserve.io/v1alpha1/namespaces/{operator.namespace}/servingruntimes"
    )
    assert not runtimes


def test_a_restart_converges_to_the_same_objects(operator: Operator) -> None:
    operator.apply([variant_body("restart")])
    wait("restart Ready", ready_replicas(operator, "restart", 1))
    isvc = operator.get("inferenceservice", "restart")
    assert isvc is not None
    assert operator.runner is not None
    operator.runner.__exit__(None, None, None)
    # A change while no operator runs, then a new operator: it picks it up and converges.
    operator.cluster.kubectl(
        "patch", "modelvariant", "restart", "-n", operator.namespace, "--type=merge", "-p", '{"spec":{"replicas":2}}'
    )
    start = time.perf_counter()
    operator.runner = _start(operator.cluster, operator.namespace, operator.kubeconfig)
    wait("restart with 2 replicas after the operator restarted", ready_replicas(operator, "restart", 2))
    operator.took("operator restart -> converged", time.perf_counter() - start)
    after = operator.get("inferenceservice", "restart")
    assert after is not None
    assert after["metadata"]["uid"] == isvc["metadata"]["uid"]
    spec_hash = isvc["metadata"]["annotations"][ANNOTATION_SPEC_HASH]
    assert after["metadata"]["annotations"][ANNOTATION_SPEC_HASH] == spec_hash
    assert after["spec"]["predictor"]["minReplicas"] == 2
