"""The playground: Bakeoff's whole Kubernetes loop on one machine, without a GPU.

    python -m tests.support.playground        # what `make playground` runs; Ctrl-C stops it

It starts, all on 127.0.0.1 with ports chosen free:

1. the e2e cluster (`tests.support.e2e.E2ECluster`): etcd, kube-apiserver, kube-controller-manager,
   kube-scheduler, KServe's controller and kwok fake GPU nodes (`PLAYGROUND_NODES`);
2. Bakeoff's CRDs (`charts/bakeoff/crds`, installed with the cluster's own), and the operator's
   ServiceAccount and RBAC and the default GPUClasses rendered by `helm template`;
3. Prometheus 3 (`tests.support.prometheus`), scraping every local replica and the operator's
   metrics port each second;
4. the operator, `kopf run -m bakeoff_operator.handlers` as a subprocess under the chart's
   ServiceAccount, with `BAKEOFF_DEFAULT_ENGINE=simulator`, `BAKEOFF_PROMETHEUS_URL`, its /metrics
   on 127.0.0.1 and its autoscaler every 2 s over a 10 s rate window (`operator_env` overrides);
5. the pod runner (`tests.support.pod_runner`), which runs a local `bakeoff sim` process for every
   Running replica pod of a simulated variant, and feeds Prometheus and
6. one local endpoint per variant (`tests.support.endpoints`), spreading requests over its replicas.

So `kubectl apply` a ModelVariant, and the operator renders KServe objects, KServe a Deployment,
the scheduler places its pods on GPU nodes of the variant's class, and the pods' simulators serve
traffic and metrics; `kubectl scale modelvariant/<name> --replicas=N` starts or stops processes.

Tests take the session fixture `playground` (exported by tests/playground/conftest.py):

    def test_it(playground: Playground, playground_namespace: str) -> None:
        playground.apply([variant], namespace=playground_namespace)
        playground.wait_serving("llama", 1, namespace=playground_namespace)
        url = playground.endpoint("llama", namespace=playground_namespace)
        playground.prometheus.query('vllm:num_requests_running{variant="llama"}')
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import yaml

from tests.chart.chart_support import KUBE_VERSION
from tests.support.controlplane import (
    REPO_ROOT,
    ToolsMissingError,
    _Component,
    find_tool,
    free_port,
    upstream_crd_files,
    wait_until,
)
from tests.support.e2e import E2ECluster, GPUNodes, kserve_config_dir, missing_e2e_tools
from tests.support.endpoints import Endpoints, VariantEndpoint
from tests.support.fixtures import unavailable
from tests.support.pod_runner import PodRunner, ReplicaView, group_alive
from tests.support.prometheus import Prometheus, missing_prometheus_tools

CHART = REPO_ROOT / "charts" / "bakeoff"
RELEASE = "bakeoff"
RELEASE_NAMESPACE = "bakeoff-system"
RBAC_KINDS = frozenset({"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"})
OPERATOR_JOB = "bakeoff-operator"
# Long enough for a playground left running over a day; a Pod's projected token would be rotated.
TOKEN_SECONDS = 7 * 24 * 3600

# Room for every example at once: two 8 x H100 servers more than the e2e default, and each other class.
PLAYGROUND_NODES = (
    GPUNodes("h100", gpus=8, count=4),
    GPUNodes("h200", gpus=8, count=1),
    GPUNodes("a100-80gb", gpus=8, count=2),
    GPUNodes("l40s", gpus=8, count=2),
    GPUNodes("l4", gpus=4, count=2),
    GPUNodes("a10g", gpus=4, count=1),
)


class PlaygroundCluster(E2ECluster):
    """The e2e cluster with Bakeoff's CRDs installed before kube-controller-manager starts: its garbage
    collector discovers kinds added later only every 30 s, and until then deleting a ModelVariant
    leaves its InferenceService (and so its pods and processes) running."""

    def _start(self, binaries: Mapping[str, Path]) -> None:
        self.crds = (*self.crds, CHART / "crds")
        super()._start(binaries)


def missing_playground_tools() -> list[str]:
    """What the playground needs and is not built yet, each with the command that builds it."""
    missing = missing_e2e_tools() + missing_prometheus_tools()
    for check in (kserve_config_dir, upstream_crd_files):
        try:
            check()
        except ToolsMissingError as exc:
            missing.append(str(exc))
    try:
        find_tool("helm")
    except ToolsMissingError as exc:
        missing.append(str(exc))
    return list(dict.fromkeys(missing))  # the CRDs and KServe's configuration share one message


def rss_mib(pid: int) -> float:
    """Resident memory of one process, MiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Playground:
    """The whole loop on one machine; a context manager. See the module docstring.

    Attributes after `start()`: `cluster` (the E2ECluster; `cluster.kubeconfig` is the admin
    kubeconfig), `prometheus`, `endpoints`, `runner`, `operator_kubeconfig` (the chart's
    ServiceAccount), `operator_metrics_url`, `workdir`, `timings` (phase -> seconds since start).
    """

    def __init__(
        self,
        workdir: Path | str | None = None,
        *,
        nodes: Sequence[GPUNodes] = PLAYGROUND_NODES,
        namespaces: Sequence[str] = (),
        operator_env: Mapping[str, str] | None = None,
        rule_files: Sequence[Path | str] = (),
        max_replicas: int = 48,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        """`namespaces`: the ones the operator and the pod runner serve (all when empty).
        `operator_env` is added to the operator's environment (after the playground's own
        BAKEOFF_* settings, so it may override them). `on_event` receives the pod runner's lines."""
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="bakeoff-playground-"))
        self.nodes = tuple(nodes)
        self.namespaces = tuple(namespaces)
        self.operator_env = dict(operator_env or {})
        self.rule_files = tuple(rule_files)
        self.max_replicas = max_replicas
        self.on_event = on_event
        self.timings: dict[str, float] = {}
        self.startup_seconds = 0.0
        self.cluster = PlaygroundCluster(self.workdir / "cluster", nodes=self.nodes)
        self.operator_metrics_port = free_port()
        self.operator_metrics_url = f"http://127.0.0.1:{self.operator_metrics_port}/metrics"
        self.prometheus = Prometheus(
            self.workdir / "prometheus",
            static_targets={OPERATOR_JOB: [f"127.0.0.1:{self.operator_metrics_port}"]},
            rule_files=self.rule_files,
        )
        self.endpoints = Endpoints()
        self.runner: PodRunner | None = None
        self.operator: _Component | None = None
        self.operator_kubeconfig = Path()
        self._started = 0.0

    # -- lifecycle ----------------------------------------------------------------------------------

    def __enter__(self) -> Playground:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Playground:
        """Start everything; on a failure, stop what started and raise with the logs' tails."""
        self._started = time.monotonic()
        try:
            self.prometheus.start()
            self._mark("prometheus ready")
            self.cluster.start()
            self._mark("cluster ready")
            self.install_chart()
            self._mark("chart installed")
            self.endpoints.start()
            self.runner = PodRunner(
                self.cluster.kubeconfig,
                self.workdir / "replicas",
                prometheus=self.prometheus,
                endpoints=self.endpoints,
                namespaces=self.namespaces,
                max_replicas=self.max_replicas,
                on_event=self.on_event,
            ).start()
            self._mark("pod runner watching")
            self._start_operator()
            self._mark("operator ready")
        except BaseException:
            report = self.log_report()
            self.stop()
            print(report, file=sys.stderr)
            raise
        self.startup_seconds = round(time.monotonic() - self._started, 2)
        return self

    def _mark(self, phase: str) -> None:
        self.timings[phase] = round(time.monotonic() - self._started, 2)

    def stop(self) -> None:
        """Stop the operator, the replicas, the endpoints, Prometheus and the cluster; idempotent."""
        if self.operator is not None:
            self.operator.stop()
            self.operator = None
        if self.runner is not None:
            self.runner.stop()
        self.endpoints.stop()
        self.prometheus.stop()
        self.cluster.stop(remove_workdir=False)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def install_chart(self) -> None:
        """The operator's ServiceAccount and RBAC and the default GPUClasses (the CRDs are installed
        with the cluster's)."""
        rendered = self.cluster.helm(
            "template", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE, "--kube-version", KUBE_VERSION
        ).stdout
        docs = [d for d in yaml.safe_load_all(rendered) if d]
        wanted = [d for d in docs if d["kind"] in RBAC_KINDS or d["kind"] == "GPUClass"]
        self.cluster.create_namespace(RELEASE_NAMESPACE)
        self.cluster.apply(wanted)
        self.operator_kubeconfig = self.cluster.service_account_kubeconfig(
            RELEASE_NAMESPACE, RELEASE, create=False, duration_seconds=TOKEN_SECONDS
        )

    def _start_operator(self) -> None:
        health_port = free_port()
        scope = [f"--namespace={n}" for n in self.namespaces] or ["--all-namespaces"]
        env = {
            **os.environ,
            "KUBECONFIG": str(self.operator_kubeconfig),
            "BAKEOFF_NAMESPACE": RELEASE_NAMESPACE,
            "BAKEOFF_DEFAULT_ENGINE": "simulator",
            "BAKEOFF_PROMETHEUS_URL": self.prometheus.url,
            "BAKEOFF_METRICS_PORT": str(self.operator_metrics_port),
            # Prometheus scrapes every second here: the autoscaler looks every 2 s over 10 s of rates.
            "BAKEOFF_AUTOSCALE_INTERVAL_S": "2",
            "BAKEOFF_RATE_WINDOW": "10s",
            "BAKEOFF_METRICS_ADDRESS": "127.0.0.1",
            "BAKEOFF_WATCH_NAMESPACES": ",".join(self.namespaces),
            "PYTHONUNBUFFERED": "1",
            **self.operator_env,
        }
        self.operator = _Component(
            "operator",
            [
                sys.executable,
                "-m",
                "kopf",
                "run",
                "--standalone",
                *scope,
                f"--liveness=http://127.0.0.1:{health_port}/healthz",
                "-m",
                "bakeoff_operator.handlers",
            ],
            self.workdir / "operator.log",
            env,
        )
        operator = self.operator
        wait_until(
            lambda: operator.alive() and http_status(f"http://127.0.0.1:{health_port}/healthz") == 200,
            timeout=120,
            what="the operator's /healthz",
        )

    # -- using it -----------------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (`export KUBECONFIG=...` to use kubectl against the playground)."""
        return self.cluster.kubeconfig

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        """kubectl as admin; returns stdout."""
        return self.cluster.kubectl(*args, input=input, check=check).stdout

    def apply(self, objects: Sequence[Mapping[str, Any]] | str, namespace: str = "default") -> None:
        """`kubectl apply` objects (or YAML text) in `namespace`, as a user would."""
        text = objects if isinstance(objects, str) else yaml.safe_dump_all([dict(o) for o in objects])
        self.kubectl("apply", "-n", namespace, "-f", "-", input=text)

    def create_namespace(self, prefix: str = "pg") -> str:
        """A new namespace named `<prefix>-<random>`."""
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.cluster.create_namespace(name)
        return name

    def scale(self, variant: str, replicas: int, namespace: str = "default") -> None:
        """`kubectl scale modelvariant/<variant> --replicas=N` (the scale subresource, spec.replicas)."""
        self.kubectl("scale", f"modelvariant/{variant}", f"--replicas={replicas}", "-n", namespace)

    def endpoint(self, variant: str, namespace: str = "default") -> str:
        """The variant's local endpoint URL (stable for the playground's life; 503 while nothing serves)."""
        return self.endpoints.ensure(namespace, variant).url

    def variant_endpoint(self, variant: str, namespace: str = "default") -> VariantEndpoint:
        """The endpoint object: its replicas, requests served per pod, 503s answered."""
        return self.endpoints.ensure(namespace, variant)

    def replicas(self, variant: str, namespace: str = "default", *, serving: bool = True) -> list[ReplicaView]:
        """The variant's local replicas; only those answering /health when `serving`."""
        found = self._runner().replicas(namespace, variant)
        return [r for r in found if r.healthy] if serving else found

    def wait_serving(
        self, variant: str, count: int, namespace: str = "default", *, scraped: bool = True, timeout: float = 60.0
    ) -> list[ReplicaView]:
        """Wait until exactly `count` local replicas of the variant serve, its endpoint spreads over
        them and (with `scraped`) Prometheus has scraped each of them; returns them."""
        endpoint = self.endpoints.ensure(namespace, variant)
        last: list[list[ReplicaView]] = [[]]

        def serving() -> bool:
            all_replicas = self._runner().replicas(namespace, variant)
            ready = [r for r in all_replicas if r.healthy]
            last[0] = all_replicas
            return (
                len(all_replicas) == count
                and len(ready) == count
                and {r.pod for r in endpoint.replicas} == {r.pod for r in ready}
            )

        try:
            wait_until(serving, timeout=timeout, what=f"{count} local replica(s) of {namespace}/{variant} serving")
            if scraped:
                up = f'count(up{{namespace="{namespace}",variant="{variant}"}} == 1)'
                self.prometheus.wait_for(
                    up, lambda v: (v or 0) == count if count else v is None, timeout=max(5.0, timeout / 2)
                )
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.describe(variant, namespace, last[0])}") from None
        return self.replicas(variant, namespace)

    def describe(self, variant: str, namespace: str, replicas: Sequence[ReplicaView] = ()) -> str:
        """What the cluster and the runner show of a variant, for a failure message."""
        runner = self._runner()
        lines = [
            f"local replicas of {namespace}/{variant}: {[(r.pod, r.url, r.healthy, r.restarts) for r in replicas]}",
            f"refused pods: {runner.refused()}",
            f"runner errors: {runner.errors[-5:]}",
            self.kubectl("get", "modelvariant,isvc,deploy,pods", "-n", namespace, "-o", "wide", check=False),
        ]
        return "\n".join(lines)

    def process_groups(self) -> list[int]:
        """Every process group the pod runner started."""
        return self._runner().process_groups()

    def live_process_groups(self) -> list[int]:
        """The pod runner's process groups that still have a process."""
        return [g for g in self.process_groups() if group_alive(g)]

    def memory_mib(self) -> dict[str, float]:
        """Resident memory per component, MiB, and `total`."""
        parts: dict[str, float] = {}
        for component in self.cluster._components:
            parts[component.name] = rss_mib(component.process.pid)
        if self.prometheus.pid is not None:
            parts["prometheus"] = rss_mib(self.prometheus.pid)
        if self.operator is not None:
            parts["operator"] = rss_mib(self.operator.process.pid)
        parts["this process (runner, endpoints)"] = rss_mib(os.getpid())
        replicas = self._runner().replicas() if self.runner is not None else []
        parts[f"{len(replicas)} local replica(s)"] = sum(rss_mib(r.pid) for r in replicas)
        parts["total"] = sum(parts.values())
        return {k: round(v, 1) for k, v in parts.items()}

    def log_report(self, lines: int = 20) -> str:
        parts = [self.cluster.log_report(lines=lines)]
        parts.append(f"----- prometheus -----\n{self.prometheus.log_tail(lines)}")
        if self.operator is not None:
            parts.append(f"----- operator -----\n{self.operator.log_tail(lines)}")
        return "\n".join(parts)

    def _runner(self) -> PodRunner:
        if self.runner is None:
            raise RuntimeError("the playground is not started")
        return self.runner


