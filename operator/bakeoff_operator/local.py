"""`bakeoff run`: a bake-off on one machine from the same YAML as the custom resources.

Reads GPUClass, ModelVariant and BakeOff documents, sizes each variant with the planner, starts one
runtime per variant through the launcher (Bakeoff's vLLM-compatible simulator by default, real vLLM
on CPU with `--engine vllm`), runs each BakeOff's load plan with the load harness, stops everything,
and prints a leaderboard and the recommendation. The run directory keeps what a user needs later:
`summary.json`, per-bake-off `status.json` (the same shape the operator writes into BakeOff status),
the harness's results JSON and CSV, `report.html`, and every runtime's log.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from bakeoff_loadtest.pareto import FRONTIER_AXES
from bakeoff_loadtest.result_files import write_results
from bakeoff_loadtest.results import RunResult
from bakeoff_loadtest.summary import no_success
from bakeoff_runtime.gpus import GPUCatalog, default_catalog
from bakeoff_runtime.launcher import RunningRuntime, RuntimeSpec, RuntimeStartError, start, wait_healthy
from bakeoff_runtime.workloads import PredictionMode
from rich.console import Console
from rich.markup import escape as esc  # user text (names, messages, paths) is never markup
from rich.table import Table

from bakeoff_operator.api.bakeoff import BakeOff, BakeOffStatus
from bakeoff_operator.api.gpuclass import GPUClass
from bakeoff_operator.api.loader import ManifestError, Resource, load_documents
from bakeoff_operator.api.modelvariant import Engine, ModelVariant
from bakeoff_operator.planning.bakeoff_plan import BakeOffPlan, LoadOverrides, PlannedRun, plan_bakeoff, summarize
from bakeoff_operator.planning.deployment import Target, VariantDeployment, plan_deployment
from bakeoff_operator.planning.recommend import RecommendationResult

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_INCOMPLETE = 3  # a runtime or a load run failed: results are partial and marked so
EXIT_INTERRUPTED = 130

ENGINES = ("sim", "vllm")


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: stop runtimes, keep what was measured."""


# How long an interrupted bake-off waits for its load processes to hand over what they measured.
INTERRUPT_WAIT_S = 30.0


class SignalGuard:
    """SIGINT and SIGTERM during a local run.

    The first signal tells every load process to stop (each keeps what it measured) and raises
    `Interrupted` where the main thread is, so that runtimes stop and partial results are written;
    while results are being written (`shielded`) it is only recorded, and `check` raises it at the
    next safe point. A second signal kills the load processes at once.
    """

    def __init__(self) -> None:
        self.received: str | None = None
        self._shielded = 0

    def handle(self, signum: int, frame: FrameType | None) -> None:
        from bakeoff_loadtest.runner import interrupt_loads

        sig = signal.Signals(signum)
        if self.received is not None:
            interrupt_loads(sig, hard=True)
            return
        self.received = sig.name
        interrupt_loads(sig)
        if not self._shielded:
            raise Interrupted(sig.name)

    @contextmanager
    def shielded(self) -> Iterator[None]:
        self._shielded += 1
        try:
            yield
        finally:
            self._shielded -= 1

    def check(self) -> None:
        if self.received is not None:
            raise Interrupted(self.received)

    @contextmanager
    def installed(self) -> Iterator[SignalGuard]:
        from bakeoff_loadtest.runner import allow_loads

        allow_loads()
        previous = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


@dataclass
class Options:
    engine: str = "sim"
    out: Path = Path("runs")
    seed: int | None = None
    duration_s: float | None = None
    max_requests: int | None = None
    only: tuple[str, ...] = ()
    report: bool = True
    substitutions: dict[str, str] = field(default_factory=dict)


@dataclass
class BakeOffOutcome:
    plan: BakeOffPlan
    status: BakeOffStatus
    recommendation: RecommendationResult
    results: dict[str, RunResult]
    failures: dict[str, str]
    out_dir: Path

    @property
    def complete(self) -> bool:
        return not self.failures


