"""Operator tests: pure status rules, and handlers run by kopf against the real control plane
from tests/support (the `cluster` tier)."""

from tests.support.fixtures import control_plane, control_plane_binaries, helm_binary, kube_io

__all__ = ["control_plane", "control_plane_binaries", "helm_binary", "kube_io"]
