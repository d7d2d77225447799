"""The calibrated performance model: how long one continuous-batching engine step takes, and from that
sync latency, saturation throughput, QPS under an SLO, tokens/s and cost.

One module per job:

* `efficiency`: the physical efficiency factors and the kernel family a format runs on;
* `roofline`: one engine step as a roofline per kernel class, and one request alone;
* `batching`: continuous batching in steady state, up to saturation;
* `queueing`: the highest Poisson rate that meets a TTFT/ITL SLO;
* `prediction`: what `bakeoff predict` reports for a variant and workload;
* `model`: `PerformanceModel`, the one object callers use.
"""

from bakeoff_runtime.perf.batching import ContinuousBatching, LimitedBy, Saturation, SteadyState
from bakeoff_runtime.perf.efficiency import DEFAULT_EFFICIENCY, EfficiencyFactors, KernelFamily, kernel_family
from bakeoff_runtime.perf.model import PerformanceModel
from bakeoff_runtime.perf.prediction import Prediction
from bakeoff_runtime.perf.roofline import StepModel, StepShape, SyncLatency

__all__ = [
    "DEFAULT_EFFICIENCY",
    "ContinuousBatching",
    "EfficiencyFactors",
    "KernelFamily",
    "LimitedBy",
    "PerformanceModel",
    "Prediction",
    "Saturation",
    "SteadyState",
    "StepModel",
    "StepShape",
    "SyncLatency",
    "kernel_family",
]
