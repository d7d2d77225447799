"""Stream chunks and bodies of the simulator's OpenAI-compatible API, without HTTP or an engine."""

from __future__ import annotations

import json
from typing import Any

import pytest
from bakeoff_runtime.sim.responses import StreamChunks, final_body
from bakeoff_runtime.sim.scheduler import FinishReason, SimRequest


def chunks(chat: bool, *, include_usage: bool = False, continuous_usage: bool = False) -> StreamChunks:
    req = SimRequest(request_id="cmpl-1", prompt_tokens=5, max_output_tokens=3, output_tokens=2)
    return StreamChunks(
        req,
        chat=chat,
        model='tiny "model"',
        fingerprint="fp",
        include_usage=include_usage,
        continuous_usage=continuous_usage,
    )


def event(raw: bytes) -> dict[str, Any]:
    assert raw.startswith(b"data: "), raw
    assert raw.endswith(b"\n\n"), raw
    return dict(json.loads(raw[len(b"data: ") : -2]))


@pytest.mark.parametrize("chat", [False, True], ids=["completion", "chat"])
@pytest.mark.parametrize("text", [" word", ' "quoted"\n', " ünï"], ids=["word", "escaped", "unicode"])
def test_the_fast_token_chunk_is_the_full_choice_serialized(chat: bool, text: str) -> None:
    stream = chunks(chat)
    fast = stream.token(text, None, last=False)
    full = stream.head + '"choices":[' + json.dumps(stream.choice(text, None, False), separators=(",", ":")) + "]}"
    assert fast == b"data: " + full.encode() + b"\n\n"


@pytest.mark.parametrize("chat", [False, True], ids=["completion", "chat"])
def test_the_last_chunk_carries_the_finish_reason_and_the_fingerprint_unless_usage_follows(chat: bool) -> None:
    alone = event(chunks(chat).token(" w", "length", last=True))
    assert alone["choices"][0]["finish_reason"] == "length"
    assert alone["system_fingerprint"] == "fp"
    with_usage = chunks(chat, include_usage=True)
    assert "system_fingerprint" not in event(with_usage.token(" w", "length", last=True))
    usage = with_usage.usage()
    assert usage is not None
    assert event(usage)["usage"] == {"prompt_tokens": 5, "total_tokens": 7, "completion_tokens": 2}


def test_only_chat_opens_with_the_assistant_role() -> None:
    assert chunks(False).opening() is None
    opening = chunks(True, continuous_usage=True).opening()
    assert opening is not None
    body = event(opening)
    assert body["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
    ]
    assert body["usage"] == {"prompt_tokens": 5, "total_tokens": 7, "completion_tokens": 2}


@pytest.mark.parametrize("chat", [False, True], ids=["completion", "chat"])
def test_final_body_usage_and_unfinished_requests_read_as_aborted(chat: bool) -> None:
    req = SimRequest(request_id="r", prompt_tokens=4, max_output_tokens=2, output_tokens=1)
    body = final_body(req, " w", chat=chat, model="tiny", fingerprint="fp")
    assert body["object"] == ("chat.completion" if chat else "text_completion")
    assert body["choices"][0]["finish_reason"] == FinishReason.ABORT.value
    assert body["usage"]["total_tokens"] == 5
