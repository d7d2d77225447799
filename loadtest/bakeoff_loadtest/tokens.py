"""Token counters for building prompts of an exact length.

Three sources, best first: a Hugging Face ``tokenizer.json`` read by the ``tokenizers`` library (when
installed), the server's ``/tokenize`` endpoint (vLLM and Bakeoff's simulator expose it), or the
documented approximation of one token per whitespace-separated word (exact for the simulator).
Only the standard library is used for HTTP so this module stays importable anywhere.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Protocol


class TokenCounter(Protocol):
    """Counts the prompt tokens the server will see for a completions prompt."""

    name: str

    def count(self, text: str) -> int: ...


class WordCounter:
    """One token per whitespace-separated word: exact for Bakeoff's simulator, approximate elsewhere."""

    name = "words"

    def count(self, text: str) -> int:
        return len(text.split())


class HFTokenizerCounter:
    """A local ``tokenizer.json`` via the ``tokenizers`` library, special tokens (BOS) included."""

    name = "tokenizer.json"

    def __init__(self, path: str | Path) -> None:
        try:
            from tokenizers import Tokenizer  # type: ignore[import-not-found,unused-ignore]
        except ImportError as e:
            raise ValueError(
                "--tokenizer needs the 'tokenizers' package (pip install tokenizers); "
                "or use --tokenizer server, or leave it out for one token per word"
            ) from e
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"tokenizer file {str(p)!r} does not exist; give the path of a tokenizer.json")
        self._tok: Any = Tokenizer.from_file(str(p))

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=True).ids)


class ServerTokenizeCounter:
    """The server's ``POST /tokenize`` (vLLM's extension of the OpenAI API)."""

    name = "server /tokenize"

    def __init__(self, endpoint: str, model: str, timeout_s: float = 30.0) -> None:
        self.url = endpoint.rstrip("/") + "/tokenize"
        self.model = model
        self.timeout_s = timeout_s

    def count(self, text: str) -> int:
        body = json.dumps({"model": self.model, "prompt": text}).encode()
        req = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                data = json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise ValueError(f"could not count tokens with {self.url}: {e}") from e
        if isinstance(data, dict):
            if isinstance(data.get("count"), int):
                return int(data["count"])
            if isinstance(data.get("tokens"), list):
                return len(data["tokens"])
        raise ValueError(f"{self.url} answered without 'count' or 'tokens': {str(data)[:200]}")


def make_counter(spec: str | None, endpoint: str, model: str) -> TokenCounter:
    """``None``/'words' → words; 'server' → /tokenize; anything else is a tokenizer.json path."""
    if spec is None or spec == "words":
        return WordCounter()
    if spec == "server":
        return ServerTokenizeCounter(endpoint, model)
    return HFTokenizerCounter(spec)