# --- input ---------------------------------------------------------------------------------------------
def load_inputs(paths: Sequence[Path], substitutions: dict[str, str]) -> list[Resource]:
    """Every document of every file; one file may define variants that another's BakeOff names."""
    resources: list[Resource] = []
    single = len(paths) == 1
    for p in paths:
        resources.extend(load_documents(p, substitutions=substitutions, check_references=single))
    return resources


def catalog_with(resources: Sequence[Resource]) -> GPUCatalog:
    """The default GPU catalog with the file's GPUClass documents replacing or adding entries."""
    catalog = default_catalog()
    for r in resources:
        if isinstance(r, GPUClass):
            catalog = catalog.with_gpu(r.to_gpu_spec())
    return catalog


# --- runtimes ---------------------------------------------------------------------------------------------
ENGINE_OF: dict[str, Engine] = {"sim": Engine.SIMULATOR, "vllm": Engine.VLLM}


def local_deployments(
    plan: BakeOffPlan, variants: Sequence[ModelVariant], catalog: GPUCatalog, engine: str, spot: bool
) -> dict[str, VariantDeployment]:
    """The deployment plan of every variant of `plan` on this machine: the same plan (sizing, launch) a
    cluster would deploy, its weights located for a local process."""
    by_name = {v.metadata.name: v for v in variants}
    return {
        run.variant: plan_deployment(
            by_name[run.variant],
            catalog,
            Target.LOCAL,
            engine=ENGINE_OF[engine],
            workload=plan.workload,
            mode=plan.mode,
            spot=spot,
        )
        for run in plan.runs
    }


