"""The lean HTTP/1.1 client (``loadbench.deployments.http1``) against raw loopback servers.

Each test starts a server on 127.0.0.1 that reads a request head (and its Content-Length body) and
writes exactly the bytes the test scripts, often one byte at a time so that every framing line and
CRLF is split across reads. Most tests run over both I/O backends: ``SocketConnection`` (kernel
receive stamps) and ``StreamConnection`` (asyncio transport). Covered: chunked, Content-Length and
until-close bodies; interim 1xx answers; keep-alive and ``Connection: close``; malformed answers;
connections that end early (fresh, mid-body, reused and stale); header lookup and content type;
kernel receive stamps; the pool's limit and idle handling; ``Origin`` and ``header_block``; and one
answer through ``HttpSender`` (a redirect reported with its ``Location``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from time import perf_counter_ns

import pytest

from loadbench.contract.errors import ErrorCategory, RequestFailed
from loadbench.contract.prompt import Prompt
from loadbench.contract.record import RequestRecord
from loadbench.deployments import ClientSettings, Remote
from loadbench.deployments.http1 import (
    Connection,
    Origin,
    Pool,
    Response,
    SocketConnection,
    StaleConnection,
    StreamConnection,
    header_block,
    kernel_stamps_available,
    request_target,
)
from loadbench.deployments.transport import HttpSender, HttpTransport
from loadbench.deployments.wire.openai import OpenAIWire

from .servers import closed_port

# Every test's whole body runs under this; nothing here should take a tenth of it.
TEST_TIMEOUT_S = 5.0
# Between scripted writes: long enough that each write is its own read on the client.
GAP_S = 0.001

REQUEST = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"

BACKENDS = [
    pytest.param(
        True,
        id="kernel",
        marks=pytest.mark.skipif(not kernel_stamps_available(), reason="kernel receive stamps are Linux-only"),
    ),
    pytest.param(False, id="stream"),
]


# -- the scripted server -----------------------------------------------------------------------


class Peer:
    """One accepted connection, as the server side of a test sees it."""

    def __init__(self, server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer

    async def request(self) -> bytes | None:
        """The next request (head and Content-Length body); ``None`` once the client has gone."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        try:
            body = await self.reader.readexactly(length) if length else b""
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        self.server.requests.append(head + body)
        return head + body

    async def send(self, *pieces: bytes, gap_s: float = GAP_S) -> None:
        for i, piece in enumerate(pieces):
            if i:
                await asyncio.sleep(gap_s)
            self.writer.write(piece)
            await self.writer.drain()

    async def send_bytewise(self, data: bytes) -> None:
        await self.send(*(data[i : i + 1] for i in range(len(data))))

    async def until_closed(self) -> None:
        """Read (and drop) until the client closes."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass

    def close(self) -> None:
        self.writer.close()

    def reset(self) -> None:
        """Close with a TCP reset rather than a FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Handler = Callable[[Peer], Awaitable[None]]


class RawServer:
    """``async with RawServer(handler) as server``: each connection is served by ``handler(peer)``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.url = ""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        async with asyncio.timeout(1.0):
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handler(Peer(self, reader, writer))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()


def answering(*answers: bytes | Sequence[bytes], bytewise: bool = False, then: str = "wait") -> Handler:
    """A handler that answers the connection's requests in turn with ``answers`` (bytes, or pieces
    written apart), then ``then``: "wait" for the client to close, "close" or "reset"."""

    async def handler(peer: Peer) -> None:
        for answer in answers:
            if await peer.request() is None:
                return
            if bytewise:
                await peer.send_bytewise(answer if isinstance(answer, bytes) else b"".join(answer))
            elif isinstance(answer, bytes):
                await peer.send(answer)
            else:
                await peer.send(*answer)
        if then == "close":
            peer.close()
        elif then == "reset":
            peer.reset()
        else:
            await peer.until_closed()

    return handler


def run(main: Callable[[], Awaitable[object]]) -> object:
    async def bounded() -> object:
        async with asyncio.timeout(TEST_TIMEOUT_S):
            return await main()

    return asyncio.run(bounded())


class Body:
    """A sink that keeps each body piece with its stamp and the time it was handed over."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.stamps: list[int] = []
        self.delivered: list[int] = []

    def __call__(self, piece: bytes, rx_ns: int) -> None:
        self.delivered.append(perf_counter_ns())
        self.pieces.append(piece)
        self.stamps.append(rx_ns)

    @property
    def data(self) -> bytes:
        return b"".join(self.pieces)


async def exchange(conn: Connection, request: bytes = REQUEST) -> tuple[Response, Body]:
    """One request on ``conn``, its whole answer read."""
    resp = conn.request(request)
    await resp.head
    body = Body()
    resp.attach(body)
    await resp.done
    return resp, body


