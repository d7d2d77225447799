"""The end-to-end test cluster: the test control plane plus KServe, a scheduler and fake GPU nodes.

`E2ECluster` is a `ControlPlane` (etcd, kube-apiserver, kube-controller-manager with
`nodelifecycle`) that also runs, all on loopback ports chosen free:

- KServe's controller manager (`hack/build-kserve.sh`), out-of-cluster, with the upstream
  `inferenceservice-config` ConfigMap set to Standard (RawDeployment) mode and no Ingress, its
  admission webhooks registered by loopback URL (defaulting, validation, the pod mutator) and the
  default ClusterStorageContainer;
- kube-scheduler, so Pods are bound to nodes by the real scheduling rules (node selectors,
  `nvidia.com/gpu` capacity);
- kwok with its default stages (`kwok-stages.yaml`), which keeps fake GPU nodes Ready and turns
  Pods bound to them Running and Ready without running any container.

Fake nodes come from the GPU catalog (`gpu_nodes`): the `nvidia.com/gpu.product` label of a GPU
class and `nvidia.com/gpu` capacity, as NVIDIA's GPU feature discovery and device plugin publish
them. Containers never run: there is no vLLM, no traffic and no metrics; tests check what KServe
creates and where the scheduler puts it.

Every component runs in its own process group, is stopped newest first (also when startup
fails) and logs to `<workdir>/<component>.log`; failures carry the tails of those logs.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from bakeoff_runtime.gpus import GPUCatalog, default_catalog

from tests.support.controlplane import (
    BUILD_HINT,
    CONTROL_PLANE_TOOLS,
    DEFAULT_CONTROLLERS,
    ControlPlane,
    ControlPlaneError,
    ToolsMissingError,
    _Component,
    _kubeconfig,
    _Pki,
    crds_dir,
    find_tool,
    free_port,
    upstream_crd_files,
    wait_until,
)

KSERVE_BUILD_HINT = "run hack/build-kserve.sh"
# Built by hack/build-tools.sh, except kserve-manager (hack/build-kserve.sh).
E2E_TOOLS = ("kube-scheduler", "kwok", "kserve-manager")

# nodelifecycle removes the `node.kubernetes.io/not-ready` taint that the API server puts on every
# new Node; without it no Pod is ever scheduled. Add "horizontalpodautoscaling" for tests that
# need KServe's default `hpa` autoscaler class to raise a Deployment to minReplicas.
# persistentvolume-binder: a PersistentVolumeClaim binds to a PersistentVolume a test creates, so that
# kube-scheduler places pods that mount one (bake-off runs that keep their full results).
E2E_CONTROLLERS = (*DEFAULT_CONTROLLERS, "nodelifecycle", "persistentvolume-binder")

KSERVE_NAMESPACE = "kserve"
KSERVE_CONFIGMAP = "inferenceservice-config"
KWOK_STAGES = Path(__file__).with_name("kwok-stages.yaml")

# kwok only manages Nodes with this annotation, so Nodes a test registers without it (for
# example `ControlPlane.add_gpu_node`) are left alone.
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_NODE_VALUE = "fake"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"

# Host size per GPU of a fake node: a typical 8-GPU server has about 200 cores and 2 TiB.
CPU_PER_GPU = 24
MEMORY_GIB_PER_GPU = 256


def find_e2e_tool(name: str) -> Path:
    """Like `find_tool`, with the command that builds `name` in the error."""
    try:
        return find_tool(name)
    except ToolsMissingError as exc:
        if name != "kserve-manager":
            raise
        raise ToolsMissingError(str(exc).replace(BUILD_HINT, KSERVE_BUILD_HINT)) from None


def missing_e2e_tools() -> list[str]:
    """The control plane and e2e binaries that are not built yet, each with the command that builds it."""
    missing = []
    for name in (*CONTROL_PLANE_TOOLS, *E2E_TOOLS):
        try:
            find_e2e_tool(name)
        except ToolsMissingError:
            missing.append(f"{name} not built: {KSERVE_BUILD_HINT if name == 'kserve-manager' else BUILD_HINT}")
    return missing


def kserve_config_dir() -> Path:
    """KServe's configuration files that `hack/fetch-crds.sh` copies (configmap/, storagecontainers/, webhook/)."""
    path = crds_dir() / "kserve-config"
    if not (path / "configmap" / "inferenceservice.yaml").is_file():
        raise ToolsMissingError(f"KServe configuration not found at {path}: run hack/fetch-crds.sh")
    return path


