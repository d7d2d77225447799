"""Workloads: the published use cases, seeded distributions and prompts of an exact token count."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from bakeoff_loadtest.schedule import arrival_offsets, share
from bakeoff_loadtest.tokens import ServerTokenizeCounter, WordCounter, make_counter
from bakeoff_loadtest.workloads import VOCABULARY, PromptFactory, WorkloadSampler
from bakeoff_runtime.workloads import (
    STUDY_WORKLOADS,
    WORKLOADS,
    LengthDistribution,
    LengthKind,
    UseCase,
    Workload,
    use_case_workload,
)
from pydantic import ValidationError

RefServer = Any  # the fixture type lives in conftest.py


@pytest.mark.parametrize(
    ("name", "prompt", "output"),
    [
        ("code-completion", 256, 1024),
        ("instruction-following", 256, 128),
        ("multi-turn-chat", 512, 256),
        ("rag", 1024, 128),
        ("docstring-generation", 768, 128),
        ("code-fixing", 1024, 1024),
        ("summarization", 4096, 512),
        ("reasoning", 1024, 4096),
        ("long-reasoning", 2048, 16384),
    ],
)
def test_use_cases_match_the_quantization_study(name: str, prompt: int, output: int) -> None:
    wl = use_case_workload(name)
    assert (wl.prompt_tokens, wl.output_tokens) == (prompt, output)
    req = WorkloadSampler(wl, seed=1).request(0)
    assert req.prompt_tokens == prompt
    assert req.output_tokens == output
    assert len(req.prompt.split()) == prompt  # the simulator counts one token per word
    assert req.prompt_exact


def test_one_table_names_every_use_case() -> None:
    assert list(WORKLOADS) == [u.value for u in UseCase]
    assert len(STUDY_WORKLOADS) == 7  # the quantization study's; the other two are the reasoning ones
    assert {n for n, w in WORKLOADS.items() if w.reasoning} == {"reasoning", "long-reasoning"}


def test_requests_are_deterministic_in_seed_and_index() -> None:
    wl = use_case_workload("rag", kind=LengthKind.NORMAL, spread=0.2)
    a, b, c = WorkloadSampler(wl, 7), WorkloadSampler(wl, 7), WorkloadSampler(wl, 8)
    assert a.request(3) == b.request(3)
    assert a.request(3) != a.request(4)
    assert a.request(3).prompt != c.request(3).prompt


@pytest.mark.parametrize("kind", ["uniform", "normal"])
def test_distributions_stay_in_bounds_and_centre(kind: str) -> None:
    wl = use_case_workload("multi-turn-chat", kind=LengthKind(kind), spread=0.2)
    rng = random.Random(0)
    xs = [wl.output.sample(rng) for _ in range(4000)]
    assert min(xs) >= wl.output.lower
    assert max(xs) <= wl.output.upper
    assert sum(xs) / len(xs) == pytest.approx(256, rel=0.02)
    assert len(set(xs)) > 20


def test_bad_workloads_name_the_fix() -> None:
    with pytest.raises(ValueError, match=r"unknown workload 'chatbot'.*summarization"):
        use_case_workload("chatbot")
    with pytest.raises(ValidationError, match="must lie within"):
        LengthDistribution(kind="uniform", mean=10, min=20, max=30)
    with pytest.raises(ValidationError, match="std > 0"):
        LengthDistribution(kind="normal", mean=10)
    with pytest.raises(ValidationError):
        Workload(name="Not Kebab", prompt=LengthDistribution(mean=1), output=LengthDistribution(mean=1))


def test_multi_turn_chat_splits_the_same_words_into_turns() -> None:
    req = WorkloadSampler(use_case_workload("multi-turn-chat"), 0).request(0)
    assert [m["role"] for m in req.messages] == ["user", "assistant", "user"]
    assert sum(len(m["content"].split()) for m in req.messages) == 512
    body = req.body("chat", "m")
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["ignore_eos"] is True
    assert body["max_tokens"] == 256
    assert "prompt" in req.body("completions", "m")


class _BosAndSplitCounter:
    """A tokenizer with a BOS token that splits every word longer than 4 letters in two."""

    name = "fake"

    def count(self, text: str) -> int:
        return 1 + sum(2 if len(w) > 4 else 1 for w in text.split())


@pytest.mark.parametrize("target", [1, 2, 17, 256, 1000])
def test_prompts_reach_an_exact_count_with_a_nonlinear_tokenizer(target: int) -> None:
    factory = PromptFactory(_BosAndSplitCounter())
    assert not factory.linear
    text, exact = factory.build(target, random.Random(target))
    counted = _BosAndSplitCounter().count(text)
    if target >= 2:
        assert exact
        assert counted == target
    else:
        assert counted == 2
        assert not exact


def test_vocabulary_is_one_token_per_word_for_the_simulator() -> None:
    assert WordCounter().count(" ".join(VOCABULARY)) == len(VOCABULARY)
    assert len(set(VOCABULARY)) == len(VOCABULARY)


def test_server_tokenize_counter(refserver: RefServer) -> None:
    counter = make_counter("server", refserver.url, "ref")
    assert isinstance(counter, ServerTokenizeCounter)
    assert counter.count("a b c d") == 4
    req = WorkloadSampler(use_case_workload("rag"), 0, PromptFactory(counter)).request(5)
    assert counter.count(req.prompt) == 1024
    assert req.prompt_exact


def test_unreachable_tokenize_endpoint_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"could not count tokens with http://127.0.0.1:1/tokenize"):
        ServerTokenizeCounter("http://127.0.0.1:1", "m", timeout_s=2).count("a")


def test_missing_tokenizer_file_is_a_clear_error(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="tokenizer"):
        make_counter("/nonexistent/tokenizer.json", "http://x", "m")


def test_constant_arrivals_merge_evenly_across_workers() -> None:
    merged = sorted(
        t
        for w in range(3)
        for t, _ in zip(arrival_offsets(10.0, "constant", 0, worker=w, workers=3), range(10), strict=False)
    )
    assert merged[:6] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])


def test_poisson_arrivals_have_the_offered_rate_and_exponential_gaps() -> None:
    gen = arrival_offsets(50.0, "poisson", seed=3)
    ts = [next(gen) for _ in range(20000)]
    assert len(ts) / ts[-1] == pytest.approx(50.0, rel=0.03)
    gaps = [b - a for a, b in itertools.pairwise(ts)]
    mean = sum(gaps) / len(gaps)
    var = sum((g - mean) ** 2 for g in gaps) / len(gaps)
    assert var**0.5 / mean == pytest.approx(1.0, rel=0.05)  # exponential: coefficient of variation 1
    assert next(arrival_offsets(50.0, "poisson", seed=3)) == ts[0]


def test_shares_split_a_budget_evenly() -> None:
    assert [share(10, w, 3) for w in range(3)] == [4, 3, 3]
    with pytest.raises(ValueError, match="rate must be > 0"):
        next(arrival_offsets(0, "poisson", 0))
