"""Queueing under an SLO: the highest Poisson arrival rate whose TTFT and ITL percentiles meet targets."""

from __future__ import annotations

import math

from bakeoff_runtime.perf.batching import ContinuousBatching


def erlang_c(servers: int, load: float) -> float:
    """Probability that an arrival waits in M/M/c with `load` = λ·S (offered Erlangs), load < servers."""
    if load <= 0:
        return 0.0
    if load >= servers:
        return 1.0
    # Erlang B by its stable recurrence, then C from B.
    b = 1.0
    for k in range(1, servers + 1):
        b = load * b / (k + load * b)
    rho = load / servers
    return b / (1 - rho + rho * b)


def qps_at_slo(
    batching: ContinuousBatching,
    prompt_tokens: int,
    output_tokens: int,
    *,
    ttft_s: float | None = None,
    itl_s: float | None = None,
    percentile: float = 0.99,
) -> float:
    """Highest Poisson arrival rate whose TTFT and ITL percentiles meet the SLO (0 when none does).

    At rate λ the running count b settles where λ = b / (steps per request × mean step(b))
    (Little's law, with `steady_state`'s mix of chunked and decode-only steps). TTFT is the
    prompt's chunked prefill beside b − 1 decodes plus the wait for a free sequence slot, taken
    from M/M/c with c = the saturation concurrency and halved for the near-deterministic service
    time (Allen–Cunneen). ITL is the decode-only step, or the step carrying a prompt chunk when
    such steps are more than 1 − percentile of all steps.
    """
    sat = batching.saturation(prompt_tokens, output_tokens)
    if sat.concurrency < 1:
        return 0.0
    c = sat.concurrency
    top = batching.steady_state(c, prompt_tokens, output_tokens)
    service = c / top.requests_per_s  # seconds a request holds its slot (Little's law)
    p, o = prompt_tokens, output_tokens
    context = p + o / 2

    def meets(b: int) -> tuple[bool, float]:
        state = batching.steady_state(b, p, o)
        rate = state.requests_per_s
        ttft = state.ttft_s
        load = min(rate * service, c - 1e-9)
        waiting = erlang_c(c, load)
        if waiting > 1 - percentile:
            ttft += 0.5 * service / (c - load) * math.log(waiting / (1 - percentile))
        chunked = state.chunks_per_step
        k = math.floor(chunked)
        # The step kinds a decoding sequence sees: more chunks than ⌊a⌋ in a share a − ⌊a⌋ of steps.
        heavier = k + 1 if chunked - k > 1 - percentile else k
        itl = (
            state.itl_s if state.budget_bound else batching.mixed_step(heavier, p / state.prefill_steps, b, p, context)
        )
        ok = (ttft_s is None or ttft <= ttft_s) and (itl_s is None or itl <= itl_s)
        return ok, rate

    lo, hi = 0, c  # meets(lo) is taken as true with rate 0; find the largest b that meets
    best = 0.0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        ok, rate = meets(mid)
        if ok:
            lo, best = mid, rate
        else:
            hi = mid - 1
    return best
