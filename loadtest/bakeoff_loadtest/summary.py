"""From request records to results: latency summaries, load points judged against the SLO, and the
analysis of a sweep. Each model is built once, complete; nothing is patched afterwards.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence

from bakeoff_loadtest.records import FailureCause, RequestRecord
from bakeoff_loadtest.results import ITL_RESERVOIR, LatencySummary, LoadPoint, RequestSample, SweepAnalysis
from bakeoff_loadtest.slo import SLO, Percentile, request_meets_slo
from bakeoff_loadtest.spec import LoadPlan
from bakeoff_loadtest.stats import percentile, percentile_ci

SAMPLE_DETAILS = 5

# Each percentile's bootstrap has its own seed offset, stable as percentiles are added.
_CI_SEED_OFFSET: dict[Percentile, int] = {Percentile.P50: 0, Percentile.P90: 1, Percentile.P99: 2, Percentile.P95: 4}


def summarize_latency(values_ms: Sequence[float], seed: int) -> LatencySummary:
    """Count, mean, extremes and every SLO percentile with its 95% confidence interval."""
    if not values_ms:
        return LatencySummary()
    vals = list(values_ms)
    fields: dict[str, object] = {"count": len(vals), "mean": sum(vals) / len(vals), "min": min(vals), "max": max(vals)}
    for p in Percentile:
        fields[p.value] = percentile(vals, p.percent)
        if len(vals) >= 2:
            fields[f"{p.value}_ci"] = percentile_ci(vals, p.percent, seed=seed + _CI_SEED_OFFSET[p])
    return LatencySummary.model_validate(fields)


def _ms(x: float | None) -> float | None:
    return None if x is None else x * 1000.0


def _sample(r: RequestRecord, t0: float) -> RequestSample:
    return RequestSample(
        index=r.index,
        worker=r.worker,
        start_offset_s=r.start_unix - t0,
        ok=r.ok,
        cause=r.cause,
        status_code=r.status_code,
        ttft_ms=_ms(r.ttft_s),
        e2e_ms=_ms(r.e2e_s),
        tpot_ms=_ms(r.tpot_s),
        itl_mean_ms=(sum(r.itl_s) / len(r.itl_s) * 1000) if r.itl_s else None,
        itl_max_ms=max(r.itl_s) * 1000 if r.itl_s else None,
        output_tokens=r.output_tokens,
        prompt_tokens=r.prompt_tokens,
        requested_output_tokens=r.requested_output_tokens,
        requested_prompt_tokens=r.requested_prompt_tokens,
        content_chunks=r.content_chunks,
    )


def meets_slo(
    slo: SLO,
    max_failure_rate: float,
    *,
    requests_ok: int,
    failure_rate: float,
    ttft_ms: LatencySummary,
    itl_ms: LatencySummary,
    e2e_ms: LatencySummary,
) -> bool:
    """TTFT, ITL and E2E at the SLO's own percentile within their bounds, and failures within budget."""
    if requests_ok == 0 or failure_rate > max_failure_rate:
        return False
    for bound, summary in ((slo.ttft_ms, ttft_ms), (slo.itl_ms, itl_ms), (slo.e2e_ms, e2e_ms)):
        if bound is None:
            continue
        value = summary.at(slo.percentile)
        if value is None or value > bound:
            return False
    return True


