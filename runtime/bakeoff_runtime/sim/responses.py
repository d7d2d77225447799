"""Response bodies and stream chunks of vLLM's OpenAI-compatible API, serialized as vLLM 0.32.0 does.

Completions and chat share one stream shape; they differ only in the object name, the choice's
fields and chat's opening role chunk. Pure: no HTTP and no engine, only a request's counts.
"""

from __future__ import annotations

import json
import time
from typing import Any

from bakeoff_runtime.sim.scheduler import FinishReason, SimRequest

JSON_SEPARATORS = (",", ":")
DONE = b"data: [DONE]\n\n"
# What follows the quoted text of a token chunk without finish reason or usage.
_COMPLETION_TOKEN_SUFFIX = (
    ',"logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}]}\n\n'
)
_CHAT_TOKEN_SUFFIX = '},"logprobs":null,"finish_reason":null,"token_ids":null}]}\n\n'


def dump(obj: object) -> str:
    return json.dumps(obj, separators=JSON_SEPARATORS)


def quote(text: str) -> str:
    return json.dumps(text)


def sse(payload: str) -> bytes:
    return b"data: " + payload.encode() + b"\n\n"


def stream_usage(req: SimRequest) -> dict[str, int]:
    """Token usage as stream chunks carry it."""
    return {
        "prompt_tokens": req.prompt_tokens,
        "total_tokens": req.prompt_tokens + req.output_tokens,
        "completion_tokens": req.output_tokens,
    }


def final_body(req: SimRequest, text: str, *, chat: bool, model: str, fingerprint: str) -> dict[str, Any]:
    """The body of a non-streamed completion or chat completion."""
    usage = {**stream_usage(req), "prompt_tokens_details": None, "completion_tokens_details": None}
    reason = (req.finish_reason or FinishReason.ABORT).value
    head = {
        "id": req.request_id,
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
    }
    tail = {"kv_transfer_params": None, "ec_transfer_params": None, "metrics": None}
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
            **head,
            "choices": [choice],
            "service_tier": None,
            "system_fingerprint": fingerprint,
            "usage": usage,
            "prompt_logprobs": None,
            "prompt_token_ids": None,
            "prompt_text": None,
            **tail,
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
        **head,
        "choices": [choice],
        "service_tier": None,
        "system_fingerprint": fingerprint,
        "usage": usage,
        **tail,
    }


class StreamChunks:
    """The SSE events of one streamed completion or chat completion, one event per token.

    The fields every chunk starts with are serialized once, when the stream starts. Token chunks
    are the hot path (one per token per stream): without a finish reason or per-chunk usage they
    are the fixed prefix, the quoted text and the fixed suffix, byte for byte what dumping the
    full choice gives.
    """

    def __init__(
        self,
        req: SimRequest,
        *,
        chat: bool,
        model: str,
        fingerprint: str,
        include_usage: bool,
        continuous_usage: bool,
    ) -> None:
        self.req = req
        self.chat = chat
        self.fingerprint = fingerprint
        self.include_usage = include_usage
        self.continuous_usage = continuous_usage
        obj = "chat.completion.chunk" if chat else "text_completion"
        self.head = f'{{"id":"{req.request_id}","object":"{obj}","created":{int(time.time())},"model":{quote(model)},'
        if chat:
            self._plain_prefix = "data: " + self.head + '"choices":[{"index":0,"delta":{"content":'
            self._plain_suffix = _CHAT_TOKEN_SUFFIX
        else:
            self._plain_prefix = "data: " + self.head + '"choices":[{"index":0,"text":'
            self._plain_suffix = _COMPLETION_TOKEN_SUFFIX

    def opening(self) -> bytes | None:
        """Chat's first chunk: the assistant role with empty content (completions have none)."""
        if not self.chat:
            return None
        first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
        payload = self.head + '"choices":[' + dump(first) + '],"prompt_token_ids":null,"prompt_text":null'
        if self.continuous_usage:
            payload += ',"usage":' + dump(stream_usage(self.req))
        return sse(payload + "}")

    def token(self, text: str, reason: str | None, last: bool) -> bytes:
        """One token's chunk; the last one carries the finish reason."""
        if reason is None and not self.continuous_usage:
            return (self._plain_prefix + quote(text) + self._plain_suffix).encode()
        tail = ""
        if self.continuous_usage:
            tail += ',"usage":' + dump(stream_usage(self.req))
        if last and not self.include_usage:
            tail += f',"system_fingerprint":"{self.fingerprint}"'
        return sse(self.head + '"choices":[' + dump(self.choice(text, reason, last)) + "]" + tail + "}")

    def choice(self, text: str, reason: str | None, last: bool) -> dict[str, Any]:
        """The choice of one token's chunk, as a dict."""
        if self.chat:
            choice: dict[str, Any] = {
                "index": 0,
                "delta": {"content": text},
                "logprobs": None,
                "finish_reason": reason,
            }
            if last:
                choice["stop_reason"] = None
            choice["token_ids"] = None
            return choice
        return {
            "index": 0,
            "text": text,
            "logprobs": None,
            "finish_reason": reason,
            "stop_reason": None,
            "prompt_token_ids": None,
            "token_ids": None,
        }

    def usage(self) -> bytes | None:
        """The final chunk with the request's token usage, when the client asked for it."""
        if not self.include_usage:
            return None
        payload = self.head + '"choices":[],"usage":' + dump(stream_usage(self.req))
        return sse(payload + f',"system_fingerprint":"{self.fingerprint}"}}')
