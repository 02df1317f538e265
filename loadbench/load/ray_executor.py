"""The Ray executor: the same workers as ``loadbench.load.executors`` runs in processes, as actors
on a Ray cluster (``pip install 'loadbench[ray]'``).

Each worker is one actor (``num_cpus`` each) running its own event loop, scheduler and client with
its share of the plan, exactly as a worker process does. Its finished records go in small batches
to a collector actor, which the parent drains a few dozen times a second into the one run's
recorder and run directory; so the run directory, histograms and summary are made on the machine
that started the run, as for any run.

Clocks: an actor on the parent's host (same boot, so the same CLOCK_MONOTONIC) starts at the
common start time; an actor on another machine starts the same interval after it receives "go"
(its records' stamps are on its own clock; latencies, being differences, are unaffected).

A worker whose actor dies is reported and the requests it had scheduled but not reported are
counted as ``worker_died``; its scheduled count travels with its record batches, so it is the count
as of its last batch (at most ~20 ms old), where a worker process publishes it before each send.

The target must be reachable from every node: the embedded simulator listens on loopback, so it
serves a cluster on one host (as in the tests); across machines, pass ``--target URL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loadbench.contract.errors import ConfigError, TargetError

_POLL_S = 0.02


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("the Ray executor needs ray: pip install 'loadbench[ray]'") from None
    return ray


@dataclass(frozen=True, slots=True)
class Ray:
    """Workers as Ray actors on the cluster at ``address`` ("auto": the one this host belongs to;
    "host:port": a head node's GCS). ``num_cpus`` is reserved for each actor."""

    address: str = "auto"
    workers: int = 1
    num_cpus: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.address, str) or not self.address:
            raise ConfigError(f"Ray.address must be 'auto' or 'host:port', got {self.address!r}")
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 1:
            raise ConfigError(f"Ray.workers must be an integer >= 1, got {self.workers!r}")
        if not isinstance(self.num_cpus, int | float) or self.num_cpus < 0:
            raise ConfigError(f"Ray.num_cpus must be a number >= 0, got {self.num_cpus!r}")

    def describe(self) -> dict[str, Any]:
        return {"executor": "ray", "address": self.address, "workers": self.workers, "num_cpus": self.num_cpus}

    def start_workers(self, specs: list[Any], on_message: Callable[[int, Any], None]) -> list[Any]:
        """Start one actor per spec; ``on_message(index, message)`` runs on the calling loop."""
        ray = _import_ray()
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, log_to_driver=False)
            except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError...
                raise TargetError(f"cannot join the Ray cluster at {self.address}: {exc}") from None
        collector = ray.remote(num_cpus=0)(_Collector).remote()
        worker_class = ray.remote(num_cpus=self.num_cpus, max_concurrency=4)(_LoadWorker)
        boot_id = _boot_id()
        links = []
        for spec in specs:
            actor = worker_class.remote()
            ref = actor.run.remote(spec, collector, boot_id)
            links.append(_RayLink(spec.index, actor, ref, boot_id))
        _Poller(ray, collector, links, on_message, asyncio.get_running_loop()).start()
        return links


class _Collector:
    """Holds the workers' messages until the parent takes them (a Ray actor)."""

    def __init__(self) -> None:
        self._messages: list[tuple[int, Any, int]] = []

    def put(self, index: int, message: Any, scheduled: int) -> None:
        self._messages.append((index, message, scheduled))

    def take(self) -> list[tuple[int, Any, int]]:
        out, self._messages = self._messages, []
        return out


