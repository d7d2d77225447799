"""Cost per 1M tokens. Prices are inputs of a run, never constants of the code."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field


class CostInputs(BaseModel):
    """What the measured deployment costs while the load runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu_class: str = Field("unknown", min_length=1, max_length=63, description="GPU class name, e.g. H100.")
    price_per_gpu_hour: float = Field(
        0.0, ge=0.0, le=10_000.0, description="USD per GPU-hour (0: cost is not computed)."
    )
    gpus: int = Field(1, ge=1, le=1024, description="GPUs per replica (tensor-parallel size).")
    replicas: int = Field(1, ge=1, le=10_000, description="Replicas serving the load.")


def gpu_hours(inputs: CostInputs, wall_s: float) -> float:
    return inputs.gpus * inputs.replicas * wall_s / 3600.0


def cost_usd(inputs: CostInputs, wall_s: float) -> float:
    """price per GPU-hour x GPUs x replicas x wall hours."""
    return inputs.price_per_gpu_hour * gpu_hours(inputs, wall_s)


def cost_per_million(inputs: CostInputs, wall_s: float, tokens: int) -> float | None:
    """USD per 1M tokens: cost / tokens x 1e6; None without tokens or without a price."""
    if tokens <= 0 or inputs.price_per_gpu_hour <= 0 or not math.isfinite(wall_s) or wall_s <= 0:
        return None
    return cost_usd(inputs, wall_s) / tokens * 1e6
