"""The bake-off tier: BakeOffs running in the e2e cluster (KServe's controller, kube-scheduler, kwok GPU
nodes) with the operator as a process under the chart's ServiceAccount and RBAC, simulated variants
served by local `bakeoff sim` processes (`tests.support.pod_runner`, `tests.support.endpoints`) and
run Jobs whose pods run as local processes under the Job's ServiceAccount (`tests.support.job_runner`),
and Prometheus with the chart's rules scraping the replicas and the operator (whose autoscaler exports
the variants' spec and GPU prices), as the playground's does.

Needs hack/build-tools.sh, hack/build-kserve.sh, hack/fetch-crds.sh and hack/build-prometheus.sh; skipped
without them (failed with CI=true)."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.chart_support import KUBE_VERSION
from tests.observability.promql import RULE_FILE
from tests.support.controlplane import ToolsMissingError, _Component, find_tool, free_port, wait_until
from tests.support.e2e import GPUNodes, missing_e2e_tools
from tests.support.endpoints import Endpoints
from tests.support.fixtures import unavailable
from tests.support.job_runner import JobRunner
from tests.support.playground import CHART, RBAC_KINDS, RELEASE, RELEASE_NAMESPACE, PlaygroundCluster, http_status
from tests.support.pod_runner import PodRunner
from tests.support.prometheus import Prometheus, missing_prometheus_tools

# One 8 x H100 server: each variant of a bake-off runs one replica on one GPU.
NODES = (GPUNodes("h100", gpus=8, count=1),)
LOADTEST_CLUSTER_ROLE = f"{RELEASE}-loadtest"  # the chart's, for the release name `bakeoff`
STREAMS_PER_PROCESS = 2


@dataclass
class Rig:
    """The cluster, the local replicas and endpoints, the Job runner and the operator process."""

    cluster: PlaygroundCluster
    workdir: Path
    operator_kubeconfig: Path
    endpoints: Endpoints
    pods: PodRunner
    jobs: JobRunner
    prometheus: Prometheus
    metrics_port: int
    operator: _Component | None = None
    metrics_url: str = ""
    starts: int = 0
    logs: list[Path] = field(default_factory=list)
    timings: list[str] = field(default_factory=list)

    def took(self, what: str, seconds: float) -> None:
        self.timings.append(f"{what}: {seconds:.1f} s")

    def start_operator(self) -> float:
        """Start the operator as the chart's Deployment runs it; seconds until its /healthz answers."""
        started = time.perf_counter()
        self.starts += 1
        health, metrics = free_port(), self.metrics_port  # Prometheus scrapes the same port after a restart
        env = {
            **os.environ,
            "KUBECONFIG": str(self.operator_kubeconfig),
            "BAKEOFF_NAMESPACE": RELEASE_NAMESPACE,
            "BAKEOFF_DEFAULT_ENGINE": "simulator",
            "BAKEOFF_METRICS_PORT": str(metrics),
            "BAKEOFF_METRICS_ADDRESS": "127.0.0.1",
            "BAKEOFF_LOADTEST_CLUSTER_ROLE": LOADTEST_CLUSTER_ROLE,
            # Two streams per load process: the bake-off's four streams run as a Locust master and two
            # workers in the Job's pod, as a load beyond one process does in production.
            "BAKEOFF_LOADTEST_STREAMS_PER_PROCESS": str(STREAMS_PER_PROCESS),
            # The autoscaler exports every variant's spec and the GPU prices the recording rules price with.
            "BAKEOFF_PROMETHEUS_URL": self.prometheus.url,
            "BAKEOFF_AUTOSCALE_INTERVAL_S": "2",
            "BAKEOFF_RATE_WINDOW": "10s",
            "PYTHONUNBUFFERED": "1",
        }
        log = self.workdir / f"operator-{self.starts}.log"
        self.logs.append(log)
        argv = [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces",
                f"--liveness=http://127.0.0.1:{health}/healthz", "-m", "bakeoff_operator.handlers"]  # fmt: skip
        operator = _Component("operator", argv, log, env)
        self.operator = operator
        self.metrics_url = f"http://127.0.0.1:{metrics}/metrics"
        wait_until(
            lambda: operator.alive() and http_status(f"http://127.0.0.1:{health}/healthz") == 200,
            timeout=120,
            what="the operator's /healthz",
        )
        return time.perf_counter() - started

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.stop()
            self.operator = None

    def namespace(self, prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.cluster.create_namespace(name)
        return name

    def apply(self, objects: list[dict[str, Any]], namespace: str) -> None:
        self.cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(objects))

    def operator_output(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())


def _missing() -> list[str]:
    missing = missing_e2e_tools() + missing_prometheus_tools()
    try:
        find_tool("helm")
    except ToolsMissingError as exc:
        missing.append(str(exc))
    return missing


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    missing = _missing()
    if missing:
        unavailable("the bake-off tier cannot start: " + "; ".join(missing))
    workdir = tmp_path_factory.mktemp("bakeoffs")
    started = time.perf_counter()
    cluster = PlaygroundCluster(workdir / "cluster", nodes=NODES)
    with cluster:
        rendered = cluster.helm(
            "template", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE, "--kube-version", KUBE_VERSION
        ).stdout
        docs = [d for d in yaml.safe_load_all(rendered) if d]
        cluster.create_namespace(RELEASE_NAMESPACE)
        cluster.apply([d for d in docs if d["kind"] in RBAC_KINDS or d["kind"] == "GPUClass"])
        kubeconfig = cluster.service_account_kubeconfig(RELEASE_NAMESPACE, RELEASE, create=False)
        events = (workdir / "events.log").open("a")

        def log(line: str) -> None:
            events.write(f"{time.strftime('%H:%M:%S')} {line}\n")
            events.flush()

        metrics_port = free_port()
        prometheus = Prometheus(
            workdir / "prometheus",
            static_targets={"bakeoff-operator": [f"127.0.0.1:{metrics_port}"]},
            rule_files=[RULE_FILE],
        )
        with Endpoints() as endpoints, prometheus:
            pods = PodRunner(
                cluster.kubeconfig, workdir / "replicas", prometheus=prometheus, endpoints=endpoints, on_event=log
            ).start()
            jobs = JobRunner(
                cluster, workdir / "jobs", endpoint_of=lambda ns, v: endpoints.ensure(ns, v).url, on_event=log
            ).start()
            rig = Rig(cluster, workdir, kubeconfig, endpoints, pods, jobs, prometheus, metrics_port)
            try:
                rig.start_operator()
                rig.took("cluster, chart, runners and operator up", time.perf_counter() - started)
                yield rig
            finally:
                rig.stop_operator()
                jobs.stop()
                pods.stop()
                events.close()
                print("\n" + "\n".join(rig.timings))
        output = rig.operator_output()
        denied = [line for line in output.splitlines() if "Forbidden" in line or " 403" in line]
        assert not denied, "the operator was refused by RBAC:\n" + "\n".join(denied)
        tracebacks = [line for line in output.splitlines() if "Traceback" in line]
        assert not tracebacks, output[-5000:]
