"""A run's summary: the results a scheduler of load runs reads back, small enough for a ConfigMap.

The summary is the run's `RunResult` JSON, made to fit a ConfigMap (the API server stores at most
1 MiB per object): the pooled ITL reservoir, which no comparison of a bake-off reads, is left out, and
when the per-request samples still do not fit, every load point keeps an evenly spaced subset of them
(a warning in the result says how many). Everything else (percentiles with their confidence
intervals, throughput, goodput, cost, the sweep analysis, the error) is kept as measured.

`bakeoff loadtest --summary-file` writes it to a file, `--summary-configmap` to a ConfigMap
(`bakeoff_loadtest.configmap_writer`); the operator reads it back with `read_summary`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from pydantic import ValidationError

from bakeoff_loadtest.results import LoadPoint, RunResult

SUMMARY_KEY: Final = "summary.json"  # the key of the summary in its ConfigMap
# Below the API server's 1 MiB object limit, with room for metadata and the request envelope.
MAX_SUMMARY_BYTES: Final = 900_000


class SummaryError(RuntimeError):
    """The summary could not be made or written; the message says why and what to fix."""


# --- the summary -----------------------------------------------------------------------------------------
def _json(result: RunResult) -> str:
    return result.model_dump_json()


def _thinned(point: LoadPoint, keep: int) -> LoadPoint:
    samples = point.requests
    if len(samples) <= keep:
        return point
    if keep == 0:
        return point.model_copy(update={"requests": ()})
    step = len(samples) / keep
    kept = tuple(samples[int(i * step)] for i in range(keep))
    return point.model_copy(update={"requests": kept})


def compact(result: RunResult, limit: int = MAX_SUMMARY_BYTES) -> RunResult:
    """`result` without the ITL reservoir, and with fewer request samples per point until its JSON is at
    most `limit` bytes; raises SummaryError when even no samples at all do not fit."""
    points = tuple(p.model_copy(update={"itl_samples_ms": ()}) for p in result.points)
    out = result.model_copy(update={"points": points})
    if len(_json(out)) <= limit:
        return out
    most = max((len(p.requests) for p in points), default=0)
    keep = most
    while keep > 0:
        keep //= 2
        thinned = tuple(_thinned(p, keep) for p in points)
        note = f"the summary keeps at most {keep} request samples per load point (of {most}) to fit {limit} bytes"
        candidate = out.model_copy(update={"points": thinned, "warnings": (*result.warnings, note)})
        if len(_json(candidate)) <= limit:
            return candidate
    raise SummaryError(f"the run's summary does not fit in {limit} bytes even without request samples")


def summary_text(result: RunResult) -> str:
    """The summary as it is stored: compact `RunResult` JSON."""
    return _json(compact(result))


def read_summary(text: str) -> RunResult:
    """A summary back as a `RunResult`; raises ValueError naming what is wrong with it."""
    try:
        return RunResult.model_validate_json(text)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the document"
        raise ValueError(f"{err.error_count()} problem(s), first at {where}: {first['msg']}") from None


def write_file(result: RunResult, path: Path) -> None:
    """Write the summary to `path` (its folder is created)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(summary_text(result))
    except OSError as err:
        raise SummaryError(f"cannot write the summary to {str(path)!r}: {err.strerror or err}") from None
