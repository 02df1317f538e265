"""The lean aiohttp client path every dialect shares.

One ``HttpTransport`` per run owns one ``aiohttp.ClientSession`` whose connection pool is sized to
the run's concurrency (never aiohttp's default of 100 per host, which would silently cap a run).
``HttpSender`` sends one prompt through a dialect module (``loadbench.deployments.wire.*``): the
dialect builds the body and parses each decoded event into the record; this module frames the byte
stream (SSE or NDJSON), enforces the per-request deadlines, and translates every foreign exception
into ``RequestFailed`` in one place (``translate``).

Hot path: one ``perf_counter_ns()`` per network read, shared by every event in that read (they
arrived together); no I/O, no logging, no per-chunk configuration lookups.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import re
import socket
import ssl
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from time import perf_counter_ns
from typing import Any, Literal, Protocol

import aiohttp
import orjson
from aiohttp.client_proto import ResponseHandler
from aiohttp.payload import BytesPayload

from loadbench.deployments.base import ClientSettings, Timeouts
from loadbench.errors import ErrorCategory, RequestFailed, TargetError
from loadbench.metrics.record import RequestRecord
from loadbench.wire import REQUEST_ID_HEADER, USER_AGENT
from loadbench.workloads.prompt import Prompt

Framing = Literal["sse", "ndjson"]

# aiohttp's StreamReader refuses a buffered line above twice this; we split lines ourselves, but
# a big read buffer still means fewer, larger reads when a server bursts.
READ_BUFSIZE_BYTES = 4 << 20
# Error bodies are read for their message only; nothing useful lives past this.
ERROR_BODY_LIMIT_BYTES = 64 << 10
DETAIL_LIMIT_CHARS = 300

# Shapes of provider keys, scrubbed from any detail we keep even if a server echoes one back.
_KEY_PATTERN = re.compile(r"\b(sk-(?:ant-|proj-)?)[A-Za-z0-9_\-]{8,}")


def redact(text: str, secret: str | None = None) -> str:
    """``text`` with ``secret`` and anything shaped like a provider API key masked."""
    if secret:
        text = text.replace(secret, "***")
    return _KEY_PATTERN.sub(r"\1***", text)


# ---------------------------------------------------------------------------------------------
# Framing: bytes in, (event, data) out. Incremental; a network read may end mid-line.


# The longest line a decoder holds while waiting for its newline. A streamed event carries one
# chunk of an answer (a few hundred bytes; a final record with usage or Ollama's context, tens of
# KiB), so a line past this is a server that is not streaming the dialect: the request fails as
# malformed instead of the harness buffering it without bound.
MAX_LINE_BYTES = 8 << 20


class LineSplitter:
    """Splits a byte stream into lines, linear in the bytes received and bounded in memory.

    ``split`` returns the lines a chunk completes (without their newline); a partial line is held
    as a list of pieces, joined once when its newline arrives, so a long line costs one copy, not
    one per chunk. Holding more than ``max_line_bytes`` raises ``RequestFailed(MALFORMED)``.
    """

    __slots__ = ("_parts", "_size", "max_line_bytes")

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self.max_line_bytes = max_line_bytes

    def split(self, chunk: bytes) -> list[bytes]:
        lines = chunk.split(b"\n")
        tail = lines.pop()
        if self._parts:
            if not lines:
                self._hold(tail)
                return lines
            self._check(self._size + len(lines[0]))
            self._parts.append(lines[0])
            lines[0] = b"".join(self._parts)
            self._parts.clear()
            self._size = 0
        if tail:
            self._hold(tail)
        return lines

    def _hold(self, piece: bytes) -> None:
        self._size += len(piece)
        self._check(self._size)
        self._parts.append(piece)

    def _check(self, size: int) -> None:
        if size > self.max_line_bytes:
            raise RequestFailed(
                ErrorCategory.MALFORMED,
                f"a line of over {self.max_line_bytes:,} bytes without a newline: not a stream of this dialect",
            )

    def rest(self) -> bytes:
        """The unterminated last line (``b""`` if none); the splitter is empty afterwards."""
        rest = b"".join(self._parts)
        self._parts.clear()
        self._size = 0
        return rest


class SseDecoder:
    """Incremental ``text/event-stream`` decoder (WHATWG rules, bytes in, bytes out).

    ``feed`` returns the events completed by a chunk as ``(event_name, data)``; ``event_name`` is
    ``""`` when the server sent none. Multi-line ``data:`` fields are joined with ``\\n``; comments
    (``: ping``), ``id:`` and ``retry:`` are ignored. ``close`` returns what the end of the stream
    completes plus any unterminated last line (see ``tail``). A line, or an event's data, longer
    than ``max_line_bytes`` raises ``RequestFailed(MALFORMED)``.
    """

    __slots__ = ("_data", "_event", "_lines")

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._lines = LineSplitter(max_line_bytes)
        self._data: bytes | None = None
        self._event = ""

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        for line in self._lines.split(chunk):
            self._line(line, out)
        return out

    def _line(self, line: bytes, out: list[tuple[str, bytes]]) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            if self._data is not None:
                out.append((self._event, self._data))
            self._data = None
            self._event = ""
            return
        if line.startswith(b"data:"):
            value = line[5:]
            if value.startswith(b" "):
                value = value[1:]
            if self._data is not None:
                # Many data: lines with no blank line between them are one event: bounded too.
                self._lines._check(len(self._data) + len(value))
                value = self._data + b"\n" + value
            self._data = value
        elif line.startswith(b"event:"):
            self._event = line[6:].strip().decode("utf-8", "replace")
        # ":" comments (keep-alive pings), "id:", "retry:" and unknown fields carry nothing for us.

    def close(self) -> tuple[list[tuple[str, bytes]], bytes]:
        """Events the end of stream completes, and the unterminated last line (``b""`` if none).

        A server that omits the final blank line still has its last event delivered. The tail is
        returned separately because a line cut off by the end of the stream is a truncation, not
        a malformed chunk; the caller decides.
        """
        out: list[tuple[str, bytes]] = []
        tail = self._lines.rest()
        if tail.rstrip(b"\r") and tail.startswith(b"data:"):
            # A final "data: [DONE]" without its newline is common enough to accept whole.
            self._line(tail, out)
            tail_event = self._data
            self._data = None
            if tail_event is not None:
                return out, tail_event
        if self._data is not None:
            out.append((self._event, self._data))
            self._data = None
        return out, b""


class NdjsonDecoder:
    """Incremental newline-delimited JSON framing: one event per non-empty line (each at most
    ``max_line_bytes``, else ``RequestFailed(MALFORMED)``)."""

    __slots__ = ("_lines",)

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._lines = LineSplitter(max_line_bytes)

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        return [("", line) for line in self._lines.split(chunk) if line.strip()]

    def close(self) -> tuple[list[tuple[str, bytes]], bytes]:
        return [], self._lines.rest().strip()


# ---------------------------------------------------------------------------------------------
# The dialect interface this module calls (owned here, implemented in wire/*).


class StreamParser(Protocol):
    """Turns one response's decoded events into stamps on one record."""

    done: bool

    def feed(self, event: str, data: bytes, now_ns: int) -> None:
        """Apply one event that arrived at ``now_ns``; raise ``RequestFailed`` (MALFORMED,
        STREAM_ERROR, OVERLOADED) when the event says the request failed."""
        ...


