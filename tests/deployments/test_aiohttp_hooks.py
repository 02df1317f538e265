"""The fence around aiohttp's internals: socket-level stamping must be active on the installed
aiohttp, and the transport must say so (a silent fall-back to reader-time stamps changes what
TTFT means)."""

import asyncio
from time import perf_counter_ns

import aiohttp

from loadbench.contract.prompt import Prompt
from loadbench.contract.record import RequestRecord
from loadbench.deployments import ClientSettings, Remote
from loadbench.deployments import transport as transport_mod
from loadbench.deployments._aiohttp_hooks import missing_hooks, stamping, stamping_connector
from loadbench.deployments.transport import HttpTransport


def test_the_installed_aiohttp_has_every_internal_the_hooks_use():
    assert missing_hooks() == [], f"aiohttp {aiohttp.__version__} lacks {missing_hooks()}: stamps would fall back"


def test_stamping_is_read_from_the_connector_not_assumed():
    async def main():
        plain = aiohttp.TCPConnector()
        hooked = stamping_connector()
        try:
            return stamping(plain), stamping(hooked)
        finally:
            await plain.close()
            await hooked.close()

    assert asyncio.run(main()) == ("reader", "socket")


def test_socket_stamping_is_active_on_the_installed_aiohttp(sim, monkeypatch):
    """Fails when a request's arrivals were not stamped at the socket on the aiohttp path."""
    monkeypatch.setattr(transport_mod, "DEFAULT_READ_PATH", "push")

    async def main():
        dep = Remote.compatible(sim.base_url, "sim-model")
        async with dep.open(base_url=sim.base_url, settings=ClientSettings(pool_size=2, simulated=True)) as sender:
            after_preflight = sender.stamping
            record = RequestRecord(index=0, request_id="stamping-0", intended_ns=perf_counter_ns())
            await sender.send(Prompt.user("hello", max_output_tokens=4, ignore_eos=True), record)
            return after_preflight, sender.stamping, record

    after_preflight, after_send, record = asyncio.run(main())
    assert (after_preflight, after_send) == ("socket", "socket"), f"aiohttp {aiohttp.__version__}"
    assert record.chunk_ns and record.end_ns


def test_a_response_on_an_unhooked_connection_turns_the_transport_to_reader_stamps():
    async def main():
        async with HttpTransport(ClientSettings(pool_size=1), read_path="push") as transport:
            before = transport.stamping
            transport.saw(object())  # a protocol aiohttp built without the hooks
            return before, transport.stamping

    assert asyncio.run(main()) == ("socket", "reader")


def test_on_the_lean_path_a_preflight_through_aiohttp_says_nothing_of_the_stamps():
    async def main():
        async with HttpTransport(ClientSettings(pool_size=1), read_path="lean") as transport:
            transport.saw(object())
            return transport.stamping

    assert asyncio.run(main()) == "socket"
