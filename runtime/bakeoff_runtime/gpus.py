"""GPU classes as data: memory, bandwidth, dense peak per dtype, compute capability, GPUs per node and
the links between them, and price.

The default catalog ships as `data/gpu_catalog.json`; prices are inputs (chart values and `GPUClass`
resources override them), never constants in the code that uses them.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bakeoff_runtime.formats import ComputeDtype

GIB = 1024**3


class GPUPrice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    on_demand: float = Field(ge=0, le=1000, description="On-demand price, USD per GPU-hour.")
    spot: float | None = Field(default=None, ge=0, le=1000, description="Spot price, USD per GPU-hour.")


class GPUSpec(BaseModel):
    """One GPU class (one product), as the performance model and the planner see it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63, description="Catalog id.")
    display_name: str = Field(default="", description="Human-readable product name.")
    product: str = Field(
        min_length=1, description="Value of the node label `nvidia.com/gpu.product` for this GPU class."
    )
    resource_name: str = Field(default="nvidia.com/gpu", description="Extended resource requested per GPU.")
    memory_gib: float = Field(gt=0, le=1024, description="Device memory CUDA reports, GiB.")
    bandwidth_tbps: float = Field(gt=0, le=100, description="Peak HBM/GDDR bandwidth, TB/s.")
    tflops: dict[ComputeDtype, float] = Field(
        description="Dense tensor-core peak per compute dtype, TFLOPS (TOPS for int8); a dtype that is "
        "missing has no native tensor-core support."
    )
    compute_capability: float = Field(ge=7.0, le=15.0, description="CUDA compute capability, e.g. 9.0.")
    interconnect_gbps: float = Field(
        default=64, gt=0, description="GPU-to-GPU bandwidth per direction, GB/s (NVLink or PCIe)."
    )
    gpus_per_node: int = Field(
        default=8,
        ge=1,
        le=64,
        description="GPUs of this class in one node: the widest tensor-parallel group on the interconnect; "
        "larger replicas span nodes as pipeline stages.",
    )
    inter_node_gbps: float = Field(
        default=25,
        gt=0,
        le=100_000,
        description="Network bandwidth per GPU between nodes, GB/s per direction (GPUDirect RDMA NICs).",
    )
    price_per_gpu_hour: GPUPrice = Field(description="Price inputs, USD per GPU-hour.")

    @model_validator(mode="after")
    def _needs_bf16(self) -> GPUSpec:
        if ComputeDtype.BF16 not in self.tflops:
            raise ValueError(f"GPU class {self.name}: tflops must give a bf16 figure")
        return self

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * GIB

    def peak_flops(self, dtype: ComputeDtype) -> float:
        """Dense peak in FLOP/s for `dtype`; 16-bit when the GPU has no tensor cores for it."""
        return self.tflops.get(dtype, self.tflops[ComputeDtype.BF16]) * 1e12

    @property
    def bandwidth_bytes_per_s(self) -> float:
        return self.bandwidth_tbps * 1e12

    def hourly_price(self, spot: bool = False) -> float:
        if spot and self.price_per_gpu_hour.spot is not None:
            return self.price_per_gpu_hour.spot
        return self.price_per_gpu_hour.on_demand


class GPUCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    about: str = ""
    gpus: list[GPUSpec]

    def get(self, name: str) -> GPUSpec:
        for gpu in self.gpus:
            if gpu.name == name:
                return gpu
        raise UnknownGPUClassError(name, [g.name for g in self.gpus])

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.gpus]

    def with_gpu(self, gpu: GPUSpec) -> GPUCatalog:
        """A catalog where `gpu` replaces the entry of the same name (or is added)."""
        others = [g for g in self.gpus if g.name != gpu.name]
        return GPUCatalog(about=self.about, gpus=[*others, gpu])


class UnknownGPUClassError(KeyError):
    def __init__(self, name: str, valid: list[str]) -> None:
        self.name = name
        self.valid = valid
        super().__init__(name)

    def __str__(self) -> str:
        return f"unknown GPU class {self.name!r}; valid GPU classes: {', '.join(sorted(self.valid))}"


@cache
def default_catalog() -> GPUCatalog:
    text = resources.files("bakeoff_runtime").joinpath("data/gpu_catalog.json").read_text()
    return GPUCatalog.model_validate(json.loads(text))


def get_gpu(name: str) -> GPUSpec:
    return default_catalog().get(name)
