"""Workloads as data: the one table of use cases, the one workload model and the one load-mode vocabulary.

The performance model prices a workload's mean lengths, the load harness samples its length
distributions, and the API's `useCase` names its rows; all three read this module. It is pure data
(pydantic and the standard library), which is why the load harness may import it: see the
import-linter contracts in `pyproject.toml`.

The first seven use cases are the quantization study's (Kurtic et al., arXiv 2411.02355); the two
reasoning ones are long-output workloads of the kind the Apriel-H1 hybrids target, where the KV
cache, not compute, limits how many sequences a full-attention model can batch.
"""

from __future__ import annotations

import random
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_TOKENS: Final = 1_048_576
NAME_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


# --- lengths ------------------------------------------------------------------------------------------
class LengthKind(StrEnum):
    FIXED = "fixed"
    UNIFORM = "uniform"
    NORMAL = "normal"


class LengthDistribution(BaseModel):
    """Tokens per request: fixed, uniform in [min, max], or normal(mean, std) clipped to [min, max]."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: LengthKind = Field(default=LengthKind.FIXED, description="fixed, uniform or normal.")
    mean: int = Field(ge=1, le=MAX_TOKENS, description="Tokens per request (the centre).")
    std: float = Field(default=0.0, ge=0, le=MAX_TOKENS, description="Standard deviation (normal only).")
    min: int | None = Field(default=None, ge=1, le=MAX_TOKENS, description="Lower bound (default 1; fixed: mean).")
    max: int | None = Field(
        default=None, ge=1, le=MAX_TOKENS, description="Upper bound (default 2 x mean; fixed: mean)."
    )

    @model_validator(mode="after")
    def _bounds(self) -> LengthDistribution:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        if not self.lower <= self.mean <= self.upper:
            raise ValueError(f"mean ({self.mean}) must lie within [min, max] = [{self.lower}, {self.upper}]")
        if self.kind is LengthKind.NORMAL and self.std <= 0:
            raise ValueError("a normal distribution needs std > 0; use kind fixed for a constant length")
        return self

    @classmethod
    def around(cls, mean: int, kind: LengthKind = LengthKind.FIXED, spread: float = 0.2) -> LengthDistribution:
        """``mean`` tokens, fixed or spread: ``spread`` is the relative half-width (uniform) or the
        relative std (normal), clipped to [mean x (1 - 2 spread), mean x (1 + 2 spread)]."""
        if not 0.0 <= spread < 0.5:
            raise ValueError(f"spread must be in [0, 0.5), got {spread}")
        if kind is LengthKind.FIXED or spread == 0:
            return cls(mean=mean)
        if kind is LengthKind.UNIFORM:
            half = max(1, round(mean * spread))
            return cls(kind=kind, mean=mean, min=max(1, mean - half), max=mean + half)
        return cls(
            kind=kind,
            mean=mean,
            std=mean * spread,
            min=max(1, round(mean * (1 - 2 * spread))),
            max=round(mean * (1 + 2 * spread)),
        )

    @property
    def lower(self) -> int:
        return self.min if self.min is not None else (self.mean if self.kind is LengthKind.FIXED else 1)

    @property
    def upper(self) -> int:
        return self.max if self.max is not None else (self.mean if self.kind is LengthKind.FIXED else 2 * self.mean)

    def sample(self, rng: random.Random) -> int:
        if self.kind is LengthKind.FIXED:
            return self.mean
        if self.kind is LengthKind.UNIFORM:
            return rng.randint(self.lower, self.upper)
        return max(self.lower, min(self.upper, round(rng.gauss(self.mean, self.std))))


# --- workloads ----------------------------------------------------------------------------------------
class Workload(BaseModel):
    """What each request asks for: prompt and output length distributions, and chat turns.

    The performance model prices the mean lengths (`prompt_tokens`, `output_tokens`); the load
    harness samples the distributions.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=63, pattern=NAME_PATTERN, description="Workload id, kebab-case.")
    prompt: LengthDistribution = Field(description="Prompt length in tokens.")
    output: LengthDistribution = Field(description="Output length in tokens (max_tokens, ignore_eos).")
    chat_turns: int = Field(default=1, ge=1, le=16, description="Chat messages the prompt is split into.")
    description: str = Field(default="", max_length=200, description="What the use case is.")
    reasoning: bool = Field(default=False, description="A long-output reasoning workload.")

    @classmethod
    def fixed(cls, name: str, prompt_tokens: int, output_tokens: int, **extra: object) -> Workload:
        """A workload of fixed lengths, as the quantization study's use cases are."""
        return cls.model_validate(
            {
                "name": name,
                "prompt": LengthDistribution(mean=prompt_tokens),
                "output": LengthDistribution(mean=output_tokens),
                **extra,
            }
        )

    @property
    def prompt_tokens(self) -> int:
        """Mean prompt tokens per request: what the performance model prices."""
        return self.prompt.mean

    @property
    def output_tokens(self) -> int:
        """Mean output tokens per request: what the performance model prices."""
        return self.output.mean

    @property
    def context_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens


