"""The PromQL the autoscaler reads, and how its answers become `VariantLoad`s. Pure.

Every query uses vLLM V1 metric names only, summed (or averaged) by `namespace` and `variant`, the
labels the variant's PodMonitor (and the playground's scrape configuration) put on each replica's
series. A variant with no series at all has no load observation: the decision holds its replicas.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from bakeoff_operator.autoscaling.decide import VariantLoad

BY: Final = "namespace, variant"
DEFAULT_RATE_WINDOW: Final = "1m"


def queries(rate_window: str = DEFAULT_RATE_WINDOW) -> dict[str, str]:
    """Signal name -> PromQL, one series per (namespace, variant)."""
    return {
        "waiting": f"sum by ({BY}) (vllm:num_requests_waiting)",
        "running": f"sum by ({BY}) (vllm:num_requests_running)",
        "output_tokens_per_s": f"sum by ({BY}) (rate(vllm:generation_tokens_total[{rate_window}]))",
        "prompt_tokens_per_s": f"sum by ({BY}) (rate(vllm:prompt_tokens_total[{rate_window}]))",
        "kv_cache_usage": f"avg by ({BY}) (vllm:kv_cache_usage_perc)",
        "replicas_reporting": f"count by ({BY}) (vllm:num_requests_running)",
    }


def variant_key(namespace: str, variant: str) -> str:
    return f"{namespace}/{variant}" if namespace else variant


def loads(answers: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, VariantLoad]:
    """Instant-query results (Prometheus `data.result` lists) per signal -> a load per variant key.

    A variant appears when its running-requests gauge is scraped; the other signals default to 0
    (counters not yet incremented) or unknown (KV usage)."""
    values: dict[str, dict[str, float]] = {}
    for signal, result in answers.items():
        for series in result:
            labels = series.get("metric") or {}
            variant = labels.get("variant")
            if not variant:
                continue
            key = variant_key(str(labels.get("namespace") or ""), str(variant))
            try:
                value = float(series["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            if not math.isfinite(value):  # NaN: e.g. a rate over a counter with one sample
                continue
            values.setdefault(key, {})[signal] = value
    out: dict[str, VariantLoad] = {}
    for key, v in values.items():
        if "running" not in v:
            continue
        out[key] = VariantLoad(
            waiting=max(v.get("waiting", 0.0), 0.0),
            running=max(v["running"], 0.0),
            output_tokens_per_s=max(v.get("output_tokens_per_s", 0.0), 0.0),
            prompt_tokens_per_s=max(v.get("prompt_tokens_per_s", 0.0), 0.0),
            kv_cache_usage=min(max(v["kv_cache_usage"], 0.0), 1.0) if "kv_cache_usage" in v else None,
            replicas_reporting=int(v.get("replicas_reporting", 0)),
        )
    return out