async def until(predicate: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(1.0):
            while not predicate():
                await asyncio.sleep(0.002)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def new_pool(kernel: bool, limit: int = 2) -> Pool:
    return Pool(limit=limit, connect_timeout_s=2.0, kernel_stamps=kernel)


@contextlib.asynccontextmanager
async def opened_pool(kernel: bool, limit: int = 2) -> AsyncIterator[Pool]:
    """``new_pool``, closed on the way out however the test ends: a failed assertion must not leave
    sockets open for the next test's loop to find."""
    pool = new_pool(kernel, limit)
    try:
        yield pool
    finally:
        await pool.aclose()


async def failure_of(conn: Connection) -> BaseException:
    """What a request on ``conn`` fails with, on its head or its body."""
    resp = conn.request(REQUEST)
    try:
        await resp.head
        resp.attach(Body())
        await resp.done
    except BaseException as exc:  # the assertion is the caller's
        return exc
    raise AssertionError(f"the answer did not fail (HTTP {resp.status})")


# -- body framing -------------------------------------------------------------------------------

CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

CHUNKED_PAYLOAD = b"hello, world! this is chunked\r\n0\r\n"
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;name=val\r\nhello\r\n"
    b"8\r\n, world!\r\n"
    # Leading zeros, an upper-case hex digit, and data that itself looks like framing.
    b"0000000E;a=1;b\r\n this is chunk\r\n"
    b"7\r\ned\r\n0\r\n\r\n"
    b"0\r\nX-Trailer: yes\r\nX-Other: 2\r\n\r\n"
)


@pytest.mark.parametrize("kernel", BACKENDS)
def test_chunked_body_split_at_every_byte_is_exact_and_keeps_the_connection(kernel: bool) -> None:
    second = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"

    async def main() -> None:
        async with RawServer(answering(CHUNKED, second, bytewise=True)) as server, opened_pool(kernel) as pool:
            conn = await pool.acquire(Origin(server.url))
            assert isinstance(conn, SocketConnection if kernel else StreamConnection)
            resp, body = await exchange(conn)
            assert resp.status == 200
            assert body.data == CHUNKED_PAYLOAD
            # Written a byte at a time: the body came in many reads, not one.
            assert len(body.pieces) > 5
            assert "x-trailer" not in resp.headers  # trailers are read past, not merged
            assert conn.reusable and not conn.closed
            pool.release(conn)

            again = await pool.acquire(Origin(server.url))
            assert again is conn
            resp, body = await exchange(again)
            assert (resp.status, body.data) == (200, b"abc")
            assert again.reusable and again.served == 2
            pool.release(again)
            assert server.connections == 1 and len(server.requests) == 2

    run(main)


@pytest.mark.parametrize("kernel", BACKENDS)
def test_chunked_body_in_one_write_is_exact(kernel: bool) -> None:
    async def main() -> None:
        async with RawServer(answering(CHUNKED)) as server, opened_pool(kernel) as pool:
            conn = await pool.acquire(Origin(server.url))
            _, body = await exchange(conn)
            assert body.data == CHUNKED_PAYLOAD
            assert conn.reusable

    run(main)


@pytest.mark.parametrize("kernel", BACKENDS)
def test_content_length_body_split_across_reads_is_exact(kernel: bool) -> None:
    payload = b"0123456789" * 3
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n" + payload

    async def main() -> None:
        async with RawServer(answering(answer, bytewise=True)) as server, opened_pool(kernel) as pool:
            conn = await pool.acquire(Origin(server.url))
            resp, body = await exchange(conn)
            assert resp.headers["content-length"] == "30"
            assert body.data == payload and len(body.pieces) > 1
            assert conn.reusable

    run(main)


@pytest.mark.parametrize("kernel", BACKENDS)
@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", id="length-0"),
        pytest.param(b"HTTP/1.1 204 No Content\r\n\r\n", id="204"),
        pytest.param(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", id="304-with-length"),
    ],
)
def test_empty_bodies_finish_with_the_head_and_keep_the_connection(kernel: bool, answer: bytes) -> None:
    async def main() -> None:
        async with RawServer(answering(answer, answer)) as server, opened_pool(kernel) as pool:
            conn = await pool.acquire(Origin(server.url))
            for _ in range(2):
                resp = conn.request(REQUEST)
                await resp.head
                # Done with the head, before any sink is attached.
                assert resp.done.done() and resp.done.exception() is None
                body = Body()
                resp.attach(body)
                assert body.pieces == [] and resp.last_ns == 0
                assert conn.reusable
            assert server.connections == 1

    run(main)


@pytest.mark.parametrize("kernel", BACKENDS)
def test_body_framed_by_close_is_read_to_eof_and_not_reused(kernel: bool) -> None:
    pieces = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", b"first ", b"second ", b"third")

    async def main() -> None:
        async with RawServer(answering(pieces, then="close")) as server, opened_pool(kernel) as pool:
            conn = await pool.acquire(Origin(server.url))
            resp, body = await exchange(conn)
            assert resp.status == 200
            assert body.data == b"first second third"
            assert not conn.reusable
            await until(lambda: conn.closed, "the connection closed")
            pool.release(conn)
            assert server.connections == 1

    run(main)