@contextmanager
def started_runtimes(
    plan: BakeOffPlan,
    deployments: dict[str, VariantDeployment],
    options: Options,
    log_dir: Path,
    failures: dict[str, str],
) -> Iterator[dict[str, RunningRuntime]]:
    """One healthy runtime per fitting variant; all are stopped on exit (also on Ctrl-C and errors).

    They start together (a vLLM start takes tens of seconds); one that never becomes healthy is a
    failure of that variant alone, recorded in `failures` with its log's tail.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        started: dict[str, RunningRuntime] = {}
        for run in plan.runs:
            deployment = deployments[run.variant]
            if deployment.variant is None or deployment.launch is None:
                if run.sizing.fits:  # sized, but its weights or extra arguments cannot be used here
                    failures[run.variant] = deployment.reason
                continue
            spec = RuntimeSpec(
                engine=options.engine,
                variant=deployment.variant,
                launch=deployment.launch,
                log_path=log_dir / f"{run.variant}.log",
                sim_args=("--seed", str(run.load.seed)),
            )
            try:
                runtime = start(spec)
            except RuntimeStartError as err:
                failures[run.variant] = str(err)
                continue
            started[run.variant] = stack.enter_context(runtime)
        healthy: dict[str, RunningRuntime] = {}
        for name, runtime in started.items():
            try:
                healthy[name] = wait_healthy(runtime)
            except RuntimeStartError as err:
                failures[name] = str(err).splitlines()[0]  # names the log, and the fix where one is known
                continue
            if options.engine == "vllm":
                # vLLM's first request on CPU pays one-off kernel and allocator warm-up (over a second for
                # the tiny models): one short request keeps it out of a bake-off's few measured requests.
                import httpx

                body = {"model": runtime.spec.variant.served_model_name, "prompt": "warm up", "max_tokens": 4}
                try:
                    httpx.post(runtime.url + "/v1/completions", json=body, timeout=120).raise_for_status()
                except httpx.HTTPError as err:
                    failures[name] = f"the warm-up request failed: {err} (log: {runtime.log_path})"
                    del healthy[name]
        yield healthy


# --- the run -------------------------------------------------------------------------------------------
def _measure(run: PlannedRun, endpoint: str, out_dir: Path) -> RunResult:
    from bakeoff_loadtest.runner import run_spec

    return run_spec(run.load.at(endpoint), out_dir=out_dir, isolation="subprocess")


def unmeasured(result: RunResult) -> str | None:
    """Why a load run with no successful request measured nothing (its first failure), else None."""
    if any(p.requests_ok for p in result.points):
        return None
    for point in result.points:
        why = no_success(point)
        if why:
            return why
    return "no load point was measured"


def run_bakeoff(
    bakeoff: BakeOff,
    variants: Sequence[ModelVariant],
    catalog: GPUCatalog,
    *,
    options: Options,
    out_dir: Path,
    console: Console,
    guard: SignalGuard | None = None,
) -> BakeOffOutcome:
    overrides = LoadOverrides(duration_s=options.duration_s, max_requests=options.max_requests, seed=options.seed)
    plan = plan_bakeoff(bakeoff, variants, catalog, overrides)
    results: dict[str, RunResult] = {}
    failures: dict[str, str] = {}
    for run in plan.runs:
        if not run.sizing.fits:
            failures[run.variant] = run.sizing.reason
            console.print(f"  [yellow]{esc(run.variant)}[/]: not run: {esc(run.sizing.reason)}")
    interrupted: Interrupted | None = None
    try:
        deployments = local_deployments(plan, variants, catalog, options.engine, bakeoff.spec.pricing.spot)
        with started_runtimes(plan, deployments, options, out_dir / "logs", failures) as running:
            todo = [run for run in plan.runs if run.variant in running]
            # One simulated stream per variant barely loads a core, so sync bake-offs on the simulator
            # measure all variants at once; sweeps, and real vLLM (whose CPU engines would share the same
            # cores), take turns so that no variant's runtime competes with another's for the CPU.
            workers = len(todo) if plan.mode is PredictionMode.SYNC and options.engine == "sim" else 1
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                futures = {}
                for run in todo:
                    runtime = running[run.variant]
                    console.print(
                        f"  measuring [bold]{esc(run.variant)}[/] ({run.sizing.tensor_parallel}x "
                        f"{esc(str(run.sizing.gpu_class))}, {options.engine}) at {runtime.url}"
                    )
                    futures[pool.submit(_measure, run, runtime.url, out_dir / "results")] = (run, time.monotonic())
                try:
                    for future in as_completed(futures):
                        run, started = futures[future]
                        runtime = running[run.variant]
                        try:
                            result = future.result()
                        except RuntimeError as err:
                            failures[run.variant] = str(err)
                            console.print(f"  [red]{esc(run.variant)}[/]: load run failed: {esc(str(err))}")
                            continue
                        results[run.variant] = result
                        why = result.error or unmeasured(result)
                        if why:
                            failures[run.variant] = why
                        if not runtime.alive:
                            failures.setdefault(
                                run.variant, f"the runtime exited during the run; see {runtime.log_path}"
                            )
                        state = "" if runtime.alive else " (runtime exited)"
                        console.print(f"  {esc(run.variant)}: done in {time.monotonic() - started:.0f}s{state}")
                except Interrupted:
                    # The load processes were told to stop: keep what each had measured.
                    for future in futures:
                        future.cancel()  # those that had not started
                    for future, (run, _) in futures.items():
                        try:
                            result = future.result(timeout=INTERRUPT_WAIT_S)
                        except Exception:  # cancelled, timed out, or failed: nothing measured to keep
                            continue
                        results[run.variant] = result
                        failures[run.variant] = result.error or "interrupted"
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    except Interrupted as err:
        interrupted = err
        for run in plan.runs:
            if run.variant not in results:
                failures.setdefault(run.variant, f"interrupted ({err}) before it was measured")
    status, rec = summarize(bakeoff, variants, plan, results, failures)
    outcome = BakeOffOutcome(plan, status, rec, results, failures, out_dir)
    with guard.shielded() if guard is not None else nullcontext():
        try:
            write_outputs(bakeoff, outcome, options)
        except OSError as err:  # a full disk, a folder made read-only meanwhile
            where = err.filename or out_dir
            why = f"cannot write the results to {where}: {err.strerror or err}"
            console.print(f"[red]error:[/] {esc(why)}", highlight=False)
            outcome.failures.setdefault("results", why)
    if interrupted is not None:
        raise interrupted
    return outcome


def write_outputs(bakeoff: BakeOff, outcome: BakeOffOutcome, options: Options) -> None:
    out = outcome.out_dir
    out.mkdir(parents=True, exist_ok=True)
    status = outcome.status.to_wire()
    doc = {
        "bakeoff": bakeoff.metadata.name,
        "complete": outcome.complete,
        "failures": outcome.failures,
        "engine": options.engine,
        "status": status,
        "sizing": {r.variant: json.loads(r.sizing.model_dump_json(exclude={"candidates"})) for r in outcome.plan.runs},
    }
    (out / "status.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    if outcome.results:
        write_results(out / "results", list(outcome.results.values()))
        if options.report:
            from bakeoff_loadtest.report import render_report

            note = (
                ""
                if outcome.complete
                else " (incomplete: " + "; ".join(f"{k}: {v}" for k, v in sorted(outcome.failures.items())) + ")"
            )
            render_report(
                list(outcome.results.values()),
                out / "report.html",
                recommendation=outcome.recommendation.reason + note,
                comparisons=outcome.status.comparisons,
                frontier=outcome.status.pareto_frontier,
                title=f"Bakeoff: {bakeoff.metadata.name}",
                recommended=outcome.recommendation.variant,
                accuracy={
                    row.variant: row.accuracy_recovery
                    for row in outcome.status.results
                    if row.accuracy_recovery is not None
                },
            )


# --- presentation --------------------------------------------------------------------------------------
def _f(x: float | None, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def leaderboard(outcome: BakeOffOutcome) -> Table:
    plan = outcome.plan
    table = Table(
        title=esc(
            f"{plan.bakeoff}: {plan.workload.name} ({plan.workload.prompt_tokens} prompt / "
            f"{plan.workload.output_tokens} output tokens, {plan.mode})"
        )
    )
    for col, justify in [
        ("variant", "left"),
        ("GPUs", "left"),
        ("TTFT p50 ms", "right"),
        ("ITL p50 ms", "right"),
        ("E2E p90 s", "right"),
        ("out tok/s", "right"),
        ("QPS in SLO", "right"),
        ("$/1M out", "right"),
        ("SLO", "center"),
        ("accuracy", "right"),
    ]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    rows = sorted(
        outcome.status.results,
        key=lambda r: (r.cost_per_1m_output_tokens_usd is None, r.cost_per_1m_output_tokens_usd or 0.0),
    )
    sizing = {r.variant: r.sizing for r in plan.runs}
    for r in rows:
        s = sizing[r.variant]
        gpus = f"{s.tensor_parallel}x {s.gpu_class}" if s.fits else "does not fit"
        name = r.variant + (" *" if r.variant == outcome.recommendation.variant else "")
        slo = "—" if r.meets_slo is None else ("yes" if r.meets_slo else "no")
        e2e = r.e2e_ms.p90 / 1000 if r.e2e_ms and r.e2e_ms.p90 is not None else None
        table.add_row(
            esc(name),
            esc(gpus),
            _f(r.ttft_ms.p50 if r.ttft_ms else None, ".0f"),
            _f(r.itl_ms.p50 if r.itl_ms else None, ".1f"),
            _f(e2e, ".2f"),
            _f(r.output_tokens_per_second, ".0f"),
            _f(r.max_qps_under_slo, ".2f"),
            _f(r.cost_per_1m_output_tokens_usd, ".3f"),
            slo,
            _f(r.accuracy_recovery * 100 if r.accuracy_recovery is not None else None, ".2f")
            + ("%" if r.accuracy_recovery is not None else ""),
        )
    return table


def run_local(paths: Sequence[Path], options: Options, console: Console | None = None) -> int:
    # A pipe or CI log gets a wide table rather than rich's 80-column fallback.
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    try:
        resources = load_inputs(paths, options.substitutions)
    except ManifestError as err:
        console.print(f"[red]error:[/] {esc(str(err))}", highlight=False)
        return EXIT_BAD_INPUT
    variants = [r for r in resources if isinstance(r, ModelVariant)]
    bakeoffs = [r for r in resources if isinstance(r, BakeOff)]
    if options.only:
        unknown = sorted(set(options.only) - {b.metadata.name for b in bakeoffs})
        if unknown:
            known = ", ".join(b.metadata.name for b in bakeoffs)
            console.print(
                f"[red]error:[/] --bakeoff {esc(', '.join(unknown))}: not in the files; they define {esc(known)}"
            )
            return EXIT_BAD_INPUT
        bakeoffs = [b for b in bakeoffs if b.metadata.name in options.only]
    if not bakeoffs:
        console.print(
            "[red]error:[/] the files define no BakeOff; add a `kind: BakeOff` document that names the variants "
            "to compare (see examples/)"
        )
        return EXIT_BAD_INPUT
    catalog = catalog_with(resources)
    try:
        run_dir = new_run_dir(options.out)
    except OSError as err:
        console.print(
            f"[red]error:[/] --out {esc(str(options.out))}: cannot create the run directory there "
            f"({esc(err.strerror or str(err))}); choose a writable directory"
        )
        return EXIT_BAD_INPUT
    console.print(
        f"Bakeoff: {len(bakeoffs)} bake-off(s), {len(variants)} variant(s), engine {options.engine}; "
        f"writing {esc(str(run_dir))}"
    )
    with SignalGuard().installed() as guard:
        code = _run_all(
            bakeoffs, variants=variants, catalog=catalog, options=options, run_dir=run_dir, console=console, guard=guard
        )
    if code == EXIT_OK:
        console.print(f"Results: {esc(str(run_dir))}  (report: {esc(str(run_dir))}/<bakeoff>/report.html)")
    return code


def new_run_dir(parent: Path, now: datetime | None = None) -> Path:
    """A run directory of its own under `parent`, named by the UTC time; a run started in the same second
    (another process, or this one again) gets `-2`, `-3`, ...: creating it is what claims the name."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        candidate = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"{parent / stamp}: too many runs started in this second")


