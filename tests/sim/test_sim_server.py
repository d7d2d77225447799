"""The simulator as a client sees it: exact token counts, determinism, disconnects, faults, metrics.

API shapes shared with real vLLM are checked in tests/conformance; these are the simulator's own
promises.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from bakeoff_runtime.launcher import RunningRuntime
from bakeoff_runtime.sim.tokens import CHAT_TOKENS_PER_CONVERSATION, CHAT_TOKENS_PER_MESSAGE
from prometheus_client.parser import text_string_to_metric_families

from tests.sim.conftest import SERVED, start_sim


def words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def stats(url: str) -> dict[str, Any]:
    return dict(httpx.get(url + "/sim/stats", timeout=10).json())


def metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    total = 0.0
    found = False
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
                found = True
    assert found, f"{name} {labels} not exposed"
    return total


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


@pytest.mark.parametrize("prompt_words", [1, 17, 300], ids=["one", "seventeen", "three-hundred"])
def test_prompt_tokens_are_exactly_the_whitespace_words(sim: RunningRuntime, prompt_words: int) -> None:
    body = {"model": SERVED, "prompt": words(prompt_words), "max_tokens": 5}
    usage = httpx.post(sim.url + "/v1/completions", json=body, timeout=30).json()["usage"]
    assert usage == {
        "prompt_tokens": prompt_words,
        "total_tokens": prompt_words + 5,
        "completion_tokens": 5,
        "prompt_tokens_details": None,
        "completion_tokens_details": None,
    }


def test_chat_template_adds_one_token_per_message_plus_one(sim: RunningRuntime) -> None:
    messages = [{"role": "system", "content": words(3)}, {"role": "user", "content": words(10)}]
    body = {"model": SERVED, "messages": messages, "max_tokens": 2}
    usage = httpx.post(sim.url + "/v1/chat/completions", json=body, timeout=30).json()["usage"]
    assert usage["prompt_tokens"] == 13 + 2 * CHAT_TOKENS_PER_MESSAGE + CHAT_TOKENS_PER_CONVERSATION
    counted = httpx.post(sim.url + "/tokenize", json={"model": SERVED, "messages": messages}, timeout=10).json()
    assert counted["count"] == usage["prompt_tokens"]


def test_completion_text_splits_back_into_completion_tokens_words(sim: RunningRuntime) -> None:
    out = httpx.post(
        sim.url + "/v1/completions", json={"model": SERVED, "prompt": "a b", "max_tokens": 37}, timeout=30
    ).json()
    assert len(out["choices"][0]["text"].split()) == out["usage"]["completion_tokens"] == 37


def test_same_request_seed_gives_the_same_words(sim: RunningRuntime) -> None:
    body = {"model": SERVED, "prompt": "a b c", "max_tokens": 12, "seed": 42}
    texts = {httpx.post(sim.url + "/v1/completions", json=body, timeout=30).json()["choices"][0]["text"] for _ in "ab"}
    assert len(texts) == 1
    other = httpx.post(sim.url + "/v1/completions", json={**body, "seed": 43}, timeout=30).json()
    assert other["choices"][0]["text"] not in texts


def test_server_seed_makes_whole_runs_repeatable(tmp_path: Path) -> None:
    def run(tag: str) -> list[str]:
        with start_sim(tmp_path / tag, "--seed", "99") as runtime:
            body = {"model": SERVED, "prompt": "x y", "max_tokens": 6}
            return [
                httpx.post(runtime.url + "/v1/completions", json=body, timeout=30).json()["choices"][0]["text"]
                for _ in range(3)
            ]

    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    assert run("one") == run("two")


def test_chat_without_max_tokens_stops_on_its_own(sim: RunningRuntime) -> None:
    body = {"model": SERVED, "messages": [{"role": "user", "content": "hi"}], "min_tokens": 20}
    out = httpx.post(sim.url + "/v1/chat/completions", json=body, timeout=60).json()
    assert out["choices"][0]["finish_reason"] == "stop"
    assert 20 <= out["usage"]["completion_tokens"] <= 256


def test_max_tokens_is_clamped_to_the_room_left_in_the_context(sim: RunningRuntime) -> None:
    body = {"model": SERVED, "prompt": words(1000), "max_tokens": 100}
    out = httpx.post(sim.url + "/v1/completions", json=body, timeout=60).json()
    assert out["usage"]["completion_tokens"] == 24
    assert out["choices"][0]["finish_reason"] == "length"


def test_client_disconnect_mid_stream_frees_the_sequence_and_its_kv_blocks(sim: RunningRuntime) -> None:
    before = metric(sim.url, "vllm:request_success_total", finished_reason="abort")
    body = {"model": SERVED, "prompt": words(200), "max_tokens": 900, "stream": True}
    with httpx.Client(timeout=30) as client, client.stream("POST", sim.url + "/v1/completions", json=body) as resp:
        lines = resp.iter_lines()
        got = 0
        for line in lines:
            if line.startswith("data: "):
                got += 1
            if got == 3:
                break
        busy = stats(sim.url)
        assert busy["running"] == 1
        assert busy["free_kv_blocks"] < busy["num_kv_blocks"]
    wait_for(lambda: stats(sim.url)["active_requests"] == 0)
    idle = stats(sim.url)
    assert idle["free_kv_blocks"] == idle["num_kv_blocks"]
    assert metric(sim.url, "vllm:request_success_total", finished_reason="abort") == before + 1
    assert metric(sim.url, "vllm:num_requests_running") == 0
    assert metric(sim.url, "vllm:kv_cache_usage_perc") == 0


def test_client_disconnect_on_a_non_streamed_request_aborts_it(sim: RunningRuntime) -> None:
    body = {"model": SERVED, "prompt": words(10), "max_tokens": 900}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(sim.url + "/v1/completions", json=body, timeout=0.3)
    wait_for(lambda: stats(sim.url)["active_requests"] == 0)
    assert stats(sim.url)["free_kv_blocks"] == stats(sim.url)["num_kv_blocks"]


def test_metrics_count_tokens_and_requests(sim: RunningRuntime) -> None:
    prompt_before = metric(sim.url, "vllm:prompt_tokens_total")
    gen_before = metric(sim.url, "vllm:generation_tokens_total")
    ok_before = metric(sim.url, "vllm:request_success_total", finished_reason="length")
    ttft_before = metric(sim.url, "vllm:time_to_first_token_seconds_count")
    body = {"model": SERVED, "prompt": words(30), "max_tokens": 8, "stream": True}
    with httpx.stream("POST", sim.url + "/v1/completions", json=body, timeout=30) as resp:
        chunks = [line for line in resp.iter_lines() if line.startswith("data: {")]
    assert len(chunks) == 8
    assert metric(sim.url, "vllm:prompt_tokens_total") - prompt_before == 30
    assert metric(sim.url, "vllm:generation_tokens_total") - gen_before == 8
    assert metric(sim.url, "vllm:request_success_total", finished_reason="length") - ok_before == 1
    assert metric(sim.url, "vllm:time_to_first_token_seconds_count") - ttft_before == 1
    assert metric(sim.url, "vllm:inter_token_latency_seconds_count") >= 7


def test_schedule_lag_is_measured_and_exposed(sim: RunningRuntime) -> None:
    httpx.post(sim.url + "/v1/completions", json={"model": SERVED, "prompt": "a", "max_tokens": 20}, timeout=30)
    schedule = stats(sim.url)["schedule"]
    assert schedule["steps"] >= 20
    assert schedule["mean_step_s"] > 0
    assert schedule["max_lag_s"] >= schedule["mean_lag_s"] >= 0
    assert metric(sim.url, "bakeoff_sim_schedule_lag_seconds_count") == schedule["steps"]


def test_streams_are_well_formed_sse(sim: RunningRuntime) -> None:
    usage = {"include_usage": True}
    body = {"model": SERVED, "prompt": "a b", "max_tokens": 4, "stream": True, "stream_options": usage}
    with httpx.stream("POST", sim.url + "/v1/completions", json=body, timeout=30) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        raw = resp.read().decode()
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    payloads = [json.loads(e[len("data: ") :]) for e in events[:-1]]
    assert payloads[-1]["usage"]["completion_tokens"] == 4


def test_injected_errors_slow_start_and_stalls(tmp_path: Path) -> None:
    with start_sim(tmp_path, "--fault-error-rate", "1", "--fault-stall-every", "2", "--fault-stall-s", "0.05") as rt:
        out = httpx.post(rt.url + "/v1/completions", json={"model": SERVED, "prompt": "a", "max_tokens": 2}, timeout=30)
        assert out.status_code == 500
        assert out.json()["error"]["type"] == "InternalServerError"
        assert metric(rt.url, "bakeoff_sim_injected_errors_total") == 1
        assert httpx.get(rt.url + "/health", timeout=5).status_code == 200


def test_slow_start_answers_503_then_serves(tmp_path: Path) -> None:
    from bakeoff_runtime.launcher import RuntimeSpec, start

    from tests.sim.conftest import sim_variant

    spec = RuntimeSpec(
        engine="sim", variant=sim_variant(), log_path=tmp_path / "slow.log", sim_args=("--fault-slow-start-s", "1.5")
    )
    with start(spec) as rt:
        wait_for(lambda: rt.url or _url_from_log(rt), timeout=10)
        rt.url = rt.url or _url_from_log(rt)
        wait_for(lambda: _status(rt.url + "/health") == 503, timeout=10)
        body = {"model": SERVED, "prompt": "a", "max_tokens": 1}
        assert httpx.post(rt.url + "/v1/completions", json=body, timeout=10).status_code == 503
        wait_for(lambda: _status(rt.url + "/health") == 200, timeout=10)
        assert httpx.post(rt.url + "/v1/completions", json=body, timeout=10).status_code == 200


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.TransportError:
        return 0


def _url_from_log(rt: RunningRuntime) -> str:
    for line in rt.log_tail().splitlines():
        if line.startswith("http://"):
            return line.strip()
    return ""


def test_hybrid_variant_holds_mamba_state_slots(tmp_path: Path) -> None:
    from tests.sim.conftest import sim_variant

    with start_sim(tmp_path, variant=sim_variant("apriel-h1-h30", gpu="h100")) as rt:
        idle = stats(rt.url)
        assert idle["mamba_state_slots"] is not None
        assert idle["mamba_state_slots"] > 0
        body = {"model": SERVED, "prompt": words(50), "max_tokens": 600, "stream": True}
        with httpx.stream("POST", rt.url + "/v1/completions", json=body, timeout=30) as resp:
            lines = resp.iter_lines()  # held: dropping the iterator closes the connection
            for line in lines:
                if line.startswith("data: "):
                    break
            assert stats(rt.url)["free_mamba_state_slots"] == idle["mamba_state_slots"] - 1
        wait_for(lambda: stats(rt.url)["free_mamba_state_slots"] == idle["mamba_state_slots"])
