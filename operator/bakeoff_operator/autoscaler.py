"""The autoscaler loop: read Prometheus and the cluster, decide replicas for every variant at once
(`autoscaling.decide`), apply them, and say so.

Each tick, while this operator replica holds the `bakeoff-autoscaler` Lease (two replicas never both
act): list the ModelVariants, export `bakeoff_variant_spec` (GPUs per replica, GPU class, sequence limit
and SLO, which the recording rules price and judge with) for every deployed one, autoscaled or not
(`spec_series`; removed when the variant goes); then, for the autoscaled ones, read their vLLM metrics
from Prometheus (`autoscaling.signals`), count the free GPUs per class from Nodes and Pods, decide,
write each changed count through the variant's scale subresource (the operator's reconcile then sets
the InferenceService's replicas: the KServe autoscaler class stays `none`), set the `ScalingLimited`
condition, and export `bakeoff_desired_replicas`, `bakeoff_replica_capacity_tokens_per_second`,
`bakeoff_cost_per_1m_output_tokens_usd` and the decision reasons from the operator's `/metrics`.

Prometheus down or a metric missing: every variant keeps its last count (never zero on missing data)
and its `ScalingLimited` condition says `MetricsMissing`. A variant a BakeOff run is measuring (the
BakeOffs' newest run `Running`, `measured_now`) keeps its count until the run ends (`BakeOffRun`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Final

from bakeoff_runtime.cost import usd_per_million_tokens_at_rate
from kubernetes.client import ApiException
from pydantic import ValidationError

from bakeoff_operator.api.common import GROUP, VERSION, Reason
from bakeoff_operator.api.gpuclass import GPUClass
from bakeoff_operator.api.modelvariant import ModelVariant, ModelVariantStatus
from bakeoff_operator.autoscaling.decide import Decision, Decisions, Limit, Policy, VariantHistory, VariantLoad, decide
from bakeoff_operator.autoscaling.inventory import (
    DEFAULT_MAX_NUM_SEQS,
    capacity_of,
    free_gpus,
    measured_now,
    policy_of,
)
from bakeoff_operator.autoscaling.signals import DEFAULT_RATE_WINDOW, loads, queries
from bakeoff_operator.io import kube
from bakeoff_operator.io.metrics import OperatorMetrics
from bakeoff_operator.io.prometheus import Prometheus, PrometheusUnavailable
from bakeoff_operator.observability.spec import VariantSpec, variant_spec
from bakeoff_operator.planning import status as plan
from bakeoff_operator.planning.outcomes import wire
from bakeoff_operator.render.kserve import gpu_placement

LEASE_NAME: Final = "bakeoff-autoscaler"
LEASE_SECONDS: Final = 30
MODEL_VARIANTS: Final = "modelvariants"

_LIMIT_REASONS: Final[dict[Limit, str]] = {
    Limit.INSUFFICIENT_GPU: Reason.INSUFFICIENT_GPU,
    Limit.METRICS_MISSING: Reason.METRICS_MISSING,
    Limit.MAX_REPLICAS: Reason.MAX_REPLICAS,
    Limit.BAKEOFF_RUN: Reason.BAKEOFF_RUN,
}

logger = logging.getLogger("bakeoff.autoscaler")


def scaling_verdict(d: Decision, policy: Policy) -> tuple[bool, str, str]:
    """The `ScalingLimited` condition of a decision; its message changes only when the limit does."""
    if d.limit is Limit.NONE:
        return False, Reason.AS_EXPECTED, "the autoscaler gives this variant the replicas its load asks for"
    if d.limit is Limit.INSUFFICIENT_GPU:
        message = (
            f"capped at {d.desired} of {d.wanted} replicas: not enough free {policy.gpu_class} GPUs "
            f"({policy.gpus_per_replica} per replica)"
        )
    elif d.limit is Limit.METRICS_MISSING:
        message = f"holding {d.desired} replicas: no vLLM metrics for this variant in Prometheus"
    elif d.limit is Limit.BAKEOFF_RUN:
        message = f"holding {d.desired} replicas while a BakeOff run measures this variant: {d.reason}"
    else:
        message = f"the load asks for more than maxReplicas {policy.max_replicas}"
    return True, _LIMIT_REASONS[d.limit], message


def spec_series(mv: ModelVariant) -> VariantSpec | None:
    """The `bakeoff_variant_spec` series of a deployed variant, autoscaled or not: its GPU class and GPUs per
    replica as its placement resolved them (status), its engine's sequence limit and its SLO; None while it is
    not placed (no resolved GPU class or tensor-parallel size: it holds no GPUs). An autoscaled variant's
    policy (`policy_of`) reads the same fields, so the rules price it as the autoscaler does."""
    status = mv.status
    if status is None or not status.resolved_gpu_class or not status.tensor_parallel_size:
        return None
    return variant_spec(
        mv,
        gpu_class=status.resolved_gpu_class,
        gpus_per_replica=status.tensor_parallel_size,
        max_num_seqs=mv.spec.serving.max_num_seqs or DEFAULT_MAX_NUM_SEQS,
        hybrid=mv.spec.architecture.resolved_kind.value == "hybrid",
    )


class Autoscaler:
    """One operator replica's autoscaler; `tick()` is one round, `run()` the loop."""

    def __init__(
        self,
        prometheus: Prometheus,
        metrics: OperatorMetrics,
        *,
        namespaces: Sequence[str] = (),
        lease_namespace: str | None = None,
        identity: str | None = None,
        rate_window: str = DEFAULT_RATE_WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.prometheus = prometheus
        self.metrics = metrics
        self.namespaces = tuple(namespaces)
        self.lease_namespace = lease_namespace
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}"
        self.rate_window = rate_window
        self.clock = clock
        self.history: dict[str, VariantHistory] = {}
        self._exported: set[tuple[str, str]] = set()
        self._specs: set[tuple[str, str]] = set()

    def _leads(self) -> bool:
        if not self.lease_namespace:
            return True
        try:
            leads = kube.hold_lease(self.lease_namespace, LEASE_NAME, self.identity, LEASE_SECONDS)
        except ApiException as err:
            logger.warning(f"autoscaler lease: {err.reason}; not acting this round")
            leads = False
        self.metrics.leader.set(1 if leads else 0)
        return leads

    def _observe(self) -> dict[str, VariantLoad] | None:
        try:
            answers = {signal: self.prometheus.query(q) for signal, q in queries(self.rate_window).items()}
        except PrometheusUnavailable as err:
            logger.warning(f"autoscaler: {err}; every variant keeps its replicas")
            self.metrics.metrics_available.set(0)
            return None
        self.metrics.metrics_available.set(1)
        return loads(answers)

    def tick(self) -> Decisions | None:
        """One round; None when another replica leads."""
        if not self._leads():
            return None
        variants: list[ModelVariant] = []
        for body in kube.list_variants(self.namespaces):
            try:
                variants.append(ModelVariant.model_validate(wire(body, status=True)))
            except ValidationError:
                continue  # its own status says what is wrong
        self.export_specs(variants)
        policies = {p.key: (p, mv) for mv in variants if (p := policy_of(mv)) is not None}
        self._forget({(p.namespace, p.variant) for p, _ in policies.values()})
        if not policies:
            if self._specs:
                self._gpu_classes()  # the prices the rules price the deployed variants with
            return Decisions(decisions=[], history={})
        observed = self._observe()
        classes = self._gpu_classes()
        free = free_gpus(
            {name: (products, resource) for name, (products, resource, _) in classes.items()},
            kube.list_nodes(),
            kube.list_all_pods(),
        )
        history: dict[str, VariantHistory] = {}
        for key, (_, mv) in policies.items():
            past = self.history.get(key) or VariantHistory(replicas=mv.spec.desired_replicas, last_active=self.clock())
            history[key] = past.model_copy(update={"replicas": mv.spec.desired_replicas})
        loads_now: Mapping[str, VariantLoad | None] = {k: (observed or {}).get(k) for k in policies}
        capacities = {k: c for k, (_, mv) in policies.items() if (c := capacity_of(mv)) is not None}
        held = measured_now(kube.list_bakeoffs(self.namespaces))
        out = decide(loads_now, [p for p, _ in policies.values()], capacities, free, history, self.clock(), held=held)
        self.history = dict(out.history)
        for d in out.decisions:
            policy, mv = policies[d.key]
            if d.changed:
                logger.info(f"{d.key}: {d.reason}")
                kube.scale_variant(d.namespace, d.variant, d.desired)
            self._condition(mv, scaling_verdict(d, policy))
            self._export(d, policy, loads_now.get(d.key), classes.get(policy.gpu_class))
        return out

    def export_specs(self, variants: Sequence[ModelVariant]) -> None:
        """`bakeoff_variant_spec` of every deployed variant (`spec_series`); the series of a variant that is
        gone, or no longer placed, are removed."""
        specs = {(s.namespace, s.variant): s for mv in variants if (s := spec_series(mv)) is not None}
        for namespace, variant in self._specs - specs.keys():
            self.metrics.remove_variant_spec(namespace, variant)
        self._specs = set(specs)
        for s in specs.values():
            self.metrics.set_variant_spec(s.namespace, s.variant, s.labels, s.samples)

    def _forget(self, live: set[tuple[str, str]]) -> None:
        """Remove the series of variants that are gone or no longer autoscaled (no stale desired replicas,
        no false missing-metrics alert for them). Their `bakeoff_variant_spec` stays while they are deployed
        (`export_specs`)."""
        gone = self._exported - live
        self._exported = set(live)
        if not gone:
            return
        m = self.metrics
        for gauge in (m.desired_replicas, m.capacity, m.cost, m.decision, m.scaling_limited):
            for family in gauge.collect():
                for sample in family.samples:
                    labels = sample.labels
                    if (labels.get("namespace"), labels.get("variant")) in gone:
                        with contextlib.suppress(KeyError):
                            gauge.remove(*(labels[name] for name in gauge._labelnames))
        for key in gone:
            self.history.pop(f"{key[0]}/{key[1]}" if key[0] else key[1], None)

    def _gpu_classes(self) -> dict[str, tuple[tuple[str, ...], str, float]]:
        """Class -> (node products, extended resource, on-demand price per GPU-hour): the default catalog
        overlaid with the cluster's GPUClass objects, as the reconcile sees them."""
        objects: dict[str, GPUClass] = {}
        listed = kube.custom_objects().list_cluster_custom_object(GROUP, VERSION, "gpuclasses")
        for body in listed.get("items", []) if isinstance(listed, Mapping) else []:
            try:
                g = GPUClass.model_validate(wire(body))
            except ValidationError:
                continue
            objects[g.metadata.name] = g
        catalog = plan.cluster_catalog(objects.values())
        out: dict[str, tuple[tuple[str, ...], str, float]] = {}
        for gpu in catalog.gpus:
            placement = gpu_placement(gpu.name, objects, catalog)
            price = gpu.price_per_gpu_hour.on_demand
            out[gpu.name] = (placement.products, placement.resource_name, price)
            self.metrics.price.labels(gpu.name).set(price)
        return out

    def _condition(self, mv: ModelVariant, verdict: tuple[bool, str, str]) -> None:
        namespace, name = mv.metadata.namespace or "", mv.metadata.name
        with kube.status_lock(MODEL_VARIANTS, namespace):
            body = kube.get_object(MODEL_VARIANTS, namespace, name)
            if body is None:
                return
            try:
                old = ModelVariantStatus.model_validate(body.get("status") or {})
            except ValidationError:
                return
            generation = (body.get("metadata") or {}).get("generation")
            new = plan.with_scaling_condition(old, verdict, generation=generation, now=datetime.now(UTC))
            if plan.status_changed(old, new):
                patch = plan.status_patch(new, ("conditions",))
                kube.patch_status(MODEL_VARIANTS, namespace, name, patch, str(body["metadata"]["resourceVersion"]))

    def _export(
        self,
        d: Decision,
        policy: Policy,
        load: VariantLoad | None,
        gpu_class: tuple[tuple[str, ...], str, float] | None,
    ) -> None:
        m = self.metrics
        m.desired_replicas.labels(d.namespace, d.variant).set(d.desired)
        if d.capacity_tokens_per_second is not None:
            m.capacity.labels(d.namespace, d.variant, d.capacity_source or "").set(d.capacity_tokens_per_second)
        m.set_decision(d.namespace, d.variant, d.limit.value, d.reason)
        for limit in (Limit.INSUFFICIENT_GPU, Limit.METRICS_MISSING, Limit.MAX_REPLICAS, Limit.BAKEOFF_RUN):
            m.scaling_limited.labels(d.namespace, d.variant, limit.value).set(1 if d.limit is limit else 0)
        if gpu_class is not None and load is not None:
            cost = usd_per_million_tokens_at_rate(
                price_per_gpu_hour=gpu_class[2],
                gpus=policy.gpus_per_replica,
                replicas=max(load.replicas_reporting, d.current),
                tokens_per_second=load.output_tokens_per_s,
            )
            m.cost.labels(d.namespace, d.variant, policy.gpu_class).set(cost if cost is not None else float("nan"))

    def run(self, stop: threading.Event, interval_s: float) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception:
                logger.exception("autoscaler round failed; retrying next round")
            stop.wait(max(0.0, interval_s - (time.monotonic() - started)))
