"""Bad HTTP requests to the simulator: each gets vLLM 0.32.0's status, error type, `param` and wording
(recorded from a real vLLM server), and the simulator keeps serving; stopping it mid-stream ends the
stream cleanly, without a traceback.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from tests.faults.conftest import Endpoint

MODEL = "llama-3.1-8b-bf16"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2}
COMPLETION = {"model": MODEL, "prompt": "hello", "max_tokens": 2}

# (id, path, body (dict, or raw bytes), status, error type, param, message fragment)
BAD_REQUESTS: list[tuple[str, str, Any, int, str, str | None, str]] = [
    ("negative-temperature", "/v1/chat/completions", {**CHAT, "temperature": -1}, 400, "BadRequestError",
     "temperature", "temperature must be non-negative, got -1.0. (parameter=temperature, value=-1.0)"),
    ("temperature-above-two", "/v1/completions", {**COMPLETION, "temperature": 2.5}, 400, "BadRequestError",
     "temperature", "temperature must be in [0, 2], got 2.5."),
    ("temperature-not-a-number", "/v1/chat/completions", {**CHAT, "temperature": "hot"}, 400, "Bad Request",
     "body.temperature", "valid number"),
    ("top-p-zero", "/v1/chat/completions", {**CHAT, "top_p": 0}, 400, "BadRequestError", "top_p",
     "top_p must be in (0, 1], got 0.0."),
    ("top-p-above-one", "/v1/completions", {**COMPLETION, "top_p": 1.5}, 400, "BadRequestError", "top_p",
     "top_p must be in (0, 1], got 1.5."),
    ("top-k-below-minus-one", "/v1/chat/completions", {**CHAT, "top_k": -2}, 400, "BadRequestError", None,
     "top_k must be 0 (disable), or at least 1, got -2."),
    ("presence-penalty-three", "/v1/chat/completions", {**CHAT, "presence_penalty": 3}, 400, "BadRequestError",
     None, "presence_penalty must be in [-2, 2], got 3.0."),
    ("frequency-penalty-minus-three", "/v1/completions", {**COMPLETION, "frequency_penalty": -3}, 400,
     "BadRequestError", None, "frequency_penalty must be in [-2, 2], got -3.0."),
    ("repetition-penalty-zero", "/v1/chat/completions", {**CHAT, "repetition_penalty": 0}, 400, "BadRequestError",
     None, "repetition_penalty must be greater than zero, got 0.0."),
    ("no-choices", "/v1/chat/completions", {**CHAT, "n": 0}, 400, "BadRequestError", None,
     "n must be at least 1, got 0."),
    ("max-tokens-zero", "/v1/completions", {**COMPLETION, "max_tokens": 0}, 400, "BadRequestError", "max_tokens",
     "max_tokens must be at least 1"),
    ("prompt-too-long", "/v1/completions", {**COMPLETION, "prompt": "w " * 3000}, 400, "BadRequestError",
     "input_tokens", "maximum context length is 2048 tokens"),
    ("unknown-model", "/v1/chat/completions", {**CHAT, "model": "llama-3.1-8b"}, 404, "NotFoundError", "model",
     "The model `llama-3.1-8b` does not exist. Valid aliases: llama-3.1-8b-bf16."),
    ("not-json", "/v1/completions", b'{"model": ', 400, "Bad Request", "body.10", "JSON decode error"),
    ("not-an-object", "/v1/chat/completions", [1, 2], 400, "Bad Request", "body", "valid dictionary"),
    ("missing-messages", "/v1/chat/completions", {"model": MODEL}, 400, "Bad Request", "body.messages", "required"),
]  # fmt: skip


@pytest.mark.parametrize("case", [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS])
def test_a_bad_request_gets_vllms_answer_and_the_simulator_keeps_serving(
    simulator: Endpoint, case: tuple[str, Any, int, str, str | None, str]
) -> None:
    path, body, status, err_type, param, says = case
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    out = httpx.post(simulator.url + path, content=content, headers={"content-type": "application/json"}, timeout=30)
    assert out.status_code == status, out.text
    error = out.json()["error"]
    assert error["type"] == err_type
    assert error["param"] == param
    assert error["code"] == status
    assert says in error["message"]
    assert httpx.post(simulator.url + "/v1/completions", json=COMPLETION, timeout=30).status_code == 200


@pytest.mark.parametrize(
    ("knobs"),
    [{"temperature": 0}, {"temperature": 2}, {"top_p": 1}, {"top_k": -1}, {"top_k": 0}, {"repetition_penalty": 1.2}],
    ids=["temperature-0", "temperature-2", "top-p-1", "top-k-minus-one", "top-k-zero", "repetition-penalty"],
)
def test_knobs_within_vllms_bounds_are_accepted(simulator: Endpoint, knobs: dict[str, Any]) -> None:
    assert httpx.post(simulator.url + "/v1/chat/completions", json={**CHAT, **knobs}, timeout=30).status_code == 200


def test_a_large_body_is_read_as_vllm_reads_it(simulator: Endpoint) -> None:
    # vLLM 0.32.0 sets no body-size limit (a 120 MiB body was answered 200); neither does the simulator.
    big = {**COMPLETION, "unused": "x" * (8 << 20)}
    assert httpx.post(simulator.url + "/v1/completions", json=big, timeout=60).status_code == 200


@pytest.mark.parametrize("twice", [False, True], ids=["once", "twice"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_stopping_the_simulator_mid_stream_ends_the_stream_without_a_traceback(
    sig: signal.Signals, twice: bool
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bakeoff_runtime.sim.cli", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    body = {**COMPLETION, "max_tokens": 100_000, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    lines: list[str] = []
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=30) as resp:
        for line in resp.iter_lines():
            if not line:
                continue
            lines.append(line)
            if len(lines) == 20:
                proc.send_signal(sig)
                if twice:  # an impatient second Ctrl-C
                    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err
    assert lines[-1] == "data: [DONE]"  # the stream ends as a stream ends, with its usage
    chunks = [json.loads(x.removeprefix("data: ")) for x in lines if x.startswith("data: {")]
    assert chunks[-1]["usage"]["completion_tokens"] < 100_000
    assert proc.returncode == 128 + sig
