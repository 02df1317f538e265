"""Translation of foreign failures: refused connections by errno, error bodies, Retry-After."""

import asyncio
import errno
import socket

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from loadbench.contract.errors import ErrorCategory
from loadbench.deployments.failures import error_message, refused, retry_after_s, translate, translate_sdk


def connector_error(os_error: OSError) -> aiohttp.ClientConnectorError:
    key = ConnectionKey("127.0.0.1", 9, False, True, None, None, None)
    return aiohttp.ClientConnectorError(key, os_error)


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed"),
        OSError(errno.ECONNREFUSED, "Multiple exceptions: [Errno 111] ..., [Errno 111] ..."),
        connector_error(ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed")),
        connector_error(OSError(errno.ECONNREFUSED, "Multiple exceptions: ...")),
    ],
)
def test_a_refused_connection_is_found_by_its_errno(exc):
    assert refused(exc)
    failed = translate(exc)
    assert failed.category is ErrorCategory.CONNECT
    assert failed.detail == "connection refused"


def test_an_error_mentioning_111_is_not_taken_for_a_refusal():
    exc = connector_error(OSError(errno.EHOSTUNREACH, "No route to host (port 111)"))
    assert not refused(exc)
    failed = translate(exc)
    assert failed.category is ErrorCategory.CONNECT
    assert failed.detail.startswith("cannot connect to 127.0.0.1:9")


def test_a_refusal_deep_in_a_chain_or_a_group_is_found():
    outer = OSError("All connection attempts failed")
    outer.__cause__ = ConnectionRefusedError(errno.ECONNREFUSED, "refused")
    assert refused(outer)
    assert refused(ExceptionGroup("attempts", [ConnectionRefusedError(), ConnectionRefusedError()]))
    assert not refused(ExceptionGroup("attempts", [ConnectionRefusedError(), TimeoutError()]))


def test_the_sdk_path_maps_httpx_refusals_by_errno():
    httpx = pytest.importorskip("httpx")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main():
        async with httpx.AsyncClient() as client:
            try:
                await client.get(f"http://127.0.0.1:{port}/")
            except httpx.ConnectError as exc:
                return exc
        raise AssertionError("the closed port answered")

    failed = translate_sdk(asyncio.run(main()))
    assert failed.category is ErrorCategory.CONNECT
    assert failed.detail == "connection refused"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error": {"message": "bad key", "type": "invalid_request_error"}}', "invalid_request_error: bad key"),
        (b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}',
         "overloaded_error: Overloaded"),
        (b'{"error": "model not found"}', "model not found"),
        (b'{"object": "error", "message": "too long"}', "too long"),
        (b'{"detail": "nope"}', "nope"),
        (b"plain   text\n", "plain text"),
    ],
)
def test_error_message_reads_every_provider_shape(body, message):
    assert error_message(body) == message


def test_retry_after_in_ms_seconds_or_absent():
    assert retry_after_s({"retry-after-ms": "1500"}) == 1.5
    assert retry_after_s({"Retry-After": "3"}) == 3.0
    assert retry_after_s({}) is None
