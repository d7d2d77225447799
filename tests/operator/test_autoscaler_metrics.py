"""The autoscaler's series of a variant that is gone are removed (no stale desired replicas)."""

from __future__ import annotations

from bakeoff_operator.autoscaler import Autoscaler
from bakeoff_operator.io.metrics import OperatorMetrics
from bakeoff_operator.io.prometheus import Prometheus
from prometheus_client import generate_latest


def test_series_of_a_variant_that_is_gone_are_removed() -> None:
    metrics = OperatorMetrics()
    autoscaler = Autoscaler(Prometheus("http://127.0.0.1:9"), metrics)
    for variant in ("kept", "gone"):
        metrics.desired_replicas.labels("ns", variant).set(2)
        metrics.cost.labels("ns", variant, "h100").set(1.5)
        metrics.set_decision("ns", variant, "none", "keeps 2")
    autoscaler._forget({("ns", "kept"), ("ns", "gone")})
    autoscaler._forget({("ns", "kept")})
    text = generate_latest(metrics.registry).decode()
    assert 'variant="kept"' in text
    assert 'variant="gone"' not in text
