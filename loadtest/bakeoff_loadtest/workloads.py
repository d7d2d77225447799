"""The requests of a workload: seeded lengths and prompts of an exact token count.

The workloads themselves (the use-case table, custom length distributions) are
:mod:`bakeoff_runtime.workloads`. Pure and seeded: request ``i`` of a workload is a function of
(workload, seed, i) alone, so two variants of a bake-off receive the same prompts in the same order,
and a distributed run splits the request indices between workers without changing what is sent.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal

from bakeoff_runtime.workloads import Workload

from bakeoff_loadtest.tokens import TokenCounter, WordCounter

# Short, frequent English words: each is one token in common BPE vocabularies (with its leading
# space) and exactly one token for Bakeoff's simulator, which counts whitespace-separated words.
_WORDS = (
    "the of and to in is that for it as with was on be at by this have from or one had not but "
    "what all were when we there can an your which their said if do will each about how up out "
    "them then she many some so these would other into has more her two like him see time could "
    "no make than first been its who now people my made over did down only way find use may water "
    "long little very after words called just where most know get through back much before go good "
    "new write our used me man too any day same right look think also around another came come work "
    "three word must because does part even place well such here take why things help put years "
    "different away again off went old number great tell men say small every found still between "
    "name should home big give air line set own under read last never us left end along while might "
    "next sound below saw something thought both few those always looked show large often together"
)
VOCABULARY: tuple[str, ...] = tuple(_WORDS.split(" "))


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    """One request of a workload: its lengths and its prompt (text, or chat messages)."""

    index: int
    prompt_tokens: int
    output_tokens: int
    prompt: str
    messages: tuple[dict[str, str], ...]
    prompt_exact: bool

    def body(self, api: Literal["chat", "completions"], model: str) -> dict[str, Any]:
        """The request body: streaming with usage, fixed output length (ignore_eos)."""
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": self.output_tokens,
            "ignore_eos": True,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if api == "chat":
            body["messages"] = list(self.messages)
        else:
            body["prompt"] = self.prompt
        return body


class PromptFactory:
    """Builds prompts of an exact token count when the counter is exact, else of that many words."""

    def __init__(self, counter: TokenCounter | None = None, max_adjustments: int = 8) -> None:
        self.counter: TokenCounter = counter if counter is not None else WordCounter()
        self.max_adjustments = max_adjustments
        self._overhead: int | None = None
        self._linear: bool | None = None

    def calibrate(self) -> None:
        """Measure the tokenizer's fixed overhead (e.g. a BOS token) and whether words are 1 token."""
        probe = list(VOCABULARY)
        one = self.counter.count(probe[0])
        self._overhead = max(0, one - 1)
        n = self.counter.count(" ".join(probe))
        self._linear = n - self._overhead == len(probe)

    @property
    def linear(self) -> bool:
        if self._linear is None:
            self.calibrate()
        return bool(self._linear)

    def build(self, target: int, rng: random.Random) -> tuple[str, bool]:
        """A prompt of ``target`` tokens; the flag says whether the count was verified exactly."""
        if self._overhead is None:
            self.calibrate()
        overhead = self._overhead or 0
        words = rng.choices(VOCABULARY, k=max(1, target - overhead))
        if isinstance(self.counter, WordCounter) or self._linear:
            # The probe showed one token per word: the count is exact without asking again.
            return " ".join(words), len(words) + overhead == target
        for _ in range(self.max_adjustments):
            n = self.counter.count(" ".join(words))
            if n == target:
                return " ".join(words), True
            diff = target - n
            if diff > 0:
                words.extend(rng.choices(VOCABULARY, k=diff))
            elif len(words) > 1:
                del words[max(1, len(words) + diff) :]
            else:
                break
        return " ".join(words), self.counter.count(" ".join(words)) == target


class WorkloadSampler:
    """Request ``i`` of a workload, deterministic in (seed, i)."""

    def __init__(self, workload: Workload, seed: int, prompts: PromptFactory | None = None) -> None:
        self.workload = workload
        self.seed = seed
        self.prompts = prompts if prompts is not None else PromptFactory()

    def request(self, index: int) -> PlannedRequest:
        rng = random.Random(f"{self.workload.name}:{self.seed}:{index}")
        n_prompt = self.workload.prompt.sample(rng)
        n_out = self.workload.output.sample(rng)
        text, exact = self.prompts.build(n_prompt, rng)
        return PlannedRequest(
            index=index,
            prompt_tokens=n_prompt,
            output_tokens=n_out,
            prompt=text,
            messages=_split_turns(text, self.workload.chat_turns),
            prompt_exact=exact,
        )


def _split_turns(text: str, turns: int) -> tuple[dict[str, str], ...]:
    """Split a prompt into alternating user/assistant turns ending with the user's, same words."""
    if turns <= 1:
        return ({"role": "user", "content": text},)
    words = text.split(" ")
    turns = min(turns if turns % 2 == 1 else turns + 1, max(1, len(words)))
    size, extra = divmod(len(words), turns)
    out: list[dict[str, str]] = []
    pos = 0
    for k in range(turns):
        n = size + (1 if k < extra else 0)
        out.append({"role": "user" if k % 2 == 0 else "assistant", "content": " ".join(words[pos : pos + n])})
        pos += n
    return tuple(out)
