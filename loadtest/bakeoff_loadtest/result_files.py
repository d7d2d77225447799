"""Results on disk: `<stem>.json` per run, `<stem>.requests.csv` per run, a shared `points.csv`, and
the loader that reads a results JSON back (refusing a schema version it does not know).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from bakeoff_loadtest.results import SCHEMA_VERSION, LoadPoint, RequestSample, RunResult

POINT_COLUMNS: Final = (
    "variant",
    "workload",
    "mode",
    "concurrency",
    "rate_rps",
    "wall_s",
    "requests_started",
    "requests_ok",
    "requests_failed",
    "requests_cancelled",
    "ttft_p50_ms",
    "ttft_p90_ms",
    "ttft_p95_ms",
    "ttft_p99_ms",
    "itl_p50_ms",
    "itl_p90_ms",
    "itl_p95_ms",
    "itl_p99_ms",
    "tpot_p50_ms",
    "e2e_p50_ms",
    "e2e_p90_ms",
    "e2e_p95_ms",
    "e2e_p99_ms",
    "output_tokens",
    "prompt_tokens",
    "requests_per_s",
    "output_tokens_per_s",
    "goodput_rps",
    "meets_slo",
    "usd_per_1m_output_tokens",
    "usd_per_1m_total_tokens",
)


def stem(result: RunResult) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in result.variant) or "variant"
    return f"{safe}-{result.spec.workload.name}-{result.spec.mode.value}"


def point_row(result: RunResult, p: LoadPoint) -> dict[str, Any]:
    return {
        "variant": result.variant,
        "workload": result.spec.workload.name,
        "mode": result.spec.mode.value,
        "concurrency": p.concurrency,
        "rate_rps": p.rate_rps,
        "wall_s": round(p.wall_s, 6),
        "requests_started": p.requests_started,
        "requests_ok": p.requests_ok,
        "requests_failed": p.requests_failed,
        "requests_cancelled": p.requests_cancelled,
        "ttft_p50_ms": p.ttft_ms.p50,
        "ttft_p90_ms": p.ttft_ms.p90,
        "ttft_p95_ms": p.ttft_ms.p95,
        "ttft_p99_ms": p.ttft_ms.p99,
        "itl_p50_ms": p.itl_ms.p50,
        "itl_p90_ms": p.itl_ms.p90,
        "itl_p95_ms": p.itl_ms.p95,
        "itl_p99_ms": p.itl_ms.p99,
        "tpot_p50_ms": p.tpot_ms.p50,
        "e2e_p50_ms": p.e2e_ms.p50,
        "e2e_p90_ms": p.e2e_ms.p90,
        "e2e_p95_ms": p.e2e_ms.p95,
        "e2e_p99_ms": p.e2e_ms.p99,
        "output_tokens": p.output_tokens,
        "prompt_tokens": p.prompt_tokens,
        "requests_per_s": p.requests_per_s,
        "output_tokens_per_s": p.output_tokens_per_s,
        "goodput_rps": p.goodput_rps,
        "meets_slo": p.meets_slo,
        "usd_per_1m_output_tokens": p.usd_per_1m_output_tokens,
        "usd_per_1m_total_tokens": p.usd_per_1m_total_tokens,
    }


def write_results(out_dir: str | Path, results: Sequence[RunResult]) -> list[Path]:
    """Write ``<stem>.json`` and ``<stem>.requests.csv`` per result and a shared ``points.csv``.

    Files are written to a temporary name and renamed, so a reader never sees half a file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for r in results:
        name = stem(r)
        path = out / f"{name}.json"
        _atomic_write(path, r.model_dump_json(indent=2))
        written.append(path)
        req_path = out / f"{name}.requests.csv"
        fields = ["point", *RequestSample.model_fields]
        rows = [{"point": k, **s.model_dump(mode="json")} for k, p in enumerate(r.points) for s in p.requests]
        _atomic_csv(req_path, fields, rows)
        written.append(req_path)
    points_path = out / "points.csv"
    _atomic_csv(points_path, list(POINT_COLUMNS), [point_row(r, p) for r in results for p in r.points])
    written.append(points_path)
    return written


def _atomic_csv(path: Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    try:
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # a write that failed half-way (a full disk) leaves no stray file


def load_result(path: str | Path) -> RunResult:
    """Read a results JSON back; a clear ValueError for a foreign or newer schema."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read results file {str(p)!r}: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{str(p)!r} is not a results object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(f"{str(p)!r} has schema_version {version!r}; this harness reads version {SCHEMA_VERSION}")
    try:
        return RunResult.model_validate(data)
    except ValidationError as e:
        raise ValueError(f"{str(p)!r} is not valid results: {e}") from e


def load_results(directory: str | Path) -> list[RunResult]:
    """Every results JSON in a directory, sorted by file name."""
    return [load_result(p) for p in sorted(Path(directory).glob("*.json"))]