def http_status(url: str) -> int:
    """The HTTP status `url` answers with; 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


# --- pytest fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def playground(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Playground]:
    """The playground, shared by the session (about 20-40 s to start); tests use namespaces of their own."""
    missing = missing_playground_tools()
    if missing:
        unavailable("the playground cannot start: " + "; ".join(missing))
    workdir = tmp_path_factory.mktemp("playground")
    events = (workdir / "events.log").open("a")

    def log(line: str) -> None:
        events.write(f"{time.strftime('%H:%M:%S')} {line}\n")
        events.flush()

    with Playground(workdir, on_event=log) as pg:
        memory = pg.memory_mib()
        print(f"\nplayground started in {pg.startup_seconds} s: {pg.timings}; memory {memory['total']:.0f} MiB")
        yield pg
        print(f"\nplayground memory at the end: {pg.memory_mib()}")
    events.close()
    left = pg.live_process_groups()
    assert not left, f"local replicas outlived the playground: process groups {left}"


@pytest.fixture
def playground_namespace(playground: Playground, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace in the playground named after the test, deleted (waiting for its pods) afterwards.

    Short on purpose: KServe's host name `<isvc>-predictor-<namespace>` must fit in 63 characters.
    """
    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).removeprefix("test-")[:14].strip("-")
    name = playground.create_namespace(stem or "pg")
    yield name
    playground.kubectl("delete", "namespace", name, "--timeout=90s", check=False)


