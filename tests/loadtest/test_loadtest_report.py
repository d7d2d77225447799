"""The HTML report: self-contained, and rendered by headless Chromium without errors or requests."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from bakeoff_loadtest.compare import compare_with_baseline
from bakeoff_loadtest.definitions import DEFINITIONS
from bakeoff_loadtest.pareto import pareto_frontier, tradeoff
from bakeoff_loadtest.records import RequestRecord
from bakeoff_loadtest.report import render_report
from bakeoff_loadtest.results import RunResult, now_utc
from bakeoff_loadtest.slo import SLO
from bakeoff_loadtest.spec import RunSpec
from bakeoff_loadtest.summary import analyse_sweep, summarize_point
from bakeoff_runtime.cost import CostInputs
from bakeoff_runtime.workloads import LoadMode, use_case_workload

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _result(variant: str, price: float, itl_s: float, seed: int) -> RunResult:
    spec = RunSpec(
        endpoint="http://127.0.0.1:9",
        model="llama",
        variant=variant,
        workload=use_case_workload("instruction-following"),
        mode=LoadMode.CONCURRENCY_SWEEP,
        levels=(1, 4, 16),
        slo=SLO(ttft_ms=400, itl_ms=60),
        cost=CostInputs(gpu_class="H100", price_per_gpu_hour=price),
    )
    rng = np.random.default_rng(seed)
    points = []
    for k, c in enumerate((1, 4, 16)):
        recs = []
        for i in range(40):
            r = RequestRecord(index=i, worker=0, start_unix=i * 0.2 / c, requested_prompt_tokens=256,
                              requested_output_tokens=128)  # fmt: skip
            r.ok = True
            r.ttft_s = 0.05 * (1 + c / 8) + float(rng.random()) * 0.02
            r.itl_s = list(itl_s * (1 + c / 16) + rng.random(127) * 0.002)
            r.e2e_s = r.ttft_s + sum(r.itl_s)
            r.output_tokens, r.prompt_tokens = 128, 256
            recs.append(r)
        points.append(summarize_point(recs, spec, level=c, point_index=k))
    return RunResult(
        spec=spec,
        started_at=now_utc(),
        finished_at=now_utc(),
        points=tuple(points),
        sweep=analyse_sweep(points, spec),
    )


@pytest.fixture(scope="module")
def runs() -> list[RunResult]:
    return [_result("bf16", 6.58, 0.030, 1), _result("int4", 3.29, 0.022, 2)]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, runs: list[RunResult]) -> Path:
    bf16, int4 = runs
    out = tmp_path_factory.mktemp("report") / "report.html"
    return render_report(
        [bf16, int4], out, recommendation="int4 on 1×H100 meets the SLO at the lowest cost.",
        comparisons=compare_with_baseline(bf16, int4),
    )  # fmt: skip


def test_report_is_self_contained(report: Path) -> None:
    text = report.read_text()
    # No resource may come from anywhere: no src/href to a URL, no CSS url(), no @import.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert not re.search(r"url\((?!#)", text)
    assert "@import" not in text
    ids = re.findall(r'\sid="([^"]+)"', text)
    assert len(ids) == len(set(ids))  # several inline SVGs, one id namespace
    # The only URLs left are XML namespace names inside the inline SVG, which are never fetched.
    urls = set(re.findall(r"https?://[^\s\"'<>]+", text))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    assert "Content-Security-Policy" in text
    for pid in ("plot-latency-throughput", "plot-ttft", "plot-itl", "plot-cost", "plot-pareto"):
        assert f"id='{pid}'><svg" in text
    for term in DEFINITIONS:
        assert term in text
    assert "int4 on 1×H100 meets the SLO" in text


def test_report_states_the_frontier_and_each_comparison_with_the_baseline(report: Path, runs: list[RunResult]) -> None:
    text = report.read_text()
    front = pareto_frontier([p for r in runs if (p := tradeoff(r)) is not None])
    assert front  # the same rule as the CLI and the BakeOff status
    section = text[text.index("<section id='pareto'>") :]
    assert f"{', '.join(front)} <span class='muted'>(cost vs p90 E2E" in section
    comparisons = text[text.index("<section id='comparisons'>") :]
    for metric in ("ttft_ms", "tpot_ms", "e2e_ms"):
        assert f"<td class='l'>int4 vs bf16</td><td class='l'>{metric}</td>" in comparisons


def test_report_needs_results(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one result"):
        render_report([], tmp_path / "r.html")


def _chromium_or_skip() -> str:
    if os.path.exists(CHROMIUM) and shutil.which(CHROMIUM):
        try:
            import playwright  # noqa: F401
        except ImportError:
            if os.environ.get("CI") == "true":
                pytest.fail("the playwright package is missing (pip install -e '.[dev]')")
            pytest.skip("the playwright package is not installed")
        return CHROMIUM
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")


@pytest.mark.browser
def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    exe = _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    outside: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            def route(r: object) -> None:
                req = r.request  # type: ignore[attr-defined]
                if req.url.startswith("file://"):
                    r.continue_()  # type: ignore[attr-defined]
                else:
                    outside.append(req.url)
                    r.abort()  # type: ignore[attr-defined]

            page.route("**/*", route)
            page.goto(report.as_uri())
            page.wait_for_load_state("load")
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000
            assert page.title() == "Bakeoff load test report"
            rows = page.locator("#summary-table tr")
            assert rows.count() == 1 + 6  # header + 2 variants x 3 load points
            assert page.locator("#summary-table").inner_text().count("★") == 2
            for pid in ("plot-latency-throughput", "plot-ttft", "plot-itl", "plot-cost", "plot-pareto"):
                box = page.locator(f"#{pid} svg").bounding_box()
                assert box is not None, pid
                assert box["width"] > 300, pid
                assert box["height"] > 150, pid
            assert "meets the SLO at the lowest cost" in page.locator("#recommendation").inner_text()
            assert page.locator("#definitions dt").count() == len(DEFINITIONS)
            assert page.locator("#comparisons tr").count() == 4  # header + TTFT, TPOT, E2E
        finally:
            browser.close()
    assert errors == []
    assert outside == []
