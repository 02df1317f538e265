"""Ollama's native API (``/api/chat`` and ``/api/generate``), streamed as NDJSON.

Each line is one JSON object; ``/api/chat`` carries text in ``message.content`` (and reasoning in
``message.thinking`` when ``think`` is on), ``/api/generate`` in ``response`` (and ``thinking``).
The stream ends with a record holding ``"done": true`` and the server's counts and durations
(nanoseconds): ``prompt_eval_count``, ``prompt_eval_duration``, ``eval_count``,
``eval_duration``, ``load_duration``, ``total_duration``. An error mid-stream is a line
``{"error": "..."}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import orjson

from loadbench.contract.errors import ErrorCategory, RequestFailed
from loadbench.contract.prompt import Prompt
from loadbench.contract.record import RequestRecord
from loadbench.urls import join_url

Api = Literal["chat", "generate"]


@dataclass(frozen=True, slots=True)
class OllamaWire:
    """The request shape for one run, decided once.

    ``options`` is Ollama's model options block (``num_ctx``, ``temperature``, ``seed``...);
    the prompt's ``max_output_tokens`` becomes ``options.num_predict``. ``think`` is sent when not
    ``None``. Ollama has no ``ignore_eos``; the prompt's flag is not sent.
    """

    model: str
    api: Api = "chat"
    options: dict[str, Any] = field(default_factory=dict)
    keep_alive: str | int | None = None
    think: bool | None = None
    framing: ClassVar[str] = "ndjson"

    def url(self, base_url: str) -> str:
        return join_url(base_url, f"api/{self.api}")

    def body(self, prompt: Prompt) -> dict[str, Any]:
        """The request as a dict (the SDK path sends the same fields)."""
        body: dict[str, Any] = {"model": self.model, "stream": True}
        if self.api == "chat":
            body["messages"] = [{"role": m.role, "content": m.content} for m in prompt.messages]
        else:
            # /api/generate takes one prompt and one system string: system messages become the
            # system string, the rest are joined in order.
            system = [m.content for m in prompt.messages if m.role == "system"]
            if system:
                body["system"] = "\n\n".join(system)
            body["prompt"] = "\n\n".join(m.content for m in prompt.messages if m.role != "system")
        if prompt.response_schema is not None:
            body["format"] = prompt.response_schema  # Ollama turns a schema into a grammar
        options = dict(self.options)
        if prompt.max_output_tokens is not None:
            options["num_predict"] = prompt.max_output_tokens
        if options:
            body["options"] = options
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        if self.think is not None:
            body["think"] = self.think
        return body

    def encode(self, prompt: Prompt) -> bytes:
        return orjson.dumps(self.body(prompt))

    def parser(self, record: RequestRecord) -> OllamaStream:
        return OllamaStream(record, chat=self.api == "chat")


class OllamaStream:
    """Parses one Ollama NDJSON stream into ``record``; ``done`` at the ``"done": true`` line."""

    __slots__ = ("chat", "done", "record")

    def __init__(self, record: RequestRecord, *, chat: bool) -> None:
        self.record = record
        self.chat = chat
        self.done = False

    def feed(self, event: str, data: bytes, now_ns: int) -> None:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise RequestFailed(ErrorCategory.MALFORMED, f"unparsable line: {data[:80]!r}") from None
        if type(obj) is not dict:
            raise RequestFailed(ErrorCategory.MALFORMED, f"line is not an object: {data[:80]!r}")
        self.feed_object(event, obj, now_ns)

    def feed_object(self, event: str, obj: dict[str, Any], now_ns: int) -> None:
        error = obj.get("error")
        if error:
            raise RequestFailed(ErrorCategory.STREAM_ERROR, f"in-stream error: {str(error)[:200]}")
        record = self.record
        if self.chat:
            message = obj.get("message")
            if message:
                content = message.get("content")
                if content:
                    record.token(now_ns)
                    if record.text is not None:
                        record.text.append(content)
                elif message.get("thinking"):
                    record.token(now_ns, reasoning=True)
        else:
            content = obj.get("response")
            if content:
                record.token(now_ns)
                if record.text is not None:
                    record.text.append(content)
            elif obj.get("thinking"):
                record.token(now_ns, reasoning=True)
        if obj.get("done"):
            self.done = True
            apply_done(record, obj)


def apply_done(record: RequestRecord, final: dict[str, Any]) -> None:
    """Copy a done record's counts into ``record`` and its durations into ``record.server``.

    ``record.server`` keys: ``prompt_tokens`` (prompt_eval_count), ``prompt_ms``
    (prompt_eval_duration), ``output_tokens`` (eval_count, reasoning included), ``output_ms``
    (eval_duration), ``load_ms`` (load_duration), ``total_ms`` (total_duration), ``done_reason``,
    and ``source: "ollama"``.
    """
    prompt_count = final.get("prompt_eval_count")
    if prompt_count is not None:
        record.input_tokens = int(prompt_count)
    eval_count = final.get("eval_count")
    if eval_count is not None:
        record.output_tokens = int(eval_count)
    server: dict[str, Any] = {"source": "ollama"}
    for src, dst, ns in (
        ("prompt_eval_count", "prompt_tokens", False),
        ("prompt_eval_duration", "prompt_ms", True),
        ("eval_count", "output_tokens", False),
        ("eval_duration", "output_ms", True),
        ("load_duration", "load_ms", True),
        ("total_duration", "total_ms", True),
    ):
        value = final.get(src)
        if value is not None:
            server[dst] = value / 1e6 if ns else int(value)
    reason = final.get("done_reason")
    if reason:
        server["done_reason"] = str(reason)
    record.server = server
