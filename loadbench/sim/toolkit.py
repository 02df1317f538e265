"""What a dialect's handlers need: the request and answer types, body parsing, and the one path
every endpoint takes, rejection included.

A dialect module (``openai``, ``anthropic``, ``ollama``) imports this module and nothing of the
server: it parses a request into an ``Ask``, names an ``Encoder`` for the answer's bytes, says
errors in its own ``ErrorShape``, and hands the rest to a ``Host`` (the simulator) through
``serve_generation``. An endpoint that reads a body without generating answers through
``serve_body``. Both turn a ``BadRequest`` into the dialect's error the same way (``reject``);
only a generating endpoint's rejection is traced.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from aiohttp import web

from loadbench.sim.config import SimConfig
from loadbench.sim.engine import Sequence
from loadbench.sim.text import message_text

__all__ = [
    "Ask",
    "BadRequest",
    "Encoder",
    "ErrorShape",
    "Exchange",
    "Generation",
    "Host",
    "chat_texts",
    "json_response",
    "positive_int",
    "read_json",
    "reject",
    "resolve_model",
    "retry_after_header",
    "serve_body",
    "serve_generation",
]


class BadRequest(Exception):
    """A request the simulator rejects; the dialect turns it into its own error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Ask:
    """What one request asks for, as its dialect read it; the simulator plans the output from it.

    ``limit`` bounds reasoning and answer together (None: no bound). ``reasoning`` is how many
    reasoning tokens come first; ``reasoning_visible`` is false when the dialect counts them in
    usage but never streams them. ``schema`` is the JSON schema the answer must follow and whether
    the API enforces it (``structured.requested_schema``).
    """

    model: str
    stream: bool
    prompt_tokens: int
    last_user_text: str
    limit: int | None
    ignore_eos: bool = False
    min_tokens: int = 0
    reasoning: int = 0
    reasoning_visible: bool = True
    schema: tuple[dict[str, Any] | None, bool] = (None, False)


@dataclass(slots=True)
class Generation:
    """What one request asks for, after its dialect parsed it and the output was planned.

    ``reasoning`` pieces come before ``answer`` pieces; ``reasoning_visible`` is false when the
    dialect hides reasoning (OpenAI's ``reasoning_effort``: counted in usage, never streamed).
    ``finish_reason`` is ``"stop"`` or ``"length"`` (the dialect renames it).
    """

    dialect: str
    model: str
    stream: bool
    prompt_tokens: int
    reasoning: list[str]
    answer: list[str]
    reasoning_visible: bool
    finish_reason: str

    @property
    def output_tokens(self) -> int:
        """Every generated token, hidden reasoning included (what usage reports)."""
        return len(self.reasoning) + len(self.answer)

    @property
    def answer_text(self) -> str:
        return "".join(self.answer)

    @property
    def reasoning_text(self) -> str:
        return "".join(self.reasoning)


class Exchange:
    """One request's state while it is served: its stamps, its engine sequence, its trace record."""

    __slots__ = ("first_token_ns", "gen", "last_ns", "received_ns", "request", "request_id", "seq",
                 "tokens_sent")

    def __init__(self, request: web.Request, request_id: str, received_ns: int) -> None:
        self.request = request
        self.request_id = request_id
        self.received_ns = received_ns
        self.gen: Generation | None = None
        self.seq: Sequence | None = None
        self.first_token_ns = 0
        self.last_ns = 0
        self.tokens_sent = 0


class Encoder(Protocol):
    """A dialect's bytes for one streamed (or whole) answer. Every method returns bytes to write."""

    content_type: str

    def start(self) -> bytes:
        """Bytes before the first token (may be empty)."""

    def reasoning(self, piece: str) -> bytes:
        """One reasoning token."""

    def reasoning_end(self) -> bytes:
        """Bytes between the last reasoning token and the first answer token (may be empty)."""

    def answer(self, piece: str) -> bytes:
        """One answer token."""

    def final(self) -> bytes:
        """The final record(s): usage, done record, terminator."""

    def stream_error(self) -> bytes:
        """An in-stream error record."""

    def malformed(self) -> bytes:
        """A chunk that is not valid for the dialect."""

    def body(self, *, usage: bool) -> bytes:
        """The whole non-streamed answer (without its usage/final fields when ``usage`` is false)."""


