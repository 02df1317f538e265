"""aiohttp's internals, all in one place: the hooks that stamp arrivals at the socket.

The aiohttp client path stamps each network read when its bytes arrive (in the connection
protocol's ``data_received``), not when a coroutine gets round to reading them, and on the push
path parses a body inside that call. aiohttp offers no public API for either, so this module
reaches into it, and nothing else in the package does:

* ``StampingHandler`` subclasses ``aiohttp.client_proto.ResponseHandler`` and overrides
  ``data_received``, ``_drain_tail`` (private), ``eof_received`` and ``connection_lost``;
* ``stamping_connector`` replaces ``TCPConnector._factory`` (private), which builds each
  connection's protocol;
* ``Pump.attach`` swaps a live ``aiohttp.StreamReader``'s ``__class__`` for ``PushedReader``, which
  overrides ``feed_data`` and ``end_http_chunk_receiving`` and reads the reader's ``_protocol``
  slot (private) to find the connection's ``sink``;
* ``SentStampPayload`` and ``GatedPayload`` subclass ``aiohttp.payload.BytesPayload`` (``write``,
  ``write_with_length``).

Checked against aiohttp 3.14.5; the package's pin is ``aiohttp>=3.13,<4``. Should a release move
any of these, the client keeps working but stamps fall back to the time a chunk is read, which
changes what TTFT measures. So that this is never silent, ``missing_hooks()`` names what the
installed aiohttp lacks, ``stamping(connector)`` says which path a connector's connections take
(``"socket"`` or ``"reader"``), decided from the factory actually installed, and the transport
reports the path its responses really took; ``run.json`` records it (``client.stamping``) and
the test suite fails when it is not ``"socket"``.
"""

from __future__ import annotations

import asyncio
import functools
from time import perf_counter_ns
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.payload import BytesPayload

from loadbench.contract.record import RequestRecord
from loadbench.contract.sender import Stamping
from loadbench.deployments.framing import NdjsonDecoder, SseDecoder, StreamParser
from loadbench.deployments.http1 import Arrivals


class StampingHandler(ResponseHandler):
    """aiohttp's response protocol, stamping ``rx_ns`` each time bytes arrive from the socket.

    The event loop delivers every readable socket's bytes (``data_received``) before it resumes
    any coroutine waiting on them. Stamping here, rather than after the reading coroutine has been
    resumed and has parsed the chunk, keeps a token's stamp from waiting behind the parsing of other
    streams' chunks that arrived in the same instant; with ``arrivals`` the parse itself is deferred
    to just after the poll (``Arrivals``). On the push path the body is parsed by that deferred
    call (``PushedReader`` hands it to the attached ``sink``), sparing each chunk the future, task
    wake-up and coroutine resumption of a ``readany`` loop.
    """

    rx_ns = 0
    sink: Pump | None = None
    _direct = False

    def __init__(self, loop: asyncio.AbstractEventLoop, arrivals: Arrivals | None = None) -> None:
        super().__init__(loop=loop)
        self._event_loop = loop
        self._arrivals = arrivals

    def feed(self, data: bytes, rx_ns: int) -> None:
        """Parse ``data``, stamped ``rx_ns`` (``Arrivals`` calls this right after the poll). A
        failure is reported as the transport would report it, and the connection dropped."""
        self.rx_ns = rx_ns
        self._direct = True
        try:
            ResponseHandler.data_received(self, data)
        except Exception as exc:
            self._event_loop.call_exception_handler(
                {"message": "response protocol failed on received data", "exception": exc, "protocol": self}
            )
            if self.transport is not None:
                self.transport.close()
        finally:
            self._direct = False

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


class Pump:
    """One response body, parsed synchronously as its bytes arrive (the push path).

    While attached to the connection (``protocol.sink``), the response's reader is a
    ``PushedReader``: aiohttp's HTTP parser hands it each de-chunked piece of body inside
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
        protocol: StampingHandler,
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
            content.__class__ = PushedReader
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


class PushedReader(aiohttp.StreamReader):
    """A response body reader that hands each piece to its connection's pump, unbuffered.

    Swapped in for ``aiohttp.StreamReader`` (same slots, no new state) while a ``Pump`` is
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


class SentStampPayload(BytesPayload):
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


class GatedPayload(SentStampPayload):
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


def stamping_connector(**kwargs: Any) -> aiohttp.TCPConnector:
    connector = aiohttp.TCPConnector(**kwargs)
    # aiohttp builds each connection's protocol from this factory (a private attribute, stable
    # through aiohttp 3.x); without it, stamps fall back to the time the chunk is read and bodies
    # are read by the pull path.
    if hasattr(connector, "_factory"):
        loop = asyncio.get_running_loop()
        connector._factory = functools.partial(StampingHandler, loop=loop, arrivals=Arrivals(loop))
    return connector


def stamping(connector: aiohttp.BaseConnector) -> Stamping:
    """``"socket"`` when ``connector`` builds its connections' protocols as ``StampingHandler``
    (``stamping_connector`` installed the factory and this aiohttp reads it), else ``"reader"``."""
    factory = getattr(connector, "_factory", None)
    built = getattr(factory, "func", None)
    return "socket" if isinstance(built, type) and issubclass(built, StampingHandler) else "reader"


def response_protocol(response: aiohttp.ClientResponse) -> Any:
    """The protocol of the connection ``response`` came on, even once aiohttp has released the
    connection (a body already complete); its reader keeps it in ``_protocol``."""
    return getattr(response.content, "_protocol", None)


def missing_hooks() -> list[str]:
    """What the installed aiohttp lacks of the classes' internals this module relies on (empty: all
    there). The connector's ``_factory`` is an instance attribute: ``stamping`` checks it on the
    live connector."""
    needs = (
        (ResponseHandler, ("data_received", "_drain_tail", "eof_received", "connection_lost")),
        (aiohttp.StreamReader, ("feed_data", "end_http_chunk_receiving", "read_nowait", "set_exception")),
        (BytesPayload, ("write", "write_with_length")),
    )
    missing = [f"{cls.__name__}.{name}" for cls, names in needs for name in names if not hasattr(cls, name)]
    if "_protocol" not in getattr(aiohttp.StreamReader, "__slots__", ()):
        missing.append("StreamReader._protocol")
    return missing
