"""How the operator scales with the number of ModelVariants, on the e2e cluster (control plane, KServe's
controller, kube-scheduler, kwok GPU nodes): apply N variants at once and measure

- apply -> children: until every variant's ServingRuntime and InferenceService exist;
- apply -> pods Running: until every replica runs on a node of its GPU class;
- apply -> Ready: until every variant's status says Ready;
- the operator's resident memory (it runs as `kopf run`, a process of its own, under the chart's
  ServiceAccount) before the variants, at the end, and its peak.

    .venv/bin/python benchmarks/operator_scale.py --variants 50

Needs hack/build-tools.sh, hack/build-kserve.sh and hack/fetch-crds.sh (BAKEOFF_TOOLS_DIR).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.chart.chart_support import KUBE_VERSION  # noqa: E402
from tests.support.controlplane import free_port  # noqa: E402
from tests.support.e2e import E2ECluster, GPUNodes  # noqa: E402

RELEASE, RELEASE_NAMESPACE = "bakeoff", "bakeoff-system"
RBAC = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def variant(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "bakeoff.dev/v1alpha1",
        "kind": "ModelVariant",
        "metadata": {"name": f"v{i:03d}", "labels": {"bakeoff.dev/model": "llama-3.1-8b"}},
        "spec": {
            "model": {"source": "hf://meta-llama/Llama-3.1-8B-Instruct"},
            "architecture": {"catalog": "llama-3.1-8b"},
            "format": ("bf16", "fp8", "int8", "int4")[i % 4],
            "gpuClass": "h100",
            "tensorParallelSize": 1,
        },
    }


def _ready(mv: dict[str, Any]) -> bool:
    conditions = (mv.get("status") or {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    n = args.variants
    nodes = (n + 7) // 8 + 1
    with tempfile.TemporaryDirectory() as tmp, E2ECluster(Path(tmp) / "cluster") as cluster:
        cluster.add_gpu_nodes(GPUNodes("h100", gpus=8, count=nodes, prefix="scale-h100"))
        cluster.install_crds([REPO / "charts/bakeoff/crds"])
        rendered = cluster.helm(
            "template", RELEASE, str(REPO / "charts/bakeoff"), "--namespace", RELEASE_NAMESPACE,
            "--kube-version", KUBE_VERSION,
        ).stdout  # fmt: skip
        docs = [d for d in yaml.safe_load_all(rendered) if d]
        cluster.create_namespace(RELEASE_NAMESPACE)
        cluster.apply([d for d in docs if d["kind"] in RBAC or d["kind"] == "GPUClass"])
        kubeconfig = cluster.service_account_kubeconfig(RELEASE_NAMESPACE, RELEASE, create=False)
        namespace = cluster.create_namespace("scale")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "BAKEOFF_NAMESPACE": RELEASE_NAMESPACE}
        health = free_port()
        log = open(Path(tmp) / "operator.log", "w")  # noqa: SIM115 (closed with the run)
        operator = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "--standalone", "--quiet", f"--namespace={namespace}",
             f"--liveness=http://127.0.0.1:{health}/healthz", "-m", "bakeoff_operator.handlers"],
            env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            cluster.wait_for(
                "the operator's liveness", lambda: cluster._probe(f"http://127.0.0.1:{health}/healthz") == 200
            )
            idle = rss_mib(operator.pid)
            start = time.perf_counter()
            cluster.kubectl(
                "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all([variant(i) for i in range(n)])
            )
            applied = time.perf_counter() - start
            peak = idle
            marks: dict[str, float] = {}
            while len(marks) < 3 and time.perf_counter() - start < args.timeout:
                peak = max(peak, rss_mib(operator.pid))
                now = time.perf_counter() - start
                isvcs = cluster.list_items(f"/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices")
                if "children" not in marks and len(isvcs) >= n:
                    marks["children"] = now
                pods = cluster.pods(namespace)
                running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
                if "running" not in marks and len(running) >= n:
                    marks["running"] = now
                mvs = cluster.list_items(f"/apis/bakeoff.dev/v1alpha1/namespaces/{namespace}/modelvariants")
                ready = [m for m in mvs if _ready(m)]
                if "ready" not in marks and len(ready) >= n:
                    marks["ready"] = now
                time.sleep(0.5)
            end = rss_mib(operator.pid)
        finally:
            operator.terminate()
            try:
                operator.wait(timeout=30)
            except subprocess.TimeoutExpired:
                operator.kill()
            log.close()
    print(f"variants: {n} (H100 nodes: {nodes} x 8 GPUs)")
    print(f"kubectl apply of {n} variants: {applied:.2f} s")
    for key, what in (("children", "children (InferenceServices)"), ("running", "pods Running"), ("ready", "Ready")):
        value = marks.get(key)
        print(f"apply -> every variant's {what}: {value:.1f} s" if value is not None else f"{what}: not reached")
    print(f"operator RSS: {idle:.0f} MiB idle, {end:.0f} MiB with {n} variants, peak {peak:.0f} MiB")
    return 0 if len(marks) == 3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
