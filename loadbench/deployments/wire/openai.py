"""OpenAI chat completions, streamed as server-sent events.

Spoken by api.openai.com, DeepSeek, vLLM, SGLang, llama.cpp's server, Ollama's /v1 and the
embedded simulator. A stream is a run of ``data: {chat.completion.chunk}`` events ending with
``data: [DONE]``; with ``stream_options.include_usage`` the last chunk before ``[DONE]`` has empty
``choices`` and the ``usage`` block. Reasoning text arrives in ``delta.reasoning_content``
(DeepSeek, llama.cpp, older vLLM) or ``delta.reasoning`` (newer vLLM); its token count in
``usage.completion_tokens_details.reasoning_tokens``. llama.cpp adds ``timings`` to the last chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from loadbench.contract.errors import ErrorCategory, RequestFailed
from loadbench.contract.prompt import Prompt
from loadbench.contract.record import RequestRecord
from loadbench.urls import v1_url

CHAT_PATH = "chat/completions"


def is_reasoning_model(model: str) -> bool:
    """OpenAI models that reason (and take ``max_completion_tokens``, not ``max_tokens``)."""
    name = model.rsplit("/", 1)[-1].lower()
    return name.startswith(("o1", "o3", "o4", "gpt-5"))


@dataclass(frozen=True, slots=True)
class OpenAIWire:
    """The request shape for one run, decided once.

    ``max_tokens_field`` is ``max_tokens`` for compatible servers and ``max_completion_tokens``
    for OpenAI's reasoning models. ``send_ignore_eos`` is true only for servers that accept the
    vLLM extension fields ``ignore_eos``/``min_tokens`` (api.openai.com and DeepSeek reject
    unknown fields). ``extra`` is merged into every body last.
    """

    model: str
    max_tokens_field: str = "max_tokens"
    send_ignore_eos: bool = True
    reasoning_effort: str | None = None
    temperature: float | None = None
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    framing: ClassVar[str] = "sse"

    def url(self, base_url: str) -> str:
        return v1_url(base_url, CHAT_PATH)

    def body(self, prompt: Prompt) -> dict[str, Any]:
        """The request as a dict (the SDK path sends the same fields)."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in prompt.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if prompt.max_output_tokens is not None:
            body[self.max_tokens_field] = prompt.max_output_tokens
            if prompt.ignore_eos and self.send_ignore_eos:
                body["ignore_eos"] = True
                body["min_tokens"] = prompt.max_output_tokens
        elif prompt.ignore_eos and self.send_ignore_eos:
            body["ignore_eos"] = True
        if prompt.response_schema is not None:
            # Enforced by llama.cpp's server (as a grammar), vLLM and OpenAI's structured outputs.
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": str(prompt.response_schema.get("title") or "reply"),
                                "schema": prompt.response_schema},
            }
        if self.reasoning_effort is not None:
            body["reasoning_effort"] = self.reasoning_effort
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.seed is not None:
            body["seed"] = self.seed
        if self.extra:
            body.update(self.extra)
        return body

    def encode(self, prompt: Prompt) -> bytes:
        return orjson.dumps(self.body(prompt))

    def parser(self, record: RequestRecord, *, terminator: bool = True) -> OpenAIStream:
        return OpenAIStream(record, terminator=terminator)


class OpenAIStream:
    """Parses one chat-completions event stream into ``record``.

    A chunk is token-bearing when its first choice's delta has non-empty ``content`` (answer) or
    non-empty reasoning text; the opening role-only chunk and the usage-only chunk are not.
    ``done`` turns true at ``[DONE]``. A reader that never sees ``[DONE]`` (the openai SDK hides
    it) passes ``terminator=False``: the stream is then done once a choice has carried a
    ``finish_reason`` or the usage chunk has arrived.
    """

    __slots__ = ("done", "record", "terminator")

    def __init__(self, record: RequestRecord, *, terminator: bool = True) -> None:
        self.record = record
        self.terminator = terminator
        self.done = False

    def feed(self, event: str, data: bytes, now_ns: int) -> None:
        if data == b"[DONE]":
            self.done = True
            return
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise RequestFailed(ErrorCategory.MALFORMED, f"unparsable chunk: {data[:80]!r}") from None
        if type(obj) is not dict:
            raise RequestFailed(ErrorCategory.MALFORMED, f"chunk is not an object: {data[:80]!r}")
        self.feed_object(event, obj, now_ns)

    def feed_object(self, event: str, obj: dict[str, Any], now_ns: int) -> None:
        if event == "error" or obj.get("error") or obj.get("object") == "error":
            raise stream_error(obj)
        record = self.record
        choices = obj.get("choices")
        if choices:
            choice = choices[0]
            if not self.terminator and choice.get("finish_reason"):
                self.done = True
            delta = choice.get("delta")
            if delta:
                content = delta.get("content")
                if content:
                    record.token(now_ns)
                    if record.text is not None:
                        record.text.append(content)
                elif delta.get("reasoning_content") or delta.get("reasoning"):
                    record.token(now_ns, reasoning=True)
        usage = obj.get("usage")
        if usage:
            apply_usage(record, usage)
            if not self.terminator:
                self.done = True
        timings = obj.get("timings")
        if timings:
            record.server = llamacpp_timings(timings)


def stream_error(obj: dict[str, Any]) -> RequestFailed:
    """The ``RequestFailed`` for an error object sent inside the stream."""
    err = obj.get("error")
    if isinstance(err, dict):
        message = err.get("message") or err.get("type") or "error event"
        kind = err.get("type") or err.get("code")
    else:
        message = err if isinstance(err, str) and err else obj.get("message") or "error event"
        kind = obj.get("type")
    category = ErrorCategory.OVERLOADED if kind == "overloaded_error" else ErrorCategory.STREAM_ERROR
    return RequestFailed(category, f"in-stream error: {str(message)[:200]}")


def apply_usage(record: RequestRecord, usage: dict[str, Any]) -> None:
    """Copy an OpenAI ``usage`` block's counts into ``record`` (absent fields stay ``None``)."""
    prompt_tokens = usage.get("prompt_tokens")
    if prompt_tokens is not None:
        record.input_tokens = int(prompt_tokens)
    completion_tokens = usage.get("completion_tokens")
    if completion_tokens is not None:
        record.output_tokens = int(completion_tokens)
    details = usage.get("completion_tokens_details")
    if details:
        reasoning = details.get("reasoning_tokens")
        if reasoning is not None:
            record.reasoning_tokens = int(reasoning)


def llamacpp_timings(timings: dict[str, Any]) -> dict[str, Any]:
    """llama.cpp's ``timings`` block, normalised to ``*_tokens`` ints and ``*_ms`` floats.

    Keys: ``prompt_tokens`` (prompt_n: prompt tokens evaluated, cache hits excluded),
    ``prompt_ms``, ``output_tokens`` (predicted_n), ``output_ms`` (predicted_ms),
    ``output_tokens_per_s`` (predicted_per_second), ``cached_tokens`` (cache_n) where present,
    and ``source: "llamacpp"``.
    """
    out: dict[str, Any] = {"source": "llamacpp"}
    for src, dst, kind in (
        ("prompt_n", "prompt_tokens", int),
        ("prompt_ms", "prompt_ms", float),
        ("predicted_n", "output_tokens", int),
        ("predicted_ms", "output_ms", float),
        ("predicted_per_second", "output_tokens_per_s", float),
        ("cache_n", "cached_tokens", int),
    ):
        value = timings.get(src)
        if value is not None:
            out[dst] = kind(value)
    return out
