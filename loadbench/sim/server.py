"""The simulator's HTTP server: every dialect on one aiohttp app, backed by one engine.

``SimServer`` owns the listening socket, the engine, the fault picker and the trace. The dialect
modules (``openai``, ``anthropic``, ``ollama``) parse a request into a ``Generation`` and supply an
encoder for its bytes; ``SimServer.generate`` does the rest the same way for all of them: faults,
queueing in the engine, writing one chunk per token as the engine releases it, the final record,
and the ground-truth record.

Use it in-process (``async with SimServer(config) as server: server.base_url``) or in its own
process through ``SimProcess`` / ``python -m loadbench.sim``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from aiohttp import web, web_protocol

from loadbench.errors import ConfigError
from loadbench.sim.config import SimConfig
from loadbench.sim.engine import Engine, Sequence
from loadbench.sim.faults import FaultPicker
from loadbench.sim.structured import SchemaWriter
from loadbench.sim.text import Tokenizer, WordSource, tokenize
from loadbench.sim.trace import TraceLog
from loadbench.wire import REQUEST_ID_HEADER

__all__ = [
    "BadRequest",
    "Encoder",
    "Exchange",
    "Generation",
    "SimServer",
    "json_response",
    "positive_int",
    "read_json",
    "retry_after_header",
]

# Mid-stream faults strike after ``after_tokens`` token-bearing chunks; the others before any byte.
HTTP_FAULTS = {"429": 429, "500": 500, "503": 503, "529": 529}
MID_STREAM_FAULTS = frozenset({"reset", "stall", "malformed", "stream_error", "truncate"})
CLIENT_GONE = (ConnectionError, asyncio.CancelledError)


class BadRequest(Exception):
    """A request the simulator rejects; the dialect turns it into its own error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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


class _StampingRequestHandler(web_protocol.RequestHandler):
    """aiohttp's server protocol, stamping ``rx_ns`` when a request's bytes arrive.

    A request that arrives while the step loop is writing a burst of tokens waits for the loop
    before its handler runs; stamping arrival here keeps that wait out of the ground truth's
    ``received_ns`` (it is the server's queueing, which a client rightly feels as latency).
    """

    __slots__ = ("rx_ns",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rx_ns = 0

    def data_received(self, data: bytes) -> None:
        if data:
            self.rx_ns = time.perf_counter_ns()
        super().data_received(data)


def _stamping_factory(server: web.Server) -> Any:
    """A protocol factory like ``server`` itself, making stamping handlers (aiohttp's private
    ``_loop``/``_kwargs`` are what ``web.Server.__call__`` passes; stable through aiohttp 3.x)."""

    def make() -> web_protocol.RequestHandler:
        return _StampingRequestHandler(server, loop=server._loop, **server._kwargs)

    return make


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


class Dialect(Protocol):
    """A dialect's way of saying an error (an HTTP status and its body)."""

    def error(self, status: int, message: str, *, retry_after_s: float | None = None) -> web.Response:
        ...


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, headers=headers,
                        content_type="application/json")


