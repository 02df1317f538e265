"""Failures: every foreign exception and every failed answer becomes one ``RequestFailed``.

``translate`` maps what aiohttp, the OS and asyncio's timeouts raise; ``translate_sdk`` what the
openai / anthropic / ollama SDKs and httpx beneath them raise; ``status_failure`` a non-2xx
answer (category by status, message from the provider's error body, ``Retry-After``);
``wrong_content_type`` a 2xx answer that is not a stream. Details are cut to
``DETAIL_LIMIT_CHARS`` and scrubbed of API keys (``redact``) before they reach a record. A refused
connection is recognised by its errno (``ECONNREFUSED``), wherever in the exception's chain the
OS error sits.
"""

from __future__ import annotations

import errno
import importlib
import json
import re
import ssl
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson

from loadbench.contract.errors import ErrorCategory, RequestFailed, TargetError
from loadbench.deployments.framing import Framing

DETAIL_LIMIT_CHARS = 300

# Shapes of provider keys, scrubbed from any detail we keep even if a server echoes one back.
_KEY_PATTERN = re.compile(r"\b(sk-(?:ant-|proj-)?)[A-Za-z0-9_\-]{8,}")


def redact(text: str, secret: str | None = None) -> str:
    """``text`` with ``secret`` and anything shaped like a provider API key masked."""
    if secret:
        text = text.replace(secret, "***")
    return _KEY_PATTERN.sub(r"\1***", text)


# ---------------------------------------------------------------------------------------------
# aiohttp, the OS and asyncio's timeouts.


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
    if refused(exc):
        return "connection refused"
    reason = getattr(os_error, "strerror", None) or _first_line(os_error)
    return f"cannot connect to {exc.host}:{exc.port} ({reason})"


def refused(exc: BaseException | None) -> bool:
    """Whether ``exc`` is a refused connection (``ECONNREFUSED``).

    Looked for on the exception, on the OS error it wraps (aiohttp's ``os_error``), down its chain
    of causes and contexts (httpx's ``ConnectError`` wraps httpcore's, which wraps the socket's
    ``OSError``), and in an exception group whose members were all refused (one attempt per
    resolved address). Only connection errors are asked, so an earlier, handled refusal in the
    context of some later failure is never mistaken for this one's cause.
    """
    for _ in range(8):  # a chain is a few links; never loop on a cycle
        if exc is None:
            return False
        if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
            return True
        members = getattr(exc, "exceptions", None)
        if isinstance(exc, BaseExceptionGroup) and members:
            return all(refused(member) for member in members)
        os_error = getattr(exc, "os_error", None)
        # httpcore re-raises the socket's error with its context suppressed: it is followed anyway.
        wrapped = os_error if isinstance(os_error, OSError) and os_error is not exc else None
        exc = wrapped or exc.__cause__ or exc.__context__
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# ---------------------------------------------------------------------------------------------
# The SDKs and httpx.


def translate_sdk(
    exc: BaseException,
    *,
    responded: bool = False,
    first_token: bool = False,
    secret: str | None = None,
) -> RequestFailed:
    """Map an exception from the openai / anthropic / ollama SDKs (or httpx beneath them) to
    ``RequestFailed``, chaining ``exc``. Arguments as for ``translate``."""
    failed = _sdk_failure(exc, responded=responded, first_token=first_token, secret=secret)
    if failed is not exc:
        failed.__cause__ = exc
    return failed


