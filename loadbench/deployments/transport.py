"""The HTTP client path every dialect shares: one transport per run, one sender per dialect.

One ``HttpTransport`` per run owns the lean HTTP/1.1 connection pool (``http1``) that streamed
requests use, and one ``aiohttp.ClientSession`` for preflight requests (and for streamed ones on
the ``push``/``pull`` read paths); both pools are sized to the run's concurrency (never a library
default such as aiohttp's 100 per host, which would silently cap a run).
``HttpSender`` sends one prompt through a dialect module (``loadbench.deployments.wire.*``): the
dialect builds the body and parses each decoded event into the record; the sender frames the byte
stream (``framing``), enforces the per-request deadlines, retries a request that met a stale
pooled connection, and hands every foreign exception to ``failures.translate``. Arrival stamps come
from the kernel (``http1.SocketConnection``), or on the aiohttp paths from the hooks in
``_aiohttp_hooks``; ``HttpSender.stamping`` says which.

Hot path: one arrival stamp per network read (the kernel's, or one ``perf_counter_ns()``), shared
by every event in that read (they arrived together); no I/O, no logging, no per-chunk
configuration lookups.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any, Literal

import aiohttp

from loadbench.contract.errors import ErrorCategory, RequestFailed
from loadbench.contract.headers import REQUEST_ID_HEADER, USER_AGENT
from loadbench.contract.prompt import Prompt
from loadbench.contract.record import RequestRecord
from loadbench.contract.sender import Stamping
from loadbench.deployments import http1
from loadbench.deployments._aiohttp_hooks import (
    GatedPayload,
    Pump,
    SentStampPayload,
    StampingHandler,
    response_protocol,
    stamping,
    stamping_connector,
)
from loadbench.deployments.base import ClientSettings, Timeouts, deadlines
from loadbench.deployments.failures import (
    redact,
    status_failure,
    stream_content_type,
    translate,
    wrong_content_type,
)
from loadbench.deployments.framing import NdjsonDecoder, SseDecoder, StreamParser, Wire, end_of_stream

# aiohttp's StreamReader refuses a buffered line above twice this; we split lines ourselves, but
# a big read buffer still means fewer, larger reads when a server bursts.
READ_BUFSIZE_BYTES = 4 << 20
# Error bodies are read for their message only; nothing useful lives past this.
ERROR_BODY_LIMIT_BYTES = 64 << 10


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


ReadPath = Literal["lean", "push", "pull"]

# How streamed requests are sent and their bodies read (see ``HttpTransport``); "push" and "pull"
# are the aiohttp paths, kept for side-by-side measurement and as the fallback. Read once per
# transport, never per chunk.
DEFAULT_READ_PATH: ReadPath = "lean"


class HttpTransport:
    """One run's HTTP session: a pool of ``pool_size`` connections to the target (0: unbounded).

    Use as ``async with HttpTransport(settings) as transport:``; ``aclose`` is idempotent. Response
    bodies are not auto-decompressed (we ask for ``identity``), so streamed bytes reach the parser
    as they arrive.

    ``read_path`` (default ``DEFAULT_READ_PATH``): ``"lean"`` sends streamed requests over
    loadbench's own HTTP/1.1 connections (``http1``): one write per request, each body parsed as
    its bytes arrive, with no task or reader per chunk (``benchmarks/stamp_precision.py`` prints
    each path's CPU per chunk). ``"push"`` goes through aiohttp
    and parses each body inside the connection's ``data_received`` while the sending coroutine
    waits only for the end of the stream, an error or a deadline; ``"pull"`` resumes the sending
    coroutine for every network read (``readany``). All stamp the bytes' arrival. Preflight
    requests (``get``, and the deployments' own use of ``session``) always go through aiohttp.

    ``stamping`` (the aiohttp paths'; on the lean path ``HttpSender.stamping`` says more) says where
    arrivals are stamped: ``"socket"`` while the hooks are installed and every response so far
    came on a connection built by them, else ``"reader"``.
    """

    def __init__(self, settings: ClientSettings, *, read_path: ReadPath | None = None) -> None:
        if settings.pool_size < 0:
            raise ValueError("pool_size must be >= 0 (0: unbounded)")
        read_path = DEFAULT_READ_PATH if read_path is None else read_path
        if read_path not in ("lean", "push", "pull"):
            raise ValueError(f"read_path must be 'lean', 'push' or 'pull', got {read_path!r}")
        self.settings = settings
        self.read_path: ReadPath = read_path
        self._session: aiohttp.ClientSession | None = None
        self._pool: http1.Pool | None = None
        self._closed = False
        self._stamping: Stamping = "reader"

    @property
    def stamping(self) -> Stamping:
        return self._stamping

    def saw(self, protocol: Any) -> bool:
        """Note the protocol a response came on; whether its arrivals are stamped at the socket.
        On the lean path only preflight requests use aiohttp, so they say nothing of the stamps."""
        if isinstance(protocol, StampingHandler):
            return True
        if self.read_path != "lean":
            self._stamping = "reader"
        return False

    @property
    def pool(self) -> http1.Pool:
        """The lean path's connections (``read_path == "lean"``)."""
        if self._pool is None:
            raise RuntimeError("HttpTransport used outside 'async with'")
        return self._pool

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("HttpTransport used outside 'async with'")
        return self._session

    async def __aenter__(self) -> HttpTransport:
        if self._session is None:
            connector = stamping_connector(
                limit=self.settings.pool_size,
                limit_per_host=self.settings.pool_size,
                keepalive_timeout=60.0,
                ttl_dns_cache=300,
                socket_factory=_keepalive_socket,
            )
            self._stamping = "socket" if self.read_path == "lean" else stamping(connector)
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
            if self.read_path == "lean":
                self._pool = http1.Pool(limit=self.settings.pool_size, connect_timeout_s=timeouts.connect_s)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None and not self._closed:
            self._closed = True
            if self._pool is not None:
                await self._pool.aclose()
            await self._session.close()

    async def get(self, url: str, headers: Mapping[str, str], *, timeout_s: float) -> tuple[int, bytes, str]:
        """One small GET for preflight checks: ``(status, body, content_type)``.

        Raises ``RequestFailed`` (via ``translate``) when no HTTP answer comes back.
        """
        try:
            async with asyncio.timeout(timeout_s):
                async with self.session.get(url, headers=headers) as resp:
                    self.saw(response_protocol(resp))
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
    _lean: bool = field(init=False, default=True)
    _origin: http1.Origin | None = field(init=False, default=None)
    _head: bytes = field(init=False, default=b"", repr=False)
    _unsendable: str = field(init=False, default="")

    @property
    def model(self) -> str:
        return self.wire.model

    @property
    def stamping(self) -> Stamping:
        if self._lean and self._origin is not None:
            return self.transport.pool.stamping(self._origin)
        return self.transport.stamping

    def __post_init__(self) -> None:
        read_path = getattr(self.transport, "read_path", "push")
        self._push = read_path == "push"
        self._url = self.wire.url(self.base_url)
        self._headers = {"Content-Type": "application/json", **self.headers}
        self._timeouts = self.transport.settings.timeouts
        self._lean = read_path == "lean"
        if self._lean:
            # The request line and fixed headers, built once; a URL or header that cannot be sent
            # is reported at the first request, as the aiohttp path reports it.
            try:
                self._origin = http1.Origin(self._url)
                fixed = {
                    "Host": self._origin.host_header,
                    "User-Agent": USER_AGENT,
                    "Accept": "*/*",
                    "Accept-Encoding": "identity",
                    **self._headers,
                }
                line = f"POST {http1.request_target(self._url)} HTTP/1.1\r\n".encode("latin-1")
                self._head = line + http1.header_block(fixed)
            except (ValueError, UnicodeEncodeError) as exc:
                self._origin = None
                self._unsendable = redact(str(exc), self.secret)

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
        """One request on either path; every failure leaves as one ``RequestFailed``, scrubbed of
        the secret."""
        try:
            if self._lean:
                await self._exchange_lean(prompt, record, gate)
            else:
                await self._exchange_aiohttp(prompt, record, gate)
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
            # Headers with a 2xx status had arrived: a drop after that is a mid-stream reset.
            responded = record.http_status is not None and record.http_status < 300
            raise translate(exc, responded=responded, first_token=bool(record.first_token_ns)) from exc

    async def _exchange_aiohttp(self, prompt: Prompt, record: RequestRecord, gate: Any) -> None:
        body = self.wire.encode(prompt)
        headers = dict(self._headers)
        headers[REQUEST_ID_HEADER] = record.request_id
        parser = self.wire.parser(record)
        sse = self.wire.framing == "sse"
        decoder: SseDecoder | NdjsonDecoder = SseDecoder() if sse else NdjsonDecoder()

        first_at, total_at = deadlines(record, self._timeouts)
        async with asyncio.timeout_at(first_at) as deadline:
            payload = SentStampPayload(body, record) if gate is None else GatedPayload(body, record, gate)
            async with await self._post(payload, headers) as resp:
                protocol = resp.connection.protocol if resp.connection is not None else None
                stamped = isinstance(protocol, StampingHandler)
                if not stamped:
                    self.transport.saw(response_protocol(resp))
                # The newest arrival on the connection: the headers' bytes, or bytes that came
                # with or after them (the body's first stamps are never earlier).
                record.headers_ns = protocol.rx_ns if stamped else perf_counter_ns()
                record.http_status = resp.status
                record.content_type = resp.content_type
                if resp.status >= 300:
                    raw = await read_limited(resp.content, ERROR_BODY_LIMIT_BYTES)
                    record.end_ns = perf_counter_ns()
                    raise status_failure(resp.status, raw, resp.headers, self.secret)
                if not stream_content_type(resp.content_type, self.wire.framing):
                    raw = await read_limited(resp.content, ERROR_BODY_LIMIT_BYTES)
                    record.end_ns = perf_counter_ns()
                    raise wrong_content_type(resp.status, resp.content_type, self.wire.framing, raw, self.secret)
                content = resp.content
                if stamped and self._push:
                    last_ns = await _push_body(protocol, content, decoder, parser, record, deadline, total_at)
                else:
                    last_ns = await _pull_body(protocol, content, decoder, parser, record, deadline, total_at)
                record.end_ns = last_ns or perf_counter_ns()
                end_of_stream(decoder, parser, record.end_ns)

    async def _exchange_lean(self, prompt: Prompt, record: RequestRecord, gate: Any) -> None:
        """One request over ``http1``: built and its connection taken before the gate, then one
        write; the body parsed as it arrives (``_LeanBody``)."""
        origin = self._origin
        if origin is None:
            raise RequestFailed(ErrorCategory.CLIENT, f"cannot send to {self._url}: {self._unsendable}")
        body = self.wire.encode(prompt)
        close = b"Connection: close\r\n" if self._close_connections else b""
        tail = f"{REQUEST_ID_HEADER}: {record.request_id}\r\nContent-Length: {len(body)}\r\n\r\n"
        request = b"".join((self._head, close, tail.encode("latin-1"), body))
        pool = self.transport.pool
        first_at, total_at = deadlines(record, self._timeouts)
        connection: http1.Connection | None = None
        try:
            async with asyncio.timeout_at(first_at) as deadline:
                for attempt in range(_STALE_RETRIES + 1):
                    connection = await pool.acquire(origin)
                    if gate is not None:
                        await gate
                        gate = None
                    if attempt == 0:
                        record.sent_ns = record.written_ns = perf_counter_ns()
                    try:
                        response = connection.request(request)
                        await response.head
                        break
                    except http1.StaleConnection:
                        # Closed by the server while idle, unannounced: not served, so sent again
                        # on another connection (``_stale_retry_post`` says why).
                        if connection.served:
                            self._close_connections = True
                        pool.release(connection)
                        connection = None
                        if attempt == _STALE_RETRIES:
                            detail = "server disconnected before responding"
                            raise RequestFailed(ErrorCategory.CONNECT, detail) from None
                assert connection is not None
                record.headers_ns = response.headers_ns
                record.http_status = status = response.status
                record.content_type = response.content_type
                if status >= 300:
                    raw = await response.read(ERROR_BODY_LIMIT_BYTES)
                    record.end_ns = perf_counter_ns()
                    raise status_failure(status, raw, response.headers, self.secret)
                if not stream_content_type(response.content_type, self.wire.framing):
                    raw = await response.read(ERROR_BODY_LIMIT_BYTES)
                    record.end_ns = perf_counter_ns()
                    raise wrong_content_type(status, response.content_type, self.wire.framing, raw, self.secret)
                decoder: SseDecoder | NdjsonDecoder = SseDecoder() if self.wire.framing == "sse" else NdjsonDecoder()
                parser = self.wire.parser(record)
                response.attach(_LeanBody(decoder, parser, record, deadline, total_at).feed)
                await response.done
                if response.error is not None:
                    raise response.error
                record.end_ns = response.last_ns or perf_counter_ns()
                end_of_stream(decoder, parser, record.end_ns)
        finally:
            if connection is not None:
                # Reused only if its answer was read to the end (``Connection.reusable``).
                pool.release(connection)


class _LeanBody:
    """One streamed body on the lean path: each piece decoded and parsed as it arrives, stamped
    with its arrival; the deadline moved to the total deadline at the first token. What the parser
    raises ends the response with it (``http1.Response``)."""

    __slots__ = ("deadline", "decoder", "parser", "record", "total_at")

    def __init__(
        self,
        decoder: SseDecoder | NdjsonDecoder,
        parser: StreamParser,
        record: RequestRecord,
        deadline: asyncio.Timeout,
        total_at: float,
    ) -> None:
        self.decoder = decoder
        self.parser = parser
        self.record = record
        self.deadline: asyncio.Timeout | None = deadline
        self.total_at = total_at

    def feed(self, chunk: bytes, rx_ns: int) -> None:
        parser = self.parser
        for event, data in self.decoder.feed(chunk):
            parser.feed(event, data, rx_ns)
        if self.deadline is not None and self.record.first_token_ns:
            self.deadline.reschedule(self.total_at)
            self.deadline = None


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
    protocol: StampingHandler,
    content: aiohttp.StreamReader,
    decoder: SseDecoder | NdjsonDecoder,
    parser: StreamParser,
    record: RequestRecord,
    deadline: asyncio.Timeout,
    total_at: float,
) -> int:
    """Parse the body inside ``data_received``; return the newest arrival stamp (0: no bytes)."""
    pump = Pump(protocol, content, decoder, parser, record, deadline, total_at)
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
    stamped = isinstance(protocol, StampingHandler)
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
