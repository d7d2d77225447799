"""The simulator's HTTP server: vLLM 0.32.0's OpenAI-compatible API on a Starlette app.

Routes: `/v1/models`, `/v1/completions`, `/v1/chat/completions` (JSON or SSE streams, with
`stream_options.include_usage`), `/tokenize`, `/detokenize`, `/health`, `/version`, `/metrics`,
and the simulator's own `/sim/stats` (engine state and schedule lag). Response bodies, chunk fields,
error bodies and status codes copy what vLLM 0.32.0 returns (see docs/simulator.md); the
conformance suite runs the same checks against both.

This module is the HTTP and protocol side: routes, body parsing, prompt token counts, model and
readiness checks, error answers. What the engine generates and how tokens come back is
`generation`; the bodies and chunks themselves are `responses`.
"""

from __future__ import annotations

import hashlib
import random
import time
from http import HTTPStatus
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bakeoff_runtime.sim import tokens
from bakeoff_runtime.sim.engine import Engine, StepTimeFn
from bakeoff_runtime.sim.generation import Generation, SamplingRequest
from bakeoff_runtime.sim.metrics import VLLM_VERSION, SimMetrics
from bakeoff_runtime.sim.protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
    bad_request,
    parse_body,
)
from bakeoff_runtime.sim.responses import final_body
from bakeoff_runtime.sim.scheduler import SchedulerLimits
from bakeoff_runtime.sim.serving import SimSettings, cache_config_labels, performance_step_time, scheduler_limits
from bakeoff_runtime.variant import Variant

__all__ = ["SimSettings", "Simulator", "cache_config_labels", "performance_step_time", "scheduler_limits"]


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
        digest = hashlib.sha256(variant.model_dump_json().encode()).hexdigest()[:8]
        self.fingerprint = f"vllm-{VLLM_VERSION}-{digest}"
        self.generation = Generation(
            variant,
            self.settings,
            self.metrics,
            engine=lambda: self._engine,
            new_id=self._hex,
            fingerprint=self.fingerprint,
        )
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

    def abort_all(self) -> None:
        """End every request in flight (the server is stopping): each stream finishes with reason abort."""
        if self.engine is not None:
            for request in list(self.engine.active.values()):
                self.engine.abort(request)

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
        self, request: Request, body: SamplingRequest, prompt_tokens: int, max_tokens: int | None, chat: bool
    ) -> Response:
        er = self.generation.submit(body, prompt_tokens, max_tokens, chat)
        if body.stream:
            return StreamingResponse(self.generation.stream(er, body, chat), media_type="text/event-stream")
        text = await self.generation.collect(er, _wait_disconnect(request))
        model = self.variant.served_model_name
        return JSONResponse(final_body(er.sim, text, chat=chat, model=model, fingerprint=self.fingerprint))

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
