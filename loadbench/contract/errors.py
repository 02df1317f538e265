"""Errors loadbench raises, and the categories a failed request is counted under.

Two families, kept apart on purpose:

* ``LoadbenchError`` and its subclasses stop a run before or around it (a bad scenario file, a target
  that lacks the model, a missing API key). The CLI prints their message on one line and exits 2; no
  traceback, and the message never holds a secret.
* ``RequestFailed`` is one request going wrong under load. It never stops a run: the scheduler
  catches it, stamps the record with its ``category`` and counts it.

Foreign exceptions (aiohttp, the SDKs, the OS) are translated into these in one module,
``loadbench.deployments.failures`` (``translate`` and ``translate_sdk``), with the original chained
as ``__cause__``.
"""

from __future__ import annotations

from enum import StrEnum


class LoadbenchError(Exception):
    """A problem the user must fix; ``str()`` is a short sentence fit for a terminal."""


class ScenarioError(LoadbenchError):
    """A scenario file or value is wrong; the message names the file, field or value."""


class ConfigError(LoadbenchError):
    """A configuration value (plan, stop rule, deployment option) is out of range or of the wrong kind."""


class TargetError(LoadbenchError):
    """The target cannot serve the run: unreachable, wrong dialect, missing model, bad credentials."""


class RunAborted(LoadbenchError):
    """The run stopped early because it could not go on (its embedded simulator died, its results
    could not be written). Everything measured is summarised and kept; ``result`` is the run's
    ``RunResult`` (``None`` if not even the summary could be made)."""

    def __init__(self, message: str, result: object | None = None) -> None:
        super().__init__(message)
        self.result = result


class ErrorCategory(StrEnum):
    """Why a request failed. Each fault has exactly one category, so counts never double up."""

    CONNECT = "connect"  # refused, reset before the request was written, DNS, TLS
    CONNECT_TIMEOUT = "connect_timeout"
    FIRST_TOKEN_TIMEOUT = "first_token_timeout"  # headers or first token too slow (includes stalls before it)
    TOTAL_TIMEOUT = "total_timeout"  # stream started but did not finish in time (includes stalls)
    RATE_LIMITED = "rate_limited"  # HTTP 429
    AUTH = "auth"  # HTTP 401 / 403
    NOT_FOUND = "not_found"  # HTTP 404: wrong path or unknown model
    BAD_REQUEST = "bad_request"  # other HTTP 4xx
    SERVER_ERROR = "server_error"  # HTTP 500 and other 5xx not listed below
    UNAVAILABLE = "unavailable"  # HTTP 503 / 502 / 504
    OVERLOADED = "overloaded"  # Anthropic's overloaded_error (HTTP 529 or in-stream)
    STREAM_ERROR = "stream_error"  # an error event inside an otherwise healthy stream
    STREAM_RESET = "stream_reset"  # connection dropped mid-stream
    TRUNCATED = "truncated"  # stream ended cleanly but without its final record
    MALFORMED = "malformed"  # a chunk that is not valid for the dialect
    WRONG_CONTENT_TYPE = "wrong_content_type"  # a 2xx answer that is not a stream: an HTML page, a JSON body
    PROTOCOL = "protocol"  # a hybrid request whose models' replies never gave a usable final answer
    CLIENT = "client"  # a bug on our side; reported with its exception type, never hidden

    @classmethod
    def for_http_status(cls, status: int) -> ErrorCategory:
        """The category for a non-2xx HTTP status."""
        if status == 429:
            return cls.RATE_LIMITED
        if status in (401, 403):
            return cls.AUTH
        if status == 404:
            return cls.NOT_FOUND
        if status == 529:
            return cls.OVERLOADED
        if status in (502, 503, 504):
            return cls.UNAVAILABLE
        if 400 <= status < 500:
            return cls.BAD_REQUEST
        return cls.SERVER_ERROR


class RequestFailed(Exception):
    """One request failed; ``category`` says how, ``detail`` is a short secret-free description."""

    __slots__ = ("category", "detail", "http_status", "retry_after_s")

    def __init__(
        self,
        category: ErrorCategory,
        detail: str = "",
        *,
        http_status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{category.value}: {detail}" if detail else category.value)
        self.category = category
        self.detail = detail
        self.http_status = http_status
        self.retry_after_s = retry_after_s