def kserve_version() -> str:
    """The KServe release the CRDs and configuration were copied from (the VERSIONS file)."""
    for line in (crds_dir() / "VERSIONS").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "kserve":
            return fields[1]
    raise ToolsMissingError(f"no kserve line in {crds_dir() / 'VERSIONS'}: run hack/fetch-crds.sh")


# --- fake GPU nodes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GPUNodes:
    """`count` fake nodes with `gpus` GPUs each of the catalog GPU class `gpu_class` (e.g. "h100").

    Nodes are named `<prefix>-<i>`, the prefix defaulting to `gpu-<gpu_class>`; give another prefix
    to add more nodes of a class that already has some.
    """

    gpu_class: str
    gpus: int = 8
    count: int = 1
    prefix: str = ""

    def names(self) -> list[str]:
        prefix = self.prefix or f"gpu-{self.gpu_class}"
        return [f"{prefix}-{i}" for i in range(self.count)]


# Two 8 x H100 servers, one 8 x A100 80GB and one 4 x L4.
DEFAULT_GPU_NODES = (
    GPUNodes("h100", gpus=8, count=2),
    GPUNodes("a100-80gb", gpus=8, count=1),
    GPUNodes("l4", gpus=4, count=1),
)


def gpu_nodes(entries: Iterable[GPUNodes], catalog: GPUCatalog | None = None) -> list[dict[str, Any]]:
    """Node objects for kwok: GPU feature discovery's labels and the device plugin's capacity.

    The product label and the extended resource name come from the catalog entry of each GPU
    class, so a GPUClass built from the same catalog selects these nodes.
    """
    catalog = catalog or default_catalog()
    nodes = []
    for entry in entries:
        if entry.gpus < 1 or entry.count < 1:
            raise ValueError(f"{entry}: gpus and count must be at least 1")
        gpu = catalog.get(entry.gpu_class)
        resources = {
            "cpu": str(CPU_PER_GPU * entry.gpus),
            "memory": f"{MEMORY_GIB_PER_GPU * entry.gpus}Gi",
            "pods": "110",
            gpu.resource_name: str(entry.gpus),
        }
        for name in entry.names():
            nodes.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {KWOK_NODE_ANNOTATION: KWOK_NODE_VALUE},
                        "labels": {
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            "type": "kwok",
                            GPU_PRESENT_LABEL: "true",
                            GPU_PRODUCT_LABEL: gpu.product,
                            GPU_COUNT_LABEL: str(entry.gpus),
                            # GPU feature discovery publishes the memory CUDA reports, in MiB.
                            GPU_MEMORY_LABEL: str(int(gpu.memory_gib * 1024)),
                        },
                    },
                    # Kept on create (as a kubelet registers); kwok adds conditions and addresses.
                    "status": {"capacity": dict(resources), "allocatable": dict(resources)},
                }
            )
    return nodes


# --- reading objects ---------------------------------------------------------------------------------


