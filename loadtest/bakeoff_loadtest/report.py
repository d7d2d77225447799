"""A self-contained HTML report: inline CSS and inline SVG plots, no external URL of any kind.

A Content-Security-Policy meta tag forbids the page from loading anything, so the report opens the
same offline, in a mail attachment or from a CI artifact.
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bakeoff_loadtest.compare import Comparison
from bakeoff_loadtest.definitions import DEFINITIONS
from bakeoff_loadtest.pareto import FRONTIER_AXES, FRONTIER_LATENCY, pareto_frontier, tradeoff
from bakeoff_loadtest.results import LatencySummary, LoadPoint, RunResult, now_utc
from bakeoff_loadtest.slo import Percentile
from bakeoff_loadtest.verdict import FIGURES, Unit, figures, verdict_row

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1200px;
color:#1d2430;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d5dae1}
table{border-collapse:collapse;font-size:.85rem;width:100%}
th,td{border:1px solid #d5dae1;padding:.3rem .45rem;text-align:right}
th{background:#f1f4f8}td.l,th.l{text-align:left}
.muted{color:#5b6573;font-size:.85rem}.ok{color:#11703a;font-weight:600}.bad{color:#a11c1c;font-weight:600}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:1rem}
figure{margin:0}figcaption{font-size:.85rem;color:#5b6573}
#recommendation{background:#eef6ee;border-left:4px solid #2f8a45;padding:.8rem 1rem}
dt{font-weight:600;margin-top:.5rem}dd{margin-left:1rem}
svg{max-width:100%;height:auto}
#verdict-table{width:auto;min-width:50%}
"""