class Wire(Protocol):
    """One dialect's request/response shape, decided once per run."""

    framing: Framing

    def url(self, base_url: str) -> str:
        """The streaming endpoint under ``base_url``."""
        ...

    def encode(self, prompt: Prompt) -> bytes:
        """The JSON request body for ``prompt``."""
        ...

    def parser(self, record: RequestRecord) -> StreamParser:
        """A fresh parser stamping ``record``."""
        ...


# ---------------------------------------------------------------------------------------------
# The one translation boundary for foreign exceptions.


def translate(exc: BaseException, *, responded: bool = False, first_token: bool = False) -> RequestFailed:
    """Map an aiohttp / OS / asyncio-timeout exception to ``RequestFailed``, chaining ``exc``.

    ``responded`` says response headers had arrived (a drop after that is a mid-stream reset);
    ``first_token`` says a token had arrived (a deadline after that is the total deadline).
    """
    if isinstance(exc, RequestFailed):
        return exc
    category, detail = _categorise(exc, responded=responded, first_token=first_token)
    failed = RequestFailed(category, redact(detail)[:DETAIL_LIMIT_CHARS])
    failed.__cause__ = exc
    return failed


def _categorise(exc: BaseException, *, responded: bool, first_token: bool) -> tuple[ErrorCategory, str]:
    C = ErrorCategory
    # Order matters: aiohttp's timeout and connector errors subclass OSError / TimeoutError.
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return C.CONNECT_TIMEOUT, "timed out opening a connection"
    if isinstance(exc, TimeoutError):
        if first_token:
            return C.TOTAL_TIMEOUT, "response did not finish within the total deadline"
        if responded:
            return C.FIRST_TOKEN_TIMEOUT, "no token before the first-token deadline"
        return C.FIRST_TOKEN_TIMEOUT, "no response headers before the first-token deadline"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return C.CONNECT, f"cannot resolve host {exc.host}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return C.CONNECT, f"TLS failure: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return C.CONNECT, _connector_detail(exc)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        if responded:
            return C.STREAM_RESET, "server disconnected mid-stream"
        return C.CONNECT, "server disconnected before responding"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return C.STREAM_RESET, f"response body cut off: {_first_line(exc)}"
    if isinstance(exc, aiohttp.ClientResponseError):
        # aiohttp raises this for a reply that is not valid HTTP/1.x.
        return C.MALFORMED, f"invalid HTTP response: {exc.message}"
    if isinstance(exc, aiohttp.InvalidURL):
        return C.CLIENT, f"invalid URL: {exc}"
    if isinstance(exc, ConnectionRefusedError):
        return C.CONNECT, "connection refused"
    if isinstance(exc, ssl.SSLError):
        return C.CONNECT, f"TLS failure: {exc}"
    if isinstance(exc, ConnectionError | aiohttp.ClientConnectionError | OSError):
        what = type(exc).__name__
        if responded:
            return C.STREAM_RESET, f"connection dropped mid-stream ({what}: {_first_line(exc)})"
        return C.CONNECT, f"connection failed ({what}: {_first_line(exc)})"
    return C.CLIENT, f"{type(exc).__name__}: {_first_line(exc)}"