class SimServer:
    """The simulator server in the current event loop. ``async with`` starts and stops it."""

    def __init__(self, config: SimConfig) -> None:
        if not isinstance(config, SimConfig):
            raise ConfigError(f"SimServer needs a SimConfig, got {config!r}")
        self.config = config
        self.engine = Engine(config.profile, seed=config.seed, jitter=config.jitter)
        self.faults = FaultPicker(config.faults, config.seed)
        self.words = WordSource(config.seed)
        self.tokenizer = Tokenizer(
            config.piece_chars, chat_tokens=config.chat_template_tokens, message_tokens=config.message_template_tokens
        )
        self.trace = TraceLog(config.trace_path) if config.trace else None
        self.models: list[str] = list(config.models)
        self.started_ns = 0
        self.port = 0
        self.outcomes: dict[str, int] = {}
        self.fault_counts: dict[str, int] = {}
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self._ids = 0
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.base_events.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._refusing = False
        self._closed = False
        self._responders = [(r, re.compile(r.pattern)) for r in config.responders]
        self.structured = SchemaWriter(
            config.seed, self.words, null_rate=config.json_null_rate, malformed_rate=config.json_malformed_rate
        )

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host = self.config.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Bind, start the engine and the background tasks."""
        from loadbench.sim import routes

        app = web.Application(client_max_size=256 * 1024 * 1024)
        routes.install(app, self)
        # handler_cancellation: a client that hangs up frees its engine slot at once, as vLLM aborts
        # a disconnected request, instead of holding capacity until the next write fails.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True)
        await self._runner.setup()
        await self._listen(self.config.port)
        self.started_ns = time.perf_counter_ns()
        self.engine.start()
        loop = asyncio.get_running_loop()
        if self.trace is not None:
            self._tasks.append(loop.create_task(self.trace.run(), name="sim-trace"))
        for window in self.config.faults.schedule:
            if window.kind == "refuse":
                self._tasks.append(loop.create_task(self._refuse_window(window.start_s, window.end_s)))

    async def _listen(self, port: int) -> None:
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, port))
        sock.listen(4096)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        assert self._runner is not None and self._runner.server is not None
        self._listener = await asyncio.get_running_loop().create_server(
            _stamping_factory(self._runner.server), sock=sock, backlog=4096
        )

    async def close(self) -> None:
        """Stop listening, end streams, stop the engine, flush the trace (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        await self.engine.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.trace is not None:
            self.trace.close()

    async def _refuse_window(self, start_s: float, end_s: float) -> None:
        """A simulated restart: refuse connections for the window, resetting the open ones."""
        start_ns = self.started_ns
        await asyncio.sleep(max(0.0, start_s - (time.perf_counter_ns() - start_ns) / 1e9))
        self._refusing = True
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.count_fault("refuse")
        if self._runner is not None and self._runner.server is not None:
            for handler in self._runner.server.connections:
                reset_transport(handler.transport)
        await asyncio.sleep(max(0.0, end_s - (time.perf_counter_ns() - start_ns) / 1e9))
        self._refusing = False
        await self._listen(self.port)

    # -- per-request helpers ---------------------------------------------------------------------

    def new_exchange(self, request: web.Request) -> Exchange:
        # When the request's last bytes arrived, not when its handler got to run.
        received_ns = getattr(request.protocol, "rx_ns", 0) or time.perf_counter_ns()
        rid = request.headers.get(REQUEST_ID_HEADER)
        self._ids += 1
        return Exchange(request, rid or f"sim-{self._ids}", received_ns)

    def has_model(self, name: str) -> bool:
        return resolve_model(name, self.models) is not None

    def count(self, text: str) -> int:
        """Tokens in ``text`` by the simulator's tokenizer."""
        return self.tokenizer.count(text)

    def chat_tokens(self, texts: list[str]) -> int:
        """Prompt tokens of a chat request: the messages' texts and the chat template's tokens."""
        return self.tokenizer.chat(texts)

    def count_fault(self, kind: str) -> None:
        self.fault_counts[kind] = self.fault_counts.get(kind, 0) + 1

    def respond_text(self, messages_text: str) -> str | None:
        """The canned answer for the last user message, if a responder matches."""
        for responder, regex in self._responders:
            m = regex.search(messages_text)
            if m is None:
                continue
            if responder.json is not None:
                return orjson.dumps(responder.json).decode()
            groups = {k: (v or "") for k, v in m.groupdict().items()}
            return responder.template.format(m.group(0), *(g or "" for g in m.groups()), **groups)
        return None

    def plan(
        self,
        *,
        dialect: str,
        model: str,
        stream: bool,
        prompt_tokens: int,
        last_user_text: str,
        limit: int | None,
        ignore_eos: bool = False,
        min_tokens: int = 0,
        reasoning: int = 0,
        reasoning_visible: bool = True,
        schema: tuple[dict[str, Any] | None, bool] = (None, False),
    ) -> Generation:
        """Decide the output: reasoning tokens first, then the answer, within ``limit`` in total.

        The answer runs to ``limit`` unless the model "stops" first: a responder's text ends, or
        the profile's ``eos_after_tokens`` is reached (``ignore_eos`` and ``min_tokens`` push past
        it). Without a limit the answer is ``default_output_tokens`` long. ``schema`` is the JSON
        schema the request asks for and whether its API enforces it (``structured.requested_schema``):
        the answer is then an instance of it, unless a responder matched.
        """
        profile = self.config.profile
        if limit is not None:
            reasoning = min(reasoning, max(0, limit - 1))
        answer_limit = None if limit is None else limit - reasoning
        canned = self.respond_text(last_user_text) if self._responders else None
        if canned is None and schema[0] is not None:
            canned = self.structured.reply(schema[0], enforced=schema[1])
        # An empty canned answer still needs one token to stream: a single space.
        canned_pieces = (tokenize(canned) or [" "]) if canned is not None else None
        want: float  # where the "model" would stop on its own
        if canned_pieces is not None:
            want = len(canned_pieces)
        elif profile.eos_after_tokens is not None and not ignore_eos:
            want = profile.eos_after_tokens
        else:
            want = math.inf
        if min_tokens and canned_pieces is None:
            want = max(want, min_tokens - reasoning)
        if answer_limit is None:
            n, finish = (profile.default_output_tokens if want == math.inf else int(want)), "stop"
        elif want > answer_limit:
            n, finish = answer_limit, "length"
        else:
            n, finish = int(want), "stop"
        n = max(1, n)
        answer = canned_pieces[:n] if canned_pieces is not None else self.words.pieces(n)
        return Generation(
            dialect=dialect,
            model=model,
            stream=stream,
            prompt_tokens=prompt_tokens,
            reasoning=self.words.pieces(reasoning),
            answer=answer,
            reasoning_visible=reasoning_visible,
            finish_reason=finish,
        )

    # -- the shared generation path ----------------------------------------------------------------

    async def generate(self, ex: Exchange, encoder: Encoder, dialect: Dialect) -> web.StreamResponse:
        """Serve a planned generation: faults, queueing, streaming, the final record, the trace."""
        gen = ex.gen
        assert gen is not None
        faults = self.config.faults
        fault = self.faults.pick((ex.received_ns - self.started_ns) / 1e9)
        outcome, status = "ok", 200
        try:
            if fault is not None:
                self.count_fault(fault)
                if fault in HTTP_FAULTS:
                    outcome, status = "fault", HTTP_FAULTS[fault]
                    retry = faults.retry_after_s if status in (429, 503, 529) else None
                    resp = dialect.error(status, _fault_message(status), retry_after_s=retry)
                    ex.last_ns = time.perf_counter_ns()
                    return resp
                if fault == "refuse":
                    outcome, status = "fault", 0
                    ex.last_ns = time.perf_counter_ns()
                    reset_transport(ex.request.transport)
                    return web.Response(status=503)  # never reaches the client
                if fault == "slow_headers":
                    await asyncio.sleep(faults.slow_headers_s)
            if self.config.profile.overhead_ms:
                await asyncio.sleep(self.config.profile.overhead_ms / 1e3)
            if not self.engine.fits(gen.prompt_tokens, gen.output_tokens):
                outcome, status = "error", 400
                return dialect.error(400, f"prompt ({gen.prompt_tokens} tokens) plus output "
                                          f"({gen.output_tokens} tokens) exceeds the KV cache "
                                          f"({self.config.profile.kv_cache_tokens} tokens)")
            seq = ex.seq = Sequence(gen.prompt_tokens, gen.output_tokens)
            self.engine.submit(seq)
            self.prompt_tokens_total += gen.prompt_tokens
            mid = fault if fault in MID_STREAM_FAULTS else None
            if gen.stream:
                resp, end = await self._stream(ex, encoder, mid)
            else:
                resp, end = await self._whole(ex, encoder, dialect, mid)
                status = resp.status if end != "reset" else 0
            outcome = "client_gone" if end == "client_gone" else ("fault" if mid else "ok")
            return resp
        except CLIENT_GONE:
            outcome = "client_gone"
            raise
        finally:
            if ex.seq is not None:
                self.engine.cancel(ex.seq)
                self.generation_tokens_total += ex.seq.generated
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
            if self.trace is not None:
                self.trace.add(self._record(ex, status, outcome, fault))

    async def _stream(self, ex: Exchange, enc: Encoder, mid: str | None) -> tuple[web.StreamResponse, str]:
        """Stream the answer, one chunk per token as the engine releases it.

        Returns the response and how it ended: ``"ok"``, ``"struck"`` (a fault ended it early) or
        ``"client_gone"``.
        """
        gen, seq = ex.gen, ex.seq
        assert gen is not None and seq is not None
        clock = time.perf_counter_ns
        resp = web.StreamResponse(headers={"Content-Type": enc.content_type, "Cache-Control": "no-cache"})
        write = resp.write
        try:
            await resp.prepare(ex.request)
            head = enc.start()
            if head:
                await write(head)
            n_reason = len(gen.reasoning)
            visible = gen.reasoning_visible
            reasoning, answer = gen.reasoning, gen.answer
            strike_at = self.config.faults.after_tokens if mid is not None else -1
            produced = 0
            while n := await seq.take():
                for _ in range(n):
                    i = produced
                    produced += 1
                    if i < n_reason:
                        if not visible:
                            continue
                        chunk = enc.reasoning(reasoning[i])
                    else:
                        chunk = enc.answer(answer[i - n_reason])
                        if i == n_reason and n_reason and visible:
                            chunk = enc.reasoning_end() + chunk
                    if ex.tokens_sent == strike_at:
                        strike_at = -1
                        if not await self._strike(ex, resp, enc, mid):
                            return resp, "struck"
                    await write(chunk)
                    ex.tokens_sent += 1
                    if not ex.first_token_ns:
                        ex.first_token_ns = clock()
            if seq.cancelled:
                return resp, "client_gone"
            if strike_at >= 0 and not await self._strike(ex, resp, enc, mid):
                return resp, "struck"
            await write(enc.final())
            await resp.write_eof()
            ex.last_ns = clock()
            return resp, "ok"
        except ConnectionError:
            return resp, "client_gone"

    async def _strike(self, ex: Exchange, resp: web.StreamResponse, enc: Encoder, kind: str | None) -> bool:
        """Apply a mid-stream fault; True when the stream goes on afterwards."""
        if kind == "stall":
            await asyncio.sleep(self.config.faults.stall_s)
            return True
        if kind == "malformed":
            await resp.write(enc.malformed())
            return True
        if kind == "reset":
            ex.last_ns = time.perf_counter_ns()
            reset_transport(ex.request.transport)
            return False
        if kind == "stream_error":
            await resp.write(enc.stream_error())
        # stream_error and truncate: end the body cleanly, without the final record.
        await resp.write_eof()
        ex.last_ns = time.perf_counter_ns()
        return False

    async def _whole(
        self, ex: Exchange, enc: Encoder, dialect: Dialect, mid: str | None
    ) -> tuple[web.StreamResponse, str]:
        """Wait for the whole answer and send it as one body, with faults adapted to one body:
        reset drops the connection, stall delays the body, malformed cuts the JSON in half,
        stream_error answers 500, truncate leaves out the usage/final fields."""
        seq, gen = ex.seq, ex.gen
        assert seq is not None and gen is not None
        while await seq.take():
            pass
        if seq.cancelled:
            return web.Response(status=503), "client_gone"
        if mid == "reset":
            ex.last_ns = time.perf_counter_ns()
            reset_transport(ex.request.transport)
            return web.Response(status=503), "reset"
        if mid == "stall":
            await asyncio.sleep(self.config.faults.stall_s)
        if mid == "stream_error":
            resp = dialect.error(500, "the server had an error while processing your request")
        else:
            body = enc.body(usage=mid != "truncate")
            if mid == "malformed":
                body = body[: max(1, len(body) // 2)]
            resp = web.Response(body=body, content_type="application/json")
            ex.tokens_sent = len(gen.answer) + (len(gen.reasoning) if gen.reasoning_visible else 0)
        try:
            # Send it here rather than on return, so the stamp is the write's.
            await resp.prepare(ex.request)
            await resp.write_eof()
        except ConnectionError:
            return resp, "client_gone"
        ex.last_ns = time.perf_counter_ns()
        if ex.tokens_sent:
            ex.first_token_ns = ex.last_ns
        return resp, "ok"

    def _record(self, ex: Exchange, status: int, outcome: str, fault: str | None) -> dict[str, Any]:
        gen, seq = ex.gen, ex.seq
        return {
            "id": ex.request_id,
            "dialect": gen.dialect if gen else None,
            "path": ex.request.path,
            "model": gen.model if gen else None,
            "stream": gen.stream if gen else None,
            "received_ns": ex.received_ns,
            "admitted_ns": seq.admitted_ns if seq else 0,
            "first_token_ns": ex.first_token_ns,
            "last_ns": ex.last_ns or time.perf_counter_ns(),
            "tokens_sent": ex.tokens_sent,
            "output_tokens": seq.generated if seq else 0,
            "reasoning_tokens": min(len(gen.reasoning), seq.generated) if gen and seq else 0,
            "prompt_tokens": gen.prompt_tokens if gen else 0,
            "status": status,
            "outcome": outcome,
            "fault": fault,
        }

    def record_rejection(self, ex: Exchange, status: int, dialect: str) -> None:
        """Trace a request rejected before generation (bad request, unknown model)."""
        self.outcomes["error"] = self.outcomes.get("error", 0) + 1
        if self.trace is not None:
            rec = self._record(ex, status, "error", None)
            rec["dialect"] = dialect
            self.trace.add(rec)


def retry_after_header(seconds: float | None) -> str:
    # Retry-After is whole seconds on the wire; round up so a client never retries early.
    return str(max(0, int(-(-float(seconds or 0) // 1))))


def positive_int(body: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(400, f"{name} must be a positive integer, got {value!r}")
        return value
    return None


async def read_json(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise BadRequest(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest(400, "request body must be a JSON object")
    return body


def _fault_message(status: int) -> str:
    return {
        429: "rate limit reached (simulated)",
        500: "internal server error (simulated)",
        503: "service unavailable (simulated)",
        529: "overloaded (simulated)",
    }.get(status, "error (simulated)")


def reset_transport(transport: asyncio.BaseTransport | None) -> None:
    """Close a connection with a TCP reset (SO_LINGER 0), as a crashing server would."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


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

