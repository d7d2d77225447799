"""The autoscaler's round against the real API server holds a variant that a BakeOff run is measuring: its
count stays and its `ScalingLimited` condition says `BakeOffRun`, until the run ends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bakeoff_operator.autoscaler import Autoscaler
from bakeoff_operator.autoscaling.decide import Limit
from bakeoff_operator.io.metrics import OperatorMetrics
from bakeoff_operator.io.prometheus import Prometheus

from tests.support.controlplane import ControlPlane

pytestmark = pytest.mark.cluster

CHART = Path(__file__).resolve().parents[2] / "charts/bakeoff"
NAMESPACE = "hold-test"


@pytest.fixture
def namespace(kube_io: ControlPlane) -> str:
    kube_io.install_crds([CHART / "crds"])
    kube_io.create_namespace(NAMESPACE)
    return NAMESPACE


def _patch_status(cp: ControlPlane, kind: str, name: str, status: dict[str, Any]) -> None:
    patch = json.dumps({"status": status})
    cp.kubectl("patch", kind, name, "-n", NAMESPACE, "--subresource=status", "--type=merge", "-p", patch)


def _scaling_limited(cp: ControlPlane, name: str) -> tuple[str, str]:
    body = json.loads(cp.kubectl("get", "modelvariants.bakeoff.dev", name, "-n", NAMESPACE, "-o", "json").stdout)
    found = next(c for c in body["status"]["conditions"] if c["type"] == "ScalingLimited")
    return found["status"], found["reason"]


def test_a_variant_under_measurement_keeps_its_replicas_until_the_run_ends(
    control_plane: ControlPlane, namespace: str
) -> None:
    cp = control_plane
    cp.apply(
        {
            "apiVersion": "bakeoff.dev/v1alpha1",
            "kind": "ModelVariant",
            "metadata": {"name": "auto", "namespace": NAMESPACE},
            "spec": {
                "model": {"source": "hf://org/llama"},
                "architecture": {"catalog": "llama-3.1-8b"},
                "format": "int4",
                "gpuClass": "h100",
                "autoscaling": {"minReplicas": 1, "maxReplicas": 4},
            },
        }
    )
    _patch_status(cp, "modelvariants.bakeoff.dev", "auto", {"resolvedGPUClass": "h100", "tensorParallelSize": 1})
    cp.apply(
        {
            "apiVersion": "bakeoff.dev/v1alpha1",
            "kind": "BakeOff",
            "metadata": {"name": "bo", "namespace": NAMESPACE},
            "spec": {"variants": ["auto"], "workload": {"useCase": "rag"}},
        }
    )
    run = {"name": "bo-20260101-100000", "startTime": "2026-01-01T10:00:00Z", "variants": ["auto"]}
    _patch_status(cp, "bakeoffs.bakeoff.dev", "bo", {"lastRuns": [{**run, "outcome": "Running"}]})
    # Prometheus does not answer: without the run the variant would hold for MetricsMissing.
    autoscaler = Autoscaler(Prometheus("http://127.0.0.1:9"), OperatorMetrics(), namespaces=[namespace])
    during = autoscaler.tick()
    assert during is not None
    [d] = during.decisions
    assert (d.desired, d.limit) == (1, Limit.BAKEOFF_RUN)
    assert d.reason == "keeps 1: run bo-20260101-100000 of BakeOff bo is measuring it at a fixed count"
    assert _scaling_limited(cp, "auto") == ("True", "BakeOffRun")

    finished = {**run, "outcome": "Succeeded", "completionTime": "2026-01-01T10:05:00Z"}
    _patch_status(cp, "bakeoffs.bakeoff.dev", "bo", {"lastRuns": [finished]})
    after = autoscaler.tick()
    assert after is not None
    assert after.decisions[0].limit is Limit.METRICS_MISSING
    assert _scaling_limited(cp, "auto") == ("True", "MetricsMissing")
