"""Cluster tests run against the real control plane from tests/support (etcd, kube-apiserver,
kube-controller-manager built by hack/build-tools.sh)."""

from tests.support.fixtures import control_plane, control_plane_binaries, helm_binary, namespace, upstream_crds

__all__ = ["control_plane", "control_plane_binaries", "helm_binary", "namespace", "upstream_crds"]
