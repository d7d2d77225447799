"""Leader election of the autoscaler against the real API server: one holder at a time, renewals keep
it, an expired lease passes to the next contender."""

from __future__ import annotations

import time

import pytest
from bakeoff_operator.io import kube

from tests.support.controlplane import ControlPlane

pytestmark = pytest.mark.cluster


@pytest.fixture
def lease_namespace(kube_io: ControlPlane) -> str:
    return kube_io.create_namespace("lease-test")


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