def _connector_detail(exc: aiohttp.ClientConnectorError) -> str:
    os_error = exc.os_error
    if isinstance(os_error, ConnectionRefusedError) or getattr(os_error, "errno", None) == errno.ECONNREFUSED:
        return "connection refused"
    if "Connect call failed" in str(exc) and "111" in str(exc):
        return "connection refused"
    reason = getattr(os_error, "strerror", None) or _first_line(os_error)
    return f"cannot connect to {exc.host}:{exc.port} ({reason})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# ---------------------------------------------------------------------------------------------
# Non-2xx responses.


def error_message(body: bytes) -> str:
    """The human message inside an error body, for every provider shape we know.

    OpenAI / vLLM / DeepSeek ``{"error": {"message": ...}}``; Anthropic ``{"type": "error",
    "error": {"type": ..., "message": ...}}``; Ollama ``{"error": "..."}``; older vLLM
    ``{"object": "error", "message": ...}``; FastAPI ``{"detail": ...}``; else the text itself.
    """
    text = body.decode("utf-8", "replace").strip()
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return " ".join(text.split())[:DETAIL_LIMIT_CHARS]
    message = _message_of(obj)
    return " ".join(message.split())[:DETAIL_LIMIT_CHARS] if message else text[:DETAIL_LIMIT_CHARS]