class _LoadWorker:
    """One worker (a Ray actor): ``run`` holds one thread for the whole run, ``deliver`` hands
    it the parent's messages ("go", "stop") from another."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handler: Callable[[Any], None] | None = None
        self._early: list[Any] = []
        self._lock = threading.Lock()

    def deliver(self, message: Any) -> None:
        with self._lock:
            if self._loop is None or self._handler is None:
                self._early.append(message)
                return
            loop, handler = self._loop, self._handler
        with contextlib.suppress(RuntimeError):  # the loop has closed: the run is over
            loop.call_soon_threadsafe(handler, message)

    def run(self, spec: Any, collector: Any, parent_boot_id: str) -> None:
        import ray

        from loadbench.contract.errors import LoadbenchError
        from loadbench.load.executors import run_worker

        slot = [0]
        same_clock = bool(parent_boot_id) and parent_boot_id == _boot_id()

        class Outbox:
            def send(self, message: tuple[Any, ...]) -> None:
                collector.put.remote(spec.index, message, slot[0])

        import socket

        context = ray.get_runtime_context()
        Outbox().send(("info", {"node_id": context.get_node_id(), "hostname": socket.gethostname(),
                                "same_clock": same_clock}))

        async def main() -> None:
            loop = asyncio.get_running_loop()
            go: asyncio.Future[int] = loop.create_future()
            stoppers: list[Callable[[], None]] = []
            stops = 0

            def handle(message: Any) -> None:
                nonlocal stops
                if message[0] == "go" and not go.done():
                    start_ns, delay_ns = message[1], message[2]
                    go.set_result(start_ns if same_clock else time.perf_counter_ns() + delay_ns)
                elif message[0] == "stop":
                    stops += 1
                    if not go.done():
                        go.set_result(0)
                    for stop in stoppers:
                        stop()

            with self._lock:
                self._loop, self._handler = loop, handle
                early, self._early = self._early, []
            for message in early:
                handle(message)

            def attach(stop: Callable[[], None]) -> None:
                stoppers.append(stop)
                for _ in range(stops):
                    stop()

            async def wait_go() -> int:
                return await go

            await run_worker(spec, Outbox(), scheduled_slot=slot, attach_stop=attach, wait_go=wait_go)

        try:
            try:
                import uvloop

                runner: Any = uvloop.run
            except ImportError:
                runner = asyncio.run
            runner(main())
        except LoadbenchError as exc:
            Outbox().send(("error", str(exc)))
        except BaseException as exc:
            import traceback

            Outbox().send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"))
        finally:
            # Waited for: every message this worker sent is with the collector before run returns.
            ray.get(collector.put.remote(spec.index, ("flushed",), slot[0]))


class _RayLink:
    """The parent's handle on one actor (``executors.WorkerLink``)."""

    def __init__(self, index: int, actor: Any, ref: Any, boot_id: str) -> None:
        self.index = index
        self.actor = actor
        self.ref = ref
        self.boot_id = boot_id
        self.last_scheduled = 0
        self.failure: str | None = None

    def send(self, message: tuple[Any, ...]) -> None:
        if message[0] == "go":
            # The start as a delay too, for an actor whose clock is not ours.
            message = ("go", message[1], max(0, message[1] - time.perf_counter_ns()))
        with contextlib.suppress(Exception):  # a dead actor: its end is reported by the poller
            self.actor.deliver.remote(message)

    def scheduled(self) -> int:
        return self.last_scheduled

    def describe_exit(self) -> dict[str, Any]:
        return {"executor": "ray"} if self.failure is None else {"executor": "ray", "actor_error": self.failure}

    def close(self) -> None:
        import ray

        with contextlib.suppress(Exception):
            ray.kill(self.actor, no_restart=True)


class _Poller(threading.Thread):
    """Drains the collector and watches the actors' runs; posts everything to the parent's loop."""

    def __init__(self, ray: Any, collector: Any, links: list[_RayLink], on_message: Callable[[int, Any], None],
                 loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name="loadbench-ray-poller", daemon=True)
        self._ray = ray
        self._collector = collector
        self._links = {link.index: link for link in links}
        self._on_message = on_message
        self._loop = loop

    def _post(self, index: int, message: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed
            self._loop.call_soon_threadsafe(self._on_message, index, message)

    def _drain(self) -> None:
        for index, message, scheduled in self._ray.get(self._collector.take.remote()):
            link = self._links[index]
            link.last_scheduled = max(link.last_scheduled, scheduled)
            if message[0] != "flushed":
                self._post(index, message)

    def run(self) -> None:
        ray = self._ray
        running = {link.ref: link for link in self._links.values()}
        try:
            while running:
                ready, _ = ray.wait(list(running), num_returns=len(running), timeout=_POLL_S)
                self._drain()
                for ref in ready:
                    link = running.pop(ref)
                    try:
                        ray.get(ref)
                    except Exception as exc:  # the actor died (RayActorError) or its task failed
                        link.failure = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                    self._post(link.index, ("eof",))
            self._drain()
        except Exception as exc:  # the cluster went away: every worker still running has ended
            for link in running.values():
                link.failure = f"lost the Ray cluster: {type(exc).__name__}: {exc}"
                self._post(link.index, ("eof",))
