"""The operator's environment (`BAKEOFF_*`), checked once at startup."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from bakeoff_loadtest.spec import STREAMS_PER_PROCESS
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bakeoff_operator.api.common import DNS_LABEL
from bakeoff_operator.api.modelvariant import Engine
from bakeoff_operator.render.jobs import JobSettings
from bakeoff_operator.render.kserve import HostResources, RenderSettings


class OperatorConfig(BaseModel):
    """The operator's environment, checked once at startup."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str | None = Field(
        default=None, max_length=63, pattern=DNS_LABEL, description="BAKEOFF_NAMESPACE: the operator's own namespace."
    )
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="BAKEOFF_METRICS_PORT: the operator's /metrics (unset: none)."
    )
    metrics_address: str = Field(
        default="0.0.0.0",
        max_length=64,
        pattern=r"^[0-9a-fA-F.:]+$",
        description="BAKEOFF_METRICS_ADDRESS: the address /metrics listens on.",
    )
    autoscale_interval_s: float = Field(
        default=15.0, gt=0, le=3600, description="BAKEOFF_AUTOSCALE_INTERVAL_S: seconds between autoscaler rounds."
    )
    rate_window: str = Field(
        default="1m", pattern=r"^[0-9]+(ms|s|m|h)$", description="BAKEOFF_RATE_WINDOW: PromQL rate() window."
    )
    watch_namespaces: str = Field(
        default="",
        max_length=4096,
        pattern=r"^[a-z0-9,-]*$",
        description="BAKEOFF_WATCH_NAMESPACES: comma-separated namespaces the autoscaler acts in (empty: all).",
    )
    prometheus_url: str | None = Field(
        default=None, max_length=2048, pattern=r"^https?://[^\s]+$", description="BAKEOFF_PROMETHEUS_URL."
    )
    vllm_image: str | None = Field(
        default=None, max_length=512, pattern=r"^[^\s]+$", description="BAKEOFF_VLLM_IMAGE: default vLLM image."
    )
    simulator_image: str | None = Field(
        default=None,
        max_length=512,
        pattern=r"^[^\s]+$",
        description="BAKEOFF_SIMULATOR_IMAGE: Bakeoff's image, which simulated replicas run.",
    )
    default_engine: Engine = Field(default=Engine.VLLM, description="BAKEOFF_DEFAULT_ENGINE: vllm or simulator.")
    simulator_requests_gpus: bool = Field(
        default=True, description="BAKEOFF_SIMULATOR_REQUESTS_GPUS: simulated replicas request their class's GPUs."
    )
    cpu_per_gpu: int = Field(default=8, ge=1, le=512, description="BAKEOFF_CPU_PER_GPU: CPU cores per GPU.")
    memory_gib_per_gpu: int = Field(
        default=64, ge=1, le=4096, description="BAKEOFF_MEMORY_GIB_PER_GPU: host memory per GPU, GiB."
    )
    loadtest_cluster_role: str = Field(
        default="bakeoff-loadtest",
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.:]*[a-z0-9])?$",
        description="BAKEOFF_LOADTEST_CLUSTER_ROLE: the chart's ClusterRole that bake-off run Jobs are bound to.",
    )
    loadtest_streams_per_process: int = Field(
        default=STREAMS_PER_PROCESS,
        ge=1,
        le=100_000,
        description="BAKEOFF_LOADTEST_STREAMS_PER_PROCESS: concurrent streams one load-test process drives; "
        "a bake-off run that needs more runs Locust as a master and workers.",
    )
    loadtest_node_selector: dict[str, str] = Field(
        default_factory=dict, description="BAKEOFF_LOADTEST_NODE_SELECTOR: node selector of load-test pods (JSON)."
    )
    loadtest_tolerations: list[dict[str, Any]] = Field(
        default_factory=list, description="BAKEOFF_LOADTEST_TOLERATIONS: tolerations of load-test pods (JSON list)."
    )

    ENV: ClassVar[dict[str, str]] = {
        "namespace": "BAKEOFF_NAMESPACE",
        "metrics_port": "BAKEOFF_METRICS_PORT",
        "metrics_address": "BAKEOFF_METRICS_ADDRESS",
        "autoscale_interval_s": "BAKEOFF_AUTOSCALE_INTERVAL_S",
        "rate_window": "BAKEOFF_RATE_WINDOW",
        "watch_namespaces": "BAKEOFF_WATCH_NAMESPACES",
        "prometheus_url": "BAKEOFF_PROMETHEUS_URL",
        "vllm_image": "BAKEOFF_VLLM_IMAGE",
        "simulator_image": "BAKEOFF_SIMULATOR_IMAGE",
        "default_engine": "BAKEOFF_DEFAULT_ENGINE",
        "simulator_requests_gpus": "BAKEOFF_SIMULATOR_REQUESTS_GPUS",
        "cpu_per_gpu": "BAKEOFF_CPU_PER_GPU",
        "memory_gib_per_gpu": "BAKEOFF_MEMORY_GIB_PER_GPU",
        "loadtest_cluster_role": "BAKEOFF_LOADTEST_CLUSTER_ROLE",
        "loadtest_streams_per_process": "BAKEOFF_LOADTEST_STREAMS_PER_PROCESS",
        "loadtest_node_selector": "BAKEOFF_LOADTEST_NODE_SELECTOR",
        "loadtest_tolerations": "BAKEOFF_LOADTEST_TOLERATIONS",
    }
    # Variables whose value is JSON (the chart writes them with `toJson`).
    JSON: ClassVar[frozenset[str]] = frozenset({"loadtest_node_selector", "loadtest_tolerations"})

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OperatorConfig:
        """The configuration in `env`; unset or empty variables keep their defaults. Raises ValueError
        naming the variable when one is malformed."""
        raw = {field: env[var] for field, var in cls.ENV.items() if env.get(var)}
        given: dict[str, Any] = dict(raw)
        for field in cls.JSON & given.keys():
            try:
                given[field] = json.loads(raw[field])
            except json.JSONDecodeError as err:
                raise ValueError(f"operator environment: {cls.ENV[field]}={raw[field]!r}: not JSON ({err})") from None
        try:
            return cls.model_validate(given)
        except ValidationError as err:
            bad = "; ".join(
                f"{cls.ENV[str(e['loc'][0])]}={raw.get(str(e['loc'][0]))!r}: {e['msg']}" for e in err.errors()
            )
            raise ValueError(f"operator environment: {bad}") from None

    def job_settings(self) -> JobSettings:
        """The settings of bake-off run Jobs: Bakeoff's image (the simulator's) and the ClusterRole."""
        fields: dict[str, Any] = {
            "cluster_role": self.loadtest_cluster_role,
            "node_selector": self.loadtest_node_selector,
            "tolerations": self.loadtest_tolerations,
        }
        if self.simulator_image:
            fields["image"] = self.simulator_image
        return JobSettings(**fields)

    def render_settings(self, pod_monitor: bool = True) -> RenderSettings:
        """The settings the KServe renderer takes from this configuration."""
        fields: dict[str, Any] = {
            "default_engine": self.default_engine,
            "simulator_requests_gpus": self.simulator_requests_gpus,
            "pod_monitor": pod_monitor,
            "host": HostResources(cpu_per_gpu=self.cpu_per_gpu, memory_gib_per_gpu=self.memory_gib_per_gpu),
        }
        if self.vllm_image:
            fields["vllm_image"] = self.vllm_image
        if self.simulator_image:
            fields["simulator_image"] = self.simulator_image
        return RenderSettings(**fields)
