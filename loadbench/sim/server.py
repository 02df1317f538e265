"""The simulator's HTTP server: every dialect on one aiohttp app, backed by one engine.

``SimServer`` is the ``Simulator`` (``serving``) served on a listening socket: it owns the socket,
the aiohttp app (``routes.build_app``: each dialect's endpoints and the simulator's own) and the
background tasks (the trace writer, the scheduled refusal windows).

Use it in-process (``async with SimServer(config) as server: server.base_url``) or in its own
process through ``SimProcess`` / ``python -m loadbench.sim``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import Any

from aiohttp import web, web_protocol

from loadbench.sim.config import SimConfig
from loadbench.sim.routes import build_app
from loadbench.sim.serving import Simulator, reset_transport

__all__ = ["SimServer"]


class _StampingRequestHandler(web_protocol.RequestHandler):
    """aiohttp's server protocol, stamping ``rx_ns`` when a request's bytes arrive.

    A request that arrives while the step loop is writing a burst of tokens waits for the loop
    before its handler runs; stamping arrival here keeps that wait out of the ground truth's
    ``received_ns`` (it is the server's queueing, which a client rightly feels as latency).
    """

    __slots__ = ("rx_ns",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rx_ns = 0

    def data_received(self, data: bytes) -> None:
        if data:
            self.rx_ns = time.perf_counter_ns()
        super().data_received(data)


def _stamping_factory(server: web.Server) -> Any:
    """A protocol factory like ``server`` itself, making stamping handlers (aiohttp's private
    ``_loop``/``_kwargs`` are what ``web.Server.__call__`` passes; stable through aiohttp 3.x)."""

    def make() -> web_protocol.RequestHandler:
        return _StampingRequestHandler(server, loop=server._loop, **server._kwargs)

    return make



class SimServer(Simulator):
    """The simulator server in the current event loop. ``async with`` starts and stops it."""

    def __init__(self, config: SimConfig) -> None:
        super().__init__(config)
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.base_events.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._refusing = False
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host = self.config.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Bind, start the engine and the background tasks."""
        app = build_app(self)
        # handler_cancellation: a client that hangs up frees its engine slot at once, as vLLM aborts
        # a disconnected request, instead of holding capacity until the next write fails.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True)
        await self._runner.setup()
        await self._listen(self.config.port)
        self.started_ns = time.perf_counter_ns()
        self.engine.start()
        loop = asyncio.get_running_loop()
        if self.trace is not None:
            self._tasks.append(loop.create_task(self.trace.run(), name="sim-trace"))
        for window in self.config.faults.schedule:
            if window.kind == "refuse":
                self._tasks.append(loop.create_task(self._refuse_window(window.start_s, window.end_s)))

    async def _listen(self, port: int) -> None:
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, port))
        sock.listen(4096)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        assert self._runner is not None and self._runner.server is not None
        self._listener = await asyncio.get_running_loop().create_server(
            _stamping_factory(self._runner.server), sock=sock, backlog=4096
        )

    async def close(self) -> None:
        """Stop listening, end streams, stop the engine, flush the trace (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        await self.engine.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.trace is not None:
            self.trace.close()

    async def _refuse_window(self, start_s: float, end_s: float) -> None:
        """A simulated restart: refuse connections for the window, resetting the open ones."""
        start_ns = self.started_ns
        await asyncio.sleep(max(0.0, start_s - (time.perf_counter_ns() - start_ns) / 1e9))
        self._refusing = True
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.count_fault("refuse")
        if self._runner is not None and self._runner.server is not None:
            for handler in self._runner.server.connections:
                reset_transport(handler.transport)
        await asyncio.sleep(max(0.0, end_s - (time.perf_counter_ns() - start_ns) / 1e9))
        self._refusing = False
        await self._listen(self.port)
