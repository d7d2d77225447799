"""One streamed request, measured: the raw timings every statistic is computed from.

Pure: no Locust, no HTTP. The Locust user fills a :class:`StreamTimer` as bytes arrive; the
statistics read the finished :class:`RequestRecord`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class FailureCause(StrEnum):
    """Why a request did not count as a success."""

    CONNECTION = "connection"
    HTTP_STATUS = "http_status"
    NOT_SSE = "not_sse"
    NO_USAGE = "no_usage"
    TRUNCATED = "truncated"
    STREAM_ERROR = "stream_error"
    BAD_CHUNK = "bad_chunk"
    NO_CONTENT = "no_content"
    TIMEOUT = "timeout"
    CLIENT_ERROR = "client_error"
    CANCELLED = "cancelled"


@dataclass(slots=True)
class RequestRecord:
    """The measured facts of one request; times in seconds from the monotonic clock."""

    index: int
    worker: int
    start_unix: float
    requested_prompt_tokens: int
    requested_output_tokens: int
    ok: bool = False
    cause: FailureCause | None = None
    detail: str = ""
    status_code: int = 0
    ttft_s: float | None = None
    e2e_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    output_tokens: int | None = None
    prompt_tokens: int | None = None
    content_chunks: int = 0

    @property
    def tpot_s(self) -> float | None:
        """(E2E - TTFT) / (output tokens - 1); undefined below two output tokens."""
        if self.ttft_s is None or self.e2e_s is None or self.output_tokens is None:
            return None
        if self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)

    def to_wire(self) -> dict[str, Any]:
        """A msgpack/JSON-friendly dict, for workers reporting to the master."""
        return {
            "i": self.index,
            "w": self.worker,
            "t0": self.start_unix,
            "rp": self.requested_prompt_tokens,
            "ro": self.requested_output_tokens,
            "ok": self.ok,
            "c": None if self.cause is None else str(self.cause),
            "d": self.detail,
            "s": self.status_code,
            "ttft": self.ttft_s,
            "e2e": self.e2e_s,
            "itl": self.itl_s,
            "out": self.output_tokens,
            "inp": self.prompt_tokens,
            "ch": self.content_chunks,
        }

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> RequestRecord:
        return cls(
            index=int(d["i"]),
            worker=int(d["w"]),
            start_unix=float(d["t0"]),
            requested_prompt_tokens=int(d["rp"]),
            requested_output_tokens=int(d["ro"]),
            ok=bool(d["ok"]),
            cause=None if d["c"] is None else FailureCause(d["c"]),
            detail=str(d["d"]),
            status_code=int(d["s"]),
            ttft_s=d["ttft"],
            e2e_s=d["e2e"],
            itl_s=[float(x) for x in d["itl"]],
            output_tokens=d["out"],
            prompt_tokens=d["inp"],
            content_chunks=int(d["ch"]),
        )


def _chunk_text(chunk: dict[str, Any]) -> str:
    """The content text of one streamed chunk of either API ('' when none)."""
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices:
        return ""
    first = choices[0]
    if not isinstance(first, dict):
        return ""
    delta = first.get("delta")
    if isinstance(delta, dict):
        parts = [delta.get("content"), delta.get("reasoning_content"), delta.get("reasoning")]
        return "".join(p for p in parts if isinstance(p, str))
    text = first.get("text")
    return text if isinstance(text, str) else ""


class StreamTimer:
    """Turns the lines of an OpenAI-style SSE stream, each with its arrival time, into a record.

    Feed every line (without its newline) with the perf_counter reading taken when it was read;
    call :meth:`finish` when the connection ends. Events are dispatched on their blank line, but are
    timed by the arrival of their first ``data:`` line.
    """

    __slots__ = ("_data", "_data_t", "_done", "_last_t", "_record", "_start", "_usage_seen")

    def __init__(self, record: RequestRecord, start: float) -> None:
        self._record = record
        self._start = start
        self._data: list[str] = []
        self._data_t = 0.0
        self._last_t: float | None = None
        self._done = False
        self._usage_seen = False

    @property
    def failed(self) -> bool:
        return self._record.cause is not None

    def feed_line(self, line: str, t: float) -> None:
        if self._record.cause is not None:
            return
        if not line:
            self._dispatch()
            return
        if line.startswith(":"):
            return  # SSE comment, used as keep-alive by some servers
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            if not self._data:
                self._data_t = t
            self._data.append(value)
        # other fields (event:, id:, retry:) carry nothing the measurement needs

    def _fail(self, cause: FailureCause, detail: str) -> None:
        if self._record.cause is None:
            self._record.cause = cause
            self._record.detail = detail[:300]

    def _dispatch(self) -> None:
        if not self._data:
            return
        payload = "\n".join(self._data)
        t = self._data_t
        self._data = []
        if self._done:
            return
        if payload.strip() == "[DONE]":
            self._done = True
            return
        try:
            chunk = json.loads(payload)
        except ValueError:
            self._fail(FailureCause.BAD_CHUNK, f"chunk is not JSON: {payload[:80]!r}")
            return
        if not isinstance(chunk, dict):
            self._fail(FailureCause.BAD_CHUNK, f"chunk is not a JSON object: {payload[:80]!r}")
            return
        if "error" in chunk:
            self._fail(FailureCause.STREAM_ERROR, f"server sent an error event: {chunk['error']}")
            return
        if _chunk_text(chunk):
            rec = self._record
            if self._last_t is None:
                rec.ttft_s = t - self._start
            else:
                rec.itl_s.append(t - self._last_t)
            self._last_t = t
            rec.content_chunks += 1
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            out = usage.get("completion_tokens")
            inp = usage.get("prompt_tokens")
            if isinstance(out, int) and isinstance(inp, int):
                self._record.output_tokens = out
                self._record.prompt_tokens = inp
                self._usage_seen = True

    def finish(self, t: float) -> RequestRecord:
        """Close the stream at time ``t`` and decide success or the failure cause."""
        self._dispatch()
        rec = self._record
        rec.e2e_s = t - self._start
        if rec.cause is None:
            if not self._done:
                why = f" ({rec.detail})" if rec.detail else ""
                self._fail(FailureCause.TRUNCATED, f"stream ended before 'data: [DONE]'{why}")
            elif not self._usage_seen:
                self._fail(
                    FailureCause.NO_USAGE,
                    "stream had no usage chunk; the server must honour stream_options.include_usage",
                )
            elif rec.content_chunks == 0:
                self._fail(FailureCause.NO_CONTENT, "stream carried no content tokens")
        rec.ok = rec.cause is None
        return rec
