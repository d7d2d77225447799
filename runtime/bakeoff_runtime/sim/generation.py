"""Generation: what the engine is asked to generate for one request, and how its tokens come back.

The HTTP layer parses a body and counts its prompt tokens; from there this module checks the
request against the served model's context (with vLLM's error texts), decides how many tokens the
simulated model emits and why it stops, injects faults, submits the sequence, and delivers its
tokens: as one stream of SSE chunks (completions and chat alike) or collected into one text.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus

from bakeoff_runtime.sim import tokens
from bakeoff_runtime.sim.engine import Engine, EngineRequest, make_request
from bakeoff_runtime.sim.metrics import SimMetrics
from bakeoff_runtime.sim.protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    bad_request,
    invalid_parameter,
)
from bakeoff_runtime.sim.responses import DONE, StreamChunks
from bakeoff_runtime.sim.scheduler import FinishReason
from bakeoff_runtime.sim.serving import SimSettings
from bakeoff_runtime.variant import Variant

SamplingRequest = CompletionRequest | ChatCompletionRequest


def check_sampling(body: SamplingRequest) -> None:
    """The sampling knobs' bounds, checked in vLLM 0.32.0's order and worded as it words them."""
    if body.n < 1:
        raise bad_request(f"n must be at least 1, got {body.n}.")
    for name in ("presence_penalty", "frequency_penalty"):
        value = getattr(body, name)
        if value is not None and not -2.0 <= value <= 2.0:
            raise bad_request(f"{name} must be in [-2, 2], got {float(value)}.")
    if body.repetition_penalty is not None and body.repetition_penalty <= 0.0:
        raise bad_request(f"repetition_penalty must be greater than zero, got {float(body.repetition_penalty)}.")
    t = body.temperature
    if t is not None and t < 0.0:
        raise invalid_parameter(f"temperature must be non-negative, got {float(t)}.", "temperature", float(t))
    if t is not None and t > 2.0:
        raise invalid_parameter(f"temperature must be in [0, 2], got {float(t)}.", "temperature", float(t))
    if body.top_p is not None and not 0.0 < body.top_p <= 1.0:
        raise invalid_parameter(f"top_p must be in (0, 1], got {float(body.top_p)}.", "top_p", float(body.top_p))
    if body.top_k is not None and body.top_k < -1:
        raise bad_request(f"top_k must be 0 (disable), or at least 1, got {body.top_k}.")
    if body.min_p is not None and not 0.0 <= body.min_p <= 1.0:
        raise bad_request(f"min_p must be in [0, 1], got {float(body.min_p)}.")


class Generation:
    """Admits requests into one engine and delivers their tokens."""

    def __init__(
        self,
        variant: Variant,
        settings: SimSettings,
        metrics: SimMetrics,
        *,
        engine: Callable[[], Engine],
        new_id: Callable[[], str],
        fingerprint: str,
    ) -> None:
        self.variant = variant
        self.settings = settings
        self.metrics = metrics
        self._engine = engine
        self._new_id = new_id
        self.fingerprint = fingerprint
        self._fault_rng = random.Random(settings.seed ^ 0x5EED)
        self._index = 0

    def submit(self, body: SamplingRequest, prompt_tokens: int, max_tokens: int | None, chat: bool) -> EngineRequest:
        """Check the request against the context, choose its output, and put it in the engine's queue."""
        limit = self.variant.max_model_len
        if prompt_tokens > limit:
            over = limit + 1
            raise invalid_parameter(
                f"This model's maximum context length is {limit} tokens. However, your prompt contains at least "
                f"{over} input tokens, which exceeds this limit even without any output tokens. Please reduce the "
                "length of the input prompt.",
                "input_tokens",
                over,
            )
        check_sampling(body)
        if max_tokens is not None and max_tokens < 1:
            raise invalid_parameter(f"max_tokens must be at least 1, got {max_tokens}.", "max_tokens", max_tokens)
        if body.min_tokens < 0:
            raise invalid_parameter(f"min_tokens must be greater than or equal to 0, got {body.min_tokens}.",
                                    "min_tokens", body.min_tokens)  # fmt: skip
        if max_tokens is not None and body.min_tokens > max_tokens:
            raise bad_request(
                f"min_tokens must be less than or equal to max_tokens={max_tokens}, got {body.min_tokens}."
            )
        if body.n != 1:
            raise bad_request(f"the simulator generates one choice per request (n=1), got n={body.n}", "n")
        room = limit - prompt_tokens
        if room < 1:
            raise invalid_parameter(
                f"This model's maximum context length is {limit} tokens. However, your prompt contains "
                f"{prompt_tokens} input tokens, leaving no room for output tokens. Please reduce the length of the "
                "input prompt.",
                "input_tokens",
                prompt_tokens,
            )
        self._index += 1
        seed = tokens.request_seed(self.settings.seed, self._index, body.seed)
        if max_tokens is not None:
            # The simulated model never emits end-of-sequence before max_tokens (as if ignore_eos were set);
            # vLLM also clamps max_tokens to the room left in the context.
            out_tokens, reason = min(max_tokens, room), FinishReason.LENGTH
        elif body.ignore_eos:
            out_tokens, reason = room, FinishReason.LENGTH
        else:
            natural = random.Random(seed ^ 0xE05).randint(16, 256)
            out_tokens = min(max(natural, body.min_tokens), room)
            reason = FinishReason.STOP if out_tokens == max(natural, body.min_tokens) else FinishReason.LENGTH
        if self._fault_rng.random() < self.settings.faults.error_rate:
            self.metrics.rejected.inc()
            raise APIError(
                "Injected fault: the simulator failed this request on purpose (--fault-error-rate).",
                HTTPStatus.INTERNAL_SERVER_ERROR,
                "InternalServerError",
            )
        request_id = f"{'chatcmpl' if chat else 'cmpl'}-{self._new_id()}"
        er = make_request(request_id, prompt_tokens, out_tokens, reason, seed)
        self._engine().submit(er, max_tokens)
        return er

    async def stream(self, er: EngineRequest, body: SamplingRequest, chat: bool) -> AsyncIterator[bytes]:
        """The request's SSE events: chat's role chunk, one chunk per token, usage if asked, `[DONE]`."""
        opts = body.stream_options
        chunks = StreamChunks(
            er.sim,
            chat=chat,
            model=self.variant.served_model_name,
            fingerprint=self.fingerprint,
            include_usage=bool(opts and opts.include_usage),
            continuous_usage=bool(opts and opts.continuous_usage_stats),
        )
        opening = chunks.opening()
        engine = self._engine()
        try:
            if opening is not None:
                yield opening
            while True:
                await er.event.wait()
                batch = er.take()
                done = er.finished
                # One write per wake-up: when the engine delivers several tokens at once, their events
                # go out together (still one SSE event per token).
                events = []
                for i, (_, text) in enumerate(batch):
                    last = done and i == len(batch) - 1
                    reason = (er.sim.finish_reason or FinishReason.ABORT).value if last else None
                    events.append(chunks.token(text, reason, last))
                if events:
                    yield b"".join(events)
                if done:
                    break
            usage = chunks.usage()
            if usage is not None:
                yield usage
            yield DONE
        finally:
            engine.abort(er)  # the client disconnected mid-stream (or we are done: then a no-op)

    async def collect(self, er: EngineRequest, disconnected: Awaitable[None]) -> str:
        """The request's whole text; like vLLM, a client that hangs up (`disconnected`) aborts it."""
        parts: list[str] = []

        async def gather() -> None:
            while True:
                await er.event.wait()
                parts.extend(t for _, t in er.take())
                if er.finished:
                    return

        waiter = asyncio.ensure_future(gather())
        gone = asyncio.ensure_future(disconnected)
        try:
            await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            gone.cancel()
            self._engine().abort(er)  # a no-op once finished; frees the sequence and its KV blocks otherwise
        return "".join(parts)
