"""Cost per 1M tokens: the one formula that prices measured runs and predictions alike.

    USD per 1M tokens = price per GPU-hour x GPUs x replicas x hours / tokens x 1e6

A measured load point passes its wall hours and the tokens it produced; a prediction passes one
hour and the tokens its predicted rate produces in that hour. Prices are inputs, never constants of
the code. Pure data and arithmetic: the load harness imports this module (see `pyproject.toml`).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

SECONDS_PER_HOUR = 3600.0


def gpu_hours(gpus: int, replicas: int, hours: float) -> float:
    return gpus * replicas * hours


def usd_per_million_tokens(
    *, price_per_gpu_hour: float, gpus: int, replicas: int, hours: float, tokens: float
) -> float | None:
    """price per GPU-hour x GPUs x replicas x hours / tokens x 1e6; None without tokens or time."""
    if tokens <= 0 or not math.isfinite(hours) or hours <= 0:
        return None
    return price_per_gpu_hour * gpu_hours(gpus, replicas, hours) / tokens * 1e6


def usd_per_million_tokens_at_rate(
    *, price_per_gpu_hour: float, gpus: int, replicas: int, tokens_per_second: float
) -> float | None:
    """The same formula over one hour at a steady rate of ``tokens_per_second``."""
    return usd_per_million_tokens(
        price_per_gpu_hour=price_per_gpu_hour,
        gpus=gpus,
        replicas=replicas,
        hours=1.0,
        tokens=tokens_per_second * SECONDS_PER_HOUR,
    )


class CostInputs(BaseModel):
    """What the measured deployment costs while the load runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu_class: str = Field("unknown", min_length=1, max_length=63, description="GPU class name, e.g. H100.")
    price_per_gpu_hour: float = Field(
        0.0, ge=0.0, le=10_000.0, description="USD per GPU-hour (0: cost is not computed)."
    )
    gpus: int = Field(1, ge=1, le=1024, description="GPUs per replica (tensor-parallel size).")
    replicas: int = Field(1, ge=1, le=10_000, description="Replicas serving the load.")

    @property
    def priced(self) -> bool:
        return self.price_per_gpu_hour > 0

    def gpu_hours(self, wall_s: float) -> float:
        return gpu_hours(self.gpus, self.replicas, wall_s / SECONDS_PER_HOUR)

    def usd(self, wall_s: float) -> float:
        """price per GPU-hour x GPUs x replicas x wall hours."""
        return self.price_per_gpu_hour * self.gpu_hours(wall_s)

    def usd_per_million(self, wall_s: float, tokens: int) -> float | None:
        """USD per 1M tokens over ``wall_s`` seconds; None without tokens or without a price."""
        if not self.priced:
            return None
        return usd_per_million_tokens(
            price_per_gpu_hour=self.price_per_gpu_hour,
            gpus=self.gpus,
            replicas=self.replicas,
            hours=wall_s / SECONDS_PER_HOUR,
            tokens=tokens,
        )