@pytest.mark.parametrize("kernel", BACKENDS)
@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", id="after-length"),
        pytest.param(CHUNKED_HEAD + b"2\r\nok\r\n0\r\n\r\nEXTRA", id="after-chunked"),
    ],
)
def test_bytes_past_the_end_of_an_answer_make_it_not_reusable(kernel: bool, answer: bytes) -> None:
    async def main() -> None:
        async with RawServer(answering(answer)) as server, opened_pool(kernel) as pool:
            conn = await pool.acquire(Origin(server.url))
            resp, body = await exchange(conn)
            assert (resp.status, body.data) == (200, b"ok")
            assert not conn.reusable

    run(main)


@pytest.mark.parametrize("kernel", BACKENDS)
def test_bytes_past_an_empty_answer_in_the_same_read_make_it_not_reusable(kernel: bool) -> None:
    answer = b"HTTP/1.1 204 No Content\r\n\r\nEXTRA"

    async def main() -> None:
        loop_errors: list[dict] = []
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: loop_errors.append(context))
        async with RawServer(answering(answer)) as server, opened_pool(kernel) as pool:
            conn = await pool.acquire(Origin(server.url))
            resp, _ = await exchange(conn)
            await asyncio.sleep(0.01)
            assert resp.status == 204
            assert loop_errors == []
            assert not conn.reusable

    run(main)


@pytest.mark.parametrize("kernel", BACKENDS)
def test_bytes_from_the_server_while_idle_close_the_connection(kernel: bool) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await asyncio.sleep(0.02)
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno")
        await peer.until_closed()

    async def main() -> None:
        async with RawServer(handler) as server, opened_pool(kernel) as pool:
            conn = await pool.acquire(Origin(server.url))
            await exchange(conn)
            pool.release(conn)
            await until(lambda: conn.closed, "the connection closed")
            fresh = await pool.acquire(Origin(server.url))
            assert fresh is not conn
            _, body = await exchange(fresh)
            assert body.data == b"ok"
            assert server.connections == 2

    run(main)


