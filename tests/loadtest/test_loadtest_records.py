"""The stream timer: what counts as a content token, and every failure cause, on synthetic streams."""

from __future__ import annotations

import json

import pytest
from bakeoff_loadtest.records import FailureCause, RequestRecord, StreamTimer


def _rec() -> RequestRecord:
    return RequestRecord(index=0, worker=0, start_unix=0.0, requested_prompt_tokens=4, requested_output_tokens=3)


def _chat(content: str | None = None, role: str | None = None) -> str:
    delta: dict[str, str] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return "data: " + json.dumps({"choices": [{"index": 0, "delta": delta}]})


USAGE = "data: " + json.dumps({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 3}})


def _feed(timer: StreamTimer, events: list[tuple[str, float]]) -> None:
    for line, t in events:
        timer.feed_line(line, t)
        timer.feed_line("", t)


def test_chat_stream_timings_follow_the_definitions() -> None:
    rec = _rec()
    timer = StreamTimer(rec, start=10.0)
    _feed(
        timer,
        [
            (_chat(role="assistant", content=""), 10.001),  # role-only chunk: not a content token
            (_chat("a"), 10.050),
            (_chat("b"), 10.060),
            (_chat("c"), 10.075),
            (USAGE, 10.076),
            ("data: [DONE]", 10.077),
        ],
    )
    timer.finish(10.080)
    assert rec.ok
    assert rec.cause is None
    assert rec.ttft_s == pytest.approx(0.050)
    assert rec.itl_s == pytest.approx([0.010, 0.015])
    assert rec.e2e_s == pytest.approx(0.080)
    assert rec.output_tokens == 3
    assert rec.prompt_tokens == 4
    # TPOT = (E2E - TTFT) / (output tokens - 1)
    assert rec.tpot_s == pytest.approx((0.080 - 0.050) / 2)


def test_completions_text_and_usage_not_counted_from_chunks() -> None:
    rec = _rec()
    timer = StreamTimer(rec, start=0.0)
    two_tokens = "data: " + json.dumps({"choices": [{"index": 0, "text": "ab"}]})
    usage = "data: " + json.dumps({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}})
    _feed(timer, [(two_tokens, 0.1), (two_tokens, 0.2), (usage, 0.2), ("data: [DONE]", 0.2)])
    timer.finish(0.25)
    assert rec.ok
    assert rec.content_chunks == 2
    assert rec.output_tokens == 4  # from usage, not from the 2 chunks
    assert rec.prompt_tokens == 9


def test_comments_other_fields_and_crlf_free_lines_are_ignored() -> None:
    rec = _rec()
    timer = StreamTimer(rec, start=0.0)
    timer.feed_line(": keep-alive", 0.01)
    timer.feed_line("event: message", 0.02)
    _feed(timer, [(_chat("x"), 0.03), (USAGE, 0.04), ("data: [DONE]", 0.05)])
    timer.finish(0.05)
    assert rec.ok
    assert rec.ttft_s == pytest.approx(0.03)


@pytest.mark.parametrize(
    ("events", "cause"),
    [
        ([(_chat("a"), 0.1), (USAGE, 0.2)], FailureCause.TRUNCATED),
        ([(_chat("a"), 0.1), ("data: [DONE]", 0.2)], FailureCause.NO_USAGE),
        ([(USAGE, 0.1), ("data: [DONE]", 0.2)], FailureCause.NO_CONTENT),
        ([(_chat("a"), 0.1), ('data: {"error": {"message": "boom"}}', 0.2)], FailureCause.STREAM_ERROR),
        ([("data: {not json", 0.1)], FailureCause.BAD_CHUNK),
        ([("data: [1, 2]", 0.1)], FailureCause.BAD_CHUNK),
    ],
    ids=["truncated", "no-usage", "no-content", "error-event", "bad-json", "not-an-object"],
)
def test_failure_causes(events: list[tuple[str, float]], cause: FailureCause) -> None:
    rec = _rec()
    timer = StreamTimer(rec, start=0.0)
    _feed(timer, events)
    timer.finish(0.3)
    assert not rec.ok
    assert rec.cause is cause
    assert rec.detail


def test_tpot_is_undefined_below_two_tokens() -> None:
    rec = _rec()
    rec.ttft_s, rec.e2e_s, rec.output_tokens = 0.1, 0.1, 1
    assert rec.tpot_s is None


def test_wire_round_trip() -> None:
    rec = _rec()
    rec.ok, rec.ttft_s, rec.e2e_s, rec.itl_s, rec.output_tokens = True, 0.1, 0.3, [0.1, 0.1], 3
    assert RequestRecord.from_wire(rec.to_wire()) == rec