def _sdk_failure(exc: BaseException, *, responded: bool, first_token: bool, secret: str | None) -> RequestFailed:
    C = ErrorCategory
    if isinstance(exc, RequestFailed):
        return exc
    module = type(exc).__module__.split(".", 1)[0]
    if module in ("openai", "anthropic"):
        sdk = importlib.import_module(module)
        if isinstance(exc, sdk.APIStatusError) and exc.status_code >= 300:
            body = exc.body if exc.body is not None else exc.message
            raw = body.encode() if isinstance(body, str) else orjson.dumps(body)
            return status_failure(exc.status_code, raw, exc.response.headers, secret)
        if isinstance(exc, sdk.APIConnectionError):  # includes APITimeoutError
            cause = exc.__cause__
            if cause is not None:
                return _sdk_failure(cause, responded=responded, first_token=first_token, secret=secret)
            return RequestFailed(C.CONNECT, redact(exc.message, secret))
        if isinstance(exc, sdk.APIError):
            # An error event inside a 200 stream (openai: APIError; anthropic: a status error
            # carrying the 200 response).
            return _stream_error(exc.body, exc.message, secret)
    if module == "ollama":
        ollama = importlib.import_module("ollama")
        if isinstance(exc, ollama.ResponseError):
            message = redact(str(exc.error), secret)[:200]
            if exc.status_code is None or exc.status_code < 300:
                return RequestFailed(C.STREAM_ERROR, f"in-stream error: {message}")
            raw = orjson.dumps({"error": message})
            return status_failure(exc.status_code, raw, {}, secret)
    if module in ("httpx", "httpx2"):
        hx = importlib.import_module(module)
        return _httpx_failure(hx, exc, responded=responded, first_token=first_token)
    if isinstance(exc, json.JSONDecodeError) or type(exc).__name__ == "ValidationError":
        return RequestFailed(C.MALFORMED, f"unparsable chunk: {type(exc).__name__}")
    return translate(exc, responded=responded, first_token=first_token)


def _stream_error(body: Any, message: str, secret: str | None) -> RequestFailed:
    kind = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            kind = inner.get("type")
            message = str(inner.get("message") or message)
    category = ErrorCategory.OVERLOADED if kind == "overloaded_error" else ErrorCategory.STREAM_ERROR
    return RequestFailed(category, f"in-stream error: {redact(str(message), secret)[:200]}")


def _httpx_failure(httpx: Any, exc: BaseException, *, responded: bool, first_token: bool) -> RequestFailed:
    C = ErrorCategory
    if isinstance(exc, httpx.ConnectTimeout):
        return RequestFailed(C.CONNECT_TIMEOUT, "timed out opening a connection")
    if isinstance(exc, httpx.TimeoutException):
        category = C.TOTAL_TIMEOUT if first_token else C.FIRST_TOKEN_TIMEOUT
        return RequestFailed(category, f"httpx timeout ({type(exc).__name__})")
    if isinstance(exc, httpx.ConnectError):
        if refused(exc):
            return RequestFailed(C.CONNECT, "connection refused")
        return RequestFailed(C.CONNECT, f"connection failed: {str(exc)[:200]}")
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        if responded:
            return RequestFailed(C.STREAM_RESET, f"connection dropped mid-stream: {str(exc)[:200]}")
        return RequestFailed(C.CONNECT, f"connection failed: {str(exc)[:200]}")
    if isinstance(exc, httpx.DecodingError):
        return RequestFailed(C.MALFORMED, f"undecodable body: {str(exc)[:200]}")
    if isinstance(exc, httpx.TransportError):
        category = C.STREAM_RESET if responded else C.CONNECT
        return RequestFailed(category, f"{type(exc).__name__}: {str(exc)[:200]}")
    return RequestFailed(C.CLIENT, f"{type(exc).__name__}: {str(exc)[:200]}")


# ---------------------------------------------------------------------------------------------
# Answers that are not a stream.


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
    location = headers.get("Location") if 300 <= status < 400 else None
    if location:
        # Redirects are not followed (a load test must measure the server it was pointed at).
        message = f"redirected to {redact(location, secret)}; point the base URL there"
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


def preflight_failure(base_url: str, exc: RequestFailed) -> TargetError:
    """One clear line for a target that did not answer a preflight request."""
    detail = exc.detail or exc.category.value
    return TargetError(f"{base_url}: {detail}")
