"""The lean HTTP/1.1 client: one ``transport.write`` per request, the body parsed as it arrives.

A streamed answer is many small network reads, and at a low request rate nearly all of the
client's CPU is spent per read. Through aiohttp each read crosses its response protocol, its HTTP
parser's callbacks, a stream reader and (on the pull path) a task wake-up; here it is one
``data_received`` that stamps the bytes, and one deferred call that strips the chunked framing and
hands the piece to the dialect's decoder. A request is one pre-built ``bytes`` written once, so a
burst of requests due together is a burst of writes, with no task per request body.

What it speaks: HTTP/1.1 (and HTTP/1.0 answers) over TCP or TLS, persistent connections, bodies
framed by ``Transfer-Encoding: chunked``, ``Content-Length`` or the end of the connection; ``1xx``
interim answers are skipped. It sends no ``Expect``, follows no redirect (a ``3xx`` is reported as
such, with its ``Location``), asks for ``identity`` encoding and never pipelines. What it does not
speak (HTTP/2, proxies) the aiohttp path still does; see ``transport.HttpTransport``.

Contract with the sender (``transport.HttpSender``): ``Pool.acquire`` gives a connection no one
else is using; ``Connection.request`` writes one request and returns its ``Response``; after the
response is finished or abandoned the connection goes back with ``Pool.release``, which reuses it
only if its last answer was read to the end and the server did not ask to close. Failures are
raised as ``RequestFailed`` (answers that are not valid HTTP, bodies cut off) or as the OS's own
errors, which ``failures.translate`` maps; ``StaleConnection`` means a reused connection was
closed before any byte of the answer came back, so the request can be sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import ssl
import struct
import sys
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from time import monotonic, perf_counter_ns, time_ns
from typing import Any
from urllib.parse import urlsplit

from loadbench.contract.errors import ErrorCategory, RequestFailed
from loadbench.contract.sender import Stamping

# A response head (status line and headers) longer than this is not a server we can talk to.
MAX_HEAD_BYTES = 64 << 10
# A chunk-size line or a trailer line longer than this is a broken or hostile stream.
MAX_FRAMING_LINE_BYTES = 4 << 10
# An idle pooled connection older than this is closed, not reused (servers drop idle ones).
KEEPALIVE_IDLE_S = 60.0

_HEX_DIGITS = b"0123456789abcdefABCDEF"
# A header name is a token (RFC 9110 5.6.2).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class StaleConnection(Exception):
    """A reused connection ended before any byte of the answer: the request was not served."""


class Origin:
    """Where requests go, parsed once: scheme, host, port, TLS, and the ``Host`` header."""

    __slots__ = ("host", "host_header", "port", "tls", "url")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        default_port = 443 if self.tls else 80
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port in URL {url!r}") from exc
        self.port = port or default_port
        name = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = name if self.port == default_port else f"{name}:{self.port}"

    @property
    def key(self) -> tuple[str, int, bool]:
        return self.host, self.port, self.tls


def request_target(url: str) -> str:
    """The request line's target for ``url``: its path (``/`` when empty) and query."""
    parts = urlsplit(url)
    target = parts.path or "/"
    return f"{target}?{parts.query}" if parts.query else target


def header_block(headers: Mapping[str, str]) -> bytes:
    """``headers`` as request header lines; a name or value that could split the request (CR, LF,
    or a name that is not a token) raises ``ValueError`` naming the header, never its value."""
    lines = []
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"invalid HTTP header name {name!r}")
        if "\r" in value or "\n" in value:
            raise ValueError(f"the value of HTTP header {name!r} holds a line break")
        lines.append(f"{name}: {value}\r\n")
    try:
        return "".join(lines).encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ValueError("an HTTP header holds characters outside latin-1") from exc


