"""``bakeoff loadtest``: run a load test of one variant and write results and a report.

``add_parser(subparsers)`` registers the sub-command on a parent parser; ``python -m
bakeoff_loadtest.cli loadtest ...`` runs it alone. Exit status: 0 done; 1 the run failed: a load point
had no successful request or the run ended early (results so far are written, the first failure's
cause is printed), or the summary (``--summary-file``, ``--summary-configmap``: the compact results a
bake-off's Job hands back, `bakeoff_loadtest.run_summary`) could not be written; 2 bad flags or
values, an unwritable ``--out``, a busy ``--metrics-port`` (found before any load runs); 130
interrupted by SIGINT or SIGTERM (the load stops, what it measured is written and marked
``interrupted``).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Final

from bakeoff_runtime.cost import CostInputs
from bakeoff_runtime.workloads import LengthDistribution, LengthKind, LoadMode, UseCase, Workload, use_case_workload
from pydantic import ValidationError

from bakeoff_loadtest.configmap_writer import ConfigMapTarget, parse_target, write_configmap
from bakeoff_loadtest.result_files import stem, write_results
from bakeoff_loadtest.results import LoadPoint, RunResult
from bakeoff_loadtest.run_summary import SummaryError, write_file
from bakeoff_loadtest.slo import SLO, Percentile
from bakeoff_loadtest.spec import RunSpec

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1  # a load point had no successful request, or the run ended early; results are written
EXIT_BAD_INPUT: Final = 2
EXIT_INTERRUPTED: Final = 130  # SIGINT or SIGTERM: the load stopped, what it measured is written

# pydantic field path -> the flag a user typed, so errors name what to fix.
_FLAGS = {
    "endpoint": "--endpoint",
    "model": "--model",
    "variant": "--variant",
    "levels": "--levels",
    "duration_s": "--duration",
    "max_requests": "--max-requests",
    "seed": "--seed",
    "workers": "--workers",
    "slo.ttft_ms": "--slo-ttft-ms",
    "slo.itl_ms": "--slo-itl-ms",
    "slo.e2e_ms": "--slo-e2e-ms",
    "slo.percentile": "--slo-percentile",
    "max_failure_rate": "--slo-max-failure-rate",
    "cost.gpu_class": "--gpu-class",
    "cost.price_per_gpu_hour": "--price-per-gpu-hour",
    "cost.gpus": "--gpus",
    "cost.replicas": "--replicas",
    "request_timeout_s": "--timeout",
    "drain_timeout_s": "--drain-timeout",
    "max_in_flight": "--max-in-flight",
    "ttft_ms": "--slo-ttft-ms",
    "itl_ms": "--slo-itl-ms",
    "e2e_ms": "--slo-e2e-ms",
    "percentile": "--slo-percentile",
    "gpu_class": "--gpu-class",
    "price_per_gpu_hour": "--price-per-gpu-hour",
    "gpus": "--gpus",
    "replicas": "--replicas",
    "workload.prompt": "--prompt-tokens",
    "workload.output": "--output-tokens",
}


def _percentile(text: str) -> Percentile:
    """p50, p90, p95 or p99; a bare number (99) names the same percentile."""
    name = text if text.startswith("p") else f"p{float(text):g}" if _is_number(text) else text
    try:
        return Percentile(name)
    except ValueError:
        choices = ", ".join(p.value for p in Percentile)
        raise argparse.ArgumentTypeError(f"expected one of {choices}, got {text!r}") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _levels(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 1,2,4,8, got {text!r}") from None


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``loadtest`` on ``subparsers``."""
    p = subparsers.add_parser(
        "loadtest",
        help="load-test one variant's OpenAI-compatible endpoint",
        description=(
            "Stream requests at an OpenAI-compatible endpoint with Locust, measure TTFT, ITL, TPOT, E2E, "
            "throughput, goodput and cost per 1M tokens, and write JSON, CSV and an HTML report."
        ),
    )
    p.add_argument("--endpoint", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--model", required=True, help="served model name")
    p.add_argument("--variant", default="", help="label in results (default: the model)")
    p.add_argument("--api", choices=["chat", "completions"], default="chat")
    p.add_argument(
        "--workload",
        default="instruction-following",
        help=f"use case ({', '.join(u.value for u in UseCase)}) or 'custom' with --prompt/--output-tokens",
    )
    p.add_argument("--prompt-tokens", type=int, help="custom workload: prompt tokens (mean)")
    p.add_argument("--output-tokens", type=int, help="custom workload: output tokens (mean)")
    p.add_argument("--length-dist", choices=[k.value for k in LengthKind], default=LengthKind.FIXED.value)
    p.add_argument("--spread", type=float, default=0.2, help="relative spread of uniform/normal lengths")
    p.add_argument(
        "--mode",
        choices=[m.value for m in LoadMode],
        help="sync (default), concurrency-sweep or rate-sweep; --concurrency or --rate alone imply their sweep",
    )
    p.add_argument("--concurrency", type=int, help="one concurrency-sweep level: N streams in flight")
    p.add_argument("--rate", type=float, help="one rate-sweep level: offered requests/s")
    p.add_argument("--arrival", choices=["constant", "poisson"], default="poisson")
    p.add_argument("--levels", type=_levels, default=(), help="sweep levels, e.g. 1,2,4,8")
    p.add_argument("--duration", type=float, default=60.0, help="seconds per load point")
    p.add_argument("--max-requests", type=int, help="requests per load point")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--slo-ttft-ms", type=float)
    p.add_argument("--slo-itl-ms", type=float)
    p.add_argument("--slo-e2e-ms", type=float)
    p.add_argument("--slo-percentile", type=_percentile, default=Percentile.P99, help="p50, p90, p95 or p99")
    p.add_argument("--slo-max-failure-rate", type=float, default=0.01)
    p.add_argument("--gpu-class", default="unknown")
    p.add_argument("--price-per-gpu-hour", type=float, default=0.0, help="USD; 0 leaves cost out")
    p.add_argument("--gpus", type=int, default=1, help="GPUs per replica")
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--workers", type=int, default=0, help="Locust worker processes (0: one process)")
    p.add_argument("--tokenizer", help="'server' (/tokenize) or a tokenizer.json path; default: words")
    p.add_argument("--timeout", type=float, default=600.0, help="per-read network timeout, seconds")
    p.add_argument("--drain-timeout", type=float, default=120.0)
    p.add_argument("--max-in-flight", type=int, default=4096)
    p.add_argument("--metrics-port", type=int, help="serve live Prometheus metrics on this port")
    p.add_argument("--out", type=Path, default=Path("loadtest-results"), help="results directory")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument("--summary-file", type=Path, help="also write the run's summary (compact results JSON) here")
    p.add_argument(
        "--summary-configmap",
        metavar="[NAMESPACE/]NAME",
        help="also create this ConfigMap holding the summary, as the pod's ServiceAccount (or KUBECONFIG's user)",
    )
    p.add_argument("--summary-label", action="append", default=[], metavar="KEY=VALUE", help="label of the ConfigMap")
    p.add_argument(
        "--summary-owner", metavar="apiVersion=..,kind=..,name=..,uid=..", help="owner reference of the ConfigMap"
    )
    p.set_defaults(func=handle)


def _flag(loc: tuple[int | str, ...]) -> str:
    parts = [str(x) for x in loc if not str(x).isdigit()]
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in _FLAGS:
            return _FLAGS[key]
    return ".".join(parts)


def _explain(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        msg = str(err["msg"]).removeprefix("Value error, ")
        loc = tuple(err["loc"])
        lines.append(f"{_flag(loc)}: {msg}" if loc else msg)
    return "; ".join(lines)


def _mode_and_levels(a: argparse.Namespace) -> tuple[LoadMode, tuple[float, ...]]:
    """--mode and --levels, with --concurrency N and --rate R as one-level sweeps."""
    shortcuts = [
        (flag, value, mode)
        for flag, value, mode in (
            ("--concurrency", a.concurrency, LoadMode.CONCURRENCY_SWEEP),
            ("--rate", a.rate, LoadMode.RATE_SWEEP),
        )
        if value is not None
    ]
    if len(shortcuts) > 1:
        raise ValueError("--concurrency and --rate name different sweeps: give one")
    if not shortcuts:
        mode = LoadMode(a.mode) if a.mode is not None else LoadMode.SYNC
        if mode is LoadMode.RATE_SWEEP and not a.levels:
            raise ValueError("--mode rate-sweep needs --rate or --levels, the offered requests per second")
        return mode, a.levels
    flag, value, implied = shortcuts[0]
    if a.mode is not None and LoadMode(a.mode) is not implied:
        raise ValueError(f"{flag} applies to --mode {implied.value}, not {a.mode}")
    if a.levels:
        raise ValueError(f"give {flag} or --levels, not both")
    if value <= 0:
        raise ValueError(f"{flag} must be greater than 0, got {value:g}")
    return implied, (float(value),)


def build_spec(a: argparse.Namespace) -> RunSpec:
    """The RunSpec for the parsed flags; raises ValueError with a message naming the flag."""
    try:
        kind = LengthKind(a.length_dist)
        if a.workload == "custom":
            if a.prompt_tokens is None or a.output_tokens is None:
                raise ValueError("--workload custom needs --prompt-tokens and --output-tokens")
            workload = Workload(
                name="custom",
                prompt=_lengths(a.prompt_tokens, "--prompt-tokens", kind, a.spread),
                output=_lengths(a.output_tokens, "--output-tokens", kind, a.spread),
            )
        else:
            if a.prompt_tokens is not None or a.output_tokens is not None:
                raise ValueError("--prompt-tokens/--output-tokens apply to --workload custom only")
            workload = use_case_workload(a.workload, kind=kind, spread=a.spread)
        mode, levels = _mode_and_levels(a)
        bounds = (a.slo_ttft_ms, a.slo_itl_ms, a.slo_e2e_ms)
        slo = (
            None
            if all(b is None for b in bounds)
            else SLO(ttft_ms=a.slo_ttft_ms, itl_ms=a.slo_itl_ms, e2e_ms=a.slo_e2e_ms, percentile=a.slo_percentile)
        )
        return RunSpec(
            endpoint=a.endpoint,
            model=a.model,
            variant=a.variant,
            api=a.api,
            workload=workload,
            mode=mode,
            levels=levels,
            arrival=a.arrival,
            duration_s=a.duration,
            max_requests=a.max_requests,
            seed=a.seed,
            slo=slo,
            max_failure_rate=a.slo_max_failure_rate,
            cost=CostInputs(
                gpu_class=a.gpu_class, price_per_gpu_hour=a.price_per_gpu_hour, gpus=a.gpus, replicas=a.replicas
            ),
            workers=a.workers,
            tokenizer=a.tokenizer,
            request_timeout_s=a.timeout,
            drain_timeout_s=a.drain_timeout,
            max_in_flight=a.max_in_flight,
        )
    except ValidationError as e:
        raise ValueError(_explain(e)) from None


def _lengths(mean: int, flag: str, kind: LengthKind, spread: float) -> LengthDistribution:
    if mean < 1:
        raise ValueError(f"{flag} must be at least 1, got {mean}")
    return LengthDistribution.around(mean, kind, spread)


def handle(a: argparse.Namespace) -> int:
    """Run the load test the flags describe; returns the exit status."""
    try:
        spec = build_spec(a)
        if a.metrics_port is not None:
            _check_port(a.metrics_port)
        _check_out(a.out)  # last: it creates the folder
        target = parse_target(a.summary_configmap, a.summary_label, a.summary_owner) if a.summary_configmap else None
    except ValueError as e:
        print(f"bakeoff loadtest: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from bakeoff_loadtest.runner import interruptible, run_spec

    with interruptible() as interruption:
        try:
            result = run_spec(spec, out_dir=a.out, metrics_port=a.metrics_port)
        except (RuntimeError, ValueError) as e:
            print(f"bakeoff loadtest: error: {e}", file=sys.stderr)
            return EXIT_FAILED
        saved = _save(result, a.out, report=not a.no_report)
        handed = _hand_over(result, a.summary_file, target)
    print(summary_text(result))
    for line in failure_lines(result):
        print(f"bakeoff loadtest: {line}", file=sys.stderr)
    if interruption.signal is not None or result.interrupted:
        why = result.error or f"interrupted by {interruption.signal} after the last load point"
        where = f"results so far: {saved}" if saved is not None else "the results could not be saved"
        print(f"bakeoff loadtest: {why}; {where}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if saved is None or not handed:
        return EXIT_FAILED
    print(f"results: {saved}")
    if result.error:
        print(f"bakeoff loadtest: failed: {result.error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _hand_over(result: RunResult, path: Path | None, target: ConfigMapTarget | None) -> bool:
    """Write the summary where the flags ask; False (after saying why) when a write failed."""
    try:
        if path is not None:
            write_file(result, path)
        if target is not None:
            print(f"summary: ConfigMap {write_configmap(result, target)}")
    except SummaryError as e:
        print(f"bakeoff loadtest: error: {e}", file=sys.stderr)
        return False
    return True


def _check_out(out: Path) -> None:
    """Fail before any load runs when the results cannot be written to ``out``."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".bakeoff-write-check-"):
            pass
    except OSError as e:
        raise ValueError(
            f"--out {str(out)!r}: cannot write results there ({e.strerror or e}); choose a writable directory"
        ) from None


def _check_port(port: int) -> None:
    """Fail before any load runs when --metrics-port cannot be served."""
    if not 0 <= port <= 65535:
        raise ValueError(f"--metrics-port {port}: a port is a number from 0 to 65535 (0: any free port)")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            raise ValueError(
                f"--metrics-port {port}: cannot listen there ({e.strerror or e}); choose a free port, or 0 for any"
            ) from None


def _save(result: RunResult, out: Path, *, report: bool) -> Path | None:
    """Write the results (and the report) to ``out``; where that fails, to a file in the temporary
    folder, so that the measurements are never lost. Returns where they are, or None."""
    try:
        write_results(out, [result])
    except OSError as e:
        print(f"bakeoff loadtest: error: cannot write results to {str(out)!r}: {e.strerror or e}", file=sys.stderr)
        name = ""
        try:
            fd, name = tempfile.mkstemp(prefix=f"bakeoff-loadtest-{stem(result)}-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                f.write(result.model_dump_json(indent=2))
        except OSError as again:
            if name:
                Path(name).unlink(missing_ok=True)
            print(
                f"bakeoff loadtest: error: the results could not be saved anywhere ({again.strerror or again}); "
                "the table above is what was measured",
                file=sys.stderr,
            )
            return None
        print(f"bakeoff loadtest: the results are kept in {name}", file=sys.stderr)
        return Path(name)
    if report:
        from bakeoff_loadtest.report import render_report

        try:
            render_report([result], out / "report.html")
        except OSError as e:
            print(f"bakeoff loadtest: warning: no report: cannot write {out / 'report.html'}: {e}", file=sys.stderr)
    return out


def failure_lines(result: RunResult) -> list[str]:
    """Per load point with some failed requests: how many, by cause, and the first one's message."""
    lines = []
    for p in result.points:
        if not p.requests_failed or not p.requests_ok:
            continue  # a point without a success is the run's error, printed with its first failure
        causes = ", ".join(f"{k} {v}" for k, v in p.failures_by_cause.items())
        first = f"; first: {p.failure_examples[0]}" if p.failure_examples else ""
        lines.append(f"{_load_label(p)}: {p.requests_failed} of {p.requests_started} requests failed ({causes}){first}")
    return lines


def _load_label(p: LoadPoint) -> str:
    return f"{p.rate_rps:g}/s" if p.rate_rps is not None else f"c={p.concurrency}"


def summary_text(result: RunResult) -> str:
    """A plain-text table of the load points."""

    def f(x: float | None, d: int = 1) -> str:
        return "-" if x is None else f"{x:.{d}f}"

    head = (
        f"{'load':>12} {'ok':>6} {'fail':>5} {'TTFT p50':>9} {'TTFT p99':>9} {'ITL p50':>8} {'ITL p99':>8} "
        f"{'tok/s':>9} {'req/s':>7} {'SLO':>4} {'$/1M out':>9}"
    )
    lines = [f"{result.variant} · {result.spec.workload.name} · {result.spec.mode.value}", head]
    for p in result.points:
        load = _load_label(p)
        slo = "-" if p.meets_slo is None else ("yes" if p.meets_slo else "no")
        lines.append(
            f"{load:>12} {p.requests_ok:>6} {p.requests_failed:>5} {f(p.ttft_ms.p50):>9} {f(p.ttft_ms.p99):>9} "
            f"{f(p.itl_ms.p50, 2):>8} {f(p.itl_ms.p99, 2):>8} {f(p.output_tokens_per_s):>9} "
            f"{f(p.requests_per_s, 2):>7} {slo:>4} {f(p.usd_per_1m_output_tokens, 3):>9}"
        )
    for w in result.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bakeoff")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