def error_type(body: bytes) -> str | None:
    """The provider's error type (``overloaded_error``, ``rate_limit_exceeded``...) if any."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict):
            kind = err.get("type") or err.get("code")
            return str(kind) if kind else None
    return None


def _message_of(obj: Any) -> str:
    if isinstance(obj, str):
        return obj
    if not isinstance(obj, dict):
        return ""
    err = obj.get("error")
    if isinstance(err, str):
        return err
    if isinstance(err, dict):
        message = err.get("message") or err.get("msg") or ""
        kind = err.get("type")
        if message and kind and isinstance(kind, str) and kind not in message:
            return f"{kind}: {message}"
        return str(message or kind or "")
    for key in ("message", "detail", "msg"):
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, list) and value:
            return "; ".join(_message_of(v) or str(v) for v in value[:3])
    return ""


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, ``Retry-After`` seconds or date)."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def status_failure(status: int, body: bytes, headers: Mapping[str, str], secret: str | None) -> RequestFailed:
    """The ``RequestFailed`` for a non-2xx response: category by status, message from body."""
    category = ErrorCategory.for_http_status(status)
    if error_type(body) == "overloaded_error":
        category = ErrorCategory.OVERLOADED
    message = redact(error_message(body), secret)
    detail = f"HTTP {status}: {message}" if message else f"HTTP {status}"
    return RequestFailed(
        category,
        detail[:DETAIL_LIMIT_CHARS],
        http_status=status,
        retry_after_s=retry_after_s(headers),
    )


# Media types that are a document, never a stream: a proxy's or a login portal's page answering
# with 200. Anything else (a missing header reads as application/octet-stream, text/plain) is
# parsed, and the parser judges the bytes.
_DOCUMENT_TYPES = frozenset({"text/html", "application/xhtml+xml", "text/xml", "application/xml"})
_EXPECTED_TYPE = {"sse": "text/event-stream", "ndjson": "application/x-ndjson"}


def stream_content_type(content_type: str, framing: Framing) -> bool:
    """False when a 2xx response's media type says it is not a ``framing`` stream: a document
    (HTML, XML), or a plain JSON body where an event stream was asked for."""
    if content_type in _DOCUMENT_TYPES:
        return False
    return not (framing == "sse" and content_type == "application/json")


def wrong_content_type(
    status: int, content_type: str, framing: Framing, body: bytes, secret: str | None
) -> RequestFailed:
    """The ``RequestFailed`` for a 2xx answer that is not a stream, quoting the start of its body
    (an HTML page's title, a JSON error's message)."""
    text = body.decode("utf-8", "replace")
    title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    excerpt = " ".join((title.group(1) if title else error_message(body)).split())
    detail = f"expected {_EXPECTED_TYPE[framing]}, got {content_type} (HTTP {status})"
    if excerpt:
        detail += f": {redact(excerpt, secret)}"
    return RequestFailed(ErrorCategory.WRONG_CONTENT_TYPE, detail[:DETAIL_LIMIT_CHARS], http_status=status)


async def read_limited(content: aiohttp.StreamReader, limit_bytes: int) -> bytes:
    """The body up to ``limit_bytes`` (``StreamReader.read(n)`` alone may return one chunk)."""
    parts: list[bytes] = []
    size = 0
    while size < limit_bytes:
        part = await content.read(limit_bytes - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def deadlines(record: RequestRecord, timeouts: Timeouts) -> tuple[float, float]:
    """``(first_token_at, total_at)`` on the running loop's clock, anchored at ``record.sent_ns``
    (stamped now if the caller has not)."""
    if not record.sent_ns:
        record.sent_ns = perf_counter_ns()
    sent_loop_s = asyncio.get_running_loop().time() - (perf_counter_ns() - record.sent_ns) / 1e9
    total_at = sent_loop_s + timeouts.total_s
    return min(sent_loop_s + timeouts.first_token_s, total_at), total_at


# ---------------------------------------------------------------------------------------------
# The transport: one session per run.


def _keepalive_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    """A TCP socket with keepalive on, so an idle long stream's dead peer is noticed by the OS."""
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=type_, proto=proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        option = getattr(socket, name, None)
        if option is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
    return sock


ReadPath = Literal["push", "pull"]

# How response bodies are read (see ``HttpTransport``); "pull" is the previous path, kept for
# side-by-side measurement. Read once per transport, never per chunk.
DEFAULT_READ_PATH: ReadPath = "push"