class Headers(Mapping[str, str]):
    """Response headers, looked up case-insensitively; repeated headers joined with ``", "``."""

    __slots__ = ("_by_name",)

    def __init__(self, by_lower_name: dict[str, str]) -> None:
        self._by_name = by_lower_name

    def __getitem__(self, name: str) -> str:
        return self._by_name[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:
        return self._by_name.get(name.lower(), default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)


# The states of one response's body framing.
_HEAD, _SIZE, _DATA, _DATA_END, _TRAILER, _LENGTH, _UNTIL_CLOSE, _DONE = range(8)

Sink = Callable[[bytes, int], None]


class Response:
    """One answer: its head once ``head`` resolves, its body pieces through ``attach``.

    Body pieces that arrive before a sink is attached are held with their arrival stamps and
    handed over, in order, by ``attach``. ``done`` resolves when the body has been read to the end,
    and carries the failure if the connection failed first. A sink that raises ends the answer:
    the exception is kept in ``error`` (and put on ``done`` if still pending), later pieces are
    dropped, and the connection is closed unless the body had already been read to its end.
    ``last_ns`` is the arrival stamp of the newest body bytes (0: none yet).
    """

    __slots__ = (
        "_connection", "_held", "content_type", "done", "error", "head", "headers", "headers_ns", "last_ns",
        "sink", "status",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, connection: Connection) -> None:
        self.head: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.status = 0
        self.headers: Headers = Headers({})
        self.content_type = ""
        self.headers_ns = 0
        self.last_ns = 0
        self.sink: Sink | None = None
        self.error: BaseException | None = None
        self._held: list[tuple[bytes, int]] = []
        self._connection = connection

    def attach(self, sink: Sink) -> None:
        """Send body pieces to ``sink(piece, arrival_ns)`` from now on, held ones first."""
        held, self._held = self._held, []
        self.sink = sink
        for piece, rx_ns in held:
            if self.error is not None:
                return
            self._deliver(piece, rx_ns)

    def piece(self, data: bytes, rx_ns: int) -> None:
        if self.error is not None:
            return
        self.last_ns = rx_ns
        sink = self.sink
        if sink is None:
            self._held.append((data, rx_ns))
            return
        try:
            sink(data, rx_ns)
        except Exception as exc:
            self.error = exc
            self._connection.abandon(self, exc)

    def _deliver(self, data: bytes, rx_ns: int) -> None:
        try:
            self.sink(data, rx_ns)  # type: ignore[misc]
        except Exception as exc:
            self.error = exc
            self._connection.abandon(self, exc)

    async def read(self, limit_bytes: int) -> bytes:
        """The body up to ``limit_bytes`` (an error page, for its message); waits for its end
        unless the limit comes first."""
        parts: list[bytes] = []
        size = 0
        enough = self.done.get_loop().create_future()

        def collect(data: bytes, _rx_ns: int) -> None:
            nonlocal size
            if size < limit_bytes:
                parts.append(data[: limit_bytes - size])
                size += len(parts[-1])
                if size >= limit_bytes and not enough.done():
                    enough.set_result(None)

        self.attach(collect)
        if not enough.done():
            with contextlib.suppress(Exception):
                await asyncio.wait((self.done, enough), return_when=asyncio.FIRST_COMPLETED)
        return b"".join(parts)


class Arrivals:
    """Stamp now, parse soon: the bytes every connection received in one poll of the event loop.

    When the loop polls, it calls each readable connection's ``data_received`` in turn; had each
    call parsed its bytes before the next was stamped, the hundredth stream's stamp would wait
    behind ninety-nine parses. Each call instead stamps and queues its bytes, and one callback
    right after the poll parses the queue in arrival order, calling each connection's
    ``feed(data, rx_ns)``, which must not raise. The end of a connection parses the queue first,
    so nothing is reordered. Used by ``StreamConnection`` and by the aiohttp paths' protocol.
    """

    __slots__ = ("_items", "_loop", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque[tuple[Any, bytes, int]] = deque()
        self._scheduled = False

    def push(self, connection: Any, data: bytes, rx_ns: int) -> None:
        self._items.append((connection, data, rx_ns))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        items = self._items
        while items:
            connection, data, rx_ns = items.popleft()
            connection.feed(data, rx_ns)


class Connection:
    """One persistent HTTP/1.1 connection, serving one request at a time (its I/O is a subclass's).

    ``feed(data, rx_ns)`` parses what the socket delivered, stamped ``rx_ns``: the response head,
    then the body's framing, handing each body piece to the ``Response``. Reading one answer to
    its end leaves the connection ready for the next request (``reusable``). Subclasses write
    (``_write``), close (``_close``), and call ``_eof`` and ``_lost`` as the socket ends.
    """

    def __init__(self) -> None:
        self.closed = False
        self.reusable = True
        self.served = 0
        self.idle_since = 0.0
        self.key: tuple[str, int, bool] = ("", 0, False)
        self._response: Response | None = None
        self._state = _DONE
        self._buffer = b""
        self._left = 0
        self._keep_alive = True
        self._written_ns = 0

    # -- the sender's side --------------------------------------------------------------------

    def request(self, data: bytes) -> Response:
        """Write one request (head and body in ``data``); its answer arrives on the returned
        ``Response``. Raises ``StaleConnection`` if a connection that served before is gone."""
        if self.closed:
            raise StaleConnection()
        response = Response(asyncio.get_running_loop(), self)
        self._response = response
        self._state = _HEAD
        self._buffer = b""
        self.reusable = False
        self._written_ns = perf_counter_ns()
        self._write(data)
        return response

    def abandon(self, response: Response, exc: BaseException) -> None:
        """``response``'s reader gave up on it with ``exc``: if its body is still coming, end it
        with ``exc`` and close the connection."""
        if self._response is response:
            self.fail(exc)

    def close(self) -> None:
        self.reusable = False
        if not self.closed:
            self._close()

    # -- the I/O's side -----------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def _eof(self) -> None:
        if self._state == _UNTIL_CLOSE:
            self._finish()
        else:
            self._end(None)

    def _lost(self, exc: Exception | None) -> None:
        self._end(exc)
        self.closed = True
        self.reusable = False

    # -- parsing ------------------------------------------------------------------------------

    def feed(self, data: bytes, rx_ns: int) -> None:
        if self._response is None:
            # Bytes with no request outstanding: a server that talks out of turn.
            self.close()
            return
        try:
            if self._state == _HEAD:
                data = self._head(data, rx_ns)
                if not data:
                    return
                if self._response is None:
                    # Bytes past an answer that ended with its head (no body): not pipelined by us,
                    # so the connection cannot be trusted with another request.
                    self.reusable = False
                    return
            self._body(data, rx_ns)
        except Exception as exc:  # RequestFailed for a broken answer; anything else is a bug here
            self.fail(exc)

    def _head(self, data: bytes, rx_ns: int) -> bytes:
        """Parse the status line and headers; returns the bytes after them (the body's start)."""
        while True:
            buffer = self._buffer + data if self._buffer else data
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    raise RequestFailed(ErrorCategory.MALFORMED, "invalid HTTP response: a head of over 64 KiB")
                self._buffer = buffer
                return b""
            if end > MAX_HEAD_BYTES:
                raise RequestFailed(ErrorCategory.MALFORMED, "invalid HTTP response: a head of over 64 KiB")
            self._buffer = b""
            data = buffer[end + 4 :]
            status, version, fields = _parse_head(buffer[:end])
            if 100 <= status < 200:
                continue  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            break
        response = self._response
        assert response is not None
        headers = Headers(fields)
        connection = fields.get("connection", "").lower()
        self._keep_alive = "keep-alive" in connection if version == "1.0" else "close" not in connection
        response.status = status
        response.headers = headers
        response.headers_ns = rx_ns
        media = fields.get("content-type", "application/octet-stream").split(";", 1)[0].strip().lower()
        response.content_type = media or "application/octet-stream"
        if status in (204, 304):
            self._state = _LENGTH
            self._left = 0
        elif "chunked" in fields.get("transfer-encoding", "").lower():
            self._state = _SIZE
        elif "content-length" in fields:
            self._state = _LENGTH
            self._left = _content_length(fields["content-length"])
        else:
            self._state = _UNTIL_CLOSE
            self._keep_alive = False
        if not response.head.done():
            response.head.set_result(None)
        if self._state == _LENGTH and self._left == 0:
            self._finish()
        return data

    def _body(self, data: bytes, rx_ns: int) -> None:
        response = self._response
        assert response is not None
        pos = 0
        n = len(data)
        while pos < n:
            state = self._state
            if state == _DATA:
                take = min(self._left, n - pos)
                response.piece(data[pos : pos + take] if take != n else data, rx_ns)
                if self._response is not response:
                    return  # the reader gave up on it
                pos += take
                self._left -= take
                if not self._left:
                    self._state = _DATA_END
            elif state == _SIZE:
                if not self._buffer:
                    # The common case, a whole chunk (size line, data, CRLF) within this read:
                    # taken in one step. Anything else goes through the general path below.
                    eol = data.find(b"\r\n", pos, pos + 18)
                    if eol > pos:
                        digits = data[pos:eol]
                        start = eol + 2
                        if not digits.strip(_HEX_DIGITS):
                            size = int(digits, 16)
                            end = start + size
                            if size and data[end : end + 2] == b"\r\n":
                                response.piece(data[start:end], rx_ns)
                                if self._response is not response:
                                    return
                                pos = end + 2
                                continue
                line, pos = self._line(data, pos)
                if line is None:
                    return
                size = _chunk_size(line)
                if size:
                    self._state = _DATA
                    self._left = size
                else:
                    self._state = _TRAILER
            elif state == _DATA_END:
                line, pos = self._line(data, pos)
                if line is None:
                    return
                if line:
                    raise RequestFailed(ErrorCategory.MALFORMED, "invalid HTTP response: a chunk longer than its size")
                self._state = _SIZE
            elif state == _TRAILER:
                line, pos = self._line(data, pos)
                if line is None:
                    return
                if not line:
                    self._finish(extra=pos < n)
                    return
            elif state == _LENGTH:
                take = min(self._left, n - pos)
                if take:
                    response.piece(data[pos : pos + take] if take != n else data, rx_ns)
                    if self._response is not response:
                        return
                pos += take
                self._left -= take
                if not self._left:
                    self._finish(extra=pos < n)
                    return
            elif state == _UNTIL_CLOSE:
                response.piece(data[pos:] if pos else data, rx_ns)
                return
            else:  # _DONE: bytes after the end of the answer
                self._finish(extra=True)
                return

    def _line(self, data: bytes, pos: int) -> tuple[bytes | None, int]:
        """The next framing line (without CRLF) and the position after it; ``None`` if the line
        is not complete yet (its start is kept for the next read)."""
        end = data.find(b"\n", pos)
        if end < 0:
            self._buffer += data[pos:]
            if len(self._buffer) > MAX_FRAMING_LINE_BYTES:
                raise RequestFailed(ErrorCategory.MALFORMED, "invalid HTTP response: an endless chunk framing line")
            return None, len(data)
        line = data[pos:end]
        if self._buffer:
            line = self._buffer + line
            self._buffer = b""
        if line.endswith(b"\r"):
            line = line[:-1]
        return line, end + 1

    def _finish(self, *, extra: bool = False) -> None:
        self._state = _DONE
        response = self._response
        self._response = None
        self.served += 1
        # Bytes past the end of an answer we did not pipeline: this connection cannot be trusted.
        self.reusable = self._keep_alive and not extra and not self.closed
        if response is not None:
            if not response.head.done():
                response.head.set_result(None)
            if not response.done.done():
                response.done.set_result(None)

    def fail(self, exc: BaseException) -> None:
        """End the outstanding answer with ``exc`` and close the connection (its body unread)."""
        response = self._response
        self._response = None
        self._state = _DONE
        self.close()
        if response is not None:
            for future in (response.head, response.done):
                if not future.done():
                    future.set_exception(exc)
                    # Retrieved by whoever awaits; an unawaited one must not log "never retrieved".
                    future.exception()

    def _end(self, exc: Exception | None) -> None:
        """The connection ended (EOF or lost) with an answer outstanding, or none."""
        response = self._response
        if response is None:
            return
        if not response.head.done():
            if not self._buffer and self.served:
                self.fail(StaleConnection())
            elif exc is not None:
                self.fail(exc)
            else:
                self.fail(RequestFailed(ErrorCategory.CONNECT, "server disconnected before responding"))
        elif exc is not None:
            self.fail(exc)
        else:
            # Mapped with the OS's resets (``failures.translate``): a drop after the head.
            self.fail(ConnectionResetError("the server closed the connection before the body's end"))


class StreamConnection(Connection, asyncio.Protocol):
    """A connection over an asyncio transport (TLS, or where kernel stamps are not to be had).

    ``data_received`` only stamps and queues (``Arrivals``); the queue is parsed right after the
    loop's poll. A stamp is taken when the loop delivers the bytes, so a loop busy elsewhere
    (a burst of requests being written) delays it.
    """

    def __init__(self, arrivals: Arrivals) -> None:
        super().__init__()
        self._arrivals = arrivals
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._arrivals.push(self, data, perf_counter_ns())

    def eof_received(self) -> bool:
        self._arrivals.flush()
        self._eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._arrivals.flush()
        self._lost(exc)
        self.transport = None

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            self._lost(None)
            return
        transport.write(data)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


# Linux's SO_TIMESTAMPNS (Python does not export it; 35 on x86, ARM, RISC-V and POWER, and where
# an architecture numbers it otherwise no control message matches and reads keep their own time):
# the kernel stamps each received packet, and recvmsg hands the newest stamp of the bytes it
# returns, as a struct timespec of CLOCK_REALTIME.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")
READ_BYTES = 256 << 10
_ANCILLARY_BYTES = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 64


def kernel_stamps_available() -> bool:
    """Whether plain-TCP connections can take the kernel's receive timestamps (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket.socket, "recvmsg_into")


class SocketConnection(Connection):
    """A plain-TCP connection read by the loop's reader callback, stamped by the kernel.

    Each read is ``recvmsg_into`` with the socket's ``SO_TIMESTAMPNS`` control message: when the
    newest of the returned bytes reached the host, however long the loop took to get to them. The
    stamp is moved from the real-time clock to ``perf_counter_ns`` by the clocks' offset read at
    that moment, and is never earlier than the request's write (a clock step cannot put a token
    before its request) nor later than the read. With no control message (a kernel that does not
    stamp), the read's own time is the stamp, as ``StreamConnection`` takes it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, pool: Pool) -> None:
        super().__init__()
        self._pool = pool
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._unsent = b""
        self._last_rx_ns = 0
        loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        try:
            size, ancillary, _flags, _addr = self._sock.recvmsg_into(self._pool.read_buffer, _ANCILLARY_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close(exc)
            return
        # The two clocks read back to back: their offset moves the kernel's real-time stamp onto
        # perf_counter_ns.
        rx_ns = perf_counter_ns()
        real_ns = time_ns()
        if not size:
            self._eof()
            self._close()
            return
        data = self._pool.read_view[:size].tobytes()
        for level, kind, cdata in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cdata) >= _TIMESPEC.size:
                seconds, nanoseconds = _TIMESPEC.unpack_from(cdata)
                age_ns = real_ns - (seconds * 1_000_000_000 + nanoseconds)
                if age_ns > 0:
                    # Bytes on one connection arrive in order, and after their request was
                    # written: a stamp is held to both, whatever the clocks did meanwhile.
                    rx_ns = max(rx_ns - age_ns, self._written_ns, self._last_rx_ns)
                break
        else:
            self._pool.unstamped = True
        self._last_rx_ns = rx_ns
        self.feed(data, rx_ns)

    def _write(self, data: bytes) -> None:
        if self._unsent:
            self._unsent += data
            return
        try:
            sent = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._close(exc)
            return
        if sent < len(data):
            self._unsent = data[sent:]
            self._loop.add_writer(self._fd, self._writable)

    def _writable(self) -> None:
        try:
            sent = self._sock.send(self._unsent)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close(exc)
            return
        self._unsent = self._unsent[sent:]
        if not self._unsent:
            self._loop.remove_writer(self._fd)

    def _close(self, exc: Exception | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self._fd)
        if self._unsent:
            self._unsent = b""
            self._loop.remove_writer(self._fd)
        self._sock.close()
        self._lost(exc)


async def _connect_resolved(loop: asyncio.AbstractEventLoop, sock: socket.socket, address: Any) -> None:
    """Connect the non-blocking ``sock`` to an address ``getaddrinfo`` already resolved.

    ``loop.sock_connect`` resolves the address again, and uvloop does so on its thread pool when
    the socket type is not passed: a hand-off to a worker thread and back for every connection
    (llama.cpp's server closes one after every answer). Here the kernel's own non-blocking connect
    is awaited through the socket becoming writable.
    """
    try:
        sock.connect(address)
        return
    except (BlockingIOError, InterruptedError):
        pass
    fd = sock.fileno()
    writable = loop.create_future()
    loop.add_writer(fd, lambda: writable.done() or writable.set_result(None))
    try:
        await writable
    finally:
        loop.remove_writer(fd)
    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error:
        raise OSError(error, f"connect to {address[0]} port {address[1]}: {os.strerror(error)}")


def _parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    lines = head.split(b"\r\n")
    status_line = lines[0].decode("latin-1")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise RequestFailed(ErrorCategory.MALFORMED, f"invalid HTTP response: status line {status_line[:60]!r}")
    fields: dict[str, str] = {}
    for raw in lines[1:]:
        name, colon, value = raw.decode("latin-1").partition(":")
        if not colon or not name or name != name.strip():
            raise RequestFailed(ErrorCategory.MALFORMED, f"invalid HTTP response: header line {raw[:60]!r}")
        key = name.lower()
        value = value.strip()
        fields[key] = f"{fields[key]}, {value}" if key in fields else value
    return int(code), version[5:], fields


def _chunk_size(line: bytes) -> int:
    digits = line.split(b";", 1)[0].strip()
    if not digits or len(digits) > 15 or digits.strip(_HEX_DIGITS):
        raise RequestFailed(ErrorCategory.MALFORMED, f"invalid HTTP response: chunk size {line[:20]!r}")
    return int(digits, 16)


def _content_length(value: str) -> int:
    # Repeated identical values are allowed (RFC 9110 8.6); anything else is refused.
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1 or not next(iter(values)).isdigit():
        raise RequestFailed(ErrorCategory.MALFORMED, f"invalid HTTP response: Content-Length {value[:40]!r}")
    return int(values.pop())


def _keepalive(sock: Any) -> None:
    """TCP keepalive on, so an idle long stream's dead peer is noticed by the OS."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
            option = getattr(socket, name, None)
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)


class Pool:
    """Persistent connections to any origin, at most ``limit`` open at once (0: unbounded).

    Plain-TCP connections are ``SocketConnection`` (kernel receive stamps) when
    ``kernel_stamps`` (default: where the platform has them), else ``StreamConnection``; TLS
    connections are always ``StreamConnection``.

    ``acquire`` hands out the most recently used idle connection to the origin (one the server
    has not closed and that has idled under ``KEEPALIVE_IDLE_S``), else opens one, else waits for
    one to be released. Opening is bounded by ``connect_timeout_s``; a timeout raises
    ``RequestFailed(CONNECT_TIMEOUT)``, other failures the OS's error.
    """

    def __init__(self, *, limit: int, connect_timeout_s: float | None, kernel_stamps: bool | None = None) -> None:
        self.limit = limit
        # Plain-TCP connections read with the kernel's receive timestamps where it offers them.
        self.kernel_stamps = kernel_stamps_available() if kernel_stamps is None else kernel_stamps
        # Set once a read on a SocketConnection came without its kernel stamp.
        self.unstamped = False
        # Every SocketConnection reads into this one buffer and copies out what it got: a fresh
        # buffer of READ_BYTES per read (what recvmsg allocates) is above the allocator's mmap
        # threshold, which made each read an mmap and munmap (measured: 13 us of system time per
        # read, against 3.5 us). One event loop thread reads, so one buffer serves all.
        self.read_buffer = (bytearray(READ_BYTES),)
        self.read_view = memoryview(self.read_buffer[0])
        # Linux turns receive stamping on lazily, some time after the first socket asks for it,
        # and off when the last one closes; packets in between arrive unstamped. A socket that
        # holds the option for the pool's life keeps it on across connections that come and go
        # (llama.cpp's server closes one after every streamed answer).
        self._stamp_keeper: socket.socket | None = None
        if self.kernel_stamps:
            with contextlib.suppress(OSError):
                keeper = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                keeper.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                self._stamp_keeper = keeper
        self.connect_timeout_s = connect_timeout_s
        self._idle: dict[tuple[str, int, bool], list[Connection]] = {}
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._arrivals: Arrivals | None = None
        self._tls: ssl.SSLContext | None = None
        self._closed = False
        self._all: set[Connection] = set()

    async def acquire(self, origin: Origin) -> Connection:
        if self._closed:
            raise RuntimeError("the connection pool is closed")
        idle = self._idle.get(origin.key)
        while True:
            now = monotonic()
            while idle:
                connection = idle.pop()
                if not connection.closed and now - connection.idle_since < KEEPALIVE_IDLE_S:
                    return connection
                self._drop(connection)
            if not self.limit or self._open < self.limit:
                break
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # Woken and cancelled before it ran: hand the wake-up on, or it is lost.
                if waiter.done() and not waiter.cancelled():
                    self._wake()
                raise
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            idle = self._idle.get(origin.key)
        self._open += 1
        try:
            return await self._connect(origin)
        except BaseException:
            self._open -= 1
            self._wake()
            raise

    def _kernel_stamped(self, origin: Origin) -> bool:
        return self.kernel_stamps and not origin.tls

    def stamping(self, origin: Origin) -> Stamping:
        """Where arrivals from ``origin`` are stamped (``contract.sender.Stamping``): ``"kernel"``
        on its ``SocketConnection``s while every read so far came with its kernel stamp, else
        ``"socket"`` (the loop's delivery)."""
        return "kernel" if self._kernel_stamped(origin) and not self.unstamped else "socket"

    async def _connect(self, origin: Origin) -> Connection:
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                if self._kernel_stamped(origin):
                    connection = await self._open_socket(origin)
                else:
                    connection = await self._open_stream(origin)
        except TimeoutError as exc:
            raise RequestFailed(ErrorCategory.CONNECT_TIMEOUT, "timed out opening a connection") from exc
        except socket.gaierror as exc:
            detail = f"cannot resolve host {origin.host} ({exc.strerror or exc})"
            raise RequestFailed(ErrorCategory.CONNECT, detail) from exc
        connection.key = origin.key
        self._all.add(connection)
        return connection

    async def _open_stream(self, origin: Origin) -> StreamConnection:
        loop = asyncio.get_running_loop()
        if self._arrivals is None:
            self._arrivals = Arrivals(loop)
        arrivals = self._arrivals
        tls = None
        if origin.tls:
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        transport, connection = await loop.create_connection(
            lambda: StreamConnection(arrivals),
            origin.host,
            origin.port,
            ssl=tls,
            server_hostname=origin.host if tls else None,
        )
        sock = transport.get_extra_info("socket")
        if sock is not None:
            _keepalive(sock)
        return connection

    async def _open_socket(self, origin: Origin) -> SocketConnection:
        loop = asyncio.get_running_loop()
        addresses = await loop.getaddrinfo(origin.host, origin.port, type=socket.SOCK_STREAM)
        if not addresses:
            raise OSError(f"no address for {origin.host}")
        failure: OSError | None = None
        for family, kind, proto, _, address in addresses:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                await _connect_resolved(loop, sock, address)
            except BaseException as exc:
                sock.close()
                if not isinstance(exc, OSError):
                    raise
                failure = exc
                continue
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _keepalive(sock)
            return SocketConnection(loop, sock, self)
        assert failure is not None
        raise failure

    def release(self, connection: Connection) -> None:
        """Take ``connection`` back: pooled if its last answer ended cleanly, else closed."""
        if connection.reusable and not connection.closed and not self._closed:
            connection.idle_since = monotonic()
            self._idle.setdefault(connection.key, []).append(connection)
        else:
            connection.close()
            self._drop(connection)
        self._wake()

    def _drop(self, connection: Connection) -> None:
        if connection in self._all:
            self._all.discard(connection)
            self._open -= 1
        connection.close()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def aclose(self) -> None:
        self._closed = True
        if self._stamp_keeper is not None:
            self._stamp_keeper.close()
            self._stamp_keeper = None
        for connection in list(self._all):
            connection.close()
        self._all.clear()
        self._idle.clear()
        self._open = 0
        # Let the transports run their close callbacks before the loop goes away.
        await asyncio.sleep(0)
