"""The Job of a bake-off run: golden files of the rendered Job and its identity, and the Job's script run
by a real shell against a stand-in `bakeoff` command (every variant measured, one after another or side
by side, the exact `bakeoff loadtest` flags, which exit statuses fail the Job).

`UPDATE_GOLDENS=1` rewrites the goldens and still fails the run."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from bakeoff_loadtest import cli
from bakeoff_operator.planning.runs import ANNOTATION_RUN_NOW, RunStart, job_state, plan_runs
from bakeoff_operator.render.jobs import (
    RESULTS_DIR_ENV,
    JobSettings,
    owner_of,
    render_identity,
    render_run_job,
    run_script,
)

from tests.bakeoffs.builders import CATALOG, NAMES, T0, bakeoff, variants

GOLDENS = Path(__file__).parent / "goldens"
SETTINGS = JobSettings(image="ghcr.io/bakeoff-dev/bakeoff:0.1.0", cluster_role="bakeoff-loadtest")
OWNER = owner_of("bo", "uid-bo")


def start_of(**spec: Any) -> RunStart:
    d = plan_runs(bakeoff(**spec), variants("hybrid"), jobs=(), results=(), catalog=CATALOG, now=T0)
    assert d.start is not None
    return d.start


CASES: dict[str, dict[str, Any]] = {
    "one-after-another": {"annotations": {ANNOTATION_RUN_NOW: "2026-01-01"}, "slo": {"ttftMs": 500, "itlMs": 50}},
    "side-by-side": {"annotations": {ANNOTATION_RUN_NOW: "x"}, "runs": {"sideBySide": True, "deadline": "45m"}},
    # 450 streams: more than one load process drives (STREAMS_PER_PROCESS), so a Locust master and workers.
    "distributed": {
        "annotations": {ANNOTATION_RUN_NOW: "y"},
        "load": {"mode": "concurrency-sweep", "concurrencies": [50, 450], "duration": "20s"},
    },
    # The full per-request results and the report go to a PersistentVolumeClaim.
    "keeps-results": {"annotations": {ANNOTATION_RUN_NOW: "z"}, "runs": {"resultsClaim": "bakeoff-results"}},
}


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the Job's script) as literal blocks, so the golden reads like the script."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _string)


def check_golden(name: str, docs: list[dict[str, Any]]) -> None:
    text = yaml.dump_all(docs, Dumper=_Dumper, sort_keys=True, width=200)
    assert list(yaml.safe_load_all(text)) == docs
    path = GOLDENS / f"job-{name}.yaml"
    if os.environ.get("UPDATE_GOLDENS") == "1":
        path.write_text(text)
        pytest.fail(f"UPDATE_GOLDENS=1 rewrote {path.name}; review the diff and run again without it")
    assert path.exists(), f"missing golden {path.name}: run with UPDATE_GOLDENS=1"
    assert text == path.read_text()


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_run_job_matches_its_golden(case: str) -> None:
    start = start_of(**CASES[case])
    job = render_run_job(start, "bo", "team", OWNER, SETTINGS)
    check_golden(case, [job, *render_identity("bo", OWNER, SETTINGS)])
    assert render_run_job(start, "bo", "team", OWNER, SETTINGS) == job  # deterministic
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["ttlSecondsAfterFinished"]) == (0, 86_400)
    assert spec["activeDeadlineSeconds"] == start.deadline_s
    assert job["metadata"]["ownerReferences"] == [OWNER.reference()]
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "bo-loadtest"
    assert pod["restartPolicy"] == "Never"
    # The Job says what its run is: a restarted operator reads the same run back.
    seen = job_state({**job, "metadata": {**job["metadata"], "creationTimestamp": "2026-01-01T10:00:00Z"}})
    assert seen is not None
    assert (seen.run, seen.trigger, seen.run_now, seen.variants, seen.skipped, seen.owner_uid) == (
        start.run,
        start.trigger,
        start.run_now,
        tuple(m.variant for m in start.measured),
        start.skipped,
        "uid-bo",
    )
    assert seen.results_location == start.results_location


def test_a_run_that_keeps_its_results_mounts_its_claim_and_says_where_they_are() -> None:
    start = start_of(**CASES["keeps-results"])
    assert start.results_location == f"pvc://bakeoff-results/bo/{start.run}"
    pod = render_run_job(start, "bo", "team", OWNER, SETTINGS)["spec"]["template"]["spec"]
    assert {"name": "results", "persistentVolumeClaim": {"claimName": "bakeoff-results"}} in pod["volumes"]
    [container] = pod["containers"]
    assert {"mountPath": "/results", "name": "results"} in container["volumeMounts"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env[RESULTS_DIR_ENV] == f"/results/bo/{start.run}"
    assert pod["securityContext"]["fsGroup"] == 65532
    d = plan_runs(bakeoff(**CASES["keeps-results"]), variants("hybrid"), jobs=(), results=(), catalog=CATALOG, now=T0)
    assert d.status.last_runs[0].results_location == start.results_location
    plain = render_run_job(start_of(**CASES["one-after-another"]), "bo", "team", OWNER, SETTINGS)
    assert "fsGroup" not in plain["spec"]["template"]["spec"]["securityContext"]


FAKE_BAKEOFF = """#!/bin/sh
# Records its arguments, one per line, in a file named by the time it started (nanoseconds: the calls'
# order) and its pid, and exits with the status named for its variant.
out="$FAKE_DIR/$(date +%s%N)-$$.args"
for a in "$@"; do printf '%s\\n' "$a" >> "$out"; done
variant=""
prev=""
for a in "$@"; do [ "$prev" = "--variant" ] && variant="$a"; prev="$a"; done
code=$(cat "$FAKE_DIR/exit-$variant" 2>/dev/null || echo 0)
exit "$code"
"""


def run_job_script(tmp_path: Path, start: RunStart, exits: dict[str, int]) -> tuple[int, list[list[str]], str]:
    """Run the Job's script with `sh` and a stand-in `bakeoff` first on PATH; its exit status, the argv of
    every `bakeoff` call, and its output."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "bakeoff"
    fake.write_text(FAKE_BAKEOFF)
    fake.chmod(0o755)
    for variant, code in exits.items():
        (tmp_path / f"exit-{variant}").write_text(str(code))
    script = run_script(start, "bo", "team", OWNER)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_DIR": str(tmp_path), RESULTS_DIR_ENV: str(tmp_path / "res")}
    done = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False)
    calls = [p.read_text().splitlines() for p in sorted(tmp_path.glob("*.args"), key=lambda p: p.name)]
    return done.returncode, calls, done.stdout + done.stderr


