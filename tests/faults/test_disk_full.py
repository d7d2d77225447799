"""A disk that fills up: writes fail (a file may not grow past a few KiB here, as on a full disk); the
commands say what they could not write and keep what they measured where they can: the load
harness's results come back over a pipe, so its table is still printed. No traceback, no stray file.
"""

from __future__ import annotations

import pytest

from tests.faults.conftest import Endpoint, Sandbox
from tests.faults.test_endpoint_faults import TWO_VARIANTS

pytestmark = pytest.mark.slow

FULL = 8 * 1024  # bytes a file may grow to: spec and log lines fit, results do not


def test_loadtest_prints_what_it_measured_when_nothing_can_be_written(faultserver: Endpoint, sandbox: Sandbox) -> None:
    out = sandbox.root / "out"
    ran = sandbox.run(
        "loadtest", "--endpoint", faultserver.url, "--model", "ref", "--workload", "custom",
        "--prompt-tokens", "8", "--output-tokens", "8", "--max-requests", "20", "--out", str(out),
        file_size_limit=FULL,
    )  # fmt: skip
    assert ran.code == 1, ran.text
    assert "Traceback" not in ran.text
    row = next(line for line in ran.out.splitlines() if line.strip().startswith("c=1"))
    assert row.split()[1] == "20", "the 20 measured requests are in the printed table"
    assert f"cannot write results to {str(out)!r}: File too large" in ran.err
    assert "the results could not be saved anywhere" in ran.err
    assert not any(p.suffix == ".tmp" for p in out.iterdir()), "no half-written file is left"
    sandbox.assert_clean()


def test_run_reports_results_it_cannot_write_as_incomplete(sandbox: Sandbox) -> None:
    (sandbox.root / "b.yaml").write_text(TWO_VARIANTS)
    ran = sandbox.run("run", "b.yaml", "--out", "runs", file_size_limit=FULL)
    assert ran.code == 3, ran.text
    assert "Traceback" not in ran.text
    assert "incomplete: results: cannot write the results to" in " ".join(ran.out.split())
    assert "Recommendation" in ran.out  # what was measured is still shown
    sandbox.assert_clean()