# --- the command line ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.playground",
        description="Bakeoff's whole Kubernetes loop on this machine: cluster, KServe, kwok GPU nodes, the operator, "
        "simulated replicas as local processes, Prometheus and one local endpoint per variant. Ctrl-C stops it.",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="logs and state (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the workdir (logs) after stopping")
    parser.add_argument("--namespace", action="append", default=[], help="serve only these namespaces (repeat)")
    parser.add_argument("--apply", type=Path, action="append", default=[], help="kubectl apply this file once up")
    parser.add_argument("--apply-namespace", default="default", help="namespace for --apply (default: default)")
    parser.add_argument("--rules", type=Path, action="append", default=[], help="Prometheus rule file (repeat)")
    args = parser.parse_args(list(argv) if argv is not None else None)

    missing = missing_playground_tools()
    if missing:
        print("the playground cannot start:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 1
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bakeoff-playground-"))
    announced: set[tuple[str, str]] = set()
    lock = threading.Lock()
    holder: list[Playground] = []

    def on_event(line: str) -> None:
        with lock:
            print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)
            if not holder or holder[0].runner is None or not line.startswith("serving "):
                return
            for replica in holder[0].runner.replicas():
                key = (replica.namespace, replica.variant)
                if key in announced or not replica.healthy:
                    continue
                announced.add(key)
                url = holder[0].endpoints.ensure(*key).url
                print(
                    f"  endpoint {key[0]}/{key[1]}: {url}\n"
                    f"    bakeoff loadtest --endpoint {url} --model {replica.model_name}",
                    flush=True,
                )

    # Ctrl-C arrives as KeyboardInterrupt; SIGTERM and SIGHUP stop it the same way.
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)
    pg = Playground(workdir, namespaces=args.namespace, rule_files=args.rules, on_event=on_event)
    holder.append(pg)
    print(f"starting the playground in {workdir} ...", flush=True)
    try:
        pg.start()
        memory = pg.memory_mib()
        nodes = ", ".join(f"{n.count} x {n.gpus} {n.gpu_class}" for n in pg.nodes)
        print(
            f"\nplayground ready in {pg.startup_seconds:.1f} s, {memory['total']:.0f} MiB resident\n"
            f"  export KUBECONFIG={pg.kubeconfig}\n"
            f"  Prometheus: {pg.prometheus.url} (API only; e.g. {pg.prometheus.url}/api/v1/targets)\n"
            f"  operator log: {pg.workdir / 'operator.log'}; replica logs: {pg.workdir / 'replicas'}\n"
            f"  GPU nodes: {nodes}\n"
            f"Try: kubectl apply -f examples/quickstart.yaml; kubectl get modelvariants\n"
            f"Each variant's endpoint is printed below once a replica serves. Ctrl-C stops everything.\n",
            flush=True,
        )
        for path in args.apply:
            pg.kubectl("apply", "-n", args.apply_namespace, "-f", str(path))
            print(f"applied {path}", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping the playground ...", flush=True)
    finally:
        started = time.monotonic()
        with contextlib.suppress(KeyboardInterrupt):
            pg.stop()
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        print(f"stopped in {time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
