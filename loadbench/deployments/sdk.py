"""The second client path: the same requests through the official SDKs (``client="sdk"``).

``ollama.AsyncClient``, ``openai.AsyncOpenAI`` and ``anthropic.AsyncAnthropic`` send the bodies the
dialect modules build (extension fields such as ``ignore_eos`` through ``extra_body``) and stamp the
same record fields as the aiohttp path, through the same dialect parsers (``wire/*``), so the two
can be compared. Each SDK gets its own
``httpx.AsyncClient`` whose pool is sized to the run (httpx's default of 100 connections would cap
concurrency), no SDK retries, and only a connect timeout: the per-request deadlines are ours, as
on the aiohttp path. SDK exceptions become ``RequestFailed`` in one place,
``failures.translate_sdk``.

Stamps: ``sent`` is when the request's bytes start to be written to the connection, seen through
httpcore's ``trace`` extension (attached to each request by an httpx request hook), as the aiohttp
path stamps the body's hand-over; building the request in the SDK and opening a connection count
as dispatch lag, not latency. ``headers_ns`` is when the response headers were read. Token stamps
are taken when the SDK yields a parsed chunk, so its parsing is inside TTFT and ITL: that is real
for an SDK user. Opening a sender warms the client (its lazily built resources and one pooled
connection, through a model listing) so the first measured request does not pay for them.

The SDKs are imported lazily; without them, choosing ``client="sdk"`` is a ``ConfigError`` naming
the ``sdk`` extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

import orjson

from loadbench.contract.errors import ConfigError, ErrorCategory, RequestFailed
from loadbench.contract.headers import REQUEST_ID_HEADER, USER_AGENT
from loadbench.contract.prompt import Prompt
from loadbench.contract.record import RequestRecord
from loadbench.contract.sender import Stamping
from loadbench.deployments.base import ClientSettings, Dialect, Timeouts, deadlines
from loadbench.deployments.failures import translate_sdk
from loadbench.deployments.framing import StreamParser
from loadbench.deployments.wire.anthropic import AnthropicWire
from loadbench.deployments.wire.ollama import OllamaWire
from loadbench.deployments.wire.openai import OpenAIWire
from loadbench.urls import server_root, v1_root

if TYPE_CHECKING:
    import httpx

# Fields the SDK methods take as named arguments; anything else in a body goes via extra_body.
_OPENAI_ARGS = frozenset(
    {
        "model",
        "messages",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "reasoning_effort",
        "temperature",
        "seed",
    }
)

# The record of the request being sent in this task: the httpx request hook reads it to add the
# request-id header (the ollama SDK has no per-request headers) and to stamp the write.
_RECORD: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar("loadbench_record", default=None)


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ConfigError(f"client='sdk' needs the {name!r} package: pip install 'loadbench[sdk]'") from None


def _httpx_module(sdk_name: str) -> Any:
    """The httpx flavour an SDK is built on (recent openai/anthropic releases use ``httpx2``)."""
    base = _import(f"{sdk_name}._base_client")
    return getattr(base, "httpx2", None) or _import("httpx")


def _sdk_http_client(sdk_name: str, settings: ClientSettings) -> Any:
    """The SDK's own default client class, pooled for the run: ``pool_size`` connections
    (0: unbounded), connect timeout only."""
    sdk = _import(sdk_name)
    hx = _httpx_module(sdk_name)
    size = settings.pool_size or None
    return sdk.DefaultAsyncHttpxClient(
        limits=hx.Limits(max_connections=size, max_keepalive_connections=size, keepalive_expiry=60.0),
        timeout=hx.Timeout(None, connect=settings.timeouts.connect_s),
        event_hooks={"request": [_on_request]},
    )


# ---------------------------------------------------------------------------------------------
# Senders.


class _SdkSender:
    """One loop for the three SDKs: open the SDK's stream, feed each parsed event to the dialect's
    own parser (``wire/*``, as on the aiohttp path), move the deadline at the first token.

    ``client`` is the SDK's async client, ``wire`` the dialect's request shape, ``secret`` the key
    scrubbed from error details (None where there is none). Each event is stamped when the SDK
    yields it, then handed to the parser as the dict its JSON decodes to (``model_dump``), so what
    counts as a token and what ends a stream are the dialect module's rules, not restated here.
    Subclasses say how a stream is opened (``_open``) and warmed.
    """

    # Arrivals are stamped when the SDK yields a parsed event, not when the bytes arrive.
    stamping: Stamping = "reader"
    # Whether the SDK call returns only once the response headers are in (else at the first event).
    _responds_on_open = True

    def __init__(self, client: Any, wire: Any, timeouts: Timeouts, secret: str | None = None) -> None:
        self.client = client
        self.wire = wire
        self.timeouts = timeouts
        self.secret = secret

    @property
    def model(self) -> str:
        return self.wire.model

    async def send(self, prompt: Prompt, record: RequestRecord) -> None:
        first_at, total_at = deadlines(record, self.timeouts)
        parser = self._parser(record)
        body = self.wire.body(prompt)
        body.pop("stream", None)
        responded = False
        token = _RECORD.set(record)
        try:
            async with asyncio.timeout_at(first_at) as deadline:
                events = await self._open(body, record)
                responded = self._responds_on_open
                waiting_first = True
                last_ns = 0
                async for event in events:
                    last_ns = perf_counter_ns()
                    responded = True
                    parser.feed_object("", event.model_dump(exclude_none=True), last_ns)
                    if waiting_first and record.first_token_ns:
                        waiting_first = False
                        deadline.reschedule(total_at)
                record.end_ns = last_ns or perf_counter_ns()
                if not parser.done:
                    raise RequestFailed(ErrorCategory.TRUNCATED, "stream ended without its final record")
        except RequestFailed:
            raise
        except Exception as exc:  # cancellation is a BaseException and passes untouched
            failed = translate_sdk(
                exc,
                responded=responded,
                first_token=bool(record.first_token_ns),
                secret=self.secret,
            )
            raise failed from exc
        finally:
            _RECORD.reset(token)

    def _parser(self, record: RequestRecord) -> StreamParser:
        return self.wire.parser(record)

    async def warm(self) -> None:
        """Build what the SDK builds on first use and open one pooled connection, before the
        measured run; best effort (the target has passed its checks already)."""

    async def _open(self, body: dict[str, Any], record: RequestRecord) -> AsyncIterator[Any]:
        """The SDK's stream of parsed events for ``body`` (the dialect's request, less ``stream``)."""
        raise NotImplementedError


class OpenAISdkSender(_SdkSender):
    """Chat completions through ``openai.AsyncOpenAI``.

    The SDK hides ``[DONE]``, so the parser is told to take a ``finish_reason`` or the usage chunk
    as the end (``OpenAIStream(terminator=False)``); a stream with neither is TRUNCATED.
    """

    wire: OpenAIWire

    async def warm(self) -> None:
        _ = self.client.chat.completions  # resources are imported and built on first access
        with contextlib.suppress(Exception):
            await self.client.models.list()
        await _canned_stream(self, "openai", _OPENAI_CANNED)

    def _parser(self, record: RequestRecord) -> StreamParser:
        return self.wire.parser(record, terminator=False)

    async def _open(self, body: dict[str, Any], record: RequestRecord) -> AsyncIterator[Any]:
        kwargs = {k: v for k, v in body.items() if k in _OPENAI_ARGS}
        extra = {k: v for k, v in body.items() if k not in _OPENAI_ARGS}
        return await self.client.chat.completions.create(
            stream=True,
            extra_body=extra or None,
            extra_headers={REQUEST_ID_HEADER: record.request_id},
            **kwargs,
        )


class AnthropicSdkSender(_SdkSender):
    """Messages through ``anthropic.AsyncAnthropic`` (raw events, ``stream=True``)."""

    wire: AnthropicWire

    async def warm(self) -> None:
        _ = self.client.messages
        with contextlib.suppress(Exception):
            await self.client.models.list()
        await _canned_stream(self, "anthropic", _ANTHROPIC_CANNED)

    async def _open(self, body: dict[str, Any], record: RequestRecord) -> AsyncIterator[Any]:
        return await self.client.messages.create(
            stream=True, extra_headers={REQUEST_ID_HEADER: record.request_id}, **body
        )


class OllamaSdkSender(_SdkSender):
    """``/api/chat`` or ``/api/generate`` through ``ollama.AsyncClient``.

    The SDK sends the request when its stream is first iterated: the answer has begun once the
    first part arrives.
    """

    wire: OllamaWire
    _responds_on_open = False

    async def warm(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.list()
        await _canned_stream(self, "ollama", _OLLAMA_CANNED[self.wire.api])

    async def _open(self, body: dict[str, Any], record: RequestRecord) -> AsyncIterator[Any]:
        method = self.client.chat if self.wire.api == "chat" else self.client.generate
        return await method(stream=True, **body)


# Canned streams for the warm-up, in each dialect's shape (content, reasoning, the final record).
_OPENAI_EVENTS = (
    {"id": "warm", "object": "chat.completion.chunk", "created": 0, "model": "warm",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}, "finish_reason": None}]},
    {"id": "warm", "object": "chat.completion.chunk", "created": 0, "model": "warm",
     "choices": [{"index": 0, "delta": {"reasoning_content": "hm"}, "finish_reason": "stop"}]},
    {"id": "warm", "object": "chat.completion.chunk", "created": 0, "model": "warm", "choices": [],
     "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}},
)
_ANTHROPIC_EVENTS = (
    {"type": "message_start", "message": {
        "id": "warm", "type": "message", "role": "assistant", "model": "warm", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 0}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hm"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
     "usage": {"output_tokens": 2}},
    {"type": "message_stop"},
)
_OLLAMA_CHAT = (
    {"model": "warm", "created_at": "2025-01-01T00:00:00Z", "message": {"role": "assistant", "content": "hi"},
     "done": False},
    {"model": "warm", "created_at": "2025-01-01T00:00:00Z", "message": {"role": "assistant", "content": ""},
     "done": True, "done_reason": "stop", "eval_count": 1, "prompt_eval_count": 1},
)
_OLLAMA_GENERATE = (
    {"model": "warm", "created_at": "2025-01-01T00:00:00Z", "response": "hi", "done": False},
    {"model": "warm", "created_at": "2025-01-01T00:00:00Z", "response": "", "done": True, "eval_count": 1},
)

_OPENAI_CANNED = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in _OPENAI_EVENTS) + b"data: [DONE]\n\n"
_ANTHROPIC_CANNED = b"".join(
    b"event: %s\ndata: %s\n\n" % (e["type"].encode(), orjson.dumps(e)) for e in _ANTHROPIC_EVENTS
)
_OLLAMA_CANNED = {
    "chat": b"".join(orjson.dumps(e) + b"\n" for e in _OLLAMA_CHAT),
    "generate": b"".join(orjson.dumps(e) + b"\n" for e in _OLLAMA_GENERATE),
}


async def _canned_stream(sender: _SdkSender, sdk_name: str, body: bytes) -> RequestRecord | None:
    """Send one request through the SDK's whole streaming path to a canned local answer.

    An SDK does work once per process on its first streamed request: resolving the request
    parameters' types, building its event models' schemas (~15-20 ms for openai's chat chunks),
    which would otherwise land inside the first measured TTFT. A copy of the sender on an SDK
    client whose transport answers in memory (nothing leaves this process, no server sees it) runs
    a request of the run's own shape once, so those caches are ready. Best effort: without it the
    first request merely pays. Returns the canned request's record, or ``None`` if it failed.
    """
    try:
        hx = _httpx_module(sdk_name) if sdk_name != "ollama" else _import("httpx")
        kind = "application/x-ndjson" if sdk_name == "ollama" else "text/event-stream"
        transport = hx.MockTransport(lambda request: hx.Response(200, headers={"content-type": kind}, content=body))
        sdk = _import(sdk_name)
        if sdk_name == "ollama":
            client = sdk.AsyncClient(host="http://warm.invalid", transport=transport)
        else:
            factory = sdk.AsyncAnthropic if sdk_name == "anthropic" else sdk.AsyncOpenAI
            http_client = hx.AsyncClient(transport=transport)
            client = factory(api_key="warm", base_url="http://warm.invalid/v1", max_retries=0, http_client=http_client)
        copy = type(sender)(client, sender.wire, sender.timeouts)
        record = RequestRecord(index=-1, request_id="warm", intended_ns=perf_counter_ns())
        await copy.send(Prompt.user("warm", max_output_tokens=2), record)
        return record
    except Exception:
        return None


class _WireStamps:
    """httpcore's ``trace`` callback for one request: stamps the write and the response headers.

    httpcore reports each step of a request by name (``http11.send_request_headers.started`` when
    it starts writing the request, ``http11.receive_response_headers.complete`` once the headers
    are read). Only the first write is stamped: a request httpcore retries on a stale pooled
    connection keeps its first ``sent``, as on the aiohttp path.
    """

    __slots__ = ("record",)

    def __init__(self, record: RequestRecord) -> None:
        self.record = record

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event.endswith("send_request_headers.started"):
            record = self.record
            if not record.written_ns:
                record.sent_ns = record.written_ns = perf_counter_ns()
        elif event.endswith("receive_response_headers.complete"):
            self.record.headers_ns = perf_counter_ns()


async def _on_request(request: httpx.Request) -> None:
    """httpx request hook: the request-id header, and the write stamps, for the task's record."""
    record = _RECORD.get()
    if record is not None:
        request.headers[REQUEST_ID_HEADER] = record.request_id
        request.extensions = {**request.extensions, "trace": _WireStamps(record)}


# ---------------------------------------------------------------------------------------------
# Opening.


@asynccontextmanager
async def open_remote_sdk(
    dialect: Dialect, wire: Any, base_url: str, key: str | None, settings: ClientSettings
) -> AsyncIterator[_SdkSender]:
    """A sender through the anthropic SDK (``dialect="anthropic"``) or the openai SDK (otherwise);
    closes its client on exit."""
    # The SDKs insist on some key; the simulator and keyless compatible servers ignore it.
    api_key = key or "unused"
    sdk_name = "anthropic" if dialect == "anthropic" else "openai"
    http_client = _sdk_http_client(sdk_name, settings)
    try:
        if sdk_name == "anthropic":
            anthropic = _import("anthropic")
            client = anthropic.AsyncAnthropic(
                api_key=api_key,
                base_url=server_root(base_url),
                max_retries=0,
                http_client=http_client,
                default_headers={"User-Agent": USER_AGENT},
            )
            sender: _SdkSender = AnthropicSdkSender(client, wire, settings.timeouts, key)
        else:
            openai = _import("openai")
            client = openai.AsyncOpenAI(
                api_key=api_key,
                base_url=v1_root(base_url),
                max_retries=0,
                http_client=http_client,
                default_headers={"User-Agent": USER_AGENT},
            )
            sender = OpenAISdkSender(client, wire, settings.timeouts, key)
        await sender.warm()
        yield sender
    finally:
        await http_client.aclose()


@asynccontextmanager
async def open_ollama_sdk(wire: OllamaWire, base_url: str, settings: ClientSettings) -> AsyncIterator[_SdkSender]:
    """A sender through ``ollama.AsyncClient``; closes its client on exit."""
    ollama = _import("ollama")
    httpx = _import("httpx")
    size = settings.pool_size or None
    client = ollama.AsyncClient(
        host=base_url,
        timeout=httpx.Timeout(None, connect=settings.timeouts.connect_s),
        limits=httpx.Limits(max_connections=size, max_keepalive_connections=size, keepalive_expiry=60.0),
        event_hooks={"request": [_on_request]},
    )
    try:
        sender = OllamaSdkSender(client, wire, settings.timeouts)
        await sender.warm()
        yield sender
    finally:
        await client._client.aclose()
