"""`GPUClass` (cluster-scoped): one GPU product as the planner and the cost model see it.

The chart installs the default catalog (`bakeoff_runtime/data/gpu_catalog.json`) as GPUClass
objects whose prices come from chart values; a GPUClass of the same name overrides the built-in
entry, so prices and new products are data, not code.
"""

from __future__ import annotations

from typing import Annotated, Literal

from bakeoff_runtime.formats import ComputeDtype
from bakeoff_runtime.gpus import GPUPrice, GPUSpec
from pydantic import ConfigDict, Field, model_validator

from bakeoff_operator.api.common import (
    API_VERSION,
    DNS_LABEL,
    MAX_DESCRIPTION,
    MAX_NAME,
    ApiModel,
    Condition,
    ObjectMeta,
    cel,
    cel_rules,
    conditions_field,
)


class GPUPricing(ApiModel):
    """Price inputs in USD per GPU-hour."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("!has(self.spot) || self.spot <= self.onDemand", "spot must not exceed onDemand", ".spot")
        )
    )

    on_demand: float = Field(ge=0, le=1000, description="On-demand price, USD per GPU-hour.")
    spot: float | None = Field(
        default=None, ge=0, le=1000, description="Spot/preemptible price, USD per GPU-hour (BakeOff `pricing.spot`)."
    )

    @model_validator(mode="after")
    def _spot_not_above_on_demand(self) -> GPUPricing:
        if self.spot is not None and self.spot > self.on_demand:
            raise ValueError(f"spot ({self.spot}) must not exceed onDemand ({self.on_demand})")
        return self


class TFLOPS(ApiModel):
    """Dense tensor-core peak per compute dtype (TOPS for int8); omit a dtype the GPU lacks natively."""

    bf16: float = Field(gt=0, le=100_000, description="Dense BF16 TFLOPS.")
    fp8: float | None = Field(default=None, gt=0, le=100_000, description="Dense FP8 TFLOPS (Ada, Hopper and newer).")
    int8: float | None = Field(default=None, gt=0, le=100_000, description="Dense INT8 TOPS.")


class Toleration(ApiModel):
    """A Kubernetes toleration the replicas on this GPU class carry (e.g. for `nvidia.com/gpu:NoSchedule`)."""

    key: str | None = Field(default=None, max_length=317, description="Taint key; empty with Exists: every taint.")
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Exists or Equal.")
    value: str | None = Field(default=None, max_length=63, description="Taint value (with Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect; empty: every effect."
    )


class GPUClassSpec(ApiModel):
    """What one GPU of this class offers and costs."""

    display_name: str = Field(default="", max_length=MAX_DESCRIPTION, description="Human-readable product name.")
    product: str = Field(
        min_length=1,
        max_length=MAX_NAME,
        pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
        description="Value of the node label `nvidia.com/gpu.product` on nodes with this GPU.",
    )
    other_products: list[
        Annotated[str, Field(min_length=1, max_length=MAX_NAME, pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")]
    ] = Field(
        default_factory=list,
        max_length=16,
        description="Further `nvidia.com/gpu.product` values of the same class (e.g. the PCIe and SXM boards); "
        "replicas may land on nodes with any of them.",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=16, description="Tolerations for taints on the nodes of this GPU class."
    )
    resource_name: str = Field(
        default="nvidia.com/gpu",
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$",
        description="Extended resource requested per GPU.",
    )
    memory_gib: float = Field(gt=0, le=1024, alias="memoryGiB", description="Device memory CUDA reports, GiB.")
    bandwidth_tbps: float = Field(gt=0, le=100, alias="bandwidthTBps", description="Peak memory bandwidth, TB/s.")
    tflops: TFLOPS = Field(description="Dense peak per compute dtype.")
    compute_capability: float = Field(ge=7.0, le=15.0, description="CUDA compute capability, e.g. 8.9 or 9.0.")
    interconnect_gbps: float = Field(
        default=64,
        gt=0,
        le=100_000,
        alias="interconnectGBps",
        description="GPU-to-GPU bandwidth per direction, GB/s (NVLink, or PCIe for cards without it).",
    )
    gpus_per_node: int = Field(
        default=8,
        ge=1,
        le=64,
        alias="gpusPerNode",
        description="GPUs of this class in one node: the widest tensor-parallel group; larger replicas span "
        "nodes as pipeline stages.",
    )
    inter_node_gbps: float = Field(
        default=25,
        gt=0,
        le=100_000,
        alias="interNodeGBps",
        description="Network bandwidth per GPU between nodes, GB/s per direction (GPUDirect RDMA NICs).",
    )
    price_per_gpu_hour: GPUPricing = Field(alias="pricePerGPUHour", description="Price inputs, USD per GPU-hour.")


class GPUClassStatus(ApiModel):
    """What the cluster has of this GPU class."""

    observed_generation: int | None = Field(default=None, ge=0, description="Generation last reconciled.")
    nodes: int | None = Field(default=None, ge=0, le=100_000, description="Nodes carrying the product label.")
    allocatable_gpus: int | None = Field(
        default=None, ge=0, le=1_000_000, alias="allocatableGPUs", description="GPUs allocatable on those nodes."
    )
    conditions: list[Condition] = conditions_field()


class GPUClass(ApiModel):
    """A GPU class: product, memory, bandwidth, peak TFLOPS per dtype, compute capability and price."""

    api_version: Literal["bakeoff.dev/v1alpha1"] = Field(default=API_VERSION, description="API version.")
    kind: Literal["GPUClass"] = Field(default="GPUClass", description="Kind.")
    metadata: ObjectMeta = Field(description="Object metadata; the name is the GPU class id (e.g. h100).")
    spec: GPUClassSpec = Field(description="The GPU class.")
    status: GPUClassStatus | None = Field(default=None, description="Observed state.")

    def to_gpu_spec(self) -> GPUSpec:
        """The performance model's view of this GPU class."""
        s = self.spec
        tflops = {ComputeDtype.BF16: s.tflops.bf16}
        if s.tflops.fp8 is not None:
            tflops[ComputeDtype.FP8] = s.tflops.fp8
        if s.tflops.int8 is not None:
            tflops[ComputeDtype.INT8] = s.tflops.int8
        return GPUSpec(
            name=self.metadata.name,
            display_name=s.display_name,
            product=s.product,
            resource_name=s.resource_name,
            memory_gib=s.memory_gib,
            bandwidth_tbps=s.bandwidth_tbps,
            tflops=tflops,
            compute_capability=s.compute_capability,
            interconnect_gbps=s.interconnect_gbps,
            gpus_per_node=s.gpus_per_node,
            inter_node_gbps=s.inter_node_gbps,
            price_per_gpu_hour=GPUPrice(on_demand=s.price_per_gpu_hour.on_demand, spot=s.price_per_gpu_hour.spot),
        )

    @classmethod
    def from_gpu_spec(cls, gpu: GPUSpec) -> GPUClass:
        """The GPUClass object for a catalog entry."""
        return cls(
            metadata=ObjectMeta(name=gpu.name),
            spec=gpu_class_spec(gpu),
        )


def gpu_class_spec(gpu: GPUSpec) -> GPUClassSpec:
    return GPUClassSpec(
        display_name=gpu.display_name,
        product=gpu.product,
        resource_name=gpu.resource_name,
        memory_gib=gpu.memory_gib,
        bandwidth_tbps=gpu.bandwidth_tbps,
        tflops=TFLOPS(
            bf16=gpu.tflops[ComputeDtype.BF16],
            fp8=gpu.tflops.get(ComputeDtype.FP8),
            int8=gpu.tflops.get(ComputeDtype.INT8),
        ),
        compute_capability=gpu.compute_capability,
        interconnect_gbps=gpu.interconnect_gbps,
        gpus_per_node=gpu.gpus_per_node,
        inter_node_gbps=gpu.inter_node_gbps,
        price_per_gpu_hour=GPUPricing(on_demand=gpu.price_per_gpu_hour.on_demand, spot=gpu.price_per_gpu_hour.spot),
    )


GPU_CLASS_NAME_PATTERN = DNS_LABEL