def parse_loadtest(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    return parser.parse_args(argv)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_script_runs_bakeoff_loadtest_once_per_variant_with_its_flags(tmp_path: Path, case: str) -> None:
    start = start_of(**CASES[case])
    code, calls, output = run_job_script(tmp_path, start, {})
    assert code == 0, output
    assert len(calls) == len(start.measured)
    by_variant = {}
    for argv in calls:
        assert argv[0] == "loadtest"
        args = parse_loadtest(argv)
        by_variant[args.variant] = (argv, args)
    assert sorted(by_variant) == sorted(m.variant for m in start.measured)
    for m in start.measured:
        argv, args = by_variant[m.variant]
        assert argv[1 : 1 + len(m.args)] == list(m.args)
        built = cli.build_spec(args)
        assert built.model_dump(exclude={"workload"}) == m.spec.model_dump(exclude={"workload"})
        assert args.workers == m.spec.workers == (3 if case == "distributed" else 0)
        assert args.summary_configmap == f"team/{m.result}"
        assert sorted(args.summary_label) == sorted(
            [
                "app.kubernetes.io/component=bakeoff-result",
                "app.kubernetes.io/managed-by=bakeoff-operator",
                "bakeoff.dev/bakeoff=bo",
                f"bakeoff.dev/run={start.run}",
                f"bakeoff.dev/variant={m.variant}",
            ]
        )
        assert args.summary_owner == "apiVersion=bakeoff.dev/v1alpha1,kind=BakeOff,name=bo,uid=uid-bo"
        assert args.out == tmp_path / "res" / m.variant
        assert args.no_report == (case != "keeps-results")
    if not start.side_by_side:
        assert [parse_loadtest(c).variant for c in calls] == [m.variant for m in start.measured]


@pytest.mark.parametrize(
    ("exits", "job_fails"),
    [({"dense-int4": 1}, False), ({"dense-int4": 130}, False), ({"dense-int4": 2}, True), ({"dense-bf16": 127}, True)],
    ids=["measured-nothing", "interrupted", "flags-refused", "not-found"],
)
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_load_test_that_handed_its_summary_over_does_not_fail_the_job(
    tmp_path: Path, case: str, exits: dict[str, int], job_fails: bool
) -> None:
    start = start_of(**CASES[case])
    code, calls, output = run_job_script(tmp_path, start, exits)
    assert (code != 0) == job_fails, output
    assert len(calls) == len(start.measured), "one failing variant does not stop the others"
    ((variant, status),) = exits.items()
    assert f"bakeoff: {variant}: bakeoff loadtest exited with {status}" in output


def test_the_skipped_variant_is_not_in_the_script() -> None:
    start = start_of(**CASES["one-after-another"])
    assert [s.variant for s in start.skipped] == ["hybrid"]
    script = run_script(start, "bo", "team", OWNER)
    assert "measure hybrid" not in script
    assert [m.variant for m in start.measured] == [n for n in NAMES if n != "hybrid"]
    assert shlex.split(script.splitlines()[-1]) == ["exit", "$status"]


def test_a_load_beyond_one_process_runs_a_master_and_workers_with_resources_per_process() -> None:
    one = start_of(**CASES["one-after-another"])
    many = start_of(**CASES["distributed"])
    assert [m.spec.workers for m in many.measured] == [3] * len(many.measured)  # ceil(450 / 200)
    assert all("--workers 3" in " ".join(m.args) for m in many.measured)

    def requests(start: RunStart, settings: JobSettings = SETTINGS) -> dict[str, str]:
        pod = render_run_job(start, "bo", "team", OWNER, settings)["spec"]["template"]["spec"]
        return dict(pod["containers"][0]["resources"]["requests"])

    assert requests(one) == {"cpu": "500m", "memory": "512Mi"}
    assert requests(many) == {"cpu": "2000m", "memory": "2048Mi"}  # the master and three workers
    # What one process drives is the operator's setting (the chart's runs.streamsPerProcess).
    d = plan_runs(
        bakeoff(**CASES["distributed"]),
        variants("hybrid"),
        jobs=(),
        results=(),
        catalog=CATALOG,
        now=T0,
        streams_per_process=500,
    )
    assert d.start is not None
    assert [m.spec.workers for m in d.start.measured] == [0] * len(d.start.measured)


def test_the_load_test_pod_lands_where_the_chart_says() -> None:
    settings = SETTINGS.model_copy(
        update={"node_selector": {"pool": "cpu"}, "tolerations": ({"key": "load", "operator": "Exists"},)}
    )
    pod = render_run_job(start_of(**CASES["one-after-another"]), "bo", "team", OWNER, settings)["spec"]["template"]
    assert pod["spec"]["nodeSelector"] == {"pool": "cpu"}
    assert pod["spec"]["tolerations"] == [{"key": "load", "operator": "Exists"}]
    plain = render_run_job(start_of(**CASES["one-after-another"]), "bo", "team", OWNER, SETTINGS)["spec"]["template"]
    assert "nodeSelector" not in plain["spec"]
    assert "tolerations" not in plain["spec"]
