"""Chart tests: pure ones (generation, schema), `helm` ones (lint, template) and `cluster` ones
(install into the real control plane from tests/support)."""

from tests.support.fixtures import control_plane, control_plane_binaries, helm_binary, namespace, upstream_crds

__all__ = ["control_plane", "control_plane_binaries", "helm_binary", "namespace", "upstream_crds"]
