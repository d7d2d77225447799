"""A bake-off that keeps running: when a run is due, one run at a time, skipping variants that are not
Ready, folding results into status (and keeping the last verdict when a run fails), adopting Jobs after
a restart, and a bounded history. Pure table tests of `planning.runs` with an injected clock."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from bakeoff_operator.api.bakeoff import BakeOffStatus, RunOutcome, RunTrigger, Schedule, SkippedVariant
from bakeoff_operator.api.common import ConditionStatus, find_condition
from bakeoff_operator.planning import status as plan
from bakeoff_operator.planning.runs import (
    ANNOTATION_RUN_NOW,
    RunReason,
    RunsDecision,
    deadline_seconds,
    job_state,
    last_run_failed,
    plan_runs,
    result_state,
    run_name,
    scheduled_times,
)

from tests.bakeoffs.builders import (
    CATALOG,
    NAMES,
    RUN,
    T0,
    at,
    bakeoff,
    finished_run,
    job,
    record,
    result,
    run_result,
    running_status,
    status_with,
    variant,
    variants,
)


def decide(bo: Any, vs: Any = None, jobs: Any = (), results: Any = (), now: datetime = T0) -> RunsDecision:
    return plan_runs(bo, variants() if vs is None else vs, jobs=jobs, results=results, catalog=CATALOG, now=now)


def condition(d: RunsDecision, type_: str) -> tuple[str, str, str]:
    c = find_condition(d.status.conditions, type_)
    assert c is not None, type_
    return c.status.value, c.reason, c.message


# --- when a run is due ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("schedule", "created", "now", "latest", "following"),
    [
        (None, T0, at(0), at(0), None),
        (None, T0, at(-1), None, None),
        ({"interval": "1h"}, T0, at(0), at(0), at(60)),
        ({"interval": "1h"}, T0, at(59), at(0), at(60)),
        ({"interval": "1h"}, T0, at(125), at(120), at(180)),
        ({"interval": "90s"}, T0, at(3.5), at(3), at(4.5)),
        ({"cron": "*/5 * * * *"}, at(1), at(4), None, at(5)),
        ({"cron": "*/5 * * * *"}, at(1), at(5), at(5), at(10)),
        ({"cron": "*/5 * * * *"}, at(1), at(9.99), at(5), at(10)),
        ({"cron": "* * * * *"}, T0, at(0), at(0), at(1)),
        ({"cron": "@hourly"}, at(-30), at(61), at(60), at(120)),
    ],
    ids=[
        "once-at-creation",
        "once-not-before-creation",
        "interval-starts-at-creation",
        "interval-before-the-second",
        "interval-later",
        "interval-seconds",
        "cron-before-its-first-time",
        "cron-at-its-time",
        "cron-just-before-the-next",
        "cron-every-minute-on-the-minute",
        "cron-hourly",
    ],
)
def test_scheduled_times(
    schedule: dict[str, str] | None,
    created: datetime,
    now: datetime,
    latest: datetime | None,
    following: datetime | None,
) -> None:
    parsed = Schedule.model_validate(schedule) if schedule is not None else None
    assert scheduled_times(parsed, created, now) == (latest, following)


def test_run_names_are_the_trigger_time_and_fit_a_job_name() -> None:
    assert run_name("bo", T0, RunTrigger.SCHEDULE) == "bo-20260101-100000"
    assert run_name("bo", T0, RunTrigger.RUN_NOW) == "bo-20260101-100000-now"
    long = run_name("a" * 60, T0, RunTrigger.RUN_NOW)
    assert len(long) <= 63
    assert long.endswith("-20260101-100000-now")
    assert long != run_name("a" * 59 + "b", T0, RunTrigger.RUN_NOW)


START_CASES: list[tuple[str, dict[str, Any], datetime, str | None, str]] = [
    # id, bake-off, now, run started (None: none), Running reason
    ("once-at-creation", {}, at(0), "bo-20260101-100000", RunReason.RUN_STARTED),
    (
        "once-only-once",
        {"status": status_with(record("bo-20260101-100000", RunOutcome.SUCCEEDED, T0))},
        at(30),
        None,
        RunReason.NO_RUN_SCHEDULED,
    ),
    ("interval-first-at-creation", {"schedule": {"interval": "1h"}}, at(1), "bo-20260101-100000", "RunStarted"),
    (
        "interval-not-due",
        {"schedule": {"interval": "1h"}, "status": {"lastScheduleTime": "2026-01-01T10:00:00Z"}},
        at(30),
        None,
        RunReason.WAITING_FOR_SCHEDULE,
    ),
    (
        "interval-due",
        {"schedule": {"interval": "1h"}, "status": {"lastScheduleTime": "2026-01-01T10:00:00Z"}},
        at(61),
        "bo-20260101-110000",
        RunReason.RUN_STARTED,
    ),
    ("cron-due", {"schedule": {"cron": "*/5 * * * *"}, "created": at(1)}, at(5.2), "bo-20260101-100500", "RunStarted"),
    ("cron-not-yet", {"schedule": {"cron": "*/5 * * * *"}, "created": at(1)}, at(4), None, "WaitingForSchedule"),
    ("suspended", {"schedule": {"interval": "1h"}, "suspend": True}, at(1), None, RunReason.SUSPENDED),
    (
        "run-now",
        {
            "schedule": {"interval": "1h"},
            "annotations": {ANNOTATION_RUN_NOW: "1"},
            "status": {"lastScheduleTime": "2026-01-01T10:00:00Z"},
        },
        at(30),
        "bo-20260101-103000-now",
        RunReason.RUN_STARTED,
    ),
    (
        "run-now-while-suspended",
        {"schedule": {"interval": "1h"}, "suspend": True, "annotations": {ANNOTATION_RUN_NOW: "x"}},
        at(30),
        "bo-20260101-103000-now",
        RunReason.RUN_STARTED,
    ),
    (
        "run-now-already-served",
        {
            "schedule": {"interval": "1h"},
            "annotations": {ANNOTATION_RUN_NOW: "1"},
            "status": {"lastHandledRunNow": "1", "lastScheduleTime": "2026-01-01T10:00:00Z"},
        },
        at(30),
        None,
        RunReason.WAITING_FOR_SCHEDULE,
    ),
]


@pytest.mark.parametrize(
    ("spec", "now", "started", "running"), [c[1:] for c in START_CASES], ids=[c[0] for c in START_CASES]
)
def test_when_a_run_starts(spec: dict[str, Any], now: datetime, started: str | None, running: str) -> None:
    d = decide(bakeoff(**spec), now=now)
    assert (d.start.run if d.start else None) == started
    assert condition(d, "Running")[1] == running
    if d.start is not None:
        assert [m.variant for m in d.start.measured] == list(NAMES)
        assert d.status.last_runs[0].name == d.start.run
        assert d.status.last_runs[0].outcome is RunOutcome.RUNNING
        assert condition(d, "Running")[0] == "True"
        assert [e.reason for e in d.events] == [RunReason.RUN_STARTED]


def test_a_started_run_is_recorded_so_the_same_trigger_never_starts_twice() -> None:
    bo = bakeoff(schedule={"interval": "1h"}, annotations={ANNOTATION_RUN_NOW: "7"})
    first = decide(bo, now=at(1))
    assert first.start is not None
    assert first.start.trigger is RunTrigger.RUN_NOW
    assert (first.status.last_handled_run_now, first.status.last_schedule_time) == ("7", T0)
    # The Job exists now; the next reconcile, with the status written, starts nothing.
    from bakeoff_operator.render.jobs import JobSettings, owner_of, render_run_job

    rendered = render_run_job(first.start, "bo", "team", owner_of("bo", "uid-bo"), JobSettings())
    rendered["metadata"]["creationTimestamp"] = "2026-01-01T10:01:00Z"
    seen = job_state(rendered)
    assert seen is not None
    again = decide(bo.model_copy(update={"status": first.status}), jobs=[seen], now=at(2))
    assert again.start is None
    assert not plan.status_changed(first.status, again.status)
    # ... and neither does one whose status write was lost: the Job says what it served.
    lost = decide(bo, jobs=[seen], now=at(2))
    assert lost.start is None
    assert (lost.status.last_handled_run_now, lost.status.last_runs[0].name) == ("7", first.start.run)


# --- one run at a time ---------------------------------------------------------------------------------------
def test_forbid_no_second_run_while_one_is_active() -> None:
    active = job("bo-20260101-100000", started=T0, scheduled=T0)
    bo = bakeoff(schedule={"interval": "1m"}, annotations={ANNOTATION_RUN_NOW: "now"})
    d = decide(bo, jobs=[active], now=at(3))
    assert d.start is None
    state, reason, message = condition(d, "Running")
    assert (state, reason) == ("True", RunReason.RUN_STARTED)
    assert "run-now request 'now' waits" in message
    assert d.status.last_handled_run_now is None


def test_forbid_a_scheduled_time_that_passed_during_a_run_is_skipped() -> None:
    ran = record("bo-20260101-100000", RunOutcome.SUCCEEDED, T0, at(2.5), variants=list(NAMES))
    bo = bakeoff(schedule={"interval": "1m"}, status=status_with(ran, lastScheduleTime="2026-01-01T10:00:00Z"))
    # 10:02 was due while the run (10:00-10:02:30) was active: skipped, not started late.
    skipped = decide(bo, jobs=[job(ran.name, outcome=RunOutcome.SUCCEEDED, finished=at(2.5))], now=at(2.7))
    assert skipped.start is None
    assert [e.reason for e in skipped.events] == [RunReason.SCHEDULE_SKIPPED]
    assert skipped.status.last_schedule_time == at(2)
    # 10:03 came after it ended: it runs.
    later = decide(
        bo.model_copy(update={"status": skipped.status}),
        jobs=[job(ran.name, outcome=RunOutcome.SUCCEEDED, finished=at(2.5))],
        now=at(3.1),
    )
    assert later.start is not None
    assert later.start.run == "bo-20260101-100300"


# --- variants that are not Ready ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("not_ready", "now", "run_now", "measured", "running"),
    [
        (("hybrid",), at(1), False, None, RunReason.WAITING_FOR_VARIANTS),
        (("hybrid",), at(11), False, ("dense-bf16", "dense-int4"), RunReason.RUN_STARTED),
        (("hybrid",), at(1), True, ("dense-bf16", "dense-int4"), RunReason.RUN_STARTED),
        (NAMES, at(11), False, None, RunReason.NO_RUN_SCHEDULED),
    ],
    ids=["waits-for-them", "then-runs-without-them", "run-now-does-not-wait", "none-ready-is-skipped"],
)
def test_variants_that_are_not_ready_are_skipped_with_the_reason(
    not_ready: tuple[str, ...], now: datetime, run_now: bool, measured: tuple[str, ...] | None, running: str
) -> None:
    bo = bakeoff(annotations={ANNOTATION_RUN_NOW: "go"} if run_now else None)
    d = decide(bo, variants(*not_ready), now=now)
    assert (d.start is not None) == (measured is not None)
    assert condition(d, "Running")[1] == running
    if d.start is not None:
        assert tuple(m.variant for m in d.start.measured) == measured
        assert [s.variant for s in d.start.skipped] == list(not_ready)
        assert "not Ready (Progressing)" in d.start.skipped[0].reason
        assert d.status.last_runs[0].skipped == list(d.start.skipped)
    elif running == RunReason.WAITING_FOR_VARIANTS:
        assert "waits until 2026-01-01T10:10:00Z" in condition(d, "Running")[2]
        assert not d.status.last_runs
    else:
        skipped = d.status.last_runs[0]
        assert skipped.outcome is RunOutcome.SKIPPED
        assert "no variant can be measured" in skipped.message
        assert [e.reason for e in d.events] == [RunReason.RUN_SKIPPED]
        assert condition(d, "Complete")[1] == RunReason.RUN_SKIPPED


def test_a_variant_without_an_endpoint_or_that_does_not_fit_is_skipped() -> None:
    vs = [variant("dense-bf16"), variant("dense-int4", endpoint=False), variant("hybrid")]
    d = decide(bakeoff(annotations={ANNOTATION_RUN_NOW: "1"}), vs)
    assert d.start is not None
    assert [(s.variant, s.reason) for s in d.start.skipped] == [
        ("dense-int4", "Ready, but its status has no endpoint yet")
    ]


def test_the_load_counts_the_replicas_serving_the_endpoint() -> None:
    vs = [variant("dense-bf16", replicas=3), variant("dense-int4"), variant("hybrid")]
    d = decide(bakeoff(), vs)
    assert d.start is not None
    replicas = {m.variant: m.spec.cost.replicas for m in d.start.measured}
    assert replicas == {"dense-bf16": 3, "dense-int4": 1, "hybrid": 1}
    assert "--replicas" in d.start.measured[0].args


@pytest.mark.parametrize(
    ("runs", "expected"),
    # Per variant: 2 levels x (20 s + 30 s) + 30 s; twice that, plus 5 minutes.
    [
        ({}, 2 * 3 * (2 * (20 + 30) + 30) + 300),
        ({"sideBySide": True}, 2 * (2 * (20 + 30) + 30) + 300),
        ({"deadline": "2h"}, 7200),
    ],
    ids=["one-after-another", "side-by-side", "given"],
)
def test_the_deadline_of_a_run(runs: dict[str, Any], expected: float) -> None:
    d = decide(bakeoff(runs=runs))
    assert d.start is not None
    assert d.start.deadline_s == deadline_seconds(bakeoff(runs=runs), d.start.measured) == int(expected)


# --- results back into status --------------------------------------------------------------------------------
def test_a_completed_run_becomes_the_results_frontier_and_recommendation() -> None:
    bo = bakeoff(status=running_status(), schedule={"interval": "1h"})
    results = [result(RUN, n, run_result(bo, n)) for n in NAMES]
    d = decide(bo, jobs=[finished_run()], results=results, now=at(6))
    s = d.status
    assert [r.variant for r in s.results] == list(NAMES)
    assert s.recommendation is not None
    assert s.recommendation.variant == "dense-int4"
    assert s.pareto_frontier[0] == "dense-int4"
    assert {(c.variant, c.baseline) for c in s.comparisons} == {("dense-int4", "dense-bf16"), ("hybrid", "dense-bf16")}
    assert s.last_successful_run == RUN
    assert (s.last_runs[0].outcome, s.last_runs[0].recommended) == (RunOutcome.SUCCEEDED, "dense-int4")
    assert s.last_runs[0].completion_time == at(5)
    assert condition(d, "Complete")[:2] == ("True", RunReason.RUN_SUCCEEDED)
    assert [e.reason for e in d.events] == [RunReason.RUN_SUCCEEDED]
    assert "dense-int4" in d.events[0].message
    # Capacity per replica: the chosen level's output tokens/s, for the autoscaler.
    caps = {c.variant: c.capacity for c in d.capacities}
    assert set(caps) == set(NAMES)
    int4 = run_result(bo, "dense-int4").chosen_point()
    assert int4 is not None
    assert caps["dense-int4"].output_tokens_per_second == pytest.approx(int4.output_tokens_per_s, abs=0.01)
    assert (caps["dense-int4"].bakeoff, caps["dense-int4"].run) == ("bo", RUN)
    assert not last_run_failed(s)


def test_capacity_is_per_replica_and_only_from_sweeps() -> None:
    bo = bakeoff(status=running_status())
    results = [result(RUN, n, run_result(bo, n, replicas=2 if n == "hybrid" else 1)) for n in NAMES]
    d = decide(bo, jobs=[finished_run()], results=results, now=at(6))
    caps = {c.variant: c.capacity.output_tokens_per_second for c in d.capacities}
    hybrid = run_result(bo, "hybrid", replicas=2).chosen_point()
    assert hybrid is not None
    assert caps["hybrid"] == pytest.approx(hybrid.output_tokens_per_s / 2, abs=0.01)
    sync = bakeoff(status=running_status(), load={"mode": "sync", "maxRequests": 40})
    sync_results = [result(RUN, n, run_result(sync, n)) for n in NAMES]
    assert not decide(sync, jobs=[finished_run()], results=sync_results, now=at(6)).capacities


def previous_verdict(bo: Any) -> dict[str, Any]:
    """The status after one good run, with a second run active."""
    first = decide(
        bo, jobs=[finished_run()], results=[result(RUN, n, run_result(bo, n)) for n in NAMES], now=at(6)
    ).status
    second = record("bo-20260101-110000", RunOutcome.RUNNING, at(60), variants=list(NAMES))
    return BakeOffStatus.model_validate(
        {**first.to_wire(), "lastRuns": [second.to_wire(), *first.to_wire()["lastRuns"]]}
    ).to_wire()


SECOND = "bo-20260101-110000"
DEADLINE = "Job was active longer than specified deadline"
BACKOFF = "Job has reached the specified backoff limit"
GOOD = "good"


@pytest.mark.parametrize(
    ("job_outcome", "job_message", "summaries", "why"),
    [
        (RunOutcome.FAILED, f"DeadlineExceeded: {DEADLINE}", {}, "longer than its deadline of 600 s"),
        (RunOutcome.FAILED, f"BackoffLimitExceeded: {BACKOFF}", {}, "the load-test pod failed"),
        (RunOutcome.SUCCEEDED, "", {"hybrid": None}, "hybrid: no results"),
        (RunOutcome.SUCCEEDED, "", {"hybrid": "{not json"}, "hybrid: results malformed"),
        (RunOutcome.SUCCEEDED, "", {"hybrid": '{"schema_version": 9}'}, "hybrid: results malformed"),
        (RunOutcome.SUCCEEDED, "", {"hybrid": "dense-int4"}, "they are for variant dense-int4"),
    ],
    ids=["deadline", "pod-failed", "missing", "not-json", "wrong-schema", "another-variant"],
)
def test_a_failed_run_keeps_the_previous_verdict(
    job_outcome: RunOutcome, job_message: str, summaries: dict[str, str | None], why: str
) -> None:
    base = bakeoff(schedule={"interval": "1h"})
    bo = bakeoff(schedule={"interval": "1h"}, status=previous_verdict(base))
    before = bo.status
    assert before is not None
    results = [result(RUN, n, run_result(base, n)) for n in NAMES]
    for n in NAMES:
        text = summaries.get(n, GOOD)
        if text == GOOD:
            results.append(result(SECOND, n, run_result(base, n)))
        elif text == "dense-int4":
            results.append(result(SECOND, n, run_result(base, "dense-int4")))
        elif text is not None:
            results.append(result(SECOND, n, text))
    failed = job(SECOND, outcome=job_outcome, started=at(60), finished=at(70), message=job_message, scheduled=at(60))
    d = decide(bo, jobs=[finished_run(), failed], results=results, now=at(71))
    s = d.status
    assert (s.last_runs[0].name, s.last_runs[0].outcome) == (SECOND, RunOutcome.FAILED)
    assert why in s.last_runs[0].message
    assert (s.results, s.recommendation, s.pareto_frontier, s.comparisons) == (
        before.results,
        before.recommendation,
        before.pareto_frontier,
        before.comparisons,
    )
    assert s.last_successful_run == RUN
    state, reason, message = condition(d, "Complete")
    assert (state, reason) == ("False", RunReason.RUN_FAILED)
    assert f"the results are still those of run {RUN}" in message
    assert [(e.reason, e.warning) for e in d.events] == [(RunReason.RUN_FAILED, True)]
    assert not d.capacities
    assert last_run_failed(s)


def test_a_folded_run_is_folded_once() -> None:
    bo = bakeoff(status=running_status(), schedule={"interval": "1h"})
    results = [result(RUN, n, run_result(bo, n)) for n in NAMES]
    first = decide(bo, jobs=[finished_run()], results=results, now=at(6))
    again = decide(bo.model_copy(update={"status": first.status}), jobs=[finished_run()], results=results, now=at(7))
    assert not again.events
    assert not again.capacities
    assert not plan.status_changed(first.status, again.status)


# --- restarts and vanished Jobs ---------------------------------------------------------------------------------
def test_a_restarted_operator_adopts_the_running_job() -> None:
    # The status write after the Job's creation was lost (or the operator restarted): the Job is adopted.
    skipped = (SkippedVariant(variant="hybrid", reason="not Ready (Progressing): starting"),)
    running = job(RUN, scheduled=T0, measured=("dense-bf16", "dense-int4"), skipped=skipped)
    d = decide(bakeoff(schedule={"interval": "1m"}), jobs=[running], now=at(3))
    assert d.start is None
    rec = d.status.last_runs[0]
    assert (rec.name, rec.outcome, rec.variants, rec.skipped) == (
        RUN,
        RunOutcome.RUNNING,
        ["dense-bf16", "dense-int4"],
        list(skipped),
    )
    assert d.status.last_schedule_time == T0
    assert condition(d, "Running")[:2] == ("True", RunReason.RUN_STARTED)


@pytest.mark.parametrize(("complete", "outcome"), [(True, RunOutcome.SUCCEEDED), (False, RunOutcome.FAILED)])
def test_a_run_whose_job_vanished_is_decided_by_its_results(complete: bool, outcome: RunOutcome) -> None:
    bo = bakeoff(status=running_status())
    names = NAMES if complete else NAMES[:2]
    d = decide(bo, results=[result(RUN, n, run_result(bo, n)) for n in names], now=at(90))
    assert d.status.last_runs[0].outcome is outcome
    if not complete:
        assert "no results" in d.status.last_runs[0].message


def test_objects_of_another_bakeoff_of_the_same_name_are_left_alone() -> None:
    stranger = job("bo-20251231-100000", outcome=RunOutcome.SUCCEEDED, started=at(-1440), owner="old-uid")
    d = decide(bakeoff(status=running_status()), jobs=[finished_run(), stranger], results=[], now=at(6))
    assert "bo-20251231-100000" not in {r.name for r in d.status.last_runs}
    assert "bo-20251231-100000" not in d.delete_jobs


# --- a bounded history ---------------------------------------------------------------------------------------------
def test_history_keeps_the_newest_runs_and_deletes_the_rest() -> None:
    names = [f"bo-20260101-1{h}0000" for h in range(5)]  # 10:00 ... 14:00
    runs = [record(n, RunOutcome.SUCCEEDED, at(60 * i), variants=list(NAMES)) for i, n in enumerate(names[:4])]
    active = job(names[4], started=at(240), scheduled=at(240))
    jobs = [job(n, outcome=RunOutcome.SUCCEEDED, started=at(60 * i)) for i, n in enumerate(names[:4])] + [active]
    bo = bakeoff(
        schedule={"interval": "1h"},
        runs={"historyLimit": 2},
        status=status_with(*reversed(runs), lastScheduleTime="2026-01-01T14:00:00Z"),
    )
    results = [result(n, v, "{}") for n in names for v in NAMES]
    d = decide(bo, jobs=jobs, results=results, now=at(241))
    assert [r.name for r in d.status.last_runs] == [names[4], names[3]]
    assert d.delete_jobs == tuple(names[:3])
    assert d.delete_results == tuple(sorted(f"{n}-{v}" for n in names[:3] for v in NAMES))


# --- reading the cluster's objects ---------------------------------------------------------------------------------
def test_job_and_result_states_from_the_api_json() -> None:
    failed = {
        "metadata": {
            "name": RUN,
            "labels": {"bakeoff.dev/run": RUN},
            "annotations": {
                "bakeoff.dev/trigger": "RunNow",
                "bakeoff.dev/run-now": "t1",
                "bakeoff.dev/variants": "a,b",
                "bakeoff.dev/skipped": '[{"variant": "c", "reason": "not Ready"}]',
            },
            "ownerReferences": [{"kind": "BakeOff", "uid": "u1", "name": "bo", "apiVersion": "bakeoff.dev/v1alpha1"}],
            "creationTimestamp": "2026-01-01T10:00:00Z",
        },
        "spec": {"activeDeadlineSeconds": 900},
        "status": {
            "startTime": "2026-01-01T10:00:01Z",
            "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded"},
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "DeadlineExceeded",
                    "message": "Job was active longer than specified deadline",
                    "lastTransitionTime": "2026-01-01T10:15:01Z",
                },
            ],
        },
    }
    state = job_state(failed)
    assert state is not None
    assert (state.outcome, state.trigger, state.run_now, state.variants, state.owner_uid, state.deadline_s) == (
        RunOutcome.FAILED,
        RunTrigger.RUN_NOW,
        "t1",
        ("a", "b"),
        "u1",
        900,
    )
    assert state.skipped == (SkippedVariant(variant="c", reason="not Ready"),)
    assert (state.started, state.finished) == (at(0) + timedelta(seconds=1), at(15) + timedelta(seconds=1))
    assert state.message.startswith("DeadlineExceeded: Job was active")
    assert job_state({"metadata": {"name": "other", "labels": {}}}) is None
    cm = {"metadata": {"name": "x", "labels": {"bakeoff.dev/run": RUN, "bakeoff.dev/variant": "a"}}, "data": {}}
    got = result_state(cm)
    assert got is not None
    assert (got.run, got.variant, got.summary) == (RUN, "a", None)


def test_bakeoff_validation_leaves_the_run_conditions_to_runs() -> None:
    bo = bakeoff(status=BakeOffStatus().to_wire())
    d = decide(bo, now=at(0))
    validated = plan.bakeoff_status(bo.model_copy(update={"status": d.status}), [], 1, at(0))
    assert find_condition(validated.conditions, "Running") == find_condition(d.status.conditions, "Running")
    assert find_condition(validated.conditions, "Complete") is not None
    assert find_condition(validated.conditions, "VariantsResolved").status is ConditionStatus.FALSE  # type: ignore[union-attr]


def test_the_autoscaler_takes_the_measured_capacity_per_replica() -> None:
    from bakeoff_operator.api.modelvariant import PredictedCapacity
    from bakeoff_operator.autoscaling.inventory import capacity_of

    bo = bakeoff(status=running_status())
    results = [result(RUN, n, run_result(bo, n)) for n in NAMES]
    d = decide(bo, jobs=[finished_run()], results=results, now=at(6))
    cap = next(c for c in d.capacities if c.variant == "hybrid")
    mv = variant("hybrid")
    assert mv.status is not None
    predicted = mv.status.model_copy(update={"predicted": PredictedCapacity(output_tokens_per_second=999.0)})
    before = capacity_of(mv.model_copy(update={"status": predicted}))
    assert before is not None
    assert (before.source, before.tokens_per_second) == ("predicted", 999.0)
    measured = mv.model_copy(update={"status": predicted.model_copy(update={"measured_capacity": cap.capacity})})
    got = capacity_of(measured)
    assert got is not None
    assert (got.source, got.tokens_per_second) == ("measured", cap.capacity.output_tokens_per_second)
