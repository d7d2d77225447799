"""vLLM's OpenAI-compatible API: the same checks pass against the simulator and against real vLLM."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.conformance.conftest import MAX_MODEL_LEN, SERVED, Served

PROMPT = "one two three four five six seven"  # 7 tokens on both runtimes (one per whitespace word)
COMPLETION_KEYS = {
    "id", "object", "created", "model", "choices", "service_tier", "system_fingerprint", "usage",
    "kv_transfer_params", "ec_transfer_params", "metrics",
}  # fmt: skip
COMPLETION_CHOICE_KEYS = {
    "index", "text", "logprobs", "finish_reason", "stop_reason", "token_ids", "prompt_logprobs",
    "prompt_token_ids", "routed_experts",
}  # fmt: skip
CHAT_KEYS = COMPLETION_KEYS | {"prompt_logprobs", "prompt_token_ids", "prompt_text"}
USAGE_KEYS = {
    "prompt_tokens",
    "total_tokens",
    "completion_tokens",
    "prompt_tokens_details",
    "completion_tokens_details",
}


def post(rt: Served, path: str, body: Any, timeout: float = 60) -> httpx.Response:
    return httpx.post(rt.url + path, json=body, timeout=timeout)


def sse(rt: Served, path: str, body: dict[str, Any]) -> list[Any]:
    with httpx.stream("POST", rt.url + path, json=body, timeout=60) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        raw = resp.read().decode()
    events = [e for e in raw.split("\n\n") if e.strip()]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    return [json.loads(e[len("data: ") :]) for e in events[:-1]]


def test_health_version_and_models(runtime: Served) -> None:
    health = httpx.get(runtime.url + "/health", timeout=10)
    assert health.status_code == 200
    assert health.content == b""
    assert isinstance(httpx.get(runtime.url + "/version", timeout=10).json()["version"], str)
    models = httpx.get(runtime.url + "/v1/models", timeout=10).json()
    assert models["object"] == "list"
    (card,) = models["data"]
    assert card["id"] == SERVED
    assert card["object"] == "model"
    assert card["owned_by"] == "vllm"
    assert card["max_model_len"] == MAX_MODEL_LEN


def test_completion(runtime: Served) -> None:
    out = post(runtime, "/v1/completions", {"model": SERVED, "prompt": PROMPT, "max_tokens": 5, "ignore_eos": True})
    assert out.status_code == 200
    body = out.json()
    assert set(body) == COMPLETION_KEYS
    assert body["object"] == "text_completion"
    assert body["id"].startswith("cmpl-")
    assert body["model"] == SERVED
    (choice,) = body["choices"]
    assert set(choice) == COMPLETION_CHOICE_KEYS
    assert choice["finish_reason"] == "length"
    assert isinstance(choice["text"], str)
    assert set(body["usage"]) == USAGE_KEYS
    assert body["usage"]["prompt_tokens"] == 7
    assert body["usage"]["completion_tokens"] == 5
    assert body["usage"]["total_tokens"] == 12


def test_chat_completion(runtime: Served) -> None:
    messages = [{"role": "user", "content": PROMPT}]
    out = post(
        runtime, "/v1/chat/completions", {"model": SERVED, "messages": messages, "max_tokens": 3, "ignore_eos": True}
    )
    assert out.status_code == 200
    body = out.json()
    assert set(body) == CHAT_KEYS
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] == "length"
    # The chat template adds one token per message and one for the assistant prompt.
    assert body["usage"]["prompt_tokens"] == 7 + 2
    assert body["usage"]["completion_tokens"] == 3


def test_max_completion_tokens_on_chat(runtime: Served) -> None:
    body = {
        "model": SERVED,
        "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 4,
        "ignore_eos": True,
    }
    assert post(runtime, "/v1/chat/completions", body).json()["usage"]["completion_tokens"] == 4


def test_completion_without_max_tokens_generates_sixteen(runtime: Served) -> None:
    body = {"model": SERVED, "prompt": PROMPT, "ignore_eos": True}
    assert post(runtime, "/v1/completions", body).json()["usage"]["completion_tokens"] == 16


def test_model_field_may_be_omitted(runtime: Served) -> None:
    out = post(runtime, "/v1/completions", {"prompt": PROMPT, "max_tokens": 2, "ignore_eos": True})
    assert out.status_code == 200
    assert out.json()["model"] == SERVED


def test_streamed_completion_with_usage(runtime: Served) -> None:
    body = {
        "model": SERVED, "prompt": PROMPT, "max_tokens": 6, "ignore_eos": True, "stream": True,
        "stream_options": {"include_usage": True},
    }  # fmt: skip
    chunks = sse(runtime, "/v1/completions", body)
    *content, usage = chunks
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 7, "total_tokens": 13, "completion_tokens": 6}
    assert usage["object"] == "text_completion"
    assert len({c["id"] for c in chunks}) == 1
    assert len(content) == 6
    for c in content:
        assert c["object"] == "text_completion"
        (choice,) = c["choices"]
        assert {"index", "text", "logprobs", "finish_reason", "stop_reason"} <= set(choice)
        assert "usage" not in c
    assert [c["choices"][0]["finish_reason"] for c in content] == [None] * 5 + ["length"]


def test_streamed_completion_without_usage(runtime: Served) -> None:
    body = {"model": SERVED, "prompt": PROMPT, "max_tokens": 3, "ignore_eos": True, "stream": True}
    chunks = sse(runtime, "/v1/completions", body)
    assert len(chunks) == 3
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_streamed_chat_with_usage(runtime: Served) -> None:
    body = {
        "model": SERVED, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 4, "ignore_eos": True,
        "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip
    first, *content, usage = sse(runtime, "/v1/chat/completions", body)
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len(content) == 4
    assert all(set(c["choices"][0]["delta"]) == {"content"} for c in content)
    assert content[-1]["choices"][0]["finish_reason"] == "length"
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 9, "total_tokens": 13, "completion_tokens": 4}


def test_unknown_fields_are_ignored(runtime: Served) -> None:
    body = {"model": SERVED, "prompt": PROMPT, "max_tokens": 2, "frobnicate": 1, "temperature": 0.3, "top_p": 0.9}
    assert post(runtime, "/v1/completions", body).status_code == 200


def test_tokenize_and_detokenize(runtime: Served) -> None:
    out = post(runtime, "/tokenize", {"model": SERVED, "prompt": PROMPT}).json()
    assert out["count"] == 7
    assert len(out["tokens"]) == 7
    assert out["max_model_len"] == MAX_MODEL_LEN
    chat = post(runtime, "/tokenize", {"model": SERVED, "messages": [{"role": "user", "content": PROMPT}]}).json()
    assert chat["count"] == 9
    back = post(runtime, "/detokenize", {"model": SERVED, "tokens": [10, 11, 12]}).json()
    assert len(back["prompt"].split()) == 3


ERROR_CASES = [
    # (id, path, raw body, status, error type, param)
    ("malformed-json", "/v1/completions", b'{"model":"tiny", "prompt": ', 400, "Bad Request", "body.27"),
    ("wrong-type", "/v1/completions", {"model": SERVED, "prompt": "a", "max_tokens": "many"}, 400, "Bad Request",
     "body.max_tokens"),
    ("not-an-object", "/v1/completions", [1, 2], 400, "Bad Request", "body"),
    ("missing-messages", "/v1/chat/completions", {"model": SERVED}, 400, "Bad Request", "body.messages"),
    ("max-tokens-zero", "/v1/completions", {"model": SERVED, "prompt": "a", "max_tokens": 0}, 400, "BadRequestError",
     "max_tokens"),
    ("max-tokens-negative", "/v1/chat/completions",
     {"model": SERVED, "messages": [{"role": "user", "content": "a"}], "max_tokens": -3}, 400, "BadRequestError",
     "max_tokens"),
    ("empty-prompt", "/v1/completions", {"model": SERVED, "prompt": "", "max_tokens": 2}, 400, "BadRequestError",
     "prompt"),
    ("prompt-too-long", "/v1/completions", {"model": SERVED, "prompt": " ".join(["w"] * (MAX_MODEL_LEN + 5)),
     "max_tokens": 2}, 400, "BadRequestError", "input_tokens"),
    ("min-over-max", "/v1/completions", {"model": SERVED, "prompt": "a", "max_tokens": 2, "min_tokens": 5}, 400,
     "BadRequestError", None),
    ("unknown-model", "/v1/completions", {"model": "nope", "prompt": "a", "max_tokens": 2}, 404, "NotFoundError",
     "model"),
    ("unknown-model-chat", "/v1/chat/completions",
     {"model": "nope", "messages": [{"role": "user", "content": "a"}]}, 404, "NotFoundError", "model"),
]  # fmt: skip


@pytest.mark.parametrize("case", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_bad_input_gets_an_openai_style_error_and_the_server_keeps_serving(
    runtime: Served, case: tuple[str, Any, int, str, str | None]
) -> None:
    path, body, status, err_type, param = case
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    out = httpx.post(runtime.url + path, content=content, headers={"content-type": "application/json"}, timeout=30)
    assert out.status_code == status, out.text
    error = out.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == status
    assert error["type"] == err_type
    assert error["param"] == param
    assert error["message"]
    assert httpx.get(runtime.url + "/health", timeout=10).status_code == 200


def test_unknown_route_and_method(runtime: Served) -> None:
    missing = httpx.get(runtime.url + "/v1/nothing", timeout=10)
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not Found"}
    wrong = httpx.get(runtime.url + "/v1/completions", timeout=10)
    assert wrong.status_code == 405
    assert wrong.json() == {"detail": "Method Not Allowed"}


def test_disconnect_mid_stream_frees_the_sequence(runtime: Served) -> None:
    def gauge(name: str) -> float:
        for line in httpx.get(runtime.url + "/metrics", timeout=10).text.splitlines():
            if line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"{name} not found")

    body = {"model": SERVED, "prompt": PROMPT, "max_tokens": MAX_MODEL_LEN - 8, "ignore_eos": True, "stream": True}
    with httpx.Client(timeout=60) as client, client.stream("POST", runtime.url + "/v1/completions", json=body) as resp:
        seen = 0
        for line in resp.iter_lines():
            seen += line.startswith("data: ")
            if seen >= 3:
                break
    deadline = time.monotonic() + 20
    while gauge("vllm:num_requests_running") != 0 or gauge("vllm:kv_cache_usage_perc") != 0:
        assert time.monotonic() < deadline, "the aborted request still holds its sequence or KV blocks"
        time.sleep(0.1)
    assert httpx.get(runtime.url + "/health", timeout=10).status_code == 200