def condition(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    """The status condition of `type_`, or None."""
    for c in obj.get("status", {}).get("conditions") or []:
        if c.get("type") == type_:
            cond: Mapping[str, Any] = c
            return cond
    return None


def node_ready(node: Mapping[str, Any]) -> bool:
    """Ready=True and no longer tainted not-ready, so the scheduler may use it."""
    ready = condition(node, "Ready")
    taints = node.get("spec", {}).get("taints") or []
    return bool(ready and ready.get("status") == "True") and not any(t.get("key") == NOT_READY_TAINT for t in taints)


def pod_running(pod: Mapping[str, Any]) -> bool:
    """Phase Running and Ready=True (kwok's pod-ready stage sets both)."""
    ready = condition(pod, "Ready")
    return pod.get("status", {}).get("phase") == "Running" and bool(ready and ready.get("status") == "True")


def pending_reason(pod: Mapping[str, Any]) -> str | None:
    """Why the scheduler has not placed `pod`, as `"<reason>: <message>"`, or None once it is scheduled.

    For a Pod that no node can take: `"Unschedulable: 0/4 nodes are available: 1 Insufficient
    nvidia.com/gpu, 3 node(s) didn't match Pod's node affinity/selector. ..."`.
    """
    scheduled = condition(pod, "PodScheduled")
    if scheduled is None or scheduled.get("status") != "False":
        return None
    return f"{scheduled.get('reason', '')}: {scheduled.get('message', '')}"


def gpu_requests(pod: Mapping[str, Any], resource: str = "nvidia.com/gpu") -> int:
    """GPUs a Pod holds: the larger of its containers' sum and its largest init container."""
    spec = pod.get("spec", {})

    def requested(container: Mapping[str, Any]) -> int:
        resources = container.get("resources", {})
        value = (resources.get("requests") or {}).get(resource) or (resources.get("limits") or {}).get(resource)
        return int(value or 0)

    app = sum(requested(c) for c in spec.get("containers") or [])
    init = max((requested(c) for c in spec.get("initContainers") or []), default=0)
    return max(app, init)


# --- the cluster -------------------------------------------------------------------------------------


class E2ECluster(ControlPlane):
    """A `ControlPlane` plus KServe's controller, kube-scheduler, kwok and fake GPU nodes.

    Attributes after `start()` (besides ControlPlane's): `gpu_node_names`, `kserve_webhook_url`
    (https://127.0.0.1:<port>), `kserve_version`, `timings` (phase -> seconds since start, in order).
    """

    def __init__(
        self,
        workdir: Path | str | None = None,
        *,
        nodes: Sequence[GPUNodes] = DEFAULT_GPU_NODES,
        controllers: Sequence[str] = E2E_CONTROLLERS,
        startup_timeout: float = 120.0,
        extra_apiserver_args: Sequence[str] = (),
        kserve_config: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """`kserve_config` merges keys into the JSON of `inferenceservice-config` entries, e.g.
        `{"autoscaler": {"scaleDownStabilizationWindowSeconds": "0"}}`."""
        super().__init__(
            workdir,
            controllers=controllers,
            startup_timeout=startup_timeout,
            extra_apiserver_args=extra_apiserver_args,
        )
        self.initial_nodes = tuple(nodes)
        self.kserve_config_overrides = {k: dict(v) for k, v in (kserve_config or {}).items()}
        self.gpu_node_names: list[str] = []
        self.kserve_webhook_url = ""
        self.kserve_version = ""
        self.timings: dict[str, float] = {}
        self._e2e_binaries: dict[str, Path] = {}
        self._insecure_ssl = ssl.create_default_context()
        # kube-scheduler serves /readyz with a certificate it makes for itself.
        self._insecure_ssl.check_hostname = False
        self._insecure_ssl.verify_mode = ssl.CERT_NONE

    def __enter__(self) -> E2ECluster:
        return self.start()

    def start(self) -> E2ECluster:
        """Start every component; raises ToolsMissingError before starting anything if one is not built."""
        self._e2e_binaries = {name: find_e2e_tool(name) for name in E2E_TOOLS}
        kserve_config_dir()
        # Installed before the controllers start, so that the garbage collector collects what
        # an InferenceService owns from the first test on.
        self.crds = tuple(upstream_crd_files())
        super().start()
        return self

    def _start(self, binaries: Mapping[str, Path]) -> None:
        started = time.monotonic()
        super()._start(binaries)
        self._mark("control plane with upstream CRDs", started)
        deadline = time.monotonic() + self.startup_timeout

        def remaining() -> float:
            return max(1.0, deadline - time.monotonic())

        # The scheduler, kwok and the nodes come up while KServe starts.
        scheduler, scheduler_url = self._start_scheduler()
        kwok = self._start_kwok()
        self.gpu_node_names = self.add_nodes(gpu_nodes(self.initial_nodes), wait=False)
        self._mark("kube-scheduler, kwok and nodes started", started)

        manager = self._start_kserve(remaining())
        self._mark("kserve-manager ready", started)
        self._register_kserve_webhooks()
        self._apply_storage_container()
        self._mark("KServe webhooks and storage container registered", started)

        wait_until(
            lambda: scheduler.alive() and self._probe(scheduler_url) == 200,
            timeout=remaining(),
            what="kube-scheduler /readyz",
        )
        wait_until(
            lambda: kwok.alive() and manager.alive() and self._nodes_ready(self.gpu_node_names),
            timeout=remaining(),
            what=f"nodes {self.gpu_node_names} to be Ready and untainted",
        )
        self._mark("kube-scheduler ready, nodes Ready", started)

    def _mark(self, phase: str, started: float) -> None:
        self.timings[phase] = round(time.monotonic() - started, 2)

    def _pki_or_fail(self) -> _Pki:
        if self._pki is None:
            raise ControlPlaneError("the control plane's certificates are not made yet")
        return self._pki

    # -- components -----------------------------------------------------------------------------

    def _start_scheduler(self) -> tuple[_Component, str]:
        pki = self._pki_or_fail()
        cert, key = pki.client("kube-scheduler", "system:kube-scheduler")
        kubeconfig = self.workdir / "kube-scheduler.kubeconfig"
        kubeconfig.write_text(
            _kubeconfig(self.server, pki.ca_cert, {"client-certificate": str(cert), "client-key": str(key)})
        )
        port = free_port()
        scheduler = self._spawn(
            "kube-scheduler",
            [
                str(self._e2e_binaries["kube-scheduler"]),
                f"--kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'kube-scheduler-certs'}",
                "--leader-elect=false",
                "--profiling=false",
                "--v=2",
            ],
        )
        return scheduler, f"https://127.0.0.1:{port}/readyz"

    def _start_kwok(self) -> _Component:
        # kwok also reads ~/.kwok/kwok.yaml; a home of its own keeps a developer's file out.
        home = self.workdir / "kwok-home"
        home.mkdir(exist_ok=True)
        return self._spawn(
            "kwok",
            [
                str(self._e2e_binaries["kwok"]),
                f"--kubeconfig={self.kubeconfig}",
                f"--config={KWOK_STAGES}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}={KWOK_NODE_VALUE}",
                "--cidr=10.244.0.1/16",
                "--node-ip=10.0.0.1",
                "--node-lease-duration-seconds=40",
            ],
            env={**os.environ, "HOME": str(home)},
        )

    def _start_kserve(self, timeout: float) -> _Component:
        self.kserve_version = kserve_version()
        self.create_namespace(KSERVE_NAMESPACE)
        # The manager reads its ConfigMap once at startup and exits without it.
        self.apply(kserve_configmap(self.kserve_version, self.kserve_config_overrides))

        # controller-runtime serves webhooks with $TMPDIR/k8s-webhook-server/serving-certs/tls.{crt,key}
        # and exits without them; no flag moves or disables them.
        tmpdir = self.workdir / "kserve-tmp"
        certs = tmpdir / "k8s-webhook-server" / "serving-certs"
        certs.mkdir(parents=True, exist_ok=True)
        cert, key = self._pki_or_fail().serving("kserve-webhook", "kserve-webhook-server")
        shutil.copyfile(cert, certs / "tls.crt")
        shutil.copyfile(key, certs / "tls.key")
        (certs / "tls.key").chmod(0o600)

        # Explicit ports: the defaults (:8080, :8081, :9443) would clash between parallel runs.
        probe_port, webhook_port = free_port(), free_port()
        self.kserve_webhook_url = f"https://127.0.0.1:{webhook_port}"
        manager = self._spawn(
            "kserve-manager",
            [
                str(self._e2e_binaries["kserve-manager"]),
                f"--kubeconfig={self.kubeconfig}",
                "--metrics-addr=0",
                f"--health-probe-addr=127.0.0.1:{probe_port}",
                f"--webhook-port={webhook_port}",
                "--leader-elect=false",
            ],
            env={
                **os.environ,
                "TMPDIR": str(tmpdir),
                "POD_NAMESPACE": KSERVE_NAMESPACE,
            },
        )
        # /readyz answers once the webhook server is listening.
        wait_until(
            lambda: manager.alive() and self._probe(f"http://127.0.0.1:{probe_port}/readyz") == 200,
            timeout=timeout,
            what="kserve-manager /readyz",
        )
        return manager

    def _register_kserve_webhooks(self) -> None:
        ca_bundle = base64.b64encode(self.ca_cert.read_bytes()).decode()
        manifests = kserve_config_dir() / "webhook" / "manifests.yaml"
        self.apply(kserve_webhook_configurations(manifests, self.kserve_webhook_url, ca_bundle))

    def _apply_storage_container(self) -> None:
        # storageUri (hf://, s3://, ...) resolves through this object; without it KServe creates
        # no Deployment for such an InferenceService.
        storage = yaml.safe_load((kserve_config_dir() / "storagecontainers" / "default.yaml").read_text())
        storage["spec"]["container"]["image"] = f"kserve/storage-initializer:{self.kserve_version}"
        self.apply(storage)

    def _probe(self, url: str) -> int:
        try:
            with urllib.request.urlopen(url, timeout=2, context=self._insecure_ssl) as response:
                status: int = response.status
                return status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    # -- reading --------------------------------------------------------------------------------

    def list_items(self, path: str, **query: str) -> list[dict[str, Any]]:
        """The items of an API list path (`/api/v1/nodes`), with query parameters (`labelSelector=...`)."""
        url = path + ("?" + urllib.parse.urlencode(query) if query else "")
        status, body = self._request(url)
        if status != 200:
            raise ControlPlaneError(f"GET {url} answered {status}")
        items: list[dict[str, Any]] = json.loads(body)["items"]
        return items

    def nodes(self) -> list[dict[str, Any]]:
        return self.list_items("/api/v1/nodes")

    def pods(self, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        """Pods in `namespace` matching the label `selector`, terminating ones left out."""
        query = {"labelSelector": selector} if selector else {}
        pods = self.list_items(f"/api/v1/namespaces/{namespace}/pods", **query)
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    def _nodes_ready(self, names: Iterable[str]) -> bool:
        ready = {n["metadata"]["name"] for n in self.nodes() if node_ready(n)}
        return set(names) <= ready

    def free_gpus(self, product: str | None = None, resource: str = "nvidia.com/gpu") -> int:
        """Allocatable GPUs not held by a scheduled, unfinished Pod, on nodes of `product` (all when None)."""
        nodes = [
            n
            for n in self.nodes()
            if product is None or n["metadata"].get("labels", {}).get(GPU_PRODUCT_LABEL) == product
        ]
        total = sum(int(n.get("status", {}).get("allocatable", {}).get(resource, 0)) for n in nodes)
        names = {n["metadata"]["name"] for n in nodes}
        held = sum(
            gpu_requests(p, resource)
            for p in self.list_items("/api/v1/pods")
            if p.get("spec", {}).get("nodeName") in names
            and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
        )
        return total - held

    def log_report(self, lines: int = 15, width: int = 300) -> str:
        """The last `lines` lines of every component's log, each cut to `width` characters."""
        parts = [f"component logs in {self.workdir}:"]
        for component in self._components:
            tail = [
                line if len(line) <= width else line[:width] + " ..." for line in component.log_tail(lines).splitlines()
            ]
            parts.append(f"----- {component.name} -----\n" + "\n".join(tail))
        return "\n".join(parts)

    # -- waiting --------------------------------------------------------------------------------

    def wait_for(self, what: str, probe: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.1) -> Any:
        """Poll `probe` until it returns something truthy and return that; on timeout the error
        names `what` and carries the tails of the component logs."""
        found: list[Any] = []

        def done() -> bool:
            value = probe()
            if value:
                found.append(value)
                return True
            return False

        try:
            wait_until(done, timeout=timeout, what=what, interval=interval)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log_report()}") from None
        return found[-1]

    def wait_object(
        self, kind: str, name: str, *, namespace: str | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        """An object once it exists (`kubectl get` per poll)."""
        obj: dict[str, Any] = self.wait_for(
            f"{kind} {namespace}/{name} to exist",
            lambda: self.get(kind, name, namespace=namespace),
            timeout=timeout,
            interval=0.2,
        )
        return obj

    def wait_gone(self, kind: str, name: str, *, namespace: str | None = None, timeout: float = 30.0) -> None:
        self.wait_for(
            f"{kind} {namespace}/{name} to be deleted",
            lambda: self.get(kind, name, namespace=namespace) is None,
            timeout=timeout,
            interval=0.2,
        )

    def wait_pods_running(
        self, namespace: str, selector: str, *, count: int | None = None, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """The Pods matching `selector` once there are `count` of them (at least one when None), all
        Running and Ready; on timeout the error lists each Pod's phase and why it is pending."""
        last: list[list[dict[str, Any]]] = [[]]

        def probe() -> list[dict[str, Any]] | None:
            pods = last[0] = self.pods(namespace, selector)
            enough = len(pods) == count if count is not None else bool(pods)
            return pods if enough and all(pod_running(p) for p in pods) else None

        try:
            pods: list[dict[str, Any]] = self.wait_for(
                f"{count if count is not None else 'all'} pod(s) {selector!r} in {namespace} to be Running",
                probe,
                timeout=timeout,
            )
        except TimeoutError as exc:
            raise TimeoutError(f"{describe_pods(last[0])}\n{exc}") from None
        return pods

    def wait_pods_pending(
        self, namespace: str, selector: str, *, count: int = 1, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """The Pods matching `selector` that the scheduler could not place, once there are `count`."""
        last: list[list[dict[str, Any]]] = [[]]

        def probe() -> list[dict[str, Any]] | None:
            last[0] = self.pods(namespace, selector)
            pending = [p for p in last[0] if pending_reason(p)]
            return pending if len(pending) >= count else None

        try:
            pods: list[dict[str, Any]] = self.wait_for(
                f"{count} unschedulable pod(s) {selector!r} in {namespace}", probe, timeout=timeout
            )
        except TimeoutError as exc:
            raise TimeoutError(f"{describe_pods(last[0])}\n{exc}") from None
        return pods

    # -- nodes ----------------------------------------------------------------------------------

    def add_nodes(self, nodes: Iterable[Mapping[str, Any]], *, wait: bool = True, timeout: float = 30.0) -> list[str]:
        """Create Node objects (from `gpu_nodes`) and, with `wait`, wait until they are Ready."""
        objects = [dict(n) for n in nodes]
        if not objects:
            return []
        # `create`, not apply: the status a kubelet would register with (capacity) is kept on create.
        self.kubectl("create", "-f", "-", input=yaml.safe_dump_all(objects, sort_keys=False))
        names = [str(n["metadata"]["name"]) for n in objects]
        if wait:
            self.wait_for(f"nodes {names} to be Ready", lambda: self._nodes_ready(names), timeout=timeout)
        return names

    def add_gpu_nodes(self, *entries: GPUNodes, wait: bool = True, timeout: float = 30.0) -> list[str]:
        """`add_nodes(gpu_nodes(entries))`."""
        return self.add_nodes(gpu_nodes(entries), wait=wait, timeout=timeout)

    def delete_nodes(self, names: Iterable[str], *, timeout: float = 30.0) -> None:
        """Delete Nodes and the Pods bound to them (as a drain would; no pod GC runs here)."""
        names = list(names)
        for name in names:
            self.kubectl("delete", "pods", "--all-namespaces", f"--field-selector=spec.nodeName={name}", "--wait=false")
        self.kubectl("delete", "nodes", *names, "--ignore-not-found", "--wait=true", timeout=timeout)
        self.gpu_node_names = [n for n in self.gpu_node_names if n not in names]


def kserve_configmap(version: str, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """KServe's upstream `inferenceservice-config`, set up for a cluster without Knative or Istio.

    Standard (RawDeployment) mode by default, no Ingress or Istio VirtualService (their absence
    would be logged as an error on every reconcile), release-tagged images; `overrides` merge keys
    into any entry's JSON.
    """
    path = kserve_config_dir() / "configmap" / "inferenceservice.yaml"
    configmap: dict[str, Any] = yaml.safe_load(path.read_text())
    data: dict[str, str] = configmap["data"]
    data.pop("_example", None)
    settings: dict[str, Mapping[str, Any]] = {
        "deploy": {"defaultDeploymentMode": "Standard"},
        "ingress": {"disableIngressCreation": True, "disableIstioVirtualHost": True},
        "storageInitializer": {"image": f"kserve/storage-initializer:{version}"},
    }
    for key, values in overrides.items() if overrides else ():
        settings[key] = {**settings.get(key, {}), **values}
    for key, values in settings.items():
        entry = json.loads(data.get(key, "{}"))
        entry.update(values)
        data[key] = json.dumps(entry, indent=2, sort_keys=True)
    configmap["metadata"] = {"name": KSERVE_CONFIGMAP, "namespace": KSERVE_NAMESPACE}
    return configmap


def kserve_webhook_configurations(manifests: Path, base_url: str, ca_bundle: str) -> list[dict[str, Any]]:
    """KServe's webhook configurations (`config/webhook/manifests.yaml`) pointed at a loopback URL.

    The API server runs on loopback too, so it can call the manager directly instead of through
    the Service a cluster install uses. All of them are registered, as a KServe install does.
    """
    configurations = []
    for doc in yaml.safe_load_all(manifests.read_text()):
        if not doc:
            continue
        doc["metadata"] = {"name": doc["metadata"]["name"]}
        for webhook in doc["webhooks"]:
            path = webhook["clientConfig"]["service"]["path"]
            webhook["clientConfig"] = {"url": f"{base_url}{path}", "caBundle": ca_bundle}
        configurations.append(doc)
    return configurations


def describe_pods(pods: Iterable[Mapping[str, Any]]) -> str:
    """One line per Pod: name, phase, node, and why it is pending (for failure messages)."""
    lines = []
    for pod in pods:
        status = pod.get("status", {})
        reason = pending_reason(pod)
        lines.append(
            f"  {pod['metadata']['name']}: {status.get('phase', '?')} on {pod.get('spec', {}).get('nodeName') or '-'}"
            + (f" ({reason})" if reason else "")
        )
    return "pods:\n" + ("\n".join(lines) if lines else "  (none)")