class _Arrivals:
    """Stamp now, parse soon: the bytes every connection received in one poll of the event loop.

    When the loop polls, it calls each readable connection's ``data_received`` in turn; had each
    call parsed its bytes before the next was stamped, the hundredth stream's stamp would wait
    behind ninety-nine parses (a few milliseconds when a hundred streams write at once). Each call
    instead stamps and queues its bytes; the queue is parsed, in arrival order, by one callback
    right after the poll, so every stamp is within a few microseconds of its bytes' arrival. The
    end of a connection (``eof_received``, ``connection_lost``) and aiohttp's own re-feeds of bytes
    it held back parse the queue first, so nothing is reordered.
    """

    __slots__ = ("_items", "_loop", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque[tuple[_StampingHandler, bytes, int]] = deque()
        self._scheduled = False

    def push(self, handler: _StampingHandler, data: bytes, now_ns: int) -> None:
        self._items.append((handler, data, now_ns))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        items = self._items
        while items:
            handler, data, now_ns = items.popleft()
            handler.rx_ns = now_ns
            handler._direct = True
            try:
                ResponseHandler.data_received(handler, data)
            except Exception as exc:  # as the transport would: report it and drop the connection
                self._loop.call_exception_handler(
                    {"message": "response protocol failed on received data", "exception": exc, "protocol": handler}
                )
                if handler.transport is not None:
                    handler.transport.close()
            finally:
                handler._direct = False


class _StampingHandler(ResponseHandler):
    """aiohttp's response protocol, stamping ``rx_ns`` each time bytes arrive from the socket.

    The event loop delivers every readable socket's bytes (``data_received``) before it resumes
    any coroutine waiting on them. Stamping here, rather than after the reading coroutine has been
    resumed and has parsed the chunk, keeps a token's stamp from waiting behind the parsing of other
    streams' chunks that arrived in the same instant; with ``arrivals`` the parse itself is deferred
    to just after the poll (``_Arrivals``). On the push path the body is parsed by that deferred
    call (``_PushedReader`` hands it to the attached ``sink``), sparing each chunk the future, task
    wake-up and coroutine resumption of a ``readany`` loop.
    """

    rx_ns = 0
    sink: _Pump | None = None
    _direct = False

    def __init__(self, loop: asyncio.AbstractEventLoop, arrivals: _Arrivals | None = None) -> None:
        super().__init__(loop=loop)
        self._arrivals = arrivals

    def data_received(self, data: bytes) -> None:
        if not data:
            # aiohttp calls this with b"" to resume parsing whenever a reader drains its buffer;
            # that is not an arrival and must neither move the stamp nor re-enter the pump.
            super().data_received(data)
            return
        if self._direct or self._arrivals is None:
            if not self._direct:
                self.rx_ns = perf_counter_ns()
            super().data_received(data)
            return
        self._arrivals.push(self, data, perf_counter_ns())

    def _drain_tail(self) -> None:
        # aiohttp re-feeds bytes it held before the response's parser was set: after whatever is
        # queued, and parsed at once.
        if self._arrivals is not None:
            self._arrivals.flush()
        self._direct = True
        try:
            super()._drain_tail()  # type: ignore[misc]
        finally:
            self._direct = False

    def eof_received(self) -> Any:
        if self._arrivals is not None:
            self._arrivals.flush()
        return super().eof_received()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._arrivals is not None:
            self._arrivals.flush()
        super().connection_lost(exc)


class _Pump:
    """One response body, parsed synchronously as its bytes arrive (the push path).

    While attached to the connection (``protocol.sink``), the response's reader is a
    ``_PushedReader``: aiohttp's HTTP parser hands it each de-chunked piece of body inside
    ``data_received``, and it passes the piece straight to ``feed`` instead of buffering it for a
    coroutine to read. Every event is stamped with the connection's ``rx_ns`` (the arrival of the
    newest bytes). A failure (a ``RequestFailed`` from the parser, or any bug in it) is put on the
    reader with ``set_exception``, so the coroutine waiting on ``wait_eof`` raises it. At end of
    stream, or on failure, the pump detaches itself from the connection, which aiohttp may hand to
    the next request before that coroutine resumes.
    """

    __slots__ = ("content", "deadline", "decoder", "last_ns", "parser", "protocol", "record", "total_at")

    def __init__(
        self,
        protocol: _StampingHandler,
        content: aiohttp.StreamReader,
        decoder: SseDecoder | NdjsonDecoder,
        parser: StreamParser,
        record: RequestRecord,
        deadline: asyncio.Timeout | None,
        total_at: float,
    ) -> None:
        self.protocol = protocol
        self.content = content
        self.decoder = decoder
        self.parser = parser
        self.record = record
        # Cleared once the first token has moved the deadline to the total deadline.
        self.deadline = deadline
        self.total_at = total_at
        self.last_ns = 0

    def attach(self) -> None:
        """Take over the reader: what it holds now is parsed at once, later bytes as they come."""
        content = self.content
        self.protocol.sink = self
        if type(content) is aiohttp.StreamReader:
            content.__class__ = _PushedReader
        if content.exception() is None:
            held = content.read_nowait()
            if held:
                self.feed(held)
        if content.is_eof():
            self.detach()

    def detach(self) -> None:
        if self.protocol.sink is self:
            self.protocol.sink = None

    def feed(self, chunk: bytes) -> None:
        rx_ns = self.last_ns = self.protocol.rx_ns
        parser = self.parser
        try:
            for event, data in self.decoder.feed(chunk):
                parser.feed(event, data, rx_ns)
        except Exception as exc:
            # Raised where the sender waits; the connection is closed, not reused, since its
            # body was not read to the end.
            self.detach()
            self.content.set_exception(exc)
            return
        if self.deadline is not None and self.record.first_token_ns:
            self.deadline.reschedule(self.total_at)
            self.deadline = None


class _PushedReader(aiohttp.StreamReader):
    """A response body reader that hands each piece to its connection's pump, unbuffered.

    Swapped in for ``aiohttp.StreamReader`` (same slots, no new state) while a ``_Pump`` is
    attached; with none attached, or for another reader, it behaves as the base class. Skipping the
    buffer spares each chunk the read, the resume-reading call and the chunk bookkeeping that a
    reader otherwise needs; ``total_bytes`` and end of stream are kept as aiohttp keeps them.
    """

    __slots__ = ()

    def feed_data(self, data: bytes, size: int = 0) -> bool:
        pump = self._protocol.sink  # type: ignore[attr-defined]
        if pump is None or pump.content is not self or not data:
            return super().feed_data(data, size)
        self.total_bytes += len(data)
        pump.feed(data)
        return False

    def end_http_chunk_receiving(self) -> None:
        pump = self._protocol.sink  # type: ignore[attr-defined]
        if pump is None or pump.content is not self:
            super().end_http_chunk_receiving()


class _SentStampPayload(BytesPayload):
    """A request body that stamps ``record.sent_ns`` as it is handed to the connection's writer.

    The scheduler stamps ``sent_ns`` when it hands the request to the client; the request's
    bytes reach the socket later, after the client has built it, and on Python 3.11 aiohttp writes
    the body from a task of its own that waits behind whatever else the loop has ready. With a
    hundred requests due at once that wait reached tens of milliseconds and was counted as server
    latency. Stamped here, it counts as dispatch lag (the harness's own figure) instead; latencies
    from schedule still include it.
    """

    def __init__(self, value: bytes, record: RequestRecord) -> None:
        super().__init__(value, content_type="application/json")
        self._record = record

    async def write(self, writer: Any) -> None:
        self._record.sent_ns = self._record.written_ns = perf_counter_ns()
        await super().write(writer)

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        self._record.sent_ns = self._record.written_ns = perf_counter_ns()
        await super().write_with_length(writer, content_length)


class _GatedPayload(_SentStampPayload):
    """A request body held back until ``gate`` resolves, then stamped and written.

    aiohttp buffers the request's headers until the first body write, so while this payload waits
    nothing of the request has reached the socket: the request is built and its connection taken
    ahead of time, and at the gate only the one write remains (cheap enough that a burst of
    requests due together goes out within about a millisecond).
    """

    def __init__(self, value: bytes, record: RequestRecord, gate: Any) -> None:
        super().__init__(value, record)
        self._gate = gate

    async def write(self, writer: Any) -> None:
        await self._gate
        await super().write(writer)

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        await self._gate
        await super().write_with_length(writer, content_length)


def _stamping_connector(**kwargs: Any) -> aiohttp.TCPConnector:
    connector = aiohttp.TCPConnector(**kwargs)
    # aiohttp builds each connection's protocol from this factory (a private attribute, stable
    # through aiohttp 3.x); without it, stamps fall back to the time the chunk is read and bodies
    # are read by the pull path.
    if hasattr(connector, "_factory"):
        loop = asyncio.get_running_loop()
        connector._factory = functools.partial(_StampingHandler, loop=loop, arrivals=_Arrivals(loop))
    return connector


class HttpTransport:
    """One run's HTTP session: a pool of ``pool_size`` connections to the target (0: unbounded).

    Use as ``async with HttpTransport(settings) as transport:``; ``aclose`` is idempotent. Response
    bodies are not auto-decompressed (we ask for ``identity``), so streamed bytes reach the parser
    as they arrive.

    ``read_path`` (default ``DEFAULT_READ_PATH``): ``"push"`` parses each body inside the
    connection's ``data_received`` while the sending coroutine waits only for the end of the stream,
    an error or a deadline; ``"pull"`` resumes the sending coroutine for every network read
    (``readany``). Both stamp the bytes' arrival; push costs about a third less CPU per chunk.
    """

    def __init__(self, settings: ClientSettings, *, read_path: ReadPath | None = None) -> None:
        if settings.pool_size < 0:
            raise ValueError("pool_size must be >= 0 (0: unbounded)")
        read_path = DEFAULT_READ_PATH if read_path is None else read_path
        if read_path not in ("push", "pull"):
            raise ValueError(f"read_path must be 'push' or 'pull', got {read_path!r}")
        self.settings = settings
        self.read_path: ReadPath = read_path
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("HttpTransport used outside 'async with'")
        return self._session

    async def __aenter__(self) -> HttpTransport:
        if self._session is None:
            connector = _stamping_connector(
                limit=self.settings.pool_size,
                limit_per_host=self.settings.pool_size,
                keepalive_timeout=60.0,
                ttl_dns_cache=300,
                socket_factory=_keepalive_socket,
            )
            timeouts = self.settings.timeouts
            # Per-request deadlines are enforced by HttpSender; aiohttp only bounds the TCP connect.
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect_s),
                auto_decompress=False,
                read_bufsize=READ_BUFSIZE_BYTES,
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
                cookie_jar=aiohttp.DummyCookieJar(),
                max_line_size=65536,
                max_field_size=65536,
            )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None and not self._closed:
            self._closed = True
            await self._session.close()

    async def get(self, url: str, headers: Mapping[str, str], *, timeout_s: float) -> tuple[int, bytes, str]:
        """One small GET for preflight checks: ``(status, body, content_type)``.

        Raises ``RequestFailed`` (via ``translate``) when no HTTP answer comes back.
        """
        try:
            async with asyncio.timeout(timeout_s):
                async with self.session.get(url, headers=headers) as resp:
                    body = await read_limited(resp.content, 1 << 20)
                    return resp.status, body, resp.content_type
        except Exception as exc:
            raise translate(exc) from exc


