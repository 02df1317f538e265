"""The simulator's behaviour behind every endpoint: its state, the output a request gets, and the
one generation path every dialect shares. No sockets here: ``SimServer`` serves it on one.

The dialect modules (``openai``, ``anthropic``, ``ollama``) parse a request into an ``Ask`` and
supply an encoder for its bytes (``toolkit``); ``Simulator.plan`` decides the output and
``Simulator.generate`` does the rest the same way for all of them: faults, queueing in the engine,
writing one chunk per token as the engine releases it, the final record, and the ground-truth
record.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import socket
import struct
import time
from typing import Any

import orjson
from aiohttp import web

from loadbench.contract.errors import ConfigError
from loadbench.contract.headers import REQUEST_ID_HEADER
from loadbench.sim.config import SimConfig
from loadbench.sim.engine import Engine, Sequence
from loadbench.sim.faults import FaultPicker
from loadbench.sim.structured import SchemaWriter
from loadbench.sim.text import Tokenizer, WordSource, tokenize
from loadbench.sim.toolkit import Ask, Encoder, ErrorShape, Exchange, Generation
from loadbench.sim.trace import TraceLog

__all__ = ["Simulator", "reset_transport"]

# Mid-stream faults strike after ``after_tokens`` token-bearing chunks; the others before any byte.
HTTP_FAULTS = {"429": 429, "500": 500, "503": 503, "529": 529}
MID_STREAM_FAULTS = frozenset({"reset", "stall", "malformed", "stream_error", "truncate"})
CLIENT_GONE = (ConnectionError, asyncio.CancelledError)


class Simulator:
    """The simulated server's state and its answer to each request, in the current event loop.

    Every dialect's handlers reach it as their ``toolkit.Host``. ``started_ns`` is when serving
    began (the fault schedule's origin); whoever serves it sets it.
    """

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
        self.outcomes: dict[str, int] = {}
        self.fault_counts: dict[str, int] = {}
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self._ids = 0
        self._responders = [(r, re.compile(r.pattern)) for r in config.responders]
        self.structured = SchemaWriter(
            config.seed, self.words, null_rate=config.json_null_rate, malformed_rate=config.json_malformed_rate
        )

    # -- per-request helpers ---------------------------------------------------------------------

    def new_exchange(self, request: web.Request) -> Exchange:
        # When the request's last bytes arrived, not when its handler got to run.
        received_ns = getattr(request.protocol, "rx_ns", 0) or time.perf_counter_ns()
        rid = request.headers.get(REQUEST_ID_HEADER)
        self._ids += 1
        return Exchange(request, rid or f"sim-{self._ids}", received_ns)

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

    def plan(self, dialect: str, ask: Ask) -> Generation:
        """Decide the output: reasoning tokens first, then the answer, within ``ask.limit`` in total.

        The answer runs to the limit unless the model "stops" first: a responder's text ends, or
        the profile's ``eos_after_tokens`` is reached (``ignore_eos`` and ``min_tokens`` push past
        it). Without a limit the answer is ``default_output_tokens`` long. With a ``schema`` the
        answer is an instance of it, unless a responder matched.
        """
        limit, reasoning = ask.limit, ask.reasoning
        if limit is not None:
            reasoning = min(reasoning, max(0, limit - 1))
        canned = self._canned_pieces(ask)
        n, finish = self._answer_length(ask, canned, reasoning)
        answer = canned[:n] if canned is not None else self.words.pieces(n)
        return Generation(
            dialect=dialect,
            model=ask.model,
            stream=ask.stream,
            prompt_tokens=ask.prompt_tokens,
            reasoning=self.words.pieces(reasoning),
            answer=answer,
            reasoning_visible=ask.reasoning_visible,
            finish_reason=finish,
        )

    def _canned_pieces(self, ask: Ask) -> list[str] | None:
        """The answer's pieces when they are fixed (a responder matched, or a schema asked for);
        None when the answer is free text."""
        canned = self.respond_text(ask.last_user_text) if self._responders else None
        if canned is None and ask.schema[0] is not None:
            canned = self.structured.reply(ask.schema[0], enforced=ask.schema[1])
        # An empty canned answer still needs one token to stream: a single space.
        return (tokenize(canned) or [" "]) if canned is not None else None

    def _answer_length(self, ask: Ask, canned: list[str] | None, reasoning: int) -> tuple[int, str]:
        """How many answer tokens follow ``reasoning`` ones, and the finish reason."""
        profile = self.config.profile
        answer_limit = None if ask.limit is None else ask.limit - reasoning
        want: float  # where the "model" would stop on its own
        if canned is not None:
            want = len(canned)
        elif profile.eos_after_tokens is not None and not ask.ignore_eos:
            want = profile.eos_after_tokens
        else:
            want = math.inf
        if ask.min_tokens and canned is None:
            want = max(want, ask.min_tokens - reasoning)
        if answer_limit is None:
            n, finish = (profile.default_output_tokens if want == math.inf else int(want)), "stop"
        elif want > answer_limit:
            n, finish = answer_limit, "length"
        else:
            n, finish = int(want), "stop"
        return max(1, n), finish

    # -- the shared generation path ----------------------------------------------------------------

    async def generate(self, ex: Exchange, encoder: Encoder, shape: ErrorShape) -> web.StreamResponse:
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
                    resp = shape.error(status, _fault_message(status), retry_after_s=retry)
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
                return shape.error(400, f"prompt ({gen.prompt_tokens} tokens) plus output "
                                          f"({gen.output_tokens} tokens) exceeds the KV cache "
                                          f"({self.config.profile.kv_cache_tokens} tokens)")
            seq = ex.seq = Sequence(gen.prompt_tokens, gen.output_tokens)
            self.engine.submit(seq)
            self.prompt_tokens_total += gen.prompt_tokens
            mid = fault if fault in MID_STREAM_FAULTS else None
            if gen.stream:
                resp, end = await self._stream(ex, encoder, mid)
            else:
                resp, end = await self._whole(ex, encoder, shape, mid)
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
                    # Stamped as the token is handed to the socket: the write itself delivers it
                    # over loopback, so a client stamping its arrival in the kernel sees it during
                    # this call, never before this stamp.
                    written_ns = clock()
                    await write(chunk)
                    ex.tokens_sent += 1
                    if not ex.first_token_ns:
                        ex.first_token_ns = written_ns
            if seq.cancelled:
                return resp, "client_gone"
            if strike_at >= 0 and not await self._strike(ex, resp, enc, mid):
                return resp, "struck"
            await write(enc.final())
            ex.last_ns = clock()  # as the end of the body is handed to the socket (see above)
            await resp.write_eof()
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
        self, ex: Exchange, enc: Encoder, shape: ErrorShape, mid: str | None
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
            resp = shape.error(500, "the server had an error while processing your request")
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


