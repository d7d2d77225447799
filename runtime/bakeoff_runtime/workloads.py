"""Workloads as data: prompt and output lengths of the use cases Bakeoff predicts and measures.

The first seven are the quantization study's use cases (Kurtic et al., arXiv 2411.02355); the
reasoning ones are long-output workloads of the kind the Apriel-H1 hybrids target, where the
KV cache, not compute, limits how many sequences a full-attention model can batch.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Workload(BaseModel):
    """A use case: fixed prompt and output lengths per request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63, description="Workload id.")
    prompt_tokens: int = Field(ge=1, le=1_048_576, description="Prompt tokens per request.")
    output_tokens: int = Field(ge=1, le=1_048_576, description="Output tokens per request.")
    description: str = Field(default="", max_length=200, description="What the use case is.")
    reasoning: bool = Field(default=False, description="A long-output reasoning workload.")

    @property
    def context_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(name="code-completion", prompt_tokens=256, output_tokens=1024, description="Code completion"),
        Workload(
            name="instruction-following", prompt_tokens=256, output_tokens=128, description="Instruction following"
        ),
        Workload(name="multi-turn-chat", prompt_tokens=512, output_tokens=256, description="Multi-turn chat"),
        Workload(name="rag", prompt_tokens=1024, output_tokens=128, description="Retrieval-augmented generation"),
        Workload(name="docstring-generation", prompt_tokens=768, output_tokens=128, description="Docstring generation"),
        Workload(name="code-fixing", prompt_tokens=1024, output_tokens=1024, description="Code fixing"),
        Workload(name="summarization", prompt_tokens=4096, output_tokens=512, description="Summarization"),
        Workload(
            name="reasoning",
            prompt_tokens=1024,
            output_tokens=4096,
            description="Reasoning: a short problem, a long chain of thought",
            reasoning=True,
        ),
        Workload(
            name="long-reasoning",
            prompt_tokens=2048,
            output_tokens=16384,
            description="Long reasoning: 16k-token chains of thought",
            reasoning=True,
        ),
    )
}

STUDY_WORKLOADS = [name for name, w in WORKLOADS.items() if not w.reasoning]


class UnknownWorkloadError(KeyError):
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
