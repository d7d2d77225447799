"""The operator's own `/metrics` (its own registry): desired replicas, capacity per replica, live cost
per 1M output tokens, the autoscaler's decisions and what each variant is (`bakeoff_variant_spec`), per
variant."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from typing import Final

from prometheus_client import CollectorRegistry, Gauge, start_http_server

VARIANT: Final = ("namespace", "variant")


class OperatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.desired_replicas = Gauge(
            "bakeoff_desired_replicas", "Replicas the autoscaler wants for the variant.", VARIANT, registry=r
        )
        self.capacity = Gauge(
            "bakeoff_replica_capacity_tokens_per_second",
            "Output tokens/s one replica carries within its SLO (source: measured or predicted).",
            (*VARIANT, "source"),
            registry=r,
        )
        self.cost = Gauge(
            "bakeoff_cost_per_1m_output_tokens_usd",
            "Live USD per 1M output tokens: replicas x GPUs x price per GPU-hour / output tokens per hour x 1e6.",
            (*VARIANT, "gpu_class"),
            registry=r,
        )
        self.price = Gauge(
            "bakeoff_gpu_price_per_hour_usd", "On-demand USD per GPU-hour of a GPU class.", ("gpu_class",), registry=r
        )
        self.decision = Gauge(
            "bakeoff_autoscaler_decision",
            "1 for the reason of the variant's last autoscaling decision (limit: none, InsufficientGPU, ...).",
            (*VARIANT, "limit", "reason"),
            registry=r,
        )
        self.scaling_limited = Gauge(
            "bakeoff_scaling_limited",
            "1 while the variant gets fewer replicas than it wants (reason InsufficientGPU, MaxReplicas) or holds "
            "blind (MetricsMissing).",
            (*VARIANT, "reason"),
            registry=r,
        )
        self.metrics_available = Gauge(
            "bakeoff_autoscaler_metrics_available", "1 when the last Prometheus read succeeded.", registry=r
        )
        self.leader = Gauge("bakeoff_autoscaler_leader", "1 while this operator replica acts.", registry=r)
        self.variant_spec = Gauge(
            "bakeoff_variant_spec",
            "What the variant is, for rules and dashboards, one series per field: gpus_per_replica, replicas, "
            "max_num_seqs, slo_quantile, slo_ttft_seconds, slo_itl_seconds, slo_e2e_seconds "
            "(bakeoff_operator.observability.spec).",
            (*VARIANT, "baseline", "gpu_class", "format", "architecture", "field"),
            registry=r,
        )
        self.bakeoff_result = Gauge(
            "bakeoff_bakeoff_result",
            "A BakeOff's verdict per variant from its last successful run, one series per metric: "
            "cost_per_1m_output_tokens_usd, output_tokens_per_second(_per_gpu), ttft/itl/e2e_p50..p99_ms, "
            "within_slo, on_pareto_frontier, recommended (the figures of bakeoff_loadtest.verdict, as the run's "
            "report.html shows them).",
            ("namespace", "bakeoff", "variant", "metric"),
            registry=r,
        )
        self.bakeoff_recommendation = Gauge(
            "bakeoff_bakeoff_recommendation",
            "1 for the variant a BakeOff's last successful run recommends, with the recommendation's reason (a "
            'BakeOff whose run recommends none has one series with variant="").',
            ("namespace", "bakeoff", "variant", "reason"),
            registry=r,
        )
        self.bakeoff_last_run_failed = Gauge(
            "bakeoff_bakeoff_last_run_failed",
            "1 when the BakeOff's newest finished run failed (its results are from an earlier run).",
            ("namespace", "bakeoff"),
            registry=r,
        )
        self._results: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._reasons: dict[tuple[str, str], tuple[str, str]] = {}
        self._recommendations: dict[tuple[str, str], tuple[str, str]] = {}
        self._specs: dict[tuple[str, str], set[tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def set_decision(self, namespace: str, variant: str, limit: str, reason: str) -> None:
        """One series per variant: the previous reason's series is removed."""
        with self._lock:
            old = self._reasons.get((namespace, variant))
            if old is not None and old != (limit, reason):
                self.decision.remove(namespace, variant, *old)
            self._reasons[(namespace, variant)] = (limit, reason)
            self.decision.labels(namespace, variant, limit, reason).set(1)

    def set_variant_spec(
        self, namespace: str, variant: str, labels: Sequence[str], values: Mapping[str, float]
    ) -> None:
        """The variant's spec series; those of an earlier GPU class, format or SLO are removed."""
        with self._lock:
            new = {(*labels, field) for field in values}
            for old in self._specs.get((namespace, variant), set()) - new:
                self.variant_spec.remove(namespace, variant, *old)
            self._specs[(namespace, variant)] = new
            for field, value in values.items():
                self.variant_spec.labels(namespace, variant, *labels, field).set(value)

    def remove_variant_spec(self, namespace: str, variant: str) -> None:
        """Forget the spec series of a variant that is gone or no longer deployed."""
        with self._lock:
            for old in self._specs.pop((namespace, variant), set()):
                with contextlib.suppress(KeyError):
                    self.variant_spec.remove(namespace, variant, *old)

    def set_bakeoff(
        self,
        namespace: str,
        bakeoff: str,
        results: Mapping[str, Mapping[str, float]],
        last_run_failed: bool,
        recommendation: tuple[str, str] | None = None,
    ) -> None:
        """A BakeOff's verdict series; those of variants or metrics it no longer has are removed.
        `recommendation`: the recommended variant ("" for none) and the reason, once there is a verdict."""
        with self._lock:
            old_recommendation = self._recommendations.get((namespace, bakeoff))
            if old_recommendation is not None and old_recommendation != recommendation:
                self.bakeoff_recommendation.remove(namespace, bakeoff, *old_recommendation)
                del self._recommendations[(namespace, bakeoff)]
            if recommendation is not None:
                self._recommendations[(namespace, bakeoff)] = recommendation
                self.bakeoff_recommendation.labels(namespace, bakeoff, *recommendation).set(1)
            new = {(variant, metric) for variant, values in results.items() for metric in values}
            for old in self._results.get((namespace, bakeoff), set()) - new:
                self.bakeoff_result.remove(namespace, bakeoff, *old)
            self._results[(namespace, bakeoff)] = new
            for variant, values in results.items():
                for metric, value in values.items():
                    self.bakeoff_result.labels(namespace, bakeoff, variant, metric).set(value)
            self.bakeoff_last_run_failed.labels(namespace, bakeoff).set(1 if last_run_failed else 0)

    def remove_bakeoff(self, namespace: str, bakeoff: str) -> None:
        """Forget a deleted BakeOff's series."""
        with self._lock:
            for old in self._results.pop((namespace, bakeoff), set()):
                self.bakeoff_result.remove(namespace, bakeoff, *old)
            recommendation = self._recommendations.pop((namespace, bakeoff), None)
            if recommendation is not None:
                self.bakeoff_recommendation.remove(namespace, bakeoff, *recommendation)
            with contextlib.suppress(KeyError):
                self.bakeoff_last_run_failed.remove(namespace, bakeoff)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        start_http_server(port, addr=addr, registry=self.registry)
