"""Live Prometheus metrics of a load run, on the exporter's own CollectorRegistry.

Metric names start with ``bakeoff_loadtest_``; labels are the variant and workload (and the failure
cause). The cost gauges follow the definitions: price x GPUs x replicas x elapsed hours / tokens x 1e6.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from bakeoff_loadtest.records import FailureCause, RequestRecord
from bakeoff_loadtest.results import LoadPoint
from bakeoff_loadtest.spec import RunSpec

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 60.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1.0)
E2E_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0)


class LoadExporter:
    """Prometheus metrics fed by every finished request (``observe``) and every finished point."""

    def __init__(self, spec: RunSpec, registry: CollectorRegistry | None = None) -> None:
        self.spec = spec
        self.registry = registry if registry is not None else CollectorRegistry()
        self.labels = {"variant": spec.label, "workload": spec.workload.name}
        names = list(self.labels)
        r = self.registry
        self.requests = Counter(
            "bakeoff_loadtest_requests", "Requests finished (successes and failures).", names, registry=r
        )
        self.failures = Counter("bakeoff_loadtest_failures", "Failed requests by cause.", [*names, "cause"], registry=r)
        self.ttft = Histogram(
            "bakeoff_loadtest_ttft_seconds", "Time to first token.", names, buckets=TTFT_BUCKETS, registry=r
        )
        self.itl = Histogram(
            "bakeoff_loadtest_itl_seconds", "Inter-token latency.", names, buckets=ITL_BUCKETS, registry=r
        )
        self.e2e = Histogram(
            "bakeoff_loadtest_e2e_seconds", "End-to-end latency.", names, buckets=E2E_BUCKETS, registry=r
        )
        self.output_tokens = Counter(
            "bakeoff_loadtest_output_tokens", "Output tokens (server usage) of successes.", names, registry=r
        )
        self.prompt_tokens = Counter(
            "bakeoff_loadtest_prompt_tokens", "Prompt tokens (server usage) of successes.", names, registry=r
        )
        self.in_flight = Gauge("bakeoff_loadtest_in_flight", "Requests in flight.", names, registry=r)
        self.cost_out = Gauge(
            "bakeoff_loadtest_cost_per_1m_output_tokens_usd",
            "USD per 1M output tokens since the run started.",
            names,
            registry=r,
        )
        self.cost_total = Gauge(
            "bakeoff_loadtest_cost_per_1m_tokens_usd",
            "USD per 1M prompt + output tokens since the run started.",
            names,
            registry=r,
        )
        self.point_tps = Gauge(
            "bakeoff_loadtest_output_tokens_per_second",
            "Output tokens/s of the last finished load point.",
            names,
            registry=r,
        )
        for cause in FailureCause:
            self.failures.labels(**self.labels, cause=cause.value)
        self._t0: float | None = None
        self._out = 0
        self._in = 0
        self._server: Any = None
        self._thread: Any = None

    def start(self, port: int = 0, addr: str = "127.0.0.1") -> int:
        """Serve /metrics; port 0 picks a free port, which is returned."""
        self._server, self._thread = start_http_server(port, addr=addr, registry=self.registry)
        return int(self._server.server_port)

    @property
    def port(self) -> int | None:
        return None if self._server is None else int(self._server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def observe(self, rec: RequestRecord) -> None:
        lab = self.labels
        if self._t0 is None:
            self._t0 = time.time() - (rec.e2e_s or 0.0)
        self.requests.labels(**lab).inc()
        if not rec.ok:
            self.failures.labels(**lab, cause=str(rec.cause)).inc()
            return
        if rec.ttft_s is not None:
            self.ttft.labels(**lab).observe(rec.ttft_s)
        if rec.e2e_s is not None:
            self.e2e.labels(**lab).observe(rec.e2e_s)
        itl = self.itl.labels(**lab)
        for gap in rec.itl_s:
            itl.observe(gap)
        self._out += rec.output_tokens or 0
        self._in += rec.prompt_tokens or 0
        self.output_tokens.labels(**lab).inc(rec.output_tokens or 0)
        self.prompt_tokens.labels(**lab).inc(rec.prompt_tokens or 0)
        wall = time.time() - self._t0
        per_out = self.spec.cost.usd_per_million(wall, self._out)
        per_all = self.spec.cost.usd_per_million(wall, self._out + self._in)
        if per_out is not None:
            self.cost_out.labels(**lab).set(per_out)
        if per_all is not None:
            self.cost_total.labels(**lab).set(per_all)

    def set_point(self, point: LoadPoint) -> None:
        self.point_tps.labels(**self.labels).set(point.output_tokens_per_s)