def _run_all(
    bakeoffs: Sequence[BakeOff],
    *,
    variants: Sequence[ModelVariant],
    catalog: GPUCatalog,
    options: Options,
    run_dir: Path,
    console: Console,
    guard: SignalGuard,
) -> int:
    """Every bake-off in turn; the summary is written whatever happens. Returns the exit status."""
    code = EXIT_OK
    outcomes: list[BakeOffOutcome] = []
    try:
        for b in bakeoffs:
            guard.check()
            console.rule(f"[bold]{esc(b.metadata.name)}")
            try:
                outcome = run_bakeoff(
                    b,
                    variants,
                    catalog,
                    options=options,
                    out_dir=run_dir / b.metadata.name,
                    console=console,
                    guard=guard,
                )
            except ValueError as err:  # e.g. a BakeOff naming a variant no file defines
                console.print(f"[red]error:[/] {esc(str(err))}")
                code = EXIT_BAD_INPUT
                continue
            outcomes.append(outcome)
            console.print(leaderboard(outcome))
            rec = outcome.recommendation
            console.print(
                f"[bold green]Recommendation:[/] {esc(rec.reason)}"
                if rec.variant
                else f"[bold yellow]No recommendation:[/] {esc(rec.reason)}"
            )
            console.print(f"Pareto frontier ({FRONTIER_AXES}): {esc(', '.join(rec.pareto_frontier)) or '—'}")
            if not outcome.complete:
                code = max(code, EXIT_INCOMPLETE)
                for name, why in sorted(outcome.failures.items()):
                    console.print(f"[red]incomplete:[/] {esc(name)}: {esc(why)}", highlight=False)
        guard.check()
    except Interrupted as err:
        console.print(f"[red]interrupted ({err}):[/] runtimes stopped; partial results kept in {esc(str(run_dir))}")
        code = EXIT_INTERRUPTED
    finally:
        with guard.shielded():
            try:
                _write_summary(run_dir, outcomes, code, options)
            except OSError as err:
                console.print(f"[red]error:[/] cannot write {esc(str(run_dir / 'summary.json'))}: {esc(str(err))}")
                code = max(code, EXIT_INCOMPLETE)
    return code


def _write_summary(run_dir: Path, outcomes: Sequence[BakeOffOutcome], code: int, options: Options) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "complete": code == EXIT_OK,
        "exit_code": code,
        "engine": options.engine,
        "bakeoffs": [
            {
                "name": o.plan.bakeoff,
                "complete": o.complete,
                "recommendation": o.recommendation.variant,
                "reason": o.recommendation.reason,
                "pareto_frontier": o.recommendation.pareto_frontier,
                "failures": o.failures,
            }
            for o in outcomes
        ],
    }
    (run_dir / "summary.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