def summarize_point(
    records: Sequence[RequestRecord],
    plan: LoadPlan,
    *,
    level: float,
    wall_s: float | None = None,
    point_index: int = 0,
) -> LoadPoint:
    """Aggregate the records of one load point. ``wall_s`` defaults to first start to last end."""
    recs = sorted(records, key=lambda r: (r.start_unix, r.index))
    seed = plan.seed * 1000 + point_index * 10
    if recs:
        t0 = recs[0].start_unix
        ends = [r.start_unix + r.e2e_s for r in recs if r.e2e_s is not None]
        measured = (max(ends) if ends else t0) - t0
    else:
        t0, measured = 0.0, 0.0
    wall = measured if wall_s is None else wall_s
    ok = [r for r in recs if r.ok]
    failed = [r for r in recs if not r.ok and r.cause is not FailureCause.CANCELLED]
    examples: list[str] = []
    for r in failed:
        msg = f"{r.cause}: {r.detail}"
        if msg not in examples:
            examples.append(msg)
        if len(examples) >= SAMPLE_DETAILS:
            break
    itl_all = [g * 1000.0 for r in ok for g in r.itl_s]
    reservoir = itl_all if len(itl_all) <= ITL_RESERVOIR else random.Random(seed + 7).sample(itl_all, ITL_RESERVOIR)
    out_tok = sum(r.output_tokens or 0 for r in ok)
    in_tok = sum(r.prompt_tokens or 0 for r in ok)
    done = len(ok) + len(failed)
    ttft = summarize_latency([r.ttft_s * 1000 for r in ok if r.ttft_s is not None], seed)
    itl = summarize_latency(itl_all, seed + 3)
    e2e = summarize_latency([r.e2e_s * 1000 for r in ok if r.e2e_s is not None], seed + 6)
    judged: dict[str, object] = {}
    if plan.slo is not None:
        good = sum(1 for r in ok if request_meets_slo(r, plan.slo))
        judged = {
            "goodput_rps": good / wall if wall > 0 else 0.0,
            "slo_attainment": good / done if done else 0.0,
            "meets_slo": meets_slo(
                plan.slo,
                plan.max_failure_rate,
                requests_ok=len(ok),
                failure_rate=len(failed) / done if done else 0.0,
                ttft_ms=ttft,
                itl_ms=itl,
                e2e_ms=e2e,
            ),
        }
    rates: dict[str, object] = {}
    if wall > 0:
        rates = {
            "requests_per_s": len(ok) / wall,
            "output_tokens_per_s": out_tok / wall,
            "total_tokens_per_s": (out_tok + in_tok) / wall,
        }
    return LoadPoint.model_validate(
        {
            "concurrency": None if plan.open_loop else int(level),
            "rate_rps": level if plan.open_loop else None,
            "arrival": plan.arrival if plan.open_loop else None,
            "started_unix": t0 if recs else None,
            "wall_s": wall,
            "requests_started": len(recs),
            "requests_ok": len(ok),
            "requests_failed": len(failed),
            "requests_cancelled": sum(1 for r in recs if r.cause is FailureCause.CANCELLED),
            "failures_by_cause": dict(sorted(Counter(str(r.cause) for r in failed).items())),
            "failure_examples": tuple(examples),
            "ttft_ms": ttft,
            "itl_ms": itl,
            "tpot_ms": summarize_latency([t * 1000.0 for r in ok if (t := r.tpot_s) is not None], seed + 5),
            "e2e_ms": e2e,
            "output_tokens": out_tok,
            "prompt_tokens": in_tok,
            "output_length_mismatches": sum(1 for r in ok if r.output_tokens != r.requested_output_tokens),
            **rates,
            **judged,
            "gpu_hours": plan.cost.gpu_hours(wall),
            "cost_usd": plan.cost.usd(wall),
            "usd_per_1m_output_tokens": plan.cost.usd_per_million(wall, out_tok),
            "usd_per_1m_total_tokens": plan.cost.usd_per_million(wall, out_tok + in_tok),
            "itl_samples_ms": tuple(round(x, 4) for x in reservoir),
            "requests": tuple(_sample(r, t0) for r in recs),
        }
    )


def no_success(point: LoadPoint) -> str | None:
    """Why a load point that no request succeeded in is a failure, with its first failure's cause;
    None when some request succeeded."""
    if point.requests_ok > 0:
        return None
    if point.failure_examples:
        causes = ", ".join(f"{k} {v}" for k, v in point.failures_by_cause.items())
        return f"no request succeeded ({causes}); first failure: {point.failure_examples[0]}"
    if point.requests_cancelled:
        return (
            f"no request completed: {point.requests_cancelled} were still in flight when the load point ended "
            "(raise --duration or --drain-timeout)"
        )
    return "no request was sent (the load point ended before its first request)"


def analyse_sweep(points: Sequence[LoadPoint], plan: LoadPlan) -> SweepAnalysis:
    """Knee (max power = tokens/s ÷ median E2E), max QPS/concurrency under SLO, saturation."""
    fields: dict[str, object] = {}
    usable = [p for p in points if p.requests_ok > 0 and p.e2e_ms.p50]
    if usable:
        knee = max(usable, key=lambda p: p.output_tokens_per_s / (p.e2e_ms.p50 or math.inf))
        fields["knee_level"] = knee.level
        fields["max_output_tokens_per_s"] = max(p.output_tokens_per_s for p in usable)
    if plan.slo is not None:
        within = [p for p in points if p.meets_slo]
        if within:
            top = max(p.level for p in within)
            fields["max_qps_under_slo" if plan.open_loop else "max_concurrency_under_slo"] = (
                top if plan.open_loop else int(top)
            )
        goodputs = [p.goodput_rps for p in points if p.goodput_rps is not None]
        fields["max_goodput_rps"] = max(goodputs) if goodputs else None
    ordered = sorted(points, key=lambda p: p.level)
    base = next((p.e2e_ms.p50 for p in ordered if p.e2e_ms.p50), None)
    for p in ordered:
        e2e = p.e2e_ms.p50
        if (
            p.requests_ok == 0
            or p.failure_rate > plan.max_failure_rate
            or (base is not None and e2e is not None and e2e > 1.5 * base)
        ):
            fields["saturated_at"] = p.level
            break
    return SweepAnalysis.model_validate(fields)