def _svg(fig: Figure, prefix: str) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    # The XML prolog and DOCTYPE are not allowed inside HTML; the DOCTYPE also names a URL.
    text = re.sub(r"<\?xml[^>]*\?>", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>", "", text, flags=re.S)
    # The RDF metadata names the producer's web site; the page must not carry links it never uses.
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    # Several SVGs share the page's id namespace: prefix every id and every reference to one.
    text = re.sub(r'\bid="', f'id="{prefix}-', text)
    text = text.replace("url(#", f"url(#{prefix}-")
    text = re.sub(r'href="#', f'href="#{prefix}-', text)
    return text.strip()


def _fmt(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:,.{digits}f}"


def _ci(s: LatencySummary, p: Percentile) -> str:
    ci, val = s.ci(p), s.at(p)
    if ci is None:
        return _fmt(val)
    return f"{_fmt(val)} <span class='muted'>[{_fmt(ci[0])}, {_fmt(ci[1])}]</span>"


def _label(r: RunResult) -> str:
    return r.variant


def _level(r: RunResult, p: LoadPoint) -> str:
    return f"{p.rate_rps:g}/s" if r.spec.open_loop else f"c={p.concurrency}"


def _plot_latency_throughput(results: Sequence[RunResult]) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for r in results:
        pts = sorted((p for p in r.points if p.requests_ok), key=lambda p: p.level)
        if not pts:
            continue
        ax.plot(
            [p.output_tokens_per_s for p in pts],
            [p.e2e_ms.p50 or math.nan for p in pts],
            marker="o",
            label=_label(r),
        )
    ax.set_xlabel("output tokens/s")
    ax.set_ylabel("median E2E latency (ms)")
    ax.set_title("Latency against throughput")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    return _svg(fig, "lt")


def _ecdf(ax: Axes, values: Sequence[float], label: str) -> None:
    xs = sorted(values)
    if not xs:
        return
    n = len(xs)
    ax.step(xs, [(i + 1) / n for i in range(n)], where="post", label=label)


def _plot_distribution(results: Sequence[RunResult], which: str) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for r in results:
        p = r.chosen_point()
        if p is None:
            continue
        if which == "ttft":
            vals = [s.ttft_ms for s in p.requests if s.ok and s.ttft_ms is not None]
        else:
            vals = list(p.itl_samples_ms)
        _ecdf(ax, [float(v) for v in vals], f"{_label(r)} ({_level(r, p)})")
    name = "TTFT" if which == "ttft" else "ITL"
    ax.set_xlabel(f"{name} (ms)")
    ax.set_ylabel("fraction of samples ≤ x")
    ax.set_title(f"{name} distribution (empirical CDF)")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    return _svg(fig, which)


def _plot_cost(results: Sequence[RunResult]) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    names, outs, totals = [], [], []
    for r in results:
        p = r.chosen_point()
        names.append(_label(r))
        outs.append((p.usd_per_1m_output_tokens if p else None) or 0.0)
        totals.append((p.usd_per_1m_total_tokens if p else None) or 0.0)
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], outs, width=0.4, label="per 1M output tokens")
    ax.bar([x + 0.2 for x in xs], totals, width=0.4, label="per 1M total tokens")
    ax.set_xticks(list(xs), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("USD")
    ax.set_title("Cost per 1M tokens (chosen load point)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return _svg(fig, "cost")


def _plot_pareto(results: Sequence[RunResult], frontier: Sequence[str]) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    placed = {t.variant: t for r in results if (t := tradeoff(r)) is not None}
    for r in results:
        pts = [
            (lat, usd)
            for p in r.points
            if (lat := p.e2e_ms.at(FRONTIER_LATENCY)) is not None and (usd := p.usd_per_1m_output_tokens) is not None
        ]
        if not pts:
            continue
        t = placed.get(r.variant)
        unplaced = f"{_label(r)} (failed or missed the SLO)" if t is None else None
        (dots,) = ax.plot([lat for lat, _ in pts], [usd for _, usd in pts], "o", alpha=0.35, ms=4, label=unplaced)
        if t is not None:
            ax.plot([t.e2e_ms], [t.cost_per_1m_output_tokens_usd], "o", ms=8, color=dots.get_color(), label=_label(r))
    front = sorted((placed[v] for v in frontier if v in placed), key=lambda t: t.e2e_ms)
    if front:
        ax.plot(
            [t.e2e_ms for t in front],
            [t.cost_per_1m_output_tokens_usd for t in front],
            "k--",
            lw=1,
            marker="o",
            ms=13,
            mfc="none",
            label="Pareto frontier",
        )
    ax.set_xlabel(f"{FRONTIER_LATENCY.value} E2E latency (ms)")
    ax.set_ylabel("USD per 1M output tokens")
    ax.set_title(f"Cost against latency ({FRONTIER_AXES})")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    return _svg(fig, "pareto")


def _summary_rows(results: Sequence[RunResult]) -> str:
    rows = []
    for r in results:
        chosen = r.chosen_point()
        for p in r.points:
            star = " ★" if p is chosen else ""
            slo = (
                "–"
                if p.meets_slo is None
                else ("<span class='ok'>yes</span>" if p.meets_slo else "<span class='bad'>no</span>")
            )
            fails = ", ".join(f"{k}: {v}" for k, v in p.failures_by_cause.items()) or "0"
            rows.append(
                "<tr>"
                f"<td class='l'>{html.escape(r.variant)}{star}</td>"
                f"<td class='l'>{html.escape(r.spec.workload.name)}</td>"
                f"<td class='l'>{html.escape(r.spec.mode.value)} {html.escape(_level(r, p))}</td>"
                f"<td>{p.requests_ok}</td>"
                f"<td>{_ci(p.ttft_ms, Percentile.P50)}</td><td>{_ci(p.ttft_ms, Percentile.P99)}</td>"
                f"<td>{_ci(p.itl_ms, Percentile.P50)}</td><td>{_ci(p.itl_ms, Percentile.P99)}</td>"
                f"<td>{_fmt(p.tpot_ms.p50, 2)}</td><td>{_ci(p.e2e_ms, Percentile.P50)}</td>"
                f"<td>{_ci(p.e2e_ms, FRONTIER_LATENCY)}</td>"
                f"<td>{_fmt(p.output_tokens_per_s)}</td><td>{_fmt(p.requests_per_s, 2)}</td>"
                f"<td>{_fmt(p.goodput_rps, 2)}</td><td>{slo}</td>"
                f"<td>{_fmt(p.usd_per_1m_output_tokens, 3)}</td><td>{_fmt(p.usd_per_1m_total_tokens, 3)}</td>"
                f"<td class='l'>{html.escape(fails)}</td>"
                "</tr>"
            )
    return "\n".join(rows)


_DIGITS = {Unit.USD: 3, Unit.TOKENS_PER_SECOND: 1, Unit.REQUESTS_PER_SECOND: 2, Unit.MILLISECONDS: 1, Unit.RATIO: 3}


def _figure_cell(variant: str, metric: str, unit: Unit, value: float | None) -> str:
    """One figure's cell; `data-value` holds the number exactly as the operator exports it."""
    where = f"data-variant='{variant}' data-metric='{metric}'"
    if value is None:
        return f"<td {where} data-value=''>–</td>"
    flag = "<span class='ok'>yes</span>" if value else "no"
    text = flag if unit is Unit.FLAG else _fmt(value, _DIGITS[unit])
    return f"<td {where} data-value='{value!r}'>{text}</td>"


def _verdict_table(
    results: Sequence[RunResult], frontier: Sequence[str], recommended: str | None, accuracy: Mapping[str, float]
) -> str:
    """One row per figure of `bakeoff_loadtest.verdict` (a BakeOff's `bakeoff_bakeoff_result` series, drawn by
    the overview dashboard's "Bake-offs" row), one column per variant."""
    names = [html.escape(r.variant, quote=True) for r in results]
    values = [
        figures(
            verdict_row(r, accuracy_recovery=accuracy.get(r.variant)),
            on_pareto_frontier=r.variant in frontier,
            recommended=r.variant == recommended,
        )
        for r in results
    ]
    head = "".join(f"<th data-variant='{n}'>{n}</th>" for n in names)
    rows = []
    for f in FIGURES:
        for metric, header in zip(f.metrics, f.headers, strict=True):
            cells = "".join(
                _figure_cell(name, metric, f.unit, v.get(metric)) for name, v in zip(names, values, strict=True)
            )
            rows.append(
                f"<tr data-figure='{f.id}' data-metric='{metric}'>"
                f"<th class='l' title='{html.escape(f.description, quote=True)}'>{html.escape(header)}</th>{cells}</tr>"
            )
    return (
        "<section id='verdict'><h2>Verdict</h2>"
        "<p class='muted'>Each variant at its chosen load point: the figures a BakeOff exports for its last run "
        "(<code>bakeoff_bakeoff_result</code>) and the overview dashboard draws in its Bake-offs row, one "
        "panel per figure. Costs in USD, latencies in ms.</p>"
        f"<table id='verdict-table'><tr><th class='l'>figure</th>{head}</tr>\n" + "\n".join(rows) + "</table></section>"
    )


def render_report(
    results: Sequence[RunResult],
    out_path: str | Path,
    recommendation: str | None = None,
    *,
    comparisons: Sequence[Comparison] = (),
    frontier: Sequence[str] | None = None,
    title: str = "Bakeoff load test report",
    recommended: str | None = None,
    accuracy: Mapping[str, float] | None = None,
) -> Path:
    """Write the report to ``out_path`` and return the path.

    ``comparisons`` are the A/B tests of each variant against its baseline; ``frontier`` the Pareto
    frontier as the caller's status states it (default: computed from ``results`` by the same rule);
    ``recommended`` the variant the recommendation names, if any; ``accuracy`` each variant's accuracy
    recovery against its baseline (declared, not measured by a run).
    """
    if not results:
        raise ValueError("render_report needs at least one result")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if frontier is None:
        frontier = pareto_frontier([t for r in results if (t := tradeoff(r)) is not None])
    plots = [
        (
            "plot-latency-throughput",
            "Median E2E latency against output tokens/s, per load level.",
            _plot_latency_throughput(results),
        ),
        ("plot-ttft", "TTFT at each variant's chosen load point.", _plot_distribution(results, "ttft")),
        ("plot-itl", "ITL at each variant's chosen load point (seeded reservoir).", _plot_distribution(results, "itl")),
        ("plot-cost", "Cost per 1M tokens at each variant's chosen load point.", _plot_cost(results)),
        (
            "plot-pareto",
            "Every load point (small); each variant at its chosen point (large); the dashed line joins the "
            "Pareto frontier, the variants no other variant beats on both axes.",
            _plot_pareto(results, frontier),
        ),
    ]
    figures = "\n".join(
        f"<figure id='{pid}'>{svg}<figcaption>{html.escape(cap)}</figcaption></figure>" for pid, cap, svg in plots
    )
    rec = (
        f"<section id='recommendation'><h2>Recommendation</h2><p>{html.escape(recommendation)}</p></section>"
        if recommendation
        else ""
    )
    comp_rows = "\n".join(
        f"<tr><td class='l'>{html.escape(c.variant)} vs {html.escape(c.baseline)}</td>"
        f"<td class='l'>{html.escape(c.metric.value)}</td><td>{_fmt(c.level, 0)}</td>"
        f"<td>{_fmt(c.median_baseline_ms, 2)}</td><td>{_fmt(c.median_variant_ms, 2)}</td>"
        f"<td>{_fmt(c.shift_ms, 2)}</td><td>{c.p_value:.3g}</td><td>{c.cliffs_delta:+.2f}</td>"
        f"<td class='l'>{html.escape(c.verdict)}</td></tr>"
        for c in comparisons
    )
    comp = (
        "<section id='comparisons'><h2>A/B comparisons against each baseline</h2><table><tr>"
        "<th class='l'>variant vs baseline</th><th class='l'>metric</th><th>load level</th>"
        "<th>median baseline</th><th>median variant</th><th>shift variant−baseline</th><th>p</th>"
        "<th>Cliff's δ</th><th class='l'>verdict</th></tr>"
        f"{comp_rows}</table></section>"
        if comparisons
        else ""
    )
    front = (
        "<section id='pareto'><h2>Pareto frontier</h2>"
        f"<p>{html.escape(', '.join(frontier) or 'none')} <span class='muted'>({html.escape(FRONTIER_AXES)}, "
        "each variant at its chosen load point)</span></p></section>"
    )
    slo_lines = [
        f"{html.escape(r.variant)}: {html.escape(r.spec.slo.describe())}, failures ≤ {r.spec.max_failure_rate:.1%}"
        for r in results
        if r.spec.slo is not None
    ]
    costs = "; ".join(
        f"{html.escape(r.variant)}: {html.escape(r.spec.cost.gpu_class)} at "
        f"${r.spec.cost.price_per_gpu_hour:g}/GPU-h × "
        f"{r.spec.cost.gpus} GPU × {r.spec.cost.replicas} replica"
        for r in results
    )
    warnings = [f"{r.variant}: {w}" for r in results for w in r.warnings] + [
        f"{r.variant}: {'interrupted' if r.interrupted else 'failed'}: {r.error}" for r in results if r.error
    ]
    warn_html = (
        "<section id='warnings'><h2>Warnings</h2><ul>"
        + "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
        + "</ul></section>"
        if warnings
        else ""
    )
    defs = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in DEFINITIONS.items())
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="muted">Generated {now_utc().strftime("%Y-%m-%d %H:%M UTC")} · {len(results)} variant(s) ·
workload(s): {html.escape(", ".join(sorted({r.spec.workload.name for r in results})))}</p>
{rec}
<section id="summary"><h2>Results</h2>
<p class="muted">Latencies in ms, with 95% confidence intervals in brackets; ★ marks each variant's
chosen load point (most output tokens/s within the SLO).</p>
<table id="summary-table"><tr><th class="l">variant</th><th class="l">workload</th><th class="l">load</th>
<th>requests</th><th>TTFT p50</th><th>TTFT p99</th><th>ITL p50</th><th>ITL p99</th><th>TPOT p50</th>
<th>E2E p50</th><th>E2E p90</th><th>output tok/s</th><th>req/s</th><th>goodput req/s</th><th>meets SLO</th>
<th>$ / 1M output</th><th>$ / 1M total</th><th class="l">failures</th></tr>
{_summary_rows(results)}
</table>
<p class="muted">SLO: {"; ".join(slo_lines) or "none set"}. Cost inputs: {costs}.</p>
</section>
{_verdict_table(results, frontier, recommended, accuracy or {})}
{front}
{comp}
<section id="plots"><h2>Plots</h2><div class="plots">{figures}</div></section>
{warn_html}
<section id="definitions"><h2>Definitions</h2><dl>{defs}</dl></section>
</body></html>
"""
    out.write_text(doc, encoding="utf-8")
    return out
