"""The definitions of every number the load harness reports.

One source of truth: reports, ``docs/measurement.md`` and the results JSON all quote these texts, and
the functions in :mod:`bakeoff_loadtest.records` compute exactly what they say.
"""

from __future__ import annotations

DEFINITIONS: dict[str, str] = {
    "request start": (
        "The monotonic clock (time.perf_counter) read immediately before the request is written to "
        "the connection; connection set-up on a fresh connection is included."
    ),
    "content token": (
        "A streamed chunk whose choice carries non-empty text (chat: delta.content or "
        "delta.reasoning_content; completions: text). Role-only chunks and the usage chunk are not "
        "content. A server may put several tokens in one chunk; timings are per chunk."
    ),
    "TTFT": "Time to first token: request start to the arrival of the first content token.",
    "ITL": (
        "Inter-token latency: the gaps between the arrivals of consecutive content tokens of one "
        "request; every gap of every successful request is one sample."
    ),
    "TPOT": (
        "Time per output token: (E2E - TTFT) / (output tokens - 1) for a request with at least two "
        "output tokens; output tokens come from the server's usage chunk."
    ),
    "E2E": "End-to-end latency: request start to the end of the response stream.",
    "output tokens": (
        "usage.completion_tokens from the server's final usage chunk (stream_options.include_usage), "
        "never a count of chunks; prompt tokens likewise come from usage.prompt_tokens."
    ),
    "output tokens/s": (
        "Output tokens of successful requests divided by the wall time of the load point (first "
        "request start to last request end)."
    ),
    "goodput": (
        "Successful requests per second that met every SLO of the bake-off: TTFT <= the TTFT target, "
        "TPOT <= the ITL target (the request's mean inter-token latency) and, when set, E2E <= the "
        "E2E target."
    ),
    "meets SLO": (
        "A load point meets the SLO when TTFT, ITL and E2E at the SLO's percentile (p50, p90, p95 or "
        "p99; p90 unless set) are within the bounds that are set and the failure rate is at most the "
        "allowed failure rate (1% unless set)."
    ),
    "chosen load point": (
        "The load level a variant is judged at: the one with the most output tokens/s among those "
        "meeting the SLO; without an SLO, or when no level met it, the one with the most output "
        "tokens/s of those that completed requests."
    ),
    "max QPS under SLO": "The highest offered request rate of a rate sweep whose load point meets the SLO.",
    "saturation knee": (
        "The load level with the highest power, output tokens/s divided by median E2E latency: past "
        "it, extra load buys less throughput than it costs in latency."
    ),
    "saturation": (
        "The first load level of a sweep whose median E2E exceeds 1.5 times the median E2E of the "
        "lowest level, or whose failure rate exceeds the allowed failure rate."
    ),
    "failure": (
        "A request that could not connect, got a non-2xx status, got a body that is not an SSE "
        "stream, got a stream without a usage chunk, a stream cut before [DONE], an error event, or "
        "timed out, also when it was cut because the endpoint sent nothing (no response during the "
        "load point's whole duration, or no byte on any stream for the point's duration, at least "
        "10 s). Requests still in flight when the drain timeout ends or the run is interrupted are "
        "counted as cancelled, not as failures. A load point in which no request succeeded is a "
        "failure of the run, reported with its first failure's cause."
    ),
    "percentile": (
        "Linear interpolation between closest ranks (numpy's default, Hyndman-Fan type 7); the 95% "
        "confidence interval is a seeded percentile bootstrap over requests (ITL: over samples)."
    ),
    "cost per 1M output tokens": (
        "price per GPU-hour x GPUs per replica x replicas x wall hours / output tokens x 1e6; per 1M "
        "total tokens divides by prompt + output tokens instead. The price is an input of the run."
    ),
    "Pareto frontier": (
        "The variants no other variant beats on both cost per 1M output tokens and p90 E2E latency "
        "(lower is better on both; ties stay together), each at its chosen load point; a variant that "
        "failed or missed the SLO at every load level is left out."
    ),
    "A/B comparison": (
        "Two-sided Mann-Whitney U test (normal approximation with tie and continuity corrections) on "
        "per-request values, with Cliff's delta as effect size and the Hodges-Lehmann shift. A bake-off "
        "compares each variant with its baseline on TTFT, TPOT and E2E at the variant's chosen load "
        "level; a positive shift means the variant is slower."
    ),
}
