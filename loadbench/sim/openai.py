"""The OpenAI chat-completions dialect (also DeepSeek, vLLM and llama.cpp's OpenAI-compatible API).

Streaming (``"stream": true``) sends server-sent events, one ``chat.completion.chunk`` per token:
the first chunk carries ``delta.role`` with empty content (no token), then one ``delta.content``
per token, then a chunk with ``finish_reason`` and an empty delta, then, when
``stream_options.include_usage`` is set, a chunk with ``choices: []`` and ``usage`` (every other
chunk then carries ``"usage": null``), then ``data: [DONE]``.

Reasoning: a model whose name contains ``reasoner`` (DeepSeek) streams ``delta.reasoning_content``
chunks before the answer; a request with ``reasoning_effort`` (OpenAI o-series) reasons silently:
the reasoning takes engine time and appears only in ``usage.completion_tokens_details``.
``max_tokens`` / ``max_completion_tokens`` bound reasoning and answer together; ``ignore_eos`` and
``min_tokens`` (vLLM's extras) are honoured. ``POST /v1/completions`` (legacy) is served too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from loadbench.sim.structured import requested_schema
from loadbench.sim.toolkit import (
    Ask,
    BadRequest,
    Encoder,
    Exchange,
    Generation,
    Host,
    chat_texts,
    json_response,
    positive_int,
    retry_after_header,
    serve_generation,
)

__all__ = ["OpenAIDialect"]

_ERROR_TYPES = {
    400: ("invalid_request_error", "invalid_request"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", "internal_error"),
    503: ("server_error", "service_unavailable"),
    529: ("server_error", "overloaded"),
}


def _usage(gen: Generation) -> dict[str, Any]:
    return {
        "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": gen.output_tokens,
        "total_tokens": gen.prompt_tokens + gen.output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": len(gen.reasoning)},
    }


class ChatEncoder:
    """Bytes of one chat completion, streamed or whole."""

    content_type = "text/event-stream; charset=utf-8"

    def __init__(self, ex: Exchange, *, include_usage: bool) -> None:
        gen = ex.gen
        assert gen is not None
        self.gen = gen
        self.include_usage = include_usage
        self.id = f"chatcmpl-{ex.request_id}"
        self.created = int(time.time())
        usage_null = b',"usage":null' if include_usage else b""
        head = orjson.dumps({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": gen.model, "system_fingerprint": "fp_loadbench_sim",
        })[:-1]
        self._head = b"data: " + head + b',"choices":[{"index":0,"delta":'
        self._tail = b',"logprobs":null,"finish_reason":null}]' + usage_null + b"}\n\n"
        self._usage_null = usage_null

    def start(self) -> bytes:
        return self._head + b'{"role":"assistant","content":""}' + self._tail

    def reasoning(self, piece: str) -> bytes:
        return self._head + b'{"content":null,"reasoning_content":' + orjson.dumps(piece) + b"}" + self._tail

    def reasoning_end(self) -> bytes:
        return b""

    def answer(self, piece: str) -> bytes:
        return self._head + b'{"content":' + orjson.dumps(piece) + b"}" + self._tail

    def final(self) -> bytes:
        gen = self.gen
        out = (self._head + b'{},"logprobs":null,"finish_reason":' + orjson.dumps(gen.finish_reason)
               + b"}]" + self._usage_null + b"}\n\n")
        if self.include_usage:
            out += b"data: " + orjson.dumps({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": gen.model, "system_fingerprint": "fp_loadbench_sim", "choices": [],
                "usage": _usage(gen),
            }) + b"\n\n"
        return out + b"data: [DONE]\n\n"

    def stream_error(self) -> bytes:
        return b"data: " + orjson.dumps({"error": {
            "message": "the server had an error while processing your request (simulated)",
            "type": "server_error", "param": None, "code": "internal_error",
        }}) + b"\n\n"

    def malformed(self) -> bytes:
        return self._head + b'{"content": "unterminated\n\n'

    def body(self, *, usage: bool) -> bytes:
        gen = self.gen
        message: dict[str, Any] = {"role": "assistant", "content": gen.answer_text}
        if gen.reasoning and gen.reasoning_visible:
            message["reasoning_content"] = gen.reasoning_text
        data: dict[str, Any] = {
            "id": self.id, "object": "chat.completion", "created": self.created, "model": gen.model,
            "system_fingerprint": "fp_loadbench_sim",
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": gen.finish_reason}],
        }
        if usage:
            data["usage"] = _usage(gen)
        return orjson.dumps(data)


class CompletionEncoder(ChatEncoder):
    """Bytes of one legacy text completion (``/v1/completions``)."""

    def __init__(self, ex: Exchange, *, include_usage: bool) -> None:
        super().__init__(ex, include_usage=include_usage)
        gen = self.gen
        self.id = f"cmpl-{ex.request_id}"
        head = orjson.dumps({"id": self.id, "object": "text_completion", "created": self.created,
                             "model": gen.model})[:-1]
        self._head = b"data: " + head + b',"choices":[{"index":0,"text":'
        self._tail = b',"logprobs":null,"finish_reason":null}]' + self._usage_null + b"}\n\n"

    def start(self) -> bytes:
        return b""

    def reasoning(self, piece: str) -> bytes:
        return self.answer(piece)

    def answer(self, piece: str) -> bytes:
        return self._head + orjson.dumps(piece) + self._tail

    def final(self) -> bytes:
        gen = self.gen
        out = (self._head + b'"","logprobs":null,"finish_reason":' + orjson.dumps(gen.finish_reason)
               + b"}]" + self._usage_null + b"}\n\n")
        if self.include_usage:
            out += b"data: " + orjson.dumps({
                "id": self.id, "object": "text_completion", "created": self.created,
                "model": gen.model, "choices": [], "usage": _usage(gen),
            }) + b"\n\n"
        return out + b"data: [DONE]\n\n"

    def malformed(self) -> bytes:
        return self._head + b'"unterminated\n\n'

    def body(self, *, usage: bool) -> bytes:
        gen = self.gen
        data: dict[str, Any] = {
            "id": self.id, "object": "text_completion", "created": self.created, "model": gen.model,
            "choices": [{"index": 0, "text": gen.reasoning_text + gen.answer_text, "logprobs": None,
                         "finish_reason": gen.finish_reason}],
        }
        if usage:
            data["usage"] = _usage(gen)
        return orjson.dumps(data)


def _common(body: dict[str, Any]) -> tuple[str, bool, int | None, bool, int, bool]:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest(400, "model must be a non-empty string")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest(400, f"stream must be a boolean, got {stream!r}")
    n = body.get("n", 1)
    if n not in (1, None):
        raise BadRequest(400, f"the simulator serves n=1 only, got n={n!r}")
    limit = positive_int(body, "max_completion_tokens", "max_tokens")
    ignore_eos = bool(body.get("ignore_eos", False))
    min_tokens = body.get("min_tokens") or 0
    if isinstance(min_tokens, bool) or not isinstance(min_tokens, int) or min_tokens < 0:
        raise BadRequest(400, f"min_tokens must be a non-negative integer, got {min_tokens!r}")
    options = body.get("stream_options") or {}
    include_usage = bool(options.get("include_usage")) if isinstance(options, dict) else False
    return model, stream, limit, ignore_eos, min_tokens, include_usage


class OpenAIDialect:
    """OpenAI's endpoints, and its error shape: ``{"error": {"message", "type", "param", "code"}}``."""

    name = "openai"

    def __init__(self, host: Host) -> None:
        self.host = host

    def install(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_get("/v1/models", self.models)

    def error(self, status: int, message: str, *, retry_after_s: float | None = None) -> web.Response:
        etype, code = _ERROR_TYPES.get(status, ("server_error", "error"))
        headers = {"Retry-After": retry_after_header(retry_after_s)} if retry_after_s is not None else None
        return json_response(
            {"error": {"message": message, "type": etype, "param": None, "code": code}}, status, headers
        )

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await serve_generation(self.host, request, self, self._chat_ask)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await serve_generation(self.host, request, self, self._completion_ask)

    async def models(self, request: web.Request) -> web.Response:
        created = int(time.time())
        return json_response({"object": "list", "data": [
            {"id": m, "object": "model", "created": created, "owned_by": "loadbench-sim"}
            for m in self.host.models
        ]})

    def _chat_ask(self, body: dict[str, Any]) -> tuple[Ask, Callable[[Exchange], Encoder]]:
        model, stream, limit, ignore_eos, min_tokens, include_usage = _common(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest(400, "messages must be a non-empty list")
        texts, last_user = chat_texts(messages)
        visible = "reasoner" in model
        hidden = body.get("reasoning_effort") is not None and not visible
        ask = Ask(
            model=model, stream=stream, prompt_tokens=self.host.chat_tokens(texts), last_user_text=last_user,
            limit=limit, ignore_eos=ignore_eos, min_tokens=min_tokens,
            reasoning=self.host.config.reasoning_tokens if (visible or hidden) else 0,
            reasoning_visible=visible, schema=requested_schema(body, texts),
        )
        return ask, lambda ex: ChatEncoder(ex, include_usage=include_usage)

    def _completion_ask(self, body: dict[str, Any]) -> tuple[Ask, Callable[[Exchange], Encoder]]:
        model, stream, limit, ignore_eos, min_tokens, include_usage = _common(body)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise BadRequest(400, "prompt must be a string")
        ask = Ask(
            model=model, stream=stream, prompt_tokens=self.host.count(prompt), last_user_text=prompt,
            limit=16 if limit is None else limit,  # the legacy endpoint's documented default
            ignore_eos=ignore_eos, min_tokens=min_tokens,
        )
        return ask, lambda ex: CompletionEncoder(ex, include_usage=include_usage)