class UseCase(StrEnum):
    """The named workloads, by kebab-case id: the quantization study's seven, then two reasoning ones."""

    CODE_COMPLETION = "code-completion"
    INSTRUCTION_FOLLOWING = "instruction-following"
    MULTI_TURN_CHAT = "multi-turn-chat"
    RAG = "rag"
    DOCSTRING_GENERATION = "docstring-generation"
    CODE_FIXING = "code-fixing"
    SUMMARIZATION = "summarization"
    REASONING = "reasoning"
    LONG_REASONING = "long-reasoning"


def _row(case: UseCase, prompt: int, output: int, description: str, **extra: object) -> tuple[str, Workload]:
    return case.value, Workload.fixed(case.value, prompt, output, description=description, **extra)


# The one table: (prompt tokens, output tokens) as published; the study's workloads are fixed lengths.
WORKLOADS: Final[dict[str, Workload]] = dict(
    (
        _row(UseCase.CODE_COMPLETION, 256, 1024, "Code completion"),
        _row(UseCase.INSTRUCTION_FOLLOWING, 256, 128, "Instruction following"),
        _row(UseCase.MULTI_TURN_CHAT, 512, 256, "Multi-turn chat", chat_turns=3),
        _row(UseCase.RAG, 1024, 128, "Retrieval-augmented generation"),
        _row(UseCase.DOCSTRING_GENERATION, 768, 128, "Docstring generation"),
        _row(UseCase.CODE_FIXING, 1024, 1024, "Code fixing"),
        _row(UseCase.SUMMARIZATION, 4096, 512, "Summarization"),
        _row(UseCase.REASONING, 1024, 4096, "Reasoning: a short problem, a long chain of thought", reasoning=True),
        _row(UseCase.LONG_REASONING, 2048, 16384, "Long reasoning: 16k-token chains of thought", reasoning=True),
    )
)

STUDY_WORKLOADS: Final = [name for name, w in WORKLOADS.items() if not w.reasoning]


class UnknownWorkloadError(KeyError, ValueError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)

    def __str__(self) -> str:
        return f"unknown workload {self.name!r}; valid workloads: {', '.join(sorted(WORKLOADS))}"


def get_workload(name: str) -> Workload:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise UnknownWorkloadError(name) from None


def use_case_workload(name: str, *, kind: LengthKind = LengthKind.FIXED, spread: float = 0.2) -> Workload:
    """The use case ``name``; ``kind`` and ``spread`` turn its fixed lengths into distributions
    (see `LengthDistribution.around`)."""
    base = get_workload(name)
    if kind is LengthKind.FIXED:
        return base
    prompt = LengthDistribution.around(base.prompt_tokens, kind, spread)
    output = LengthDistribution.around(base.output_tokens, kind, spread)
    return Workload.model_validate({**dict(base), "prompt": prompt, "output": output})


# --- load modes ---------------------------------------------------------------------------------------
class PredictionMode(StrEnum):
    """How the performance model prices a variant: one request at a time (sync), or continuous
    batching at saturation (async)."""

    SYNC = "sync"
    ASYNC = "async"


class LoadMode(StrEnum):
    """How a load run drives a variant; the API's `load.mode` and the harness's `--mode`.

    sync: one stream at a time, back to back (latency); concurrency-sweep: closed-loop streams, one
    load point per concurrency; rate-sweep: open-loop arrivals, one load point per offered rate.
    """

    SYNC = "sync"
    CONCURRENCY_SWEEP = "concurrency-sweep"
    RATE_SWEEP = "rate-sweep"

    @property
    def open_loop(self) -> bool:
        """Arrivals follow a schedule whatever the responses do."""
        return self is LoadMode.RATE_SWEEP

    @property
    def prediction_mode(self) -> PredictionMode:
        """The regime the performance model prices this load in."""
        return PredictionMode.SYNC if self is LoadMode.SYNC else PredictionMode.ASYNC