class ErrorShape(Protocol):
    """A dialect's name and its way of saying an error (an HTTP status and its body).

    Not to be confused with ``deployments.base.Dialect``, the client side's names of the dialects:
    the simulator imports nothing from the client side but the wire constants and the errors.
    """

    name: str

    def error(self, status: int, message: str, *, retry_after_s: float | None = None) -> web.Response:
        ...


class Host(Protocol):
    """What the dialects need of the simulator serving them."""

    config: SimConfig
    models: list[str]

    def count(self, text: str) -> int:
        """Tokens in ``text``."""

    def chat_tokens(self, texts: list[str]) -> int:
        """Prompt tokens of a chat request with these message texts, its template included."""

    def new_exchange(self, request: web.Request) -> Exchange:
        """The state of a request that just arrived."""

    def record_rejection(self, ex: Exchange, status: int, dialect: str) -> None:
        """Count and trace a request rejected before generation."""

    def plan(self, dialect: str, ask: Ask) -> Generation:
        """The output the request gets."""

    async def generate(self, ex: Exchange, encoder: Encoder, shape: ErrorShape) -> web.StreamResponse:
        """Serve a planned generation: faults, queueing, streaming, the final record, the trace."""


# How a dialect reads a generating request: what it asks for, and the encoder of its answer.
ParseAsk = Callable[[dict[str, Any]], tuple[Ask, Callable[[Exchange], Encoder]]]


def reject(shape: ErrorShape, exc: BadRequest) -> web.Response:
    """The dialect's answer to a request it rejects."""
    return shape.error(exc.status, exc.message)


async def serve_generation(host: Host, request: web.Request, shape: ErrorShape,
                           parse: ParseAsk) -> web.StreamResponse:
    """Serve a generating endpoint: read the body, ``parse`` it, plan and generate.

    A ``BadRequest`` from the body or from ``parse`` is counted and traced as a rejection and
    answered in the dialect's error shape; nothing is generated for it.
    """
    ex = host.new_exchange(request)
    try:
        body = await read_json(request)
        ask, encoder = parse(body)
    except BadRequest as exc:
        host.record_rejection(ex, exc.status, shape.name)
        return reject(shape, exc)
    ex.gen = host.plan(shape.name, ask)
    return await host.generate(ex, encoder(ex), shape)


async def serve_body(request: web.Request, shape: ErrorShape,
                     answer: Callable[[dict[str, Any]], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Serve an endpoint that reads a JSON body without generating (model management, token
    counting): a ``BadRequest`` from the body or from ``answer`` is answered in the dialect's
    error shape, untraced."""
    try:
        return await answer(await read_json(request))
    except BadRequest as exc:
        return reject(shape, exc)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, headers=headers,
                        content_type="application/json")


def retry_after_header(seconds: float | None) -> str:
    # Retry-After is whole seconds on the wire; round up so a client never retries early.
    return str(max(0, int(-(-float(seconds or 0) // 1))))


def positive_int(body: dict[str, Any], *names: str) -> int | None:
    """The first of ``names`` present in ``body``, which must be a positive integer; None if none is."""
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(400, f"{name} must be a positive integer, got {value!r}")
        return value
    return None


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request's body as a JSON object, or a 400 ``BadRequest``."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise BadRequest(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest(400, "request body must be a JSON object")
    return body


def chat_texts(messages: list[Any]) -> tuple[list[str], str]:
    """The texts of a chat request's messages (entries that are not objects skipped) and the last
    user message's text (empty when there is none)."""
    texts = [message_text(m.get("content")) for m in messages if isinstance(m, dict)]
    last_user = next((message_text(m.get("content")) for m in reversed(messages)
                      if isinstance(m, dict) and m.get("role") == "user"), "")
    return texts, last_user


def resolve_model(name: str, models: list[str]) -> str | None:
    """The listed model ``name`` refers to (``llama3.2`` means ``llama3.2:latest``), or None."""
    if not isinstance(name, str) or not name:
        return None
    if name in models:
        return name
    if ":" not in name and f"{name}:latest" in models:
        return f"{name}:latest"
    if name.endswith(":latest") and name[: -len(":latest")] in models:
        return name[: -len(":latest")]
    return None
