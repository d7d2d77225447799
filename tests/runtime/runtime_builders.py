"""Small builders for runtime test objects."""

from __future__ import annotations

from bakeoff_runtime.architectures import get_architecture
from bakeoff_runtime.formats import Format
from bakeoff_runtime.gpus import get_gpu
from bakeoff_runtime.perf import PerformanceModel
from bakeoff_runtime.variant import Variant, make_variant


def variant(model: str, fmt: str, gpu: str, tp: int = 1, **knobs: object) -> Variant:
    return make_variant(get_architecture(model), Format(fmt), get_gpu(gpu), tp, **knobs)


def perf(model: str, fmt: str, gpu: str, tp: int = 1, **knobs: object) -> PerformanceModel:
    return PerformanceModel(variant(model, fmt, gpu, tp, **knobs))
