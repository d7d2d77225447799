"""The simulator's tokenizer, chat template and text generator.

Token counts are what a load test controls, so they are exact and easy to produce:

- A prompt has exactly one token per whitespace-separated word (`str.split()`); a prompt of N words
  is N prompt tokens, and the real-vLLM test models use the same rule (a word-level tokenizer that
  splits on whitespace only).
- The chat template renders each message as `<|role|> content` and ends with `<|assistant|>`:
  it adds exactly one token per message plus one (`CHAT_TOKENS_PER_MESSAGE`,
  `CHAT_TOKENS_PER_CONVERSATION`).
- Generated text is words drawn from a fixed vocabulary by a seeded RNG; every token's text is
  one space plus one word, so the completion text splits back into exactly `completion_tokens`
  words.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence

# Pseudo-words built from syllables: readable in logs, stable across Python versions.
_SYLLABLES = (
    "ba", "ko", "mi", "tu", "ne", "ra", "so", "li", "de", "va",
    "gu", "pe", "zo", "ha", "fi", "wu", "ca", "jo", "xe", "ny",
)  # fmt: skip

VOCAB_SIZE = 4096  # ids 0..7 are reserved for special tokens
SPECIAL_TOKENS = ("<unk>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>", "<pad>", "<bos>")
UNK_ID = 0
CHAT_TOKENS_PER_MESSAGE = 1
CHAT_TOKENS_PER_CONVERSATION = 1  # the `<|assistant|>` generation prompt


def _make_vocab() -> tuple[str, ...]:
    words: list[str] = list(SPECIAL_TOKENS)
    n = len(_SYLLABLES)
    i = 0
    while len(words) < VOCAB_SIZE:
        a, b, c = i % n, (i // n) % n, (i // (n * n)) % n
        words.append(_SYLLABLES[a] + _SYLLABLES[b] + (_SYLLABLES[c] if i >= n * n else ""))
        i += 1
    return tuple(words)


VOCAB: tuple[str, ...] = _make_vocab()
_WORD_IDS: dict[str, int] = {w: i for i, w in enumerate(VOCAB)}
GENERATABLE_FIRST_ID = len(SPECIAL_TOKENS)


def count_tokens(text: str) -> int:
    """Tokens in `text`: one per whitespace-separated word."""
    return len(text.split())


def token_id(word: str) -> int:
    """Id of one word: its vocabulary id, else `<unk>` (as the test models' word-level tokenizer does)."""
    return _WORD_IDS.get(word, UNK_ID)


def encode(text: str) -> list[int]:
    return [token_id(w) for w in text.split()]


def decode(ids: Sequence[int]) -> str:
    """Words for ids (an id outside the vocabulary raises IndexError; callers validate first)."""
    return " ".join(VOCAB[i] for i in ids)


def render_chat(messages: Sequence[tuple[str, str]], add_generation_prompt: bool = True) -> str:
    """The simulator's chat template: `<|role|> content` per message, then `<|assistant|>`."""
    parts = [f"<|{role}|> {content}" for role, content in messages]
    if add_generation_prompt:
        parts.append("<|assistant|>")
    return " ".join(parts)


class TextGenerator:
    """Deterministic output words: the same seed gives the same words."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def next_token(self) -> tuple[int, str]:
        tid = self._rng.randrange(GENERATABLE_FIRST_ID, VOCAB_SIZE)
        return tid, " " + VOCAB[tid]

    def natural_length(self, low: int = 16, high: int = 256) -> int:
        """Output length when the request sets no `max_tokens`: where the simulated model stops."""
        return self._rng.randint(low, high)


def request_seed(server_seed: int, request_index: int, request_seed_field: int | None) -> int:
    """Per-request RNG seed: the request's own `seed` wins; else server seed and arrival order."""
    if request_seed_field is not None:
        return zlib.crc32(f"request:{request_seed_field}".encode())
    return zlib.crc32(f"{server_seed}#{request_index}".encode())
