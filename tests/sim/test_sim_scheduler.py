"""The simulator's continuous-batching scheduler: budgets, chunked prefill, KV blocks, preemption, Mamba slots."""

from __future__ import annotations

import pytest
from bakeoff_runtime.sim.scheduler import (
    FinishReason,
    RequestStatus,
    Scheduler,
    SchedulerLimits,
    SimRequest,
)


def limits(**overrides: int | None) -> SchedulerLimits:
    base: dict[str, int | None] = {
        "max_num_seqs": 4,
        "max_num_batched_tokens": 64,
        "num_kv_blocks": 100,
        "block_size": 16,
        "mamba_state_slots": None,
        "max_model_len": 4096,
    }
    base.update(overrides)
    return SchedulerLimits(**base)  # type: ignore[arg-type]


def req(rid: str, prompt: int, out: int) -> SimRequest:
    return SimRequest(request_id=rid, prompt_tokens=prompt, max_output_tokens=out)


def run_to_end(sched: Scheduler, max_steps: int = 10_000) -> int:
    steps = 0
    while sched.has_work:
        plan = sched.schedule()
        assert not plan.empty, "scheduler stalled with work left"
        sched.complete(plan)
        steps += 1
        assert steps < max_steps
    return steps


def test_short_prompt_prefills_in_one_step_then_decodes_one_token_per_step() -> None:
    sched = Scheduler(limits())
    r = req("a", prompt=10, out=3)
    sched.add(r)
    first = sched.schedule()
    assert first.counts.prefill_tokens == 10
    assert first.counts.decode_sequences == 0
    assert first.counts.prefill_attention_pairs == pytest.approx(10 * (0 + 11 / 2))
    result = sched.complete(first)
    assert result.sampled == [r]
    second = sched.schedule()
    assert second.counts.prefill_tokens == 0
    assert second.counts.decode_sequences == 1
    assert second.counts.decode_context_tokens == 11  # 10 prompt + 1 sampled token, attending to itself
    sched.complete(second)
    third = sched.schedule()
    result = sched.complete(third)
    assert result.finished == [r]
    assert r.status is RequestStatus.FINISHED
    assert r.finish_reason is FinishReason.LENGTH
    assert r.output_tokens == 3
    assert sched.free_blocks == 100


def test_long_prompt_is_chunked_by_the_token_budget_and_samples_only_after_the_last_chunk() -> None:
    sched = Scheduler(limits(max_num_batched_tokens=64))
    r = req("long", prompt=150, out=1)
    sched.add(r)
    chunks = []
    while sched.has_work:
        plan = sched.schedule()
        chunks.append((plan.counts.prefill_tokens, plan.counts.prefill_attention_pairs))
        result = sched.complete(plan)
        if len(chunks) < 3:
            assert result.sampled == []
    assert [c[0] for c in chunks] == [64, 64, 22]
    # The second chunk attends to the 64 cached tokens of the first.
    assert chunks[1][1] == pytest.approx(64 * (64 + 65 / 2))
    assert r.output_tokens == 1


def test_running_sequences_share_the_budget_decodes_first() -> None:
    sched = Scheduler(limits(max_num_batched_tokens=20))
    a, b = req("a", 8, 5), req("b", 30, 5)
    sched.add(a)
    sched.complete(sched.schedule())  # a prefilled
    sched.add(b)
    plan = sched.schedule()
    assert plan.counts.decode_sequences == 1
    assert plan.counts.prefill_tokens == 19  # the rest of the budget goes to b's first chunk


def test_max_num_seqs_caps_the_running_batch() -> None:
    sched = Scheduler(limits(max_num_seqs=2, max_num_batched_tokens=1000))
    for i in range(5):
        sched.add(req(str(i), 4, 10))
    plan = sched.schedule()
    assert len(plan.chunks) == 2
    assert len(sched.waiting) == 3


