"""Observability tests: pure ones (the generated rules and dashboards, the metric names they rely on),
`prometheus` ones (promtool and a real Prometheus scraping the simulator, from hack/build-prometheus.sh),
`helm` ones (what the chart ships) and `cluster` ones (the autoscaler's round against the API server).
Without the binaries they fail under CI=true and are skipped elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fixtures import control_plane, control_plane_binaries, helm_binary, kube_io, unavailable
from tests.support.prometheus import find_prometheus

__all__ = ["control_plane", "control_plane_binaries", "helm_binary", "kube_io", "promtool"]


@pytest.fixture(scope="session")
def promtool() -> Path:
    """promtool from hack/build-prometheus.sh."""
    try:
        return find_prometheus("promtool")
    except FileNotFoundError as exc:
        reason = str(exc)
    unavailable(reason)
