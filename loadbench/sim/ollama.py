"""The Ollama dialect: ``/api/chat`` and ``/api/generate`` (NDJSON), and the model endpoints.

Streaming is the default (``"stream": false`` turns it off). Each line is one JSON object with one
token (``message.content`` for chat, ``response`` for generate; with ``think: true`` the reasoning
comes first in ``message.thinking`` / ``thinking``). The last line has ``done: true``,
``done_reason`` (``stop`` or ``length``) and the server's timings in nanoseconds:
``total_duration`` (received to done), ``load_duration`` (0: the simulated model is always loaded),
``prompt_eval_count`` / ``prompt_eval_duration`` (admission to the first token) and ``eval_count``
(every generated token, thinking included) / ``eval_duration`` (first to last token).
``options.num_predict`` bounds the output (``-1``: no bound). A model not in the list answers 404
``{"error": "model \\"x\\" not found, try pulling it first"}``; ``/api/pull`` adds it.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
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
    chat_texts,
    json_response,
    resolve_model,
    retry_after_header,
    serve_body,
    serve_generation,
)

__all__ = ["OllamaDialect"]

OLLAMA_VERSION = "0.9.0"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class OllamaEncoder:
    """Bytes of one chat or generate answer, as NDJSON lines or one object."""

    content_type = "application/x-ndjson"

    def __init__(self, ex: Exchange, *, chat: bool) -> None:
        gen = ex.gen
        assert gen is not None
        self.ex = ex
        self.gen = gen
        self.chat = chat
        self._model = orjson.dumps(gen.model)

    def _head(self) -> bytes:
        return b'{"model":' + self._model + b',"created_at":"' + _now_iso().encode() + b'",'

    def start(self) -> bytes:
        return b""

    def reasoning(self, piece: str) -> bytes:
        if self.chat:
            return (self._head() + b'"message":{"role":"assistant","content":"","thinking":'
                    + orjson.dumps(piece) + b'},"done":false}\n')
        return self._head() + b'"response":"","thinking":' + orjson.dumps(piece) + b',"done":false}\n'

    def reasoning_end(self) -> bytes:
        return b""

    def answer(self, piece: str) -> bytes:
        if self.chat:
            return (self._head() + b'"message":{"role":"assistant","content":' + orjson.dumps(piece)
                    + b'},"done":false}\n')
        return self._head() + b'"response":' + orjson.dumps(piece) + b',"done":false}\n'

    def _done_fields(self) -> dict[str, Any]:
        gen, ex, seq = self.gen, self.ex, self.ex.seq
        now = time.perf_counter_ns()
        first = seq.first_ns if seq is not None and seq.first_ns else now
        last = seq.last_ns if seq is not None and seq.last_ns else now
        admitted = seq.admitted_ns if seq is not None and seq.admitted_ns else first
        return {
            "done_reason": gen.finish_reason,
            "done": True,
            "total_duration": now - ex.received_ns,
            "load_duration": 0,
            "prompt_eval_count": gen.prompt_tokens,
            "prompt_eval_duration": max(0, first - admitted),
            "eval_count": gen.output_tokens,
            "eval_duration": max(0, last - first),
        }

    def final(self) -> bytes:
        data: dict[str, Any] = {"model": self.gen.model, "created_at": _now_iso()}
        if self.chat:
            data["message"] = {"role": "assistant", "content": ""}
        else:
            data["response"] = ""
        data.update(self._done_fields())
        return orjson.dumps(data) + b"\n"

    def stream_error(self) -> bytes:
        return b'{"error":"an error was encountered while running the model (simulated)"}\n'

    def malformed(self) -> bytes:
        return self._head() + b'"message":{"role":"assistant","content":"unterminated\n'

    def body(self, *, usage: bool) -> bytes:
        gen = self.gen
        data: dict[str, Any] = {"model": gen.model, "created_at": _now_iso()}
        if self.chat:
            message = {"role": "assistant", "content": gen.answer_text}
            if gen.reasoning:
                message["thinking"] = gen.reasoning_text
            data["message"] = message
        else:
            data["response"] = gen.answer_text
            if gen.reasoning:
                data["thinking"] = gen.reasoning_text
        if usage:
            data.update(self._done_fields())
        else:
            data["done"] = True
        return orjson.dumps(data)


def _model_entry(name: str) -> dict[str, Any]:
    tag = name.split(":", 1)[1] if ":" in name else "latest"
    m = re.search(r"(\d+(?:\.\d+)?)b", tag)
    params_b = float(m.group(1)) if m else 3.0
    family = re.split(r"[\d.:]", name, maxsplit=1)[0] or "llama"
    digest = hashlib.sha256(name.encode()).hexdigest()
    return {
        "name": name,
        "model": name,
        "modified_at": "2025-01-01T00:00:00Z",
        "size": int(params_b * 0.6e9),
        "digest": digest,
        "details": {"parent_model": "", "format": "gguf", "family": family, "families": [family],
                    "parameter_size": f"{params_b:g}B", "quantization_level": "Q4_K_M"},
    }


def _limit(body: dict[str, Any]) -> int | None:
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise BadRequest(400, "options must be an object")
    n = options.get("num_predict")
    if n is None or (isinstance(n, int) and not isinstance(n, bool) and n < 0):
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n == 0:
        raise BadRequest(400, f"num_predict must be a positive integer or -1, got {n!r}")
    return n


class OllamaDialect:
    """Ollama's endpoints, and its error shape: ``{"error": "..."}``."""

    name = "ollama"

    def __init__(self, host: Host) -> None:
        self.host = host

    def install(self, app: web.Application) -> None:
        app.router.add_post("/api/chat", self.chat)
        app.router.add_post("/api/generate", self.generate)
        app.router.add_get("/api/tags", self.tags)
        app.router.add_get("/api/version", self.version)
        app.router.add_post("/api/show", self.show)
        app.router.add_post("/api/pull", self.pull)
        app.router.add_delete("/api/delete", self.delete)
        app.router.add_get("/api/ps", self.ps)
        app.router.add_get("/", self.root)

    def error(self, status: int, message: str, *, retry_after_s: float | None = None) -> web.Response:
        headers = {"Retry-After": retry_after_header(retry_after_s)} if retry_after_s is not None else None
        return json_response({"error": message}, status, headers)

    # -- generation ------------------------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await serve_generation(self.host, request, self, self._chat_ask)

    async def generate(self, request: web.Request) -> web.StreamResponse:
        return await serve_generation(self.host, request, self, self._generate_ask)

    def _chat_ask(self, body: dict[str, Any]) -> tuple[Ask, Callable[[Exchange], Encoder]]:
        model, stream = self._model_of(body), _stream(body)
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise BadRequest(400, "messages must be a list")
        texts, last_user = chat_texts(messages)
        return self._ask(body, model, stream, texts, last_user), lambda ex: OllamaEncoder(ex, chat=True)

    def _generate_ask(self, body: dict[str, Any]) -> tuple[Ask, Callable[[Exchange], Encoder]]:
        model, stream = self._model_of(body), _stream(body)
        prompt = body.get("prompt", "")
        if not isinstance(prompt, str):
            raise BadRequest(400, "prompt must be a string")
        texts = [message_text(body.get("system")), prompt]
        return self._ask(body, model, stream, texts, prompt), lambda ex: OllamaEncoder(ex, chat=False)

    def _ask(self, body: dict[str, Any], model: str, stream: bool, texts: list[str], last_user: str) -> Ask:
        limit = _limit(body)
        think = body.get("think")
        return Ask(
            model=model, stream=stream, prompt_tokens=self.host.chat_tokens(texts), last_user_text=last_user,
            limit=limit, reasoning=self.host.config.reasoning_tokens if think not in (None, False) else 0,
            schema=requested_schema(body, texts),
        )

    # -- model management ------------------------------------------------------------------------

    def _model_of(self, body: dict[str, Any]) -> str:
        """The model a request names, which must be listed (a 404 tells the client to pull it)."""
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest(400, "model is required")
        if resolve_model(name, self.host.models) is None:
            raise BadRequest(404, f'model "{name}" not found, try pulling it first')
        return name

    async def tags(self, request: web.Request) -> web.Response:
        return json_response({"models": [_model_entry(m) for m in self.host.models]})

    async def version(self, request: web.Request) -> web.Response:
        return json_response({"version": OLLAMA_VERSION})

    async def show(self, request: web.Request) -> web.StreamResponse:
        async def answer(body: dict[str, Any]) -> web.Response:
            name = self._model_of(body)
            entry = _model_entry(resolve_model(name, self.host.models) or name)
            return json_response({
                "modelfile": f"FROM {name}\n", "parameters": "", "template": "{{ .Prompt }}",
                "details": entry["details"], "model_info": {"general.architecture": entry["details"]["family"]},
                "capabilities": ["completion", "thinking"], "modified_at": entry["modified_at"],
            })

        return await serve_body(request, self, answer)

    async def pull(self, request: web.Request) -> web.StreamResponse:
        """Add the model to the list; streamed as Ollama's progress lines unless ``stream`` is false."""

        async def answer(body: dict[str, Any]) -> web.StreamResponse:
            name = body.get("model") or body.get("name")
            if not isinstance(name, str) or not name:
                raise BadRequest(400, "model is required")
            full = name if ":" in name else f"{name}:latest"
            if resolve_model(full, self.host.models) is None:
                self.host.models.append(full)
            if body.get("stream", True) is False:
                return json_response({"status": "success"})
            resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await resp.prepare(request)
            for line in _pull_progress(_model_entry(full)):
                await resp.write(orjson.dumps(line) + b"\n")
            await resp.write_eof()
            return resp

        return await serve_body(request, self, answer)

    async def delete(self, request: web.Request) -> web.StreamResponse:
        async def answer(body: dict[str, Any]) -> web.Response:
            name = self._model_of(body)
            self.host.models.remove(resolve_model(name, self.host.models) or name)
            return web.Response(status=200)

        return await serve_body(request, self, answer)

    async def ps(self, request: web.Request) -> web.Response:
        return json_response({"models": [
            _model_entry(m) | {"expires_at": "2099-01-01T00:00:00Z", "size_vram": 0} for m in self.host.models[:1]
        ]})

    async def root(self, request: web.Request) -> web.Response:
        """Ollama answers its root with this line; clients probe it."""
        return web.Response(text="Ollama is running")


def _stream(body: dict[str, Any]) -> bool:
    stream = body.get("stream", True)
    if not isinstance(stream, bool):
        raise BadRequest(400, f"stream must be a boolean, got {stream!r}")
    return stream


def _pull_progress(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The progress lines of a pull, as Ollama streams them."""
    digest = "sha256:" + entry["digest"]
    total = entry["size"]
    lines: list[dict[str, Any]] = [{"status": "pulling manifest"}]
    lines += [{"status": f"pulling {entry['digest'][:12]}", "digest": digest, "total": total,
               "completed": total * k // 4} for k in range(1, 5)]
    lines += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]
    return lines