def test_kv_blocks_run_out_and_the_newest_running_sequence_is_preempted_and_recomputed() -> None:
    # 3 blocks of 16 tokens: two sequences of 16-token prompts need a second block each after 1 output token.
    sched = Scheduler(limits(num_kv_blocks=3, max_num_batched_tokens=100))
    a, b = req("a", 16, 20), req("b", 16, 20)
    sched.add(a)
    sched.add(b)
    sched.complete(sched.schedule())  # both prefilled: 2 blocks used, both sampled their first token
    assert sched.used_blocks == 2
    plan = sched.schedule()  # each decode needs a 2nd block: only one is free
    assert plan.preempted == [b]
    assert b.status is RequestStatus.WAITING
    assert b.num_computed == 0
    assert b.preemptions == 1
    assert sched.num_preemptions == 1
    assert [c.request for c in plan.chunks] == [a]
    # No waiting request is admitted in a step that preempted.
    assert sched.waiting[0] is b
    run_to_end(sched)
    assert a.output_tokens == 20
    assert b.output_tokens == 20
    assert sched.free_blocks == 3


def test_recompute_after_preemption_prefills_prompt_and_generated_tokens() -> None:
    sched = Scheduler(limits(num_kv_blocks=3, max_num_batched_tokens=100))
    a, b = req("a", 16, 40), req("b", 16, 3)
    sched.add(a)
    sched.add(b)
    sched.complete(sched.schedule())
    sched.schedule()  # preempts b after 1 output token
    sched.abort(a)  # frees a's blocks so b can come back
    plan = sched.schedule()
    assert plan.counts.prefill_tokens == 17  # 16 prompt tokens + the token b had already generated


def test_mamba_state_slots_limit_running_hybrid_sequences() -> None:
    sched = Scheduler(limits(mamba_state_slots=2, max_num_seqs=8, max_num_batched_tokens=1000))
    reqs = [req(str(i), 4, 2) for i in range(4)]
    for r in reqs:
        sched.add(r)
    plan = sched.schedule()
    assert len(plan.chunks) == 2
    assert sched.free_state_slots == 0
    sched.complete(plan)
    sched.complete(sched.schedule())  # the first two finish and give their slots back
    assert sched.free_state_slots == 2
    run_to_end(sched)
    assert all(r.output_tokens == 2 for r in reqs)
    assert sched.free_state_slots == 2


@pytest.mark.parametrize("where", ["waiting", "running"], ids=["abort-waiting", "abort-running"])
def test_abort_frees_blocks_and_slot(where: str) -> None:
    sched = Scheduler(limits(max_num_seqs=1, mamba_state_slots=1))
    first, second = req("first", 40, 100), req("second", 40, 100)
    sched.add(first)
    sched.add(second)
    sched.complete(sched.schedule())
    victim = second if where == "waiting" else first
    sched.abort(victim)
    assert victim.status is RequestStatus.ABORTED
    assert victim.finish_reason is FinishReason.ABORT
    assert victim.blocks == 0
    if where == "running":
        assert sched.used_blocks == 0
        assert sched.free_state_slots == 1
    sched.abort(victim)  # twice is harmless
    run_to_end(sched)
    assert sched.free_blocks == 100


def test_a_step_is_never_empty_while_a_request_that_fits_alone_waits() -> None:
    sched = Scheduler(limits(num_kv_blocks=8, max_num_seqs=16, max_num_batched_tokens=32))
    for i in range(10):
        sched.add(req(str(i), 30, 30))
    steps = run_to_end(sched)
    assert steps > 0
    assert sched.free_blocks == 8


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_num_seqs", 0), ("num_kv_blocks", 0), ("block_size", -1), ("mamba_state_slots", 0)],
    ids=["seqs", "blocks", "block-size", "mamba-slots"],
)
def test_limits_reject_nonsense(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=field):
        limits(**{field: value})


def test_empty_prompt_is_refused() -> None:
    with pytest.raises(ValueError, match="prompt token"):
        Scheduler(limits()).add(req("x", 0, 1))
