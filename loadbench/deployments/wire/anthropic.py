"""Anthropic's Messages API, streamed as named server-sent events.

A stream is ``message_start`` (the message with ``usage.input_tokens``), then per content block
``content_block_start`` / ``content_block_delta``\\* / ``content_block_stop``, then
``message_delta`` (``stop_reason`` and the cumulative ``usage.output_tokens``) and finally
``message_stop``. Deltas are ``text_delta`` (answer), ``thinking_delta`` (reasoning),
``signature_delta`` (a thinking block's signature: no text) and ``input_json_delta`` (tool input).
``ping`` events and unknown event types are ignored; an ``error`` event fails the request
(``overloaded_error`` as OVERLOADED). ``output_tokens`` includes thinking; the API gives no
separate reasoning count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from loadbench.contract.errors import ErrorCategory, RequestFailed
from loadbench.contract.prompt import Prompt
from loadbench.contract.record import RequestRecord
from loadbench.urls import v1_url


@dataclass(frozen=True, slots=True)
class AnthropicWire:
    """The request shape for one run, decided once.

    ``default_max_tokens`` is used when a prompt sets no cap (the API requires one).
    ``thinking_budget_tokens`` enables extended thinking when not ``None``; ``max_tokens`` is then
    raised above the budget where needed, since the API requires ``budget < max_tokens``.
    """

    model: str
    default_max_tokens: int = 4096
    thinking_budget_tokens: int | None = None
    temperature: float | None = None
    framing: ClassVar[str] = "sse"

    def url(self, base_url: str) -> str:
        return v1_url(base_url, "messages")

    def body(self, prompt: Prompt) -> dict[str, Any]:
        """The request as a dict (the SDK path sends the same fields)."""
        system = [m.content for m in prompt.messages if m.role == "system"]
        max_tokens = prompt.max_output_tokens or self.default_max_tokens
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in prompt.messages if m.role != "system"],
            "max_tokens": max_tokens,
            "stream": True,
        }
        if system:
            body["system"] = "\n\n".join(system)
        if self.thinking_budget_tokens is not None:
            body["thinking"] = {"type": "enabled", "budget_tokens": self.thinking_budget_tokens}
            if max_tokens <= self.thinking_budget_tokens:
                body["max_tokens"] = self.thinking_budget_tokens + max_tokens
        elif self.temperature is not None:
            # Thinking requires the default temperature, so it is only sent without thinking.
            body["temperature"] = self.temperature
        return body

    def encode(self, prompt: Prompt) -> bytes:
        return orjson.dumps(self.body(prompt))

    def parser(self, record: RequestRecord) -> AnthropicStream:
        return AnthropicStream(record)


class AnthropicStream:
    """Parses one Messages event stream into ``record``; ``done`` at ``message_stop``."""

    __slots__ = ("done", "record")

    def __init__(self, record: RequestRecord) -> None:
        self.record = record
        self.done = False

    def feed(self, event: str, data: bytes, now_ns: int) -> None:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise RequestFailed(ErrorCategory.MALFORMED, f"unparsable event: {data[:80]!r}") from None
        if type(obj) is not dict:
            raise RequestFailed(ErrorCategory.MALFORMED, f"event is not an object: {data[:80]!r}")
        self.feed_object(event, obj, now_ns)

    def feed_object(self, event: str, obj: dict[str, Any], now_ns: int) -> None:
        kind = obj.get("type") or event
        record = self.record
        if kind == "content_block_delta":
            delta = obj.get("delta") or {}
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                text = delta.get("text")
                if text:
                    record.token(now_ns)
                    if record.text is not None:
                        record.text.append(text)
            elif delta_type == "thinking_delta" and delta.get("thinking"):
                record.token(now_ns, reasoning=True)
            # signature_delta / input_json_delta / citations carry no generated text for us.
        elif kind == "message_delta":
            usage = obj.get("usage")
            if usage:
                apply_usage(record, usage)
        elif kind == "message_start":
            message = obj.get("message") or {}
            usage = message.get("usage")
            if usage:
                apply_usage(record, usage)
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            raise stream_error(obj)
        # ping, content_block_start/stop and future event types: nothing to record.


def apply_usage(record: RequestRecord, usage: dict[str, Any]) -> None:
    """Anthropic usage → record. Input counts cached tokens too (the prompt's full length)."""
    input_tokens = usage.get("input_tokens")
    if input_tokens is not None:
        total = int(input_tokens)
        for extra in ("cache_read_input_tokens", "cache_creation_input_tokens"):
            value = usage.get(extra)
            if value:
                total += int(value)
        record.input_tokens = total
    output_tokens = usage.get("output_tokens")
    if output_tokens is not None:
        record.output_tokens = int(output_tokens)


def stream_error(obj: dict[str, Any]) -> RequestFailed:
    """The ``RequestFailed`` for an ``error`` event (``overloaded_error`` → OVERLOADED)."""
    err = obj.get("error") or {}
    kind = err.get("type") if isinstance(err, dict) else None
    message = (err.get("message") if isinstance(err, dict) else str(err)) or kind or "error event"
    category = ErrorCategory.OVERLOADED if kind == "overloaded_error" else ErrorCategory.STREAM_ERROR
    label = f"{kind}: " if kind and kind not in str(message) else ""
    return RequestFailed(category, f"in-stream error: {label}{str(message)[:200]}")
