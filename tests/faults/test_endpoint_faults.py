"""Endpoints that refuse, error, hang or stall mid-stream: nothing is reported as a success.

A load point in which no request succeeded is a failure: `bakeoff loadtest` exits 1 and prints the
first failure's cause; `bakeoff run` marks the variant incomplete, exits 3 and prints the same
cause. Every measured request is still in the results, and nothing is left running.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults.conftest import Endpoint, Sandbox, closed_port

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class EndpointFault:
    id: str
    model: str  # the reference server's model names pick the fault; "@sim:" targets the simulator
    cause: str  # the failure cause counted in the results
    says: tuple[str, ...]  # what the printed first failure contains
    flags: tuple[str, ...] = ()
    requests: int = 3  # failed requests recorded (the run stops a dead endpoint early)


FAULTS = [
    EndpointFault("refused", "@closed", "connection", ("Connection refused",), requests=3),
    EndpointFault("http-500", "fail-500", "http_status", ("HTTP 500", "reference failure")),
    EndpointFault(
        "wrong-model-404", "@sim:no-such-model", "http_status", ("HTTP 404", "`no-such-model` does not exist")
    ),
    EndpointFault("json-not-sse", "not-sse", "not_sse", ("not text/event-stream",)),
    EndpointFault("error-event", "error-event", "stream_error", ("server sent an error event",)),
    EndpointFault("cut-mid-stream", "truncate", "truncated", ("stream ended before 'data: [DONE]'",)),
    EndpointFault("no-usage", "no-usage", "no_usage", ("stream_options.include_usage",)),
    EndpointFault(
        "hangs", "hang", "timeout", ("no response within", "sent nothing"), flags=("--duration", "2"), requests=1
    ),
    EndpointFault(
        "hangs-with-a-request-bound",
        "hang",
        "timeout",
        ("no response within",),
        flags=("--duration", "2", "--max-requests", "1"),
        requests=1,
    ),
    EndpointFault(
        "stalls-mid-stream",
        "stall",
        "timeout",
        ("stream stalled", "nothing arrived"),
        flags=("--duration", "2", "--drain-timeout", "3"),
        requests=1,
    ),
]


def _target(fault: EndpointFault, faultserver: Endpoint, simulator: Endpoint) -> tuple[str, str]:
    if fault.model == "@closed":
        return f"http://127.0.0.1:{closed_port()}", "any"
    if fault.model.startswith("@sim:"):
        return simulator.url, fault.model.removeprefix("@sim:")
    return faultserver.url, fault.model


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_loadtest_against_a_faulty_endpoint_fails_with_the_first_cause(
    fault: EndpointFault, faultserver: Endpoint, simulator: Endpoint, sandbox: Sandbox
) -> None:
    endpoint, model = _target(fault, faultserver, simulator)
    out = sandbox.root / "results"
    args = ["loadtest", "--endpoint", endpoint, "--model", model, "--workload", "custom"]
    args += ["--prompt-tokens", "16", "--output-tokens", "8", "--out", str(out), "--no-report"]
    if "--duration" not in fault.flags:
        args += ["--max-requests", str(fault.requests)]
    started = time.monotonic()
    ran = sandbox.run(*args, *fault.flags)
    took = time.monotonic() - started
    assert ran.code == 1, ran.text
    assert "no request succeeded" in ran.err
    first = ran.err.split("first failure:", 1)[1]
    for fragment in fault.says:
        assert fragment in first, ran.err
    assert f"first failure: {fault.cause}:" in ran.err
    # What was measured is kept: every failed request, with its cause.
    (result,) = out.glob("*-sync.json")
    data = json.loads(result.read_text())
    (point,) = data["points"]
    assert point["requests_ok"] == 0
    assert point["failures_by_cause"] == {fault.cause: fault.requests}
    assert fault.says[0] in (data["error"] or "")
    assert took < 30, f"a {fault.id} endpoint held a short load test for {took:.0f}s"
    sandbox.assert_clean()


def test_a_point_with_some_failures_prints_them_and_still_succeeds(faultserver: Endpoint, sandbox: Sandbox) -> None:
    # Half of the simulator's answers are injected HTTP 500s: the run measured something, and says what failed.
    from tests.faults.conftest import start_sim

    sim = start_sim("--fault-error-rate", "0.5", "--seed", "3")
    try:
        ran = sandbox.run(
            "loadtest", "--endpoint", sim.url, "--model", "llama-3.1-8b-bf16", "--workload", "custom",
            "--prompt-tokens", "16", "--output-tokens", "4", "--max-requests", "12", "--concurrency", "2",
            "--out", str(sandbox.root / "out"), "--no-report",
        )  # fmt: skip
    finally:
        sim.stop()
    assert ran.code == 0, ran.text
    assert "c=2:" in ran.err
    assert "requests failed (http_status" in ran.err
    assert "first: http_status: HTTP 500" in ran.err
    sandbox.assert_clean()


def test_hung_endpoint_is_not_waited_on_for_the_drain_timeout(faultserver: Endpoint, sandbox: Sandbox) -> None:
    # The drain timeout (120 s by default) is for streams that still make progress, not for silence.
    started = time.monotonic()
    ran = sandbox.run(
        "loadtest", "--endpoint", faultserver.url, "--model", "hang", "--duration", "2", "--concurrency", "3",
        "--out", str(sandbox.root / "out"), "--no-report",
    )  # fmt: skip
    assert ran.code == 1, ran.text
    assert time.monotonic() - started < 20
    assert "timeout 3" in ran.err
    sandbox.assert_clean()


TWO_VARIANTS = """
apiVersion: bakeoff.dev/v1alpha1
kind: ModelVariant
metadata: {name: small-bf16}
spec:
  model: {source: "hf://meta-llama/Llama-3.1-8B-Instruct"}
  architecture: {catalog: llama-3.1-8b}
  format: bf16
  gpuClass: h100