@pytest.mark.parametrize("kernel", BACKENDS)
@pytest.mark.parametrize(
    "answer",
    [
        pytest.param((b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), id="apart"),
        pytest.param((b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",), id="together"),
        pytest.param(
            (
                b"HTTP/1.1 100 Continue\r\n\r\n",
                b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            ),
            id="two-interim",
        ),
    ],
)
def test_interim_answers_are_skipped(kernel: bool, answer: tuple[bytes, ...]) -> None:
    async def main() -> None:
        async with RawServer(answering(answer)) as server, opened_pool(kernel) as pool:
            conn = await pool.acquire(Origin(server.url))
            resp, body = await exchange(conn)
            assert (resp.status, body.data) == (200, b"ok")
            assert "link" not in resp.headers  # the interim answer's headers are not the answer's
            assert conn.reusable

    run(main)


# -- keep-alive ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", BACKENDS)
@pytest.mark.parametrize(
    ("answer", "reusable"),
    [
        pytest.param(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False, id="1.0"),
        pytest.param(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok", True, id="1.0-keep"),
        pytest.param(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", False, id="1.1-close"),
        pytest.param(b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 2\r\n\r\nok", False, id="1.1-Close"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", True, id="1.1"),
    ],
)
def test_keep_alive_follows_version_and_connection_header(kernel: bool, answer: bytes, reusable: bool) -> None:
    async def main() -> None:
        async with RawServer(answering(answer, answer)) as server, opened_pool(kernel) as pool:
            conn = await pool.acquire(Origin(server.url))
            _, body = await exchange(conn)
            assert body.data == b"ok"
            assert conn.reusable is reusable
            pool.release(conn)
            again = await pool.acquire(Origin(server.url))
            assert (again is conn) is reusable
            _, body = await exchange(again)
            assert body.data == b"ok"
            pool.release(again)
            # A connection not reusable is closed on release, and the next one is new.
            assert server.connections == (1 if reusable else 2)

    run(main)


# -- malformed answers --------------------------------------------------------------------------

@pytest.mark.parametrize("kernel", BACKENDS)
@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        pytest.param(b"HTTP/2 200 OK\r\n\r\n", "status line", id="http2-status-line"),
        pytest.param(b"HTTP/1.1 OK\r\n\r\n", "status line", id="no-code"),
        pytest.param(b"ICY 200 OK\r\n\r\n", "status line", id="not-http"),
        pytest.param(b"HTTP/1.1 2x0 OK\r\n\r\n", "status line", id="letter-in-code"),
        pytest.param(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "header line", id="header-without-colon"),
        pytest.param(b"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n", "header line", id="header-empty-name"),
        pytest.param(b"HTTP/1.1 200 OK\r\nName : v\r\n\r\n", "header line", id="space-before-colon"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", "Content-Length", id="length-not-a-number"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n", "Content-Length", id="two-lengths"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length", id="negative-length"),
        pytest.param(CHUNKED_HEAD + b"zz\r\nhello\r\n0\r\n\r\n", "chunk size", id="chunk-size-zz"),
        pytest.param(CHUNKED_HEAD + b"0x10\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n", "chunk size", id="chunk-size-0x10"),
        pytest.param(CHUNKED_HEAD + b"-1\r\nhello\r\n0\r\n\r\n", "chunk size", id="chunk-size-negative"),
        pytest.param(CHUNKED_HEAD + b"\r\nhello\r\n0\r\n\r\n", "chunk size", id="chunk-size-empty"),
        pytest.param(CHUNKED_HEAD + b"3\r\nabcdef\r\n0\r\n\r\n", "longer than its size", id="chunk-too-long"),
        pytest.param(CHUNKED_HEAD + b"1" * 5000, "framing line", id="endless-size-line"),
    ],
)
def test_malformed_answer_is_request_failed_malformed(kernel: bool, answer: bytes, detail: str) -> None:
    async def main() -> None:
        async with RawServer(answering(answer)) as server, opened_pool(kernel) as pool:
            conn = await pool.acquire(Origin(server.url))
            exc = await failure_of(conn)
            assert isinstance(exc, RequestFailed), repr(exc)
            assert exc.category is ErrorCategory.MALFORMED
            assert exc.detail.startswith("invalid HTTP response") and detail in exc.detail
            assert not conn.reusable
            await until(lambda: conn.closed, "the connection closed")

    run(main)


@pytest.mark.parametrize("kernel", BACKENDS)
def test_head_over_64_kib_without_its_end_is_malformed(kernel: bool) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nX-Big: ", b"a" * (70 << 10))
        await peer.until_closed()

    async def main() -> None:
        async with RawServer(handler) as server, opened_pool(kernel) as pool:
            conn = await pool.acquire(Origin(server.url))
            resp = conn.request(REQUEST)
            with pytest.raises(RequestFailed) as info:
                await resp.head
            assert info.value.category is ErrorCategory.MALFORMED
            assert "64 KiB" in info.value.detail

    run(main)


@pytest.mark.parametrize("kernel", BACKENDS)
def test_head_over_64_kib_is_malformed_even_when_its_end_arrives_with_it(kernel: bool) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        # Under the limit, then past it with the end of the head in the same read.
        await peer.send(
            b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (60 << 10),
            b"a" * (10 << 10) + b"\r\nContent-Length: 0\r\n\r\n",
            gap_s=0.02,
        )
        await peer.until_closed()

    async def main() -> None:
        async with RawServer(handler) as server, opened_pool(kernel) as pool:
            conn = await pool.acquire(Origin(server.url))
            resp = conn.request(REQUEST)
            with pytest.raises(RequestFailed) as info:
                await resp.head
            assert info.value.category is ErrorCategory.MALFORMED

    run(main)


# -- connections that end early -----------------------------------------------------------------


@pytest.mark.parametrize("kernel", BACKENDS)
@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(CHUNKED_HEAD + b"5\r\nhello\r\n", id="chunked"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", id="length"),
    ],
)
def test_server_closing_mid_body_fails_done_with_a_reset(kernel: bool, answer: bytes) -> None:
    async def main() -> None:
        async with RawServer(answering(answer, then="close")) as server, opened_pool(kernel) as pool:
            conn = await pool.acquire(Origin(server.url))
            resp = conn.request(REQUEST)
            await resp.head
            body = Body()
            resp.attach(body)
            with pytest.raises(ConnectionResetError):
                await resp.done
            assert body.data == b"hello"  # what came before the drop was still handed over
            assert not conn.reusable
            await until(lambda: conn.closed, "the connection closed")

    run(main)


@pytest.mark.parametrize("kernel", BACKENDS)
def test_server_resetting_mid_body_fails_done_with_an_os_error(kernel: bool) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(CHUNKED_HEAD + b"5\r\nhello\r\n")
        # Read by the client before the reset, which could otherwise discard them unread.
        await asyncio.sleep(0.02)
        peer.reset()

    async def main() -> None:
        async with RawServer(handler) as server, opened_pool(kernel) as pool:
            conn = await pool.acquire(Origin(server.url))
            resp = conn.request(REQUEST)
            await resp.head
            resp.attach(Body())
            with pytest.raises(OSError):
                await resp.done
            assert not conn.reusable

    run(main)


@pytest.mark.parametrize("kernel", BACKENDS)
def test_fresh_connection_closed_before_any_answer_is_connect_failure(kernel: bool) -> None:
    async def handler(peer: Peer) -> None:
        # The request read before the close, so that the close is a FIN and not a reset.
        await peer.request()
        peer.close()

    async def main() -> None:
        async with RawServer(handler) as server, opened_pool(kernel) as pool:
            conn = await pool.acquire(Origin(server.url))
            resp = conn.request(REQUEST)
            with pytest.raises(RequestFailed) as info:
                await resp.head
            assert info.value.category is ErrorCategory.CONNECT
            assert info.value.detail == "server disconnected before responding"
            with pytest.raises(RequestFailed):
                await resp.done
            assert not conn.reusable
            await until(lambda: conn.closed, "the connection closed")

    run(main)


@pytest.mark.parametrize("kernel", BACKENDS)
@pytest.mark.parametrize("seen", [True, False], ids=["close-seen", "close-unseen"])
def test_reused_connection_closed_while_idle_is_stale(kernel: bool, seen: bool) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def main() -> None:
        async with RawServer(answering(answer, then="close")) as server, opened_pool(kernel) as pool:
            conn = await pool.acquire(Origin(server.url))
            _, body = await exchange(conn)
            assert body.data == b"ok" and conn.reusable
            if seen:
                await until(lambda: conn.closed, "the server's close seen")
                with pytest.raises(StaleConnection):
                    conn.request(REQUEST)
            else:
                # Sent at once: the server's close may not have been read yet.
                with pytest.raises(StaleConnection):
                    resp = conn.request(REQUEST)
                    await resp.head
            assert not conn.reusable
            pool.release(conn)
            assert server.connections == 1

    run(main)


# -- headers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", BACKENDS)
def test_headers_are_case_insensitive_and_repeats_are_joined(kernel: bool) -> None:
    answer = (
        b"HTTP/1.1 201 Created\r\n"
        b"X-Thing: one\r\n"
        b"x-thing:two\r\n"
        b"X-THING:   three  \r\n"
        b"Content-Type: Text/Event-Stream; Charset=UTF-8\r\n"
        b"X-Empty:\r\n"
        b"Content-Length: 0\r\n\r\n"
    )

    async def main() -> None:
        async with RawServer(answering(answer, bytewise=True)) as server, opened_pool(kernel) as pool:
            conn = await pool.acquire(Origin(server.url))
            resp, _ = await exchange(conn)
            assert resp.status == 201
            headers = resp.headers
            assert headers["x-thing"] == headers["X-Thing"] == headers.get("X-THING") == "one, two, three"
            assert "X-Thing" in headers and "x-empty" in headers and headers["X-Empty"] == ""
            assert headers.get("missing") is None and headers.get("Missing", "d") == "d"
            with pytest.raises(KeyError):
                headers["missing"]
            assert sorted(headers) == ["content-length", "content-type", "x-empty", "x-thing"]
            assert len(headers) == 4
            assert resp.content_type == "text/event-stream"

    run(main)


@pytest.mark.parametrize("kernel", BACKENDS)
@pytest.mark.parametrize(
    ("header", "content_type"),
    [
        pytest.param(b"", "application/octet-stream", id="missing"),
        pytest.param(b"Content-Type: \r\n", "application/octet-stream", id="empty"),
        pytest.param(b"Content-Type: ; charset=utf-8\r\n", "application/octet-stream", id="params-only"),
        pytest.param(b"Content-Type: APPLICATION/X-NDJSON\r\n", "application/x-ndjson", id="upper"),
        pytest.param(b"Content-Type: application/json ; charset=utf-8\r\n", "application/json", id="params"),
    ],
)
def test_content_type_is_the_lower_cased_media_type(kernel: bool, header: bytes, content_type: str) -> None:
    answer = b"HTTP/1.1 200 OK\r\n" + header + b"Content-Length: 0\r\n\r\n"

    async def main() -> None:
        async with RawServer(answering(answer)) as server, opened_pool(kernel) as pool:
            conn = await pool.acquire(Origin(server.url))
            resp, _ = await exchange(conn)
            assert resp.content_type == content_type

    run(main)


# -- body pieces and sinks ------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", BACKENDS)
def test_pieces_before_attach_are_held_and_handed_over_in_order(kernel: bool) -> None:
    pieces = (CHUNKED_HEAD, b"3\r\nabc\r\n", b"3\r\ndef\r\n", b"0\r\n\r\n")

    async def main() -> None:
        async with RawServer(answering(pieces)) as server, opened_pool(kernel) as pool:
            conn = await pool.acquire(Origin(server.url))
            resp = conn.request(REQUEST)
            await resp.done
            body = Body()
            resp.attach(body)
            assert body.data == b"abcdef"
            assert body.stamps == sorted(body.stamps) and resp.last_ns == body.stamps[-1]
            assert resp.headers_ns <= body.stamps[0]

    run(main)


@pytest.mark.parametrize("kernel", BACKENDS)
def test_a_sink_that_raises_ends_the_answer_and_the_connection(kernel: bool) -> None:
    pieces = (CHUNKED_HEAD, b"3\r\nabc\r\n", b"3\r\ndef\r\n", b"0\r\n\r\n")
    boom = ValueError("the decoder refused it")

    async def main() -> None:
        async with RawServer(answering(pieces)) as server, opened_pool(kernel) as pool:
            conn = await pool.acquire(Origin(server.url))
            resp = conn.request(REQUEST)
            await resp.head
            seen: list[bytes] = []

            def sink(piece: bytes, _rx_ns: int) -> None:
                seen.append(piece)
                raise boom

            resp.attach(sink)
            with pytest.raises(ValueError) as info:
                await resp.done
            assert info.value is boom and resp.error is boom
            assert seen == [b"abc"]
            assert not conn.reusable
            await until(lambda: conn.closed, "the connection closed")

    run(main)


@pytest.mark.parametrize("kernel", BACKENDS)
def test_read_stops_at_its_limit(kernel: bool) -> None:
    answer = b"HTTP/1.1 500 Oops\r\nContent-Length: 10\r\n\r\n0123456789"

    async def main() -> None:
        async with RawServer(answering(answer, answer)) as server, opened_pool(kernel) as pool:
            conn = await pool.acquire(Origin(server.url))
            resp = conn.request(REQUEST)
            await resp.head
            assert await resp.read(4) == b"0123"
            await resp.done
            resp = conn.request(REQUEST)
            await resp.head
            assert await resp.read(1 << 10) == b"0123456789"
            assert resp.status == 500 and conn.reusable

    run(main)


@pytest.mark.parametrize("kernel", BACKENDS)
def test_a_request_larger_than_the_socket_buffer_is_written_whole(kernel: bool) -> None:
    body = bytes(range(256)) * (16 << 10)  # 4 MiB
    request = b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body

    async def main() -> None:
        async with (
            RawServer(answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) as server,
            opened_pool(kernel) as pool,
        ):
            conn = await pool.acquire(Origin(server.url))
            _, answer = await exchange(conn, request)
            assert answer.data == b"ok"
            assert server.requests == [request]

    run(main)


# -- arrival stamps -------------------------------------------------------------------------------


def blocked_loop_stamps(kernel: bool) -> tuple[int, int, int]:
    """One chunk that arrives while the client's loop is blocked for 80 ms right after the head:
    ``(its stamp, when it was handed over, when the block ended)``."""
    go = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(2.0)
    port = listener.getsockname()[1]

    # A thread, not the test's loop: the loop is the thing blocked.
    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(2.0)
            received = b""
            while b"\r\n\r\n" not in received:
                received += conn.recv(4096)
            conn.sendall(CHUNKED_HEAD)
            go.wait(2.0)
            conn.sendall(b"5\r\nhello\r\n")
            time.sleep(0.005)
            conn.sendall(b"0\r\n\r\n")
            with contextlib.suppress(OSError):
                while conn.recv(4096):
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    async def main() -> tuple[int, int, int]:
        async with opened_pool(kernel) as pool:
            conn = await pool.acquire(Origin(f"http://127.0.0.1:{port}"))
            resp = conn.request(REQUEST)
            await resp.head
            go.set()
            time.sleep(0.08)  # blocks the loop: the chunk arrives meanwhile, unread
            unblocked_ns = perf_counter_ns()
            body = Body()
            resp.attach(body)
            await resp.done
            assert body.pieces[0] == b"hello"
            assert not pool.unstamped
            return body.stamps[0], body.delivered[0], unblocked_ns

    try:
        return run(main)  # type: ignore[return-value]
    finally:
        listener.close()
        thread.join(2.0)


@pytest.mark.skipif(not kernel_stamps_available(), reason="kernel receive stamps are Linux-only")
def test_kernel_stamp_is_the_arrival_not_the_read() -> None:
    rx_ns, delivered_ns, unblocked_ns = blocked_loop_stamps(kernel=True)
    assert delivered_ns - rx_ns >= 40_000_000
    assert rx_ns < unblocked_ns - 40_000_000


def test_stream_stamp_is_taken_when_the_loop_reads() -> None:
    # The contrast with the kernel stamp: a blocked loop delays this one.
    rx_ns, delivered_ns, unblocked_ns = blocked_loop_stamps(kernel=False)
    assert unblocked_ns <= rx_ns <= delivered_ns


@pytest.mark.parametrize("kernel", BACKENDS)
def test_stamps_on_one_connection_never_decrease(kernel: bool) -> None:
    answer = (CHUNKED_HEAD, b"3\r\nabc\r\n", b"3\r\ndef", b"\r\n0\r\n\r\n")

    async def main() -> None:
        async with RawServer(answering(answer, answer, answer)) as server, opened_pool(kernel) as pool:
            conn = await pool.acquire(Origin(server.url))
            stamps: list[int] = []
            for _ in range(3):
                before = perf_counter_ns()
                resp, body = await exchange(conn)
                assert body.data == b"abcdef"
                # Never before its request was written, never after it was handed over.
                assert before <= resp.headers_ns <= body.stamps[0]
                assert body.stamps[-1] <= body.delivered[-1]
                stamps += [resp.headers_ns, *body.stamps]
            assert stamps == sorted(stamps)
            assert isinstance(conn, SocketConnection if kernel else StreamConnection)
            assert pool.stamping(Origin(server.url)) == ("kernel" if kernel else "socket")
            assert not pool.unstamped

    run(main)


# -- the pool ---------------------------------------------------------------------------------------

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
CLOSE = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"


@pytest.mark.parametrize("kernel", BACKENDS)
def test_pool_limit_makes_a_second_acquire_wait_for_a_release(kernel: bool) -> None:
    async def main() -> None:
        async with RawServer(answering(OK, CLOSE, OK)) as server:
            origin = Origin(server.url)
            async with opened_pool(kernel, limit=1) as pool:
                first = await pool.acquire(origin)
                waiting = asyncio.ensure_future(pool.acquire(origin))
                await asyncio.sleep(0.02)
                assert not waiting.done()
                await exchange(first)
                pool.release(first)
                second = await asyncio.wait_for(waiting, 1.0)
                assert second is first

                # A connection that cannot be reused frees its slot too: the next one is new.
                waiting = asyncio.ensure_future(pool.acquire(origin))
                await asyncio.sleep(0.02)
                assert not waiting.done()
                await exchange(second)
                assert not second.reusable
                pool.release(second)
                third = await asyncio.wait_for(waiting, 1.0)
                assert third is not second and second.closed
                _, body = await exchange(third)
                assert body.data == b"ok"
                assert server.connections == 2

    run(main)


@pytest.mark.parametrize("kernel", BACKENDS)
def test_pool_wake_up_is_not_lost_when_the_woken_waiter_is_cancelled(kernel: bool) -> None:
    async def main() -> None:
        async with RawServer(answering(OK)) as server:
            origin = Origin(server.url)
            async with opened_pool(kernel, limit=1) as pool:
                first = await pool.acquire(origin)
                doomed = asyncio.ensure_future(pool.acquire(origin))
                patient = asyncio.ensure_future(pool.acquire(origin))
                await asyncio.sleep(0.01)
                await exchange(first)
                pool.release(first)
                doomed.cancel()
                got = await asyncio.wait_for(patient, 0.3)
                assert got is first

    run(main)


@pytest.mark.parametrize("kernel", BACKENDS)
def test_refused_connect_is_an_os_error_and_frees_its_slot(kernel: bool) -> None:
    async def main() -> None:
        async with opened_pool(kernel, limit=1) as pool:
            origin = Origin(f"http://127.0.0.1:{closed_port()}")
            for _ in range(2):  # a leaked slot would make the second one wait for ever
                with pytest.raises(ConnectionRefusedError):
                    await asyncio.wait_for(pool.acquire(origin), 1.0)

    run(main)


@pytest.mark.parametrize("kernel", BACKENDS)
def test_idle_connection_closed_by_the_server_is_not_handed_out(kernel: bool) -> None:
    async def main() -> None:
        async with RawServer(answering(OK, then="close")) as server:
            origin = Origin(server.url)
            async with opened_pool(kernel, limit=1) as pool:
                conn = await pool.acquire(origin)
                await exchange(conn)
                pool.release(conn)
                await until(lambda: conn.closed, "the server's close seen")
                fresh = await asyncio.wait_for(pool.acquire(origin), 1.0)
                assert fresh is not conn and not fresh.closed
                _, body = await exchange(fresh)
                assert body.data == b"ok"
                assert server.connections == 2

    run(main)


@pytest.mark.parametrize("kernel", BACKENDS)
def test_closed_pool_refuses_to_acquire(kernel: bool) -> None:
    async def main() -> None:
        async with RawServer(answering(OK)) as server:
            pool = new_pool(kernel)
            conn = await pool.acquire(Origin(server.url))
            await pool.aclose()
            assert conn.closed or not conn.reusable
            with pytest.raises(RuntimeError):
                await pool.acquire(Origin(server.url))

    run(main)


# -- Origin and request building --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "port", "tls", "host_header"),
    [
        ("http://example.com/v1", "example.com", 80, False, "example.com"),
        ("https://example.com", "example.com", 443, True, "example.com"),
        ("http://example.com:80/", "example.com", 80, False, "example.com"),
        ("https://example.com:443/", "example.com", 443, True, "example.com"),
        ("http://example.com:8080/v1", "example.com", 8080, False, "example.com:8080"),
        ("https://example.com:80", "example.com", 80, True, "example.com:80"),
        ("http://[::1]:8080/v1", "::1", 8080, False, "[::1]:8080"),
        ("http://[::1]/", "::1", 80, False, "[::1]"),
        ("HTTP://Example.COM:81", "example.com", 81, False, "example.com:81"),
    ],
)
def test_origin_parts_and_host_header(url: str, host: str, port: int, tls: bool, host_header: str) -> None:
    origin = Origin(url)
    assert (origin.host, origin.port, origin.tls, origin.host_header) == (host, port, tls, host_header)
    assert origin.key == (host, port, tls)


@pytest.mark.parametrize("url", ["ftp://example.com", "example.com:80", "http://", "http://example.com:99999"])
def test_origin_refuses_what_is_not_an_http_url(url: str) -> None:
    with pytest.raises(ValueError):
        Origin(url)


@pytest.mark.parametrize(
    ("url", "target"),
    [("http://h", "/"), ("http://h/v1/chat", "/v1/chat"), ("http://h/a?b=1&c", "/a?b=1&c"), ("http://h?q", "/?q")],
)
def test_request_target_is_path_and_query(url: str, target: str) -> None:
    assert request_target(url) == target


def test_header_block_writes_each_header_on_its_line() -> None:
    assert header_block({"Host": "h:1", "X-Empty": "", "Authorization": "Bearer k"}) == (
        b"Host: h:1\r\nX-Empty: \r\nAuthorization: Bearer k\r\n"
    )


SECRET = "sk-secret0123456789"


@pytest.mark.parametrize(
    "value",
    [f"Bearer {SECRET}\r\nX-Injected: 1", f"{SECRET}\n", f"\r{SECRET}"],
    ids=["crlf", "lf", "cr"],
)
def test_header_block_refuses_a_line_break_in_a_value_without_echoing_it(value: str) -> None:
    with pytest.raises(ValueError) as info:
        header_block({"Authorization": value})
    assert "Authorization" in str(info.value)
    assert SECRET not in str(info.value)


def test_header_block_refuses_a_value_outside_latin_1_without_echoing_it() -> None:
    with pytest.raises(ValueError) as info:
        header_block({"Authorization": f"Bearer {SECRET}\u2019"})
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("name", ["", "X Name", "X\tName", "X:Name", "X\r\nName", "X\nName", "Näme"])
def test_header_block_refuses_a_bad_name(name: str) -> None:
    with pytest.raises(ValueError) as info:
        header_block({name: SECRET})
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("name", ["X(Name)", "X,Name", "X\x00Name", "X\x7fName", 'X"Name'])
def test_header_block_refuses_a_name_that_is_not_a_token(name: str) -> None:
    with pytest.raises(ValueError):
        header_block({name: "v"})


# -- through HttpSender -----------------------------------------------------------------------------


def test_sender_reports_a_redirect_with_its_location() -> None:
    models = b'{"object":"list","data":[{"id":"m","object":"model"}]}'

    async def handler(peer: Peer) -> None:
        while (request := await peer.request()) is not None:
            if request.startswith(b"GET /v1/models "):
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(models)
                await peer.send(head + models)
            else:
                await peer.send(
                    b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://elsewhere/v1\r\nContent-Length: 0\r\n\r\n"
                )

    async def main() -> RequestFailed:
        async with RawServer(handler) as server:
            dep = Remote.compatible(server.url, "m")
            async with dep.open(base_url=server.url, settings=ClientSettings(pool_size=1)) as sender:
                now = perf_counter_ns()
                record = RequestRecord(index=0, request_id="r-0", intended_ns=now, sent_ns=now)
                with pytest.raises(RequestFailed) as info:
                    await sender.send(Prompt.user("x"), record)
                assert record.http_status == 307
                posts = [r for r in server.requests if r.startswith(b"POST ")]
                assert len(posts) == 1 and b"\r\nHost: 127.0.0.1:" in posts[0]
                return info.value

    exc = run(main)
    assert isinstance(exc, RequestFailed)
    assert exc.http_status == 307
    assert "redirected to http://elsewhere/v1" in exc.detail
    assert exc.detail.startswith("HTTP 307: ")


@pytest.mark.skipif(sys.platform != "linux", reason="SO_TIMESTAMPNS is a Linux socket option")
def test_kernel_stamps_are_available_on_linux() -> None:
    assert kernel_stamps_available()
    assert Pool(limit=0, connect_timeout_s=None).kernel_stamps


def test_a_header_that_cannot_be_sent_fails_each_request_without_echoing_its_value() -> None:
    # A key read from the environment with a stray newline would split the request: every request
    # fails as the client's error, naming the header, never its value.
    secret = "sk-test-0123456789abcdef\nX-Injected: 1"

    async def main() -> RequestFailed:
        async with HttpTransport(ClientSettings(pool_size=1), read_path="lean") as transport:
            sender = HttpSender(transport, OpenAIWire(model="m"), "http://127.0.0.1:9/v1",
                                headers={"Authorization": f"Bearer {secret}"}, secret=secret)
            now = perf_counter_ns()
            record = RequestRecord(index=0, request_id="r-0", intended_ns=now, sent_ns=now)
            with pytest.raises(RequestFailed) as info:
                await sender.send(Prompt.user("x"), record)
            return info.value

    exc = run(main)
    assert exc.category is ErrorCategory.CLIENT
    assert "'Authorization' holds a line break" in exc.detail
    assert "sk-test" not in exc.detail and "Injected" not in exc.detail
