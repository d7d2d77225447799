"""The autoscaler's round against the real API server exports `bakeoff_variant_spec` for every placed
variant, autoscaled or not, with its GPU class's price, and drops the series of a variant that is deleted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bakeoff_operator.autoscaler import Autoscaler
from bakeoff_operator.io.metrics import OperatorMetrics
from bakeoff_operator.io.prometheus import Prometheus

from tests.observability.test_observability_spec import spec_fields, spec_samples
from tests.support.controlplane import ControlPlane

pytestmark = pytest.mark.cluster

CHART = Path(__file__).resolve().parents[2] / "charts/bakeoff"
NAMESPACE = "spec-test"


@pytest.fixture
def namespace(kube_io: ControlPlane) -> str:
    kube_io.install_crds([CHART / "crds"])
    kube_io.create_namespace(NAMESPACE)
    return NAMESPACE


def _placed_variant(cp: ControlPlane, name: str, gpus: int, **spec: object) -> None:
    cp.apply(
        {
            "apiVersion": "bakeoff.dev/v1alpha1",
            "kind": "ModelVariant",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "model": {"source": "hf://org/llama"},
                "architecture": {"catalog": "llama-3.1-8b"},
                "format": "int4",
                "gpuClass": "h100",
                **spec,
            },
        }
    )
    status = {"resolvedGPUClass": "h100", "tensorParallelSize": gpus}
    cp.kubectl(
        "patch", "modelvariants.bakeoff.dev", name, "-n", NAMESPACE, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


def test_a_round_exports_the_spec_of_every_placed_variant(control_plane: ControlPlane, namespace: str) -> None:
    _placed_variant(control_plane, "auto", 2, autoscaling={"minReplicas": 1, "maxReplicas": 3})
    _placed_variant(control_plane, "fixed", 1, replicas=2, slo={"e2eMs": 20000})
    metrics = OperatorMetrics()
    # Prometheus does not answer: the autoscaled variant keeps its replicas, the spec is exported all the same.
    autoscaler = Autoscaler(Prometheus("http://127.0.0.1:9"), metrics, namespaces=[namespace])
    autoscaler.tick()
    assert spec_fields(metrics) == {
        ("auto", "gpus_per_replica"): 2.0,
        ("auto", "replicas"): 1.0,
        ("auto", "max_num_seqs"): 256.0,
        ("fixed", "gpus_per_replica"): 1.0,
        ("fixed", "replicas"): 2.0,
        ("fixed", "max_num_seqs"): 256.0,
        ("fixed", "slo_quantile"): 0.9,
        ("fixed", "slo_e2e_seconds"): 20.0,
    }
    assert (metrics.registry.get_sample_value("bakeoff_gpu_price_per_hour_usd", {"gpu_class": "h100"}) or 0) > 0
    # only the autoscaled variant has the autoscaler's own series
    desired = metrics.registry.get_sample_value
    assert desired("bakeoff_desired_replicas", {"namespace": namespace, "variant": "auto"}) == 1
    assert desired("bakeoff_desired_replicas", {"namespace": namespace, "variant": "fixed"}) is None

    control_plane.kubectl("delete", "modelvariants.bakeoff.dev", "fixed", "-n", NAMESPACE, "--wait=true")
    autoscaler.tick()
    assert {dict(k)["variant"] for k in spec_samples(metrics)} == {"auto"}
