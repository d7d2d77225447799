"""Leader election of the autoscaler against the real API server: one holder at a time, renewals keep
it, an expired lease passes to the next contender."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from bakeoff_operator.io import kube
from kubernetes.config import kube_config

from tests.support.controlplane import ControlPlane

pytestmark = pytest.mark.cluster


@pytest.fixture
def lease_namespace(control_plane: ControlPlane) -> Iterator[str]:
    namespace = control_plane.create_namespace("lease-test")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KUBECONFIG", str(control_plane.kubeconfig))
        env.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(control_plane.kubeconfig))
        kube.custom_objects.cache_clear()
        kube.api_client.cache_clear()
        yield namespace
        kube.custom_objects.cache_clear()
        kube.api_client.cache_clear()


def test_one_holder_at_a_time(lease_namespace: str) -> None:
    assert kube.hold_lease(lease_namespace, "bakeoff-autoscaler", "replica-a", 30)
    assert not kube.hold_lease(lease_namespace, "bakeoff-autoscaler", "replica-b", 30)
    assert kube.hold_lease(lease_namespace, "bakeoff-autoscaler", "replica-a", 30)  # a renewal
    assert not kube.hold_lease(lease_namespace, "bakeoff-autoscaler", "replica-b", 30)


def test_an_expired_lease_passes_to_the_next_replica(lease_namespace: str) -> None:
    assert kube.hold_lease(lease_namespace, "bakeoff-autoscaler", "replica-a", 1)
    time.sleep(2.2)  # replica-a stopped renewing
    assert kube.hold_lease(lease_namespace, "bakeoff-autoscaler", "replica-b", 30)
    assert not kube.hold_lease(lease_namespace, "bakeoff-autoscaler", "replica-a", 30)