@dataclass(slots=True)
class HttpSender:
    """Sends prompts in one dialect over one transport; implements ``load.interface.Sender``.

    ``headers`` are sent on every request (auth, version); ``secret`` is scrubbed from any error
    detail. Deadlines run from ``record.sent_ns``: the first-token deadline until a token arrives,
    then the total deadline.
    """

    transport: HttpTransport
    wire: Wire
    base_url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    secret: str | None = field(default=None, repr=False)
    _url: str = field(init=False, default="")
    _headers: dict[str, str] = field(init=False, default_factory=dict)
    _timeouts: Timeouts = field(init=False, default_factory=Timeouts)
    _close_connections: bool = field(init=False, default=False)
    _push: bool = field(init=False, default=True)

    def __post_init__(self) -> None:
        self._push = getattr(self.transport, "read_path", "push") == "push"
        self._url = self.wire.url(self.base_url)
        self._headers = {"Content-Type": "application/json", **self.headers}
        self._timeouts = self.transport.settings.timeouts

    async def _post(self, body: Any, headers: dict[str, str]) -> Any:
        if self._close_connections:
            headers["Connection"] = "close"
        response, stale = await _stale_retry_post(self.transport.session, self._url, body, headers)
        if stale:
            # This server drops idle connections unannounced: from now on ask for a fresh one per
            # request, as the server effectively does, rather than keep finding dead ones.
            self._close_connections = True
        return response

    async def send(self, prompt: Prompt, record: RequestRecord) -> None:
        await self._send(prompt, record, None)

    async def send_gated(self, prompt: Prompt, record: RequestRecord, gate: Any) -> None:
        """``send``, with the request built and its connection taken now, written once ``gate``
        resolves (``load.interface.GatedSender``)."""
        await self._send(prompt, record, gate)

    async def _send(self, prompt: Prompt, record: RequestRecord, gate: Any) -> None:
        body = self.wire.encode(prompt)
        headers = dict(self._headers)
        headers[REQUEST_ID_HEADER] = record.request_id
        parser = self.wire.parser(record)
        sse = self.wire.framing == "sse"
        decoder: SseDecoder | NdjsonDecoder = SseDecoder() if sse else NdjsonDecoder()

        first_at, total_at = deadlines(record, self._timeouts)
        responded = False
        try:
            async with asyncio.timeout_at(first_at) as deadline:
                payload = _SentStampPayload(body, record) if gate is None else _GatedPayload(body, record, gate)
                async with await self._post(payload, headers) as resp:
                    protocol = resp.connection.protocol if resp.connection is not None else None
                    # The newest arrival on the connection: the headers' bytes, or bytes that came
                    # with or after them (the body's first stamps are never earlier).
                    record.headers_ns = protocol.rx_ns if isinstance(protocol, _StampingHandler) else perf_counter_ns()
                    record.http_status = resp.status
                    record.content_type = resp.content_type
                    if resp.status >= 300:
                        raw = await read_limited(resp.content, ERROR_BODY_LIMIT_BYTES)
                        record.end_ns = perf_counter_ns()
                        raise status_failure(resp.status, raw, resp.headers, self.secret)
                    responded = True
                    if not stream_content_type(resp.content_type, self.wire.framing):
                        raw = await read_limited(resp.content, ERROR_BODY_LIMIT_BYTES)
                        record.end_ns = perf_counter_ns()
                        raise wrong_content_type(resp.status, resp.content_type, self.wire.framing, raw, self.secret)
                    content = resp.content
                    if isinstance(protocol, _StampingHandler) and self._push:
                        last_ns = await _push_body(protocol, content, decoder, parser, record, deadline, total_at)
                    else:
                        last_ns = await _pull_body(protocol, content, decoder, parser, record, deadline, total_at)
                    record.end_ns = last_ns or perf_counter_ns()
                    events, tail = decoder.close()
                    for event, data in events:
                        parser.feed(event, data, record.end_ns)
                    if tail and not parser.done:
                        try:
                            parser.feed("", tail, record.end_ns)
                        except RequestFailed as exc:
                            if exc.category is not ErrorCategory.MALFORMED:
                                raise
                    if not parser.done:
                        raise RequestFailed(ErrorCategory.TRUNCATED, "stream ended without its final record")
        except RequestFailed as exc:
            if self.secret and exc.detail and self.secret in exc.detail:
                raise RequestFailed(
                    exc.category,
                    redact(exc.detail, self.secret),
                    http_status=exc.http_status,
                    retry_after_s=exc.retry_after_s,
                ) from exc.__cause__
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise translate(exc, responded=responded, first_token=bool(record.first_token_ns)) from exc