---
apiVersion: bakeoff.dev/v1alpha1
kind: ModelVariant
metadata: {name: small-int4}
spec:
  model: {source: "hf://RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w4a16"}
  architecture: {catalog: llama-3.1-8b}
  format: int4
  gpuClass: h100
  baseline: small-bf16
---
apiVersion: bakeoff.dev/v1alpha1
kind: BakeOff
metadata: {name: one-stream}
spec:
  variants: [small-bf16, small-int4]
  workload: {custom: {promptTokens: {mean: 16}, outputTokens: {mean: 8}}}
  load: {mode: sync, duration: 3s, maxRequests: 2}
"""


@pytest.mark.parametrize(
    ("model", "says"),
    [("fail-500", "HTTP 500"), ("hang", "no response within")],
    ids=["every-request-fails", "endpoint-hangs"],
)
def test_run_marks_a_variant_with_no_successful_request_incomplete(
    model: str, says: str, faultserver: Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bf16 variant's requests go to a faulty endpoint; int4 is measured as usual. The bake-off must
    # not pass off the int4 recommendation as a complete result.
    import io

    from bakeoff_loadtest.results import RunResult
    from bakeoff_operator import local
    from bakeoff_operator.planning.bakeoff_plan import PlannedRun
    from rich.console import Console

    real = local._measure

    def measure(run: PlannedRun, endpoint: str, out_dir: Path) -> RunResult:
        if run.variant != "small-bf16":
            return real(run, endpoint, out_dir)
        plan = run.model_copy(update={"load": run.load.model_copy(update={"model": model})})
        return real(plan, faultserver.url, out_dir)

    monkeypatch.setattr(local, "_measure", measure)
    path = tmp_path / "bakeoff.yaml"
    path.write_text(TWO_VARIANTS)
    buf = io.StringIO()
    code = local.run_local([path], local.Options(out=tmp_path / "runs"), Console(file=buf, width=200))
    out = buf.getvalue()
    assert code == local.EXIT_INCOMPLETE, out
    assert "incomplete: small-bf16: concurrency 1: no request succeeded" in out
    assert says in out.split("incomplete: small-bf16:", 1)[1]
    (run_dir,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["complete"] is False
    assert summary["exit_code"] == local.EXIT_INCOMPLETE
    assert says in summary["bakeoffs"][0]["failures"]["small-bf16"]
    # Its failed requests are kept with the results.
    kept = json.loads((run_dir / "one-stream" / "results" / "small-bf16-one-stream-custom-sync.json").read_text())
    assert kept["points"][0]["requests_ok"] == 0
    assert kept["points"][0]["requests_failed"] >= 1
