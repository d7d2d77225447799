"""The simulator's HTTP server: vLLM 0.32.0's OpenAI-compatible API on a Starlette app.

Routes: `/v1/models`, `/v1/completions`, `/v1/chat/completions` (JSON or SSE streams, with
`stream_options.include_usage`), `/tokenize`, `/detokenize`, `/health`, `/version`, `/metrics`,
and the simulator's own `/sim/stats` (engine state and schedule lag). Response bodies, chunk fields,
error bodies and status codes copy what vLLM 0.32.0 returns (see docs/simulator.md); the
conformance suite runs the same checks against both.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from http import HTTPStatus
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bakeoff_runtime.memory import plan_memory
from bakeoff_runtime.perf import PerformanceModel, StepShape
from bakeoff_runtime.sim import tokens
from bakeoff_runtime.sim.engine import Engine, EngineRequest, Faults, StepTimeFn, make_request
from bakeoff_runtime.sim.metrics import VLLM_VERSION, SimMetrics
from bakeoff_runtime.sim.protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
    bad_request,
    invalid_parameter,
    parse_body,
)
from bakeoff_runtime.sim.scheduler import FinishReason, SchedulerLimits, StepCounts
from bakeoff_runtime.variant import Variant

JSON_SEPARATORS = (",", ":")


class SimSettings(BaseModel):
    """How one simulator process serves its variant (beyond the variant's own knobs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_root: str = Field(default="", max_length=1024, description="What `/v1/models` reports as `root`.")
    seed: int = Field(default=0, ge=0, le=2**63 - 1, description="Seed for generated words, ids and faults.")
    faults: Faults = Field(default_factory=Faults, description="Fault injection.")


def performance_step_time(variant: Variant) -> StepTimeFn:
    """The performance model's step time for `variant`, as the engine's step-time function."""
    model = PerformanceModel(variant)

    def step_time(counts: StepCounts) -> float:
        return model.step_time(
            StepShape(
                prefill_tokens=counts.prefill_tokens,
                prefill_attention_pairs=counts.prefill_attention_pairs,
                decode_sequences=counts.decode_sequences,
                decode_context_tokens=counts.decode_context_tokens,
            )
        )

    return step_time


def scheduler_limits(variant: Variant) -> SchedulerLimits:
    """KV blocks and Mamba state slots from the memory plan; raises ValueError when it does not fit."""
    plan = plan_memory(variant)
    if not plan.fits or plan.num_kv_blocks <= 0:
        raise ValueError(f"variant {variant.name} does not fit on {variant.gpu.name}: {plan.reason}")
    return SchedulerLimits(
        max_num_seqs=variant.max_num_seqs,
        max_num_batched_tokens=variant.max_num_batched_tokens,
        num_kv_blocks=plan.num_kv_blocks,
        block_size=variant.block_size,
        mamba_state_slots=plan.mamba_state_slots if variant.is_hybrid else None,
        max_model_len=variant.max_model_len,
    )


def cache_config_labels(variant: Variant, limits: SchedulerLimits) -> dict[str, str]:
    """The `vllm:cache_config_info` labels the simulator can state truthfully (a subset of vLLM's)."""
    return {
        "block_size": str(limits.block_size),
        "cache_dtype": variant.kv_cache_dtype.value,
        "enable_prefix_caching": "False",
        "gpu_memory_utilization": str(variant.gpu_memory_utilization),
        "num_gpu_blocks": str(limits.num_kv_blocks),
        "kv_cache_size_tokens": str(limits.num_kv_blocks * limits.block_size),
        "mamba_ssm_cache_dtype": variant.resolved_mamba_ssm_cache_dtype if variant.is_hybrid else "auto",
    }


class Simulator:
    """One variant on one GPU class behind vLLM's API."""

    def __init__(
        self,
        variant: Variant,
        settings: SimSettings | None = None,
        step_time: StepTimeFn | None = None,
        limits: SchedulerLimits | None = None,
    ) -> None:
        self.variant = variant
        self.settings = settings or SimSettings()
        self.limits = limits or scheduler_limits(variant)
        self.metrics = SimMetrics(
            variant.served_model_name, variant.max_model_len, cache_config_labels(variant, self.limits)
        )
        self._step_time = step_time or performance_step_time(variant)
        self.engine: Engine | None = None
        self._rng = random.Random(self.settings.seed)
        self._fault_rng = random.Random(self.settings.seed ^ 0x5EED)
        self._index = 0
        digest = hashlib.sha256(variant.model_dump_json().encode()).hexdigest()[:8]
        self.fingerprint = f"vllm-{VLLM_VERSION}-{digest}"
        self.app = Starlette(
            routes=[
                Route("/health", self.health, methods=["GET"]),
                Route("/version", self.version, methods=["GET"]),
                Route("/metrics", self.metrics_endpoint, methods=["GET"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
                Route("/tokenize", self.tokenize, methods=["POST"]),
                Route("/detokenize", self.detokenize, methods=["POST"]),
                Route("/sim/stats", self.sim_stats, methods=["GET"]),
            ],
            exception_handlers={HTTPException: _http_exception, APIError: _api_error},
            lifespan=self._lifespan,
        )

    # --- lifecycle --------------------------------------------------------------------------------
    def _lifespan(self, app: Starlette) -> Any:
        sim = self

        class _Lifespan:
            async def __aenter__(self) -> None:
                sim.start()

            async def __aexit__(self, *exc: object) -> None:
                await sim.stop()

        return _Lifespan()

    def start(self) -> None:
        if self.engine is None:
            self.engine = Engine(self.limits, self._step_time, self.metrics, self.settings.faults)
        self.engine.start()

    async def stop(self) -> None:
        if self.engine is not None:
            await self.engine.stop()

    @property
    def _engine(self) -> Engine:
        if self.engine is None:
            self.start()
        assert self.engine is not None
        return self.engine

    # --- small endpoints ----------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        return Response(status_code=200 if self._engine.ready else 503)

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": VLLM_VERSION})

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def sim_stats(self, request: Request) -> Response:
        stats = self._engine.stats()
        if request.query_params.get("lags"):
            stats["recent_lags_s"] = list(self._engine.lag.recent)
        return JSONResponse(stats)

    async def models(self, request: Request) -> Response:
        created = int(time.time())
        name = self.variant.served_model_name
        card = {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "vllm",
            "root": self.settings.model_root or self.variant.model,
            "parent": None,
            "max_model_len": self.variant.max_model_len,
            "permission": [
                {
                    "id": f"modelperm-{self._hex()}",
                    "object": "model_permission",
                    "created": created,
                    "allow_create_engine": False,
                    "allow_sampling": True,
                    "allow_logprobs": True,
                    "allow_search_indices": False,
                    "allow_view": True,
                    "allow_fine_tuning": False,
                    "organization": "*",
                    "group": None,
                    "is_blocking": False,
                }
            ],
        }
        return JSONResponse({"object": "list", "data": [card]})

    async def tokenize(self, request: Request) -> Response:
        body = parse_body(await request.body(), TokenizeRequest)
        self._check_model(body.model)
        if body.messages is not None:
            text = tokens.render_chat([(m.role, m.text()) for m in body.messages], body.add_generation_prompt)
        else:
            text = body.prompt or ""
        ids = tokens.encode(text)
        return JSONResponse(
            {"count": len(ids), "max_model_len": self.variant.max_model_len, "tokens": ids, "token_strs": None}
        )

    async def detokenize(self, request: Request) -> Response:
        body = parse_body(await request.body(), DetokenizeRequest)
        self._check_model(body.model)
        bad = [t for t in body.tokens if not 0 <= t < tokens.VOCAB_SIZE]
        if bad:
            raise bad_request(f"token ids {bad[:5]} are outside the vocabulary [0, {tokens.VOCAB_SIZE})", "tokens")
        return JSONResponse({"prompt": tokens.decode(body.tokens)})

    # --- generation -----------------------------------------------------------------------------------
    async def completions(self, request: Request) -> Response:
        body = parse_body(await request.body(), CompletionRequest)
        self._check_ready()
        self._check_model(body.model)
        prompt_tokens = self._completion_prompt_tokens(body)
        return await self._generate(request, body, prompt_tokens, body.max_tokens, chat=False)

    async def chat_completions(self, request: Request) -> Response:
        body = parse_body(await request.body(), ChatCompletionRequest)
        self._check_ready()
        self._check_model(body.model)
        text = tokens.render_chat([(m.role, m.text()) for m in body.messages], body.add_generation_prompt)
        prompt_tokens = tokens.count_tokens(text)
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        return await self._generate(request, body, prompt_tokens, max_tokens, chat=True)

    def _completion_prompt_tokens(self, body: CompletionRequest) -> int:
        prompt = body.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str | list):
            if len(prompt) != 1:
                raise bad_request(
                    f"the simulator serves one prompt per request, got a batch of {len(prompt)}; send them "
                    "as separate requests",
                    "prompt",
                )
            prompt = prompt[0]
        if isinstance(prompt, str):
            count = tokens.count_tokens(prompt)
        elif isinstance(prompt, list):
            count = len(prompt)
        else:
            count = 0
        if count == 0:
            raise bad_request(
                "Either prompt or prompt_embeds must be provided and non-empty. (parameter=prompt)", "prompt"
            )
        return count

    async def _generate(
        self,
        request: Request,
        body: CompletionRequest | ChatCompletionRequest,
        prompt_tokens: int,
        max_tokens: int | None,
        chat: bool,
    ) -> Response:
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
        request_id = f"{'chatcmpl' if chat else 'cmpl'}-{self._hex()}"
        er = make_request(request_id, prompt_tokens, out_tokens, reason, seed)
        engine = self._engine
        engine.submit(er, max_tokens)
        if body.stream:
            opts = body.stream_options
            usage = bool(opts and opts.include_usage)
            continuous = bool(opts and opts.continuous_usage_stats)
            stream = (
                self._stream_chat(er, body, usage, continuous)
                if chat
                else self._stream_completion(er, body, usage, continuous)
            )
            return StreamingResponse(stream, media_type="text/event-stream")
        text_parts: list[str] = []

        async def collect() -> None:
            while True:
                await er.event.wait()
                text_parts.extend(t for _, t in er.take())
                if er.finished:
                    return

        # Like vLLM, a client that hangs up on a non-streamed request aborts it.
        waiter = asyncio.ensure_future(collect())
        gone = asyncio.ensure_future(_wait_disconnect(request))
        try:
            await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            gone.cancel()
            engine.abort(er)  # a no-op once finished; frees the sequence and its KV blocks otherwise
        return JSONResponse(self._final_body(er, body, "".join(text_parts), chat))

    def _final_body(
        self, er: EngineRequest, body: CompletionRequest | ChatCompletionRequest, text: str, chat: bool
    ) -> dict[str, Any]:
        req = er.sim
        usage = {
            "prompt_tokens": req.prompt_tokens,
            "total_tokens": req.prompt_tokens + req.output_tokens,
            "completion_tokens": req.output_tokens,
            "prompt_tokens_details": None,
            "completion_tokens_details": None,
        }
        reason = (req.finish_reason or FinishReason.ABORT).value
        common = {
            "id": req.request_id,
            "created": int(time.time()),
            "model": self.variant.served_model_name,
        }
        if chat:
            message = {
                "role": "assistant",
                "content": text,
                "refusal": None,
                "annotations": None,
                "audio": None,
                "function_call": None,
                "reasoning": None,
            }
            choice = {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": reason,
                "stop_reason": None,
                "token_ids": None,
                "routed_experts": None,
            }
            return {
                **{"id": common["id"], "object": "chat.completion"},
                "created": common["created"],
                "model": common["model"],
                "choices": [choice],
                "service_tier": None,
                "system_fingerprint": self.fingerprint,
                "usage": usage,
                "prompt_logprobs": None,
                "prompt_token_ids": None,
                "prompt_text": None,
                "kv_transfer_params": None,
                "ec_transfer_params": None,
                "metrics": None,
            }
        choice = {
            "index": 0,
            "text": text,
            "logprobs": None,
            "finish_reason": reason,
            "stop_reason": None,
            "token_ids": None,
            "prompt_logprobs": None,
            "prompt_token_ids": None,
            "routed_experts": None,
        }
        return {
            **{"id": common["id"], "object": "text_completion"},
            "created": common["created"],
            "model": common["model"],
            "choices": [choice],
            "service_tier": None,
            "system_fingerprint": self.fingerprint,
            "usage": usage,
            "kv_transfer_params": None,
            "ec_transfer_params": None,
            "metrics": None,
        }

    async def _stream_completion(
        self, er: EngineRequest, body: CompletionRequest | ChatCompletionRequest, usage: bool, continuous: bool
    ) -> AsyncIterator[bytes]:
        head = self._chunk_head(er, "text_completion")
        # The hot path (one chunk per token per stream): the fixed parts serialized once.
        plain_prefix = "data: " + head + '"choices":[{"index":0,"text":'
        plain_suffix = (
            ',"logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}]}\n\n'
        )

        def content(text: str, reason: str | None, last: bool) -> bytes:
            if reason is None and not continuous:
                return (plain_prefix + _q(text) + plain_suffix).encode()
            choice = {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": reason,
                "stop_reason": None,
                "prompt_token_ids": None,
                "token_ids": None,
            }
            tail = ""
            if continuous:
                tail += ',"usage":' + _dump(self._usage(er))
            if last and not usage:
                tail += f',"system_fingerprint":"{self.fingerprint}"'
            return _sse(head + '"choices":[' + _dump(choice) + "]" + tail + "}")

        async for chunk in self._token_stream(er, content, usage, head):
            yield chunk

    async def _stream_chat(
        self, er: EngineRequest, body: CompletionRequest | ChatCompletionRequest, usage: bool, continuous: bool
    ) -> AsyncIterator[bytes]:
        head = self._chunk_head(er, "chat.completion.chunk")
        first = {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
        opening = head + '"choices":[' + _dump(first) + '],"prompt_token_ids":null,"prompt_text":null'
        if continuous:
            opening += ',"usage":' + _dump(self._usage(er))

        plain_prefix = "data: " + head + '"choices":[{"index":0,"delta":{"content":'
        plain_suffix = '},"logprobs":null,"finish_reason":null,"token_ids":null}]}\n\n'

        def content(text: str, reason: str | None, last: bool) -> bytes:
            if reason is None and not continuous:
                return (plain_prefix + _q(text) + plain_suffix).encode()
            choice: dict[str, Any] = {"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": reason}
            if last:
                choice["stop_reason"] = None
            choice["token_ids"] = None
            tail = ""
            if continuous:
                tail += ',"usage":' + _dump(self._usage(er))
            if last and not usage:
                tail += f',"system_fingerprint":"{self.fingerprint}"'
            return _sse(head + '"choices":[' + _dump(choice) + "]" + tail + "}")

        async for chunk in self._token_stream(er, content, usage, head, opening + "}"):
            yield chunk

    async def _token_stream(
        self,
        er: EngineRequest,
        content: Callable[[str, str | None, bool], bytes],
        usage: bool,
        head: str,
        opening: str | None = None,
    ) -> AsyncIterator[bytes]:
        engine = self._engine
        try:
            if opening is not None:
                yield _sse(opening)
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
                    events.append(content(text, reason, last))
                if events:
                    yield b"".join(events)
                if done:
                    break
            if usage:
                u = self._usage(er)
                yield _sse(head + '"choices":[],"usage":' + _dump(u) + f',"system_fingerprint":"{self.fingerprint}"}}')
            yield b"data: [DONE]\n\n"
        finally:
            engine.abort(er)  # the client disconnected mid-stream (or we are done: then a no-op)

    def _chunk_head(self, er: EngineRequest, obj: str) -> str:
        """The fields every chunk of one stream starts with, serialized once."""
        model = _q(self.variant.served_model_name)
        return f'{{"id":"{er.sim.request_id}","object":"{obj}","created":{int(time.time())},"model":{model},'

    @staticmethod
    def _usage(er: EngineRequest) -> dict[str, int]:
        req = er.sim
        return {
            "prompt_tokens": req.prompt_tokens,
            "total_tokens": req.prompt_tokens + req.output_tokens,
            "completion_tokens": req.output_tokens,
        }

    # --- checks -----------------------------------------------------------------------------------------
    def _check_model(self, model: str | None) -> None:
        name = self.variant.served_model_name
        if model is not None and model != name:
            raise APIError(
                f"The model `{model}` does not exist. Valid aliases: {name}.",
                HTTPStatus.NOT_FOUND,
                "NotFoundError",
                "model",
            )

    def _check_ready(self) -> None:
        if not self._engine.ready:
            raise APIError(
                "The server is starting (--fault-slow-start-s); retry later.",
                HTTPStatus.SERVICE_UNAVAILABLE,
                "Service Unavailable",
            )

    def _hex(self) -> str:
        return f"{self._rng.getrandbits(64):016x}"


def _dump(obj: object) -> str:
    return json.dumps(obj, separators=JSON_SEPARATORS)


def _q(text: str) -> str:
    return json.dumps(text)


def _sse(payload: str) -> bytes:
    return b"data: " + payload.encode() + b"\n\n"


async def _http_exception(request: Request, exc: Exception) -> Response:
    # FastAPI's shape, which vLLM returns for unknown routes and methods.
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return JSONResponse(exc.body(), status_code=int(exc.status))


async def _wait_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