_STALE_RETRIES = 3


async def _stale_retry_post(
    session: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str]
) -> tuple[Any, bool]:
    """POST; returns ``(response, met_a_stale_connection)``.

    Servers may close a keep-alive connection between requests without saying so (llama.cpp's
    server does after every streamed response); a request sent on it fails to write or sees the
    connection drop before any status line. No byte of an answer came back, so the request was
    not served: it is sent again (the pool may hold several such connections), and the time spent
    counts in its latency (``sent_ns`` stays). A refused connection (``ClientConnectorError``) is
    never retried.
    """
    stale = False
    for attempt in range(_STALE_RETRIES + 1):
        try:
            return await session.post(url, data=body, headers=headers), stale
        except aiohttp.ClientConnectorError:
            raise
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            if attempt == _STALE_RETRIES:
                raise
            stale = True
    raise AssertionError("unreachable")


async def _push_body(
    protocol: _StampingHandler,
    content: aiohttp.StreamReader,
    decoder: SseDecoder | NdjsonDecoder,
    parser: StreamParser,
    record: RequestRecord,
    deadline: asyncio.Timeout,
    total_at: float,
) -> int:
    """Parse the body inside ``data_received``; return the newest arrival stamp (0: no bytes)."""
    pump = _Pump(protocol, content, decoder, parser, record, deadline, total_at)
    try:
        pump.attach()
        if content.exception() is None and not content.is_eof():
            # Returns at end of stream; raises what the pump or the connection put on the reader.
            await content.wait_eof()
        exc = content.exception()
        if exc is not None:
            raise exc
    finally:
        pump.detach()
    return pump.last_ns


