"""Request bodies of vLLM's OpenAI-compatible API, as the simulator reads them, and vLLM's error shapes.

Unlike Bakeoff's own models these allow unknown fields: vLLM accepts and ignores fields it does not
know (sampling knobs such as `temperature` or `top_p` change nothing in a simulator either), and a
client written against vLLM must see the same behaviour. Validation errors are reported the way
vLLM 0.32.0 reports them (HTTP 400, type "Bad Request", `param` the dotted field path).
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool | None = Field(default=False, description="Send a final chunk with token usage.")
    continuous_usage_stats: bool | None = Field(default=False, description="Send usage with every chunk.")


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = Field(default=None, max_length=1024, description="Served model name; None: the only one.")
    stream: bool | None = Field(default=False, description="Answer as server-sent events.")
    stream_options: StreamOptions | None = None
    ignore_eos: bool = Field(default=False, description="Keep generating past end-of-sequence.")
    min_tokens: int = Field(default=0, description="Tokens to generate before end-of-sequence may stop it.")
    seed: int | None = Field(default=None, description="Seed for the generated words.")
    n: int = Field(default=1, description="Choices per prompt (the simulator serves 1).")
    stop: str | list[str] | None = None
    # Sampling knobs change nothing in a simulator, but their bounds are checked as vLLM checks them.
    temperature: float | None = Field(default=None, description="Sampling temperature, [0, 2].")
    top_p: float | None = Field(default=None, description="Nucleus sampling mass, (0, 1].")
    top_k: int | None = Field(default=None, description="Top-k (0 or -1: disabled).")
    min_p: float | None = Field(default=None, description="Minimum token probability, [0, 1].")
    presence_penalty: float | None = Field(default=None, description="[-2, 2].")
    frequency_penalty: float | None = Field(default=None, description="[-2, 2].")
    repetition_penalty: float | None = Field(default=None, description="Greater than 0.")


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]] | None = None
    max_tokens: int | None = Field(default=16, description="Output tokens at most (OpenAI's default 16).")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str = Field(max_length=64)
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return " ".join(str(part.get("text", "")) for part in self.content if part.get("type", "text") == "text")


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage]
    max_tokens: int | None = Field(default=None, description="Deprecated alias of max_completion_tokens.")
    max_completion_tokens: int | None = None
    add_generation_prompt: bool = True


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_generation_prompt: bool = True


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    tokens: list[int]


ErrorType = Literal["BadRequestError", "NotFoundError", "InternalServerError", "Bad Request", "Service Unavailable"]


class APIError(Exception):
    """An error answered as vLLM answers it: `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(self, message: str, status: HTTPStatus, err_type: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.err_type = err_type
        self.param = param

    def body(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.err_type, "param": self.param, "code": int(self.status)}
        return {"error": error}


def bad_request(message: str, param: str | None = None) -> APIError:
    return APIError(message, HTTPStatus.BAD_REQUEST, "BadRequestError", param)


def invalid_parameter(message: str, param: str, value: object) -> APIError:
    """vLLM's VLLMValidationError text: the message, then `(parameter=..., value=...)`."""
    return bad_request(f"{message} (parameter={param}, value={value})", param)


def _summarize(value: object) -> object:
    if isinstance(value, str):
        return value if len(value) <= 200 else value[:200] + "...[truncated]"
    if isinstance(value, list | tuple | set | frozenset | dict):
        return f"<{type(value).__name__} of {len(value)} items>"
    text = str(value)
    return text if len(text) <= 200 else text[:200] + "...[truncated]"


def _validation_error(entries: list[dict[str, Any]]) -> APIError:
    count = len(entries)
    label = "error" if count == 1 else "errors"
    lines = "".join(f"  {entry}\n" for entry in entries[:10])
    more = f"  ...and {count - 10} more {label}\n" if count > 10 else ""
    message = f"{count} validation {label}:\n{lines}{more}".rstrip()
    param = entries[0]["loc"] if entries else None
    return APIError(message, HTTPStatus.BAD_REQUEST, "Bad Request", param)


M = TypeVar("M", bound=BaseModel)


def parse_body(raw: bytes, model: type[M]) -> M:
    """Decode and validate a JSON body, raising vLLM-shaped 400 errors."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        pos = err.pos if isinstance(err, json.JSONDecodeError) else err.start
        msg = err.msg if isinstance(err, json.JSONDecodeError) else "invalid UTF-8"
        decode_error: dict[str, Any] = {
            "type": "json_invalid",
            "loc": f"body.{pos}",
            "msg": "JSON decode error",
            "input": "<dict of 0 items>",
            "ctx": {"error": msg},
        }
        raise _validation_error([decode_error]) from err
    if not isinstance(data, dict):
        not_object: dict[str, Any] = {
            "type": "model_attributes_type",
            "loc": "body",
            "msg": "Input should be a valid dictionary or object to extract fields from",
            "input": _summarize(data),
        }
        raise _validation_error([not_object])
    try:
        return model.model_validate(data)
    except ValidationError as err:
        entries: list[dict[str, Any]] = []
        for e in err.errors(include_url=False):
            loc = ".".join(["body", *(str(p) for p in e["loc"] if not _internal_loc(str(p)))])
            item: dict[str, Any] = {"type": e["type"], "loc": loc, "msg": e["msg"], "input": _summarize(e["input"])}
            if "ctx" in e:
                item["ctx"] = {k: str(v) for k, v in e["ctx"].items()}
            entries.append(item)
        raise _validation_error(entries) from err


def _internal_loc(segment: str) -> bool:
    # pydantic spells union branches into `loc` (e.g. "str", "list[int]"); vLLM drops them from `param`.
    return any(c in segment for c in "[](){}") or segment in {"str", "int", "float", "bool", "list", "dict", "none"}
