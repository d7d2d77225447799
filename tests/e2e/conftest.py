"""End-to-end tests run against `tests.support.e2e.E2ECluster`: the test control plane plus KServe's
controller manager, kube-scheduler and kwok fake GPU nodes (hack/build-tools.sh,
hack/build-kserve.sh, hack/fetch-crds.sh)."""

from tests.support.fixtures import e2e_cluster, e2e_namespace, helm_binary

__all__ = ["e2e_cluster", "e2e_namespace", "helm_binary"]