async def _pull_body(
    protocol: Any,
    content: aiohttp.StreamReader,
    decoder: SseDecoder | NdjsonDecoder,
    parser: StreamParser,
    record: RequestRecord,
    deadline: asyncio.Timeout,
    total_at: float,
) -> int:
    """Resume for every network read; return the newest arrival stamp (0: no bytes)."""
    stamped = isinstance(protocol, _StampingHandler)
    waiting_first = True
    last_ns = 0
    while True:
        chunk = await content.readany()
        if not chunk:
            break
        # When the bytes arrived (the newest arrival, if several reads were buffered), not when
        # this coroutine got round to them.
        last_ns = protocol.rx_ns if stamped else perf_counter_ns()
        for event, data in decoder.feed(chunk):
            parser.feed(event, data, last_ns)
        if waiting_first and record.first_token_ns:
            waiting_first = False
            deadline.reschedule(total_at)
    return last_ns


# ---------------------------------------------------------------------------------------------
# Helpers shared by the deployments' preflight checks.


def join_url(base_url: str, path: str) -> str:
    """``base_url`` + ``path`` with exactly one slash between them."""
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def v1_url(base_url: str, path: str) -> str:
    """``path`` under the ``/v1`` API root: accepts ``http://h:p`` and ``http://h:p/v1`` alike."""
    base = base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return join_url(base, path)


def preflight_failure(base_url: str, exc: RequestFailed) -> TargetError:
    """One clear line for a target that did not answer a preflight request."""
    detail = exc.detail or exc.category.value
    return TargetError(f"{base_url}: {detail}")
