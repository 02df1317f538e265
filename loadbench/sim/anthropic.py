"""The Anthropic Messages dialect (``POST /v1/messages``).

A stream is a sequence of named server-sent events: ``message_start`` (the message with empty
content and ``usage.input_tokens``), then per content block ``content_block_start``, one
``content_block_delta`` per token and ``content_block_stop``, then ``message_delta`` (the
``stop_reason`` and ``usage.output_tokens``) and ``message_stop``. A ``ping`` follows the first
block's start. With ``thinking: {"type": "enabled", "budget_tokens": N}`` block 0 is a thinking
block (``thinking_delta`` tokens, then one ``signature_delta``) and the answer is block 1.
Errors are ``{"type": "error", "error": {"type": ..., "message": ...}}``: HTTP 529
``overloaded_error`` before a stream, or an ``event: error`` inside one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from loadbench.sim.structured import requested_schema
from loadbench.sim.text import message_text
from loadbench.sim.toolkit import (
    Ask,
    BadRequest,
    Encoder,
    Exchange,
    Host,
    json_response,
    positive_int,
    retry_after_header,
    serve_body,
    serve_generation,
)

__all__ = ["AnthropicDialect"]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    529: "overloaded_error",
}
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class MessagesEncoder:
    """Bytes of one Messages answer, streamed or whole."""

    content_type = "text/event-stream; charset=utf-8"

    def __init__(self, ex: Exchange) -> None:
        gen = ex.gen
        assert gen is not None
        self.gen = gen
        self.id = f"msg_{ex.request_id}"
        self.thinking = bool(gen.reasoning)
        self.signature = hashlib.sha256(gen.reasoning_text.encode()).hexdigest()
        self._text_index = 1 if self.thinking else 0
        self._think_head = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                            b'"delta":{"type":"thinking_delta","thinking":')
        self._text_head = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
                           + str(self._text_index).encode() + b',"delta":{"type":"text_delta","text":')

    def _block_start(self, index: int, thinking: bool) -> bytes:
        block = {"type": "thinking", "thinking": "", "signature": ""} if thinking else {"type": "text", "text": ""}
        return _event("content_block_start", {"type": "content_block_start", "index": index,
                                              "content_block": block})

    def start(self) -> bytes:
        gen = self.gen
        message = {
            "id": self.id, "type": "message", "role": "assistant", "model": gen.model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": gen.prompt_tokens, "output_tokens": 1,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }
        return (_event("message_start", {"type": "message_start", "message": message})
                + self._block_start(0, self.thinking)
                + _event("ping", {"type": "ping"}))

    def reasoning(self, piece: str) -> bytes:
        return self._think_head + orjson.dumps(piece) + b"}}\n\n"

    def reasoning_end(self) -> bytes:
        return (_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "signature_delta", "signature": self.signature}})
                + _event("content_block_stop", {"type": "content_block_stop", "index": 0})
                + self._block_start(1, False))

    def answer(self, piece: str) -> bytes:
        return self._text_head + orjson.dumps(piece) + b"}}\n\n"

    def final(self) -> bytes:
        gen = self.gen
        return (_event("content_block_stop", {"type": "content_block_stop", "index": self._text_index})
                + _event("message_delta", {
                    "type": "message_delta",
                    "delta": {"stop_reason": _STOP_REASONS[gen.finish_reason], "stop_sequence": None},
                    "usage": {"output_tokens": gen.output_tokens},
                })
                + _event("message_stop", {"type": "message_stop"}))

    def stream_error(self) -> bytes:
        return _event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})

    def malformed(self) -> bytes:
        return self._text_head + b'"unterminated\n\n'

    def body(self, *, usage: bool) -> bytes:
        gen = self.gen
        content: list[dict[str, Any]] = []
        if self.thinking:
            content.append({"type": "thinking", "thinking": gen.reasoning_text, "signature": self.signature})
        content.append({"type": "text", "text": gen.answer_text})
        data: dict[str, Any] = {
            "id": self.id, "type": "message", "role": "assistant", "model": gen.model, "content": content,
            "stop_reason": _STOP_REASONS[gen.finish_reason], "stop_sequence": None,
        }
        if usage:
            data["usage"] = {"input_tokens": gen.prompt_tokens, "output_tokens": gen.output_tokens,
                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        return orjson.dumps(data)


def _prompt(body: dict[str, Any]) -> tuple[list[str], str]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest(400, "messages: must be a non-empty list")
    texts = [message_text(body.get("system"))]
    last_user = ""
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise BadRequest(400, f"messages: each message needs role 'user' or 'assistant', got {m!r:.80}")
        text = message_text(m.get("content"))
        texts.append(text)
        if m["role"] == "user":
            last_user = text
    return texts, last_user


class AnthropicDialect:
    """Anthropic's endpoints, and its error shape: ``{"type": "error", "error": {"type", "message"}}``."""

    name = "anthropic"

    def __init__(self, host: Host) -> None:
        self.host = host

    def install(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.count_tokens)

    def error(self, status: int, message: str, *, retry_after_s: float | None = None) -> web.Response:
        headers = {"retry-after": retry_after_header(retry_after_s)} if retry_after_s is not None else None
        body = {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message}}
        return json_response(body, status, headers)

    async def messages(self, request: web.Request) -> web.StreamResponse:
        return await serve_generation(self.host, request, self, self._ask)

    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        async def answer(body: dict[str, Any]) -> web.Response:
            texts, _ = _prompt(body)
            return json_response({"input_tokens": self.host.chat_tokens(texts)})

        return await serve_body(request, self, answer)

    def _ask(self, body: dict[str, Any]) -> tuple[Ask, Callable[[Exchange], Encoder]]:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest(400, "model: Field required")
        if body.get("max_tokens") is None:
            raise BadRequest(400, "max_tokens: Field required")
        limit = positive_int(body, "max_tokens")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise BadRequest(400, f"stream: must be a boolean, got {stream!r}")
        texts, last_user = _prompt(body)
        ask = Ask(
            model=model, stream=stream, prompt_tokens=self.host.chat_tokens(texts), last_user_text=last_user,
            limit=limit, ignore_eos=bool(body.get("ignore_eos", False)), reasoning=self._reasoning(body),
            schema=requested_schema(body, texts),
        )
        return ask, MessagesEncoder

    def _reasoning(self, body: dict[str, Any]) -> int:
        """Reasoning tokens of a request with extended thinking enabled (within its budget), else 0."""
        thinking = body.get("thinking")
        if not (isinstance(thinking, dict) and thinking.get("type") == "enabled"):
            return 0
        budget = thinking.get("budget_tokens")
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise BadRequest(400, f"thinking.budget_tokens: must be a positive integer, got {budget!r}")
        return min(self.host.config.reasoning_tokens, budget)
