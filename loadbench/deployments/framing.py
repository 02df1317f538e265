"""Framing: a response body's bytes in, ``(event, data)`` pairs out; and the dialect interface.

``SseDecoder`` (``text/event-stream``) and ``NdjsonDecoder`` (one JSON object a line) are
incremental (a network read may end mid-line) and bounded in memory. ``Wire`` and
``StreamParser`` are what a dialect module (``deployments.wire.*``) implements: the request's
shape, and the rules that turn decoded events into stamps on a record; ``end_of_stream`` is what
the end of a body means to them. Both client paths (the HTTP transport and the SDKs) feed the
same parsers. Nothing here imports a client library.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from loadbench.contract.errors import ErrorCategory, RequestFailed
from loadbench.contract.prompt import Prompt
from loadbench.contract.record import RequestRecord

Framing = Literal["sse", "ndjson"]

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
# The dialect interface the client paths call (owned here, implemented in wire/*).


class StreamParser(Protocol):
    """Turns one response's decoded events into stamps on one record.

    ``done`` turns true at the dialect's final record; a stream that ends before it is TRUNCATED.
    """

    done: bool

    def feed(self, event: str, data: bytes, now_ns: int) -> None:
        """Apply one event that arrived at ``now_ns``; raise ``RequestFailed`` (MALFORMED,
        STREAM_ERROR, OVERLOADED) when the event says the request failed."""
        ...

    def feed_object(self, event: str, obj: dict[str, Any], now_ns: int) -> None:
        """``feed`` for an event whose data is already decoded from JSON (a client library's
        parsed event, as a dict): the same rules, the same stamps."""
        ...


class Wire(Protocol):
    """One dialect's request/response shape, decided once per run."""

    model: str  # the model named in every request
    framing: Framing

    def url(self, base_url: str) -> str:
        """The streaming endpoint under ``base_url``."""
        ...

    def body(self, prompt: Prompt) -> dict[str, Any]:
        """The request for ``prompt`` as a dict (what a client library is given)."""
        ...

    def encode(self, prompt: Prompt) -> bytes:
        """The JSON request body for ``prompt``."""
        ...

    def parser(self, record: RequestRecord) -> StreamParser:
        """A fresh parser stamping ``record``."""
        ...


def end_of_stream(decoder: SseDecoder | NdjsonDecoder, parser: StreamParser, end_ns: int) -> None:
    """Parse what the end of the body completes; raise ``TRUNCATED`` if the stream never sent its
    final record. An unterminated last line is tried as an event; if it does not parse, the
    truncation (not the fragment) is what failed."""
    events, tail = decoder.close()
    for event, data in events:
        parser.feed(event, data, end_ns)
    if tail and not parser.done:
        try:
            parser.feed("", tail, end_ns)
        except RequestFailed as exc:
            if exc.category is not ErrorCategory.MALFORMED:
                raise
    if not parser.done:
        raise RequestFailed(ErrorCategory.TRUNCATED, "stream ended without its final record")
