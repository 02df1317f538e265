"""Executors: one run's load spread over several event loops (processes here, Ray actors in
``loadbench.load.ray_executor``), feeding one run directory.

The parent keeps everything that makes a run one run: the target, the run directory, the
recorder, the run writer, the summary, the live display and the signals. Each worker runs its
own ``Scheduler`` and client on its own event loop, with its share of the load plan:

* open loop: every worker draws the same seeded plan and takes every N-th arrival (worker k the
  arrivals k, k + N, k + 2N...), so the combined arrivals are the plan's, arrival for arrival,
  whatever the plan (a burst of 32 over two workers is two bursts of 16 at the same instant);
  a concurrency cap and a request limit are divided the same way;
* closed loop: the users are divided (user counts differ by at most one).

All workers share one start time (``perf_counter_ns`` is CLOCK_MONOTONIC, one clock for every
process on a host). Each streams its finished records to the parent in small batches, where they
are recorded and written exactly as a one-process run's are, so the run's histograms are the sum of
every worker's records by construction (HDR histograms add). Each worker also publishes how many
requests it has scheduled in shared memory, before sending them: when a worker dies, the requests
it had scheduled but whose records never arrived are counted as failed (``worker_died``) with
their ids, never silently lost, and the death is reported in ``summary.json``.

``Driver`` offers the parent the scheduler's control surface (``run``, ``request_stop``,
``scheduled``, ``in_flight``, ``start_ns``, ``stopping``, ``stop_requests``), so the experiment
runs a distributed plan where it would run a ``Scheduler``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import multiprocessing
import os
import pickle
import queue
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from loadbench.contract.errors import ConfigError, LoadbenchError, TargetError
from loadbench.contract.prompt import Prompt
from loadbench.contract.record import RequestRecord
from loadbench.load.plans import Concurrency, Stop
from loadbench.load.scheduler import RunTiming

_now = time.perf_counter_ns

WORKER_DIED = "worker_died"
# Records go to the parent at least this often, or once this many have finished.
_BATCH_S = 0.02
_BATCH_RECORDS = 256
# Time for every worker to receive "go" before the common start.
_START_MARGIN_NS = 100_000_000
_READY_TIMEOUT_S = 120.0


# ---------------------------------------------------------------------------------------------
# Executors: what a scenario names.


@dataclass(frozen=True, slots=True)
class Processes:
    """``workers`` event loops in as many processes on this host (``start_method``: "spawn" or
    "forkserver"; fork is refused, the parent has threads)."""

    workers: int
    start_method: str = "spawn"

    def __post_init__(self) -> None:
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 1:
            raise ConfigError(f"Processes.workers must be an integer >= 1, got {self.workers!r}")
        if self.start_method not in ("spawn", "forkserver"):
            raise ConfigError(f"Processes.start_method must be 'spawn' or 'forkserver', got {self.start_method!r}")

    def describe(self) -> dict[str, Any]:
        return {"executor": "processes", "workers": self.workers, "start_method": self.start_method}


def check_executor(executor: object, workers: int) -> None:
    """Raise ConfigError unless ``workers`` and ``executor`` make sense together."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
    if executor is None:
        return
    if not callable(getattr(executor, "start_workers", None)) and not isinstance(executor, Processes):
        raise ConfigError(f"executor must be Processes(...) or Ray(...), got {executor!r}")


def resolve_executor(executor: object, workers: int) -> Any:
    """The executor a scenario runs with, or None for the one-process path."""
    if executor is not None:
        return executor
    return Processes(workers) if workers > 1 else None


# ---------------------------------------------------------------------------------------------
# Shares of a plan.


@dataclass(frozen=True, slots=True)
class Share:
    """Worker ``worker`` of ``workers``: every ``workers``-th arrival of ``plan``, from ``worker``."""

    plan: Any
    worker: int
    workers: int

    @property
    def max_concurrency(self) -> int | None:
        cap = getattr(self.plan, "max_concurrency", None)
        return None if cap is None else max(1, _part(cap, self.worker, self.workers))

    def offsets_ns(self, rng: np.random.Generator) -> Any:
        for j, offset in enumerate(self.plan.offsets_ns(rng)):
            if j % self.workers == self.worker:
                yield offset

    def describe(self) -> dict[str, Any]:
        return {"plan": "Share", "of": _describe(self.plan), "worker": self.worker, "workers": self.workers}


def _part(total: int, k: int, n: int) -> int:
    """How many of ``range(total)`` fall to worker ``k`` of ``n`` (round robin)."""
    return len(range(k, total, n))


def share_of(load: Any, stop: Stop, k: int, n: int) -> tuple[Any, Stop] | None:
    """Worker ``k``'s plan and stop rule, or None when it has nothing to do."""
    requests = None if stop.requests is None else _part(stop.requests, k, n)
    if requests == 0:
        return None
    stop_k = dataclasses.replace(stop, requests=requests, warmup_requests=_part(stop.warmup_requests, k, n))
    if isinstance(load, Concurrency):
        users = _part(load.users, k, n)
        if users == 0:
            return None
        return dataclasses.replace(load, users=users), stop_k
    if n == 1:
        return load, stop_k
    return Share(load, k, n), stop_k


def _describe(value: Any) -> Any:
    describe = getattr(value, "describe", None)
    return describe() if callable(describe) else repr(value)


# ---------------------------------------------------------------------------------------------
# What a worker is given, and what it runs.


@dataclass(frozen=True)
class WorkerSpec:
    """Everything one worker needs; pickled to it."""

    index: int
    workers: int
    scenario: Any
    base_url: str
    simulated: bool
    run_id: str
    settings: Any  # ClientSettings, with this worker's pool size


class Outbox(Protocol):
    """Where a worker's messages go (a pipe to the parent, or a Ray queue)."""

    def send(self, message: tuple[Any, ...]) -> None: ...


async def run_worker(spec: WorkerSpec, outbox: Outbox, *, scheduled_slot: Any = None,
                     attach_stop: Callable[[Callable[[], None]], None] | None = None,
                     wait_go: Callable[[], Any]) -> None:
    """One worker's run: open the client, say ``ready``, wait for the start, run, stream records.

    Messages: ``("ready",)``, ``("records", [(record, prompt-or-None), ...])``, ``("done", info)``
    or ``("error", text)``. ``scheduled_slot`` (a shared int64, optional) is raised before each
    request is sent. ``attach_stop(callback)`` lets the caller deliver stop requests;
    ``wait_go()`` returns the common start (``perf_counter_ns``) once every worker is ready.
    """
    from loadbench.load.calm_gc import calm_gc as _calm
    from loadbench.load.scheduler import Scheduler

    scenario = spec.scenario
    share = share_of(scenario.load, scenario.stop, spec.index, spec.workers)
    assert share is not None  # the parent starts no worker without a share
    load, stop = share
    seed = scenario.seed if spec.index == 0 else scenario.seed + 1_000_003 * spec.index
    counter = None
    if spec.simulated or _is_loopback(spec.base_url):
        from loadbench.workloads import auto_counter

        counter = auto_counter(spec.base_url)
    stream = scenario.workload.open(seed=seed, counter=counter)
    observe = getattr(stream, "observe", None)
    prompts = stream if hasattr(stream, "__next__") else iter(stream)
    batch: list[tuple[RequestRecord, Prompt | None]] = []
    last_flush = _now()

    def flush() -> None:
        nonlocal batch, last_flush
        if batch:
            outbox.send(("records", batch))
            batch = []
        last_flush = _now()

    def on_record(record: RequestRecord, prompt: Prompt) -> None:
        if observe is not None:
            observe(prompt, record)
        batch.append((record, prompt if record.text is not None else None))
        if len(batch) >= _BATCH_RECORDS:
            flush()

    on_scheduled = None
    if scheduled_slot is not None:

        def on_scheduled(record: RequestRecord) -> None:
            scheduled_slot[0] += 1

    async def flusher() -> None:
        while True:
            await asyncio.sleep(_BATCH_S)
            if batch and _now() - last_flush >= _BATCH_S * 1e9:
                flush()

    # The collector is calmed (its one collection made) before "ready", not within the margin
    # between "go" and the common start; the scheduler's own calm_gc() is then a no-op.
    async with scenario.deployment.open(base_url=spec.base_url, settings=spec.settings) as sender:
        with _calm():
            outbox.send(("ready",))
            start_ns = await wait_go()
            scheduler = Scheduler(
                plan=load,
                stop=stop,
                sender=sender,
                prompts=prompts,
                on_record=on_record,
                run_id=spec.run_id,
                seed=scenario.seed,  # one plan for all workers: each takes its share of the same draws
                keep_text=scenario.check_answers,
                start_ns=start_ns,
                on_scheduled=on_scheduled,
            )
            if attach_stop is not None:
                attach_stop(scheduler.request_stop)
            flushing = asyncio.ensure_future(flusher())
            try:
                timing = await scheduler.run()
            finally:
                flushing.cancel()
                flush()
    outbox.send(("done", {"timing": timing, "scheduled": scheduler.scheduled}))


def _is_loopback(url: str) -> bool:
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


# ---------------------------------------------------------------------------------------------
# The process worker's entry point (runs in the child).


class _PipeOutbox:
    """Sends a worker's messages up its pipe from a thread of their own.

    A record batch can be larger than the pipe's buffer; written from the event loop, a slow
    parent would stall the worker's sends and stamps until it read. The loop only queues.
    """

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._pump, name="loadbench-outbox", daemon=True)
        self._thread.start()

    def send(self, message: tuple[Any, ...]) -> None:
        self._queue.put(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    def _pump(self) -> None:
        while (data := self._queue.get()) is not None:
            try:
                self._conn.send_bytes(data)
            except OSError:  # the parent is gone
                return

    def close(self) -> None:
        """Send what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout=30)


class _FrameReader:
    """Reads ``Connection.send_bytes`` frames from a non-blocking fd (an event loop's reader sets
    the fd non-blocking, where ``recv_bytes`` would fail on a frame that has half arrived)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buf = bytearray()

    def read(self) -> tuple[list[Any], bool]:
        """The messages complete so far, and whether the pipe has closed."""
        closed = False
        while True:
            try:
                chunk = os.read(self._fd, 1 << 20)
            except BlockingIOError:
                break
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            self._buf += chunk
        out = []
        buf = self._buf
        while len(buf) >= 4:
            (size,) = struct.unpack("!i", buf[:4])
            head = 4
            if size == -1:  # multiprocessing's header for frames of 2 GiB and more
                if len(buf) < 12:
                    break
                (size,) = struct.unpack("!Q", buf[4:12])
                head = 12
            if len(buf) < head + size:
                break
            out.append(pickle.loads(bytes(buf[head : head + size])))
            del buf[: head + size]
        return out, closed


def _process_main(spec: WorkerSpec, up: Any, down: Any, scheduled_slot: Any) -> None:
    # The parent decides when to stop: Ctrl-C reaches the whole process group, and a worker that
    # stopped on its own would cut its share short while the others went on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    outbox = _PipeOutbox(up)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        go: asyncio.Future[int] = loop.create_future()
        stoppers: list[Callable[[], None]] = []
        pending_stops = 0
        reader = _FrameReader(down.fileno())

        def stop_all(times: int) -> None:
            nonlocal pending_stops
            pending_stops += times
            if not go.done():
                go.set_result(0)
            for stop in stoppers:
                for _ in range(times):
                    stop()

        def on_message() -> None:
            messages, closed = reader.read()
            for message in messages:
                if message[0] == "go" and not go.done():
                    go.set_result(message[1])
                elif message[0] == "stop":
                    stop_all(1)
            if closed:  # the parent is gone: stop as if asked twice
                loop.remove_reader(down.fileno())
                stop_all(2)

        loop.add_reader(down.fileno(), on_message)

        def attach(stop: Callable[[], None]) -> None:
            stoppers.append(stop)
            for _ in range(pending_stops):
                stop()

        async def wait_go() -> int:
            return await go

        await run_worker(spec, outbox, scheduled_slot=scheduled_slot, attach_stop=attach, wait_go=wait_go)
        loop.remove_reader(down.fileno())

    try:
        try:
            import uvloop

            runner: Any = uvloop.run
        except ImportError:
            runner = asyncio.run
        runner(main())
    except LoadbenchError as exc:
        outbox.send(("error", str(exc)))
    except BaseException as exc:  # reported to the parent, which decides what the run does
        import traceback

        outbox.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"))
        outbox.close()
        raise SystemExit(1) from None
    outbox.close()


# ---------------------------------------------------------------------------------------------
# The parent's side.


class WorkerLink(Protocol):
    """The parent's handle on one worker, whatever runs it."""

    index: int

    def send(self, message: tuple[Any, ...]) -> None: ...

    def scheduled(self) -> int:
        """Requests the worker has scheduled so far (published before each is sent)."""
        ...

    def describe_exit(self) -> dict[str, Any]:
        """How the worker ended (exit code, signal), once it has."""
        ...

    def close(self) -> None: ...


class _ProcessLink:
    def __init__(self, index: int, process: Any, up: Any, down: Any, slot: Any) -> None:
        self.index = index
        self.process = process
        self.up = up  # the worker's messages (read by the parent's loop)
        self.down = down  # "go" and "stop" (a few bytes: never blocks)
        self.slot = slot

    def send(self, message: tuple[Any, ...]) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.down.send_bytes(pickle.dumps(message))

    def scheduled(self) -> int:
        return int(self.slot[0])

    def describe_exit(self) -> dict[str, Any]:
        self.process.join(timeout=2.0)
        code = self.process.exitcode
        out: dict[str, Any] = {"pid": self.process.pid, "exitcode": code}
        if code is not None and code < 0:
            with contextlib.suppress(ValueError):
                out["signal"] = signal.Signals(-code).name
        return out

    def detach(self) -> None:
        """Stop watching the worker's pipe (on the loop thread, before ``close``)."""
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.up.fileno())

    def close(self) -> None:
        if self.process.is_alive():
            self.process.join(timeout=5.0)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=2.0)
        for conn in (self.up, self.down):
            with contextlib.suppress(OSError):
                conn.close()


def start_processes(executor: Processes, specs: list[WorkerSpec], on_message: Callable[[int, Any], None]) -> list[Any]:
    """Start one process per spec; ``on_message(index, message)`` runs on the loop for each message
    (``("eof",)`` when the worker's pipe closes)."""
    if not specs:
        return []
    try:
        pickle.dumps(specs[0])
    except Exception as exc:
        raise ConfigError(
            f"workers need a scenario that can be pickled (its workload and deployment are sent to each "
            f"worker process): {type(exc).__name__}: {exc}"
        ) from None
    ctx = multiprocessing.get_context(executor.start_method)
    loop = asyncio.get_running_loop()
    links = []
    needs_main = b"__main__" in pickle.dumps(specs[0])
    for spec in specs:
        up_read, up_write = ctx.Pipe(duplex=False)
        down_read, down_write = ctx.Pipe(duplex=False)
        slot = ctx.RawArray("q", 1)
        process = ctx.Process(
            target=_process_main,
            args=(spec, up_write, down_read, slot),
            name=f"loadbench-worker-{spec.index}",
            daemon=True,
        )
        with contextlib.nullcontext() if needs_main else _main_module_hidden():
            process.start()
        up_write.close()
        down_read.close()
        link = _ProcessLink(spec.index, process, up_read, down_write, slot)
        reader = _FrameReader(up_read.fileno())

        def readable(link: _ProcessLink = link, reader: _FrameReader = reader) -> None:
            messages, closed = reader.read()
            for message in messages:
                on_message(link.index, message)
            if closed:
                loop.remove_reader(link.up.fileno())
                on_message(link.index, ("eof",))

        loop.add_reader(up_read.fileno(), readable)
        links.append(link)
    return links


@contextlib.contextmanager
def _main_module_hidden() -> Any:
    """Start children without re-running the parent's ``__main__`` (the CLI, or a script without a
    ``__name__`` guard): a spawned child imports it only when it can find it, and the workers need
    nothing from it unless the scenario refers to it (then it is imported, as multiprocessing does)."""
    main = sys.modules["__main__"]
    saved = {name: getattr(main, name) for name in ("__file__", "__spec__") if hasattr(main, name)}
    with contextlib.suppress(AttributeError):
        del main.__file__
    main.__spec__ = None
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(main, name, value)


@dataclass
class _WorkerState:
    link: Any
    ready: bool = False
    done: dict[str, Any] | None = None
    error: str | None = None
    ended: bool = False
    received: int = 0
    seen: set[int] = dataclasses.field(default_factory=set)
    exit: dict[str, Any] | None = None
    lost: int = 0
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


class Driver:
    """The parent's side of a distributed run; used where the experiment would use a Scheduler.

    ``on_record(record, prompt_or_None)`` is called on the parent's loop for every worker's finished
    record (``prompt`` only when the record kept its answer text), and for a synthesised
    ``worker_died`` record for every request a dead worker had scheduled but not reported.
    """

    def __init__(
        self,
        *,
        scenario: Any,
        executor: Any,
        base_url: str,
        simulated: bool,
        settings: Any,
        run_id: str,
        on_record: Callable[[RequestRecord, Prompt | None], None],
    ) -> None:
        self._scenario = scenario
        self._executor = executor
        self._on_record = on_record
        self._run_id = run_id
        n = executor.workers
        self._specs = [
            WorkerSpec(
                index=k,
                workers=n,
                scenario=scenario,
                base_url=base_url,
                simulated=simulated,
                run_id=f"{run_id}.{k}" if n > 1 else run_id,
                settings=dataclasses.replace(settings, pool_size=_pool_share(settings.pool_size, k, n)),
            )
            for k in range(n)
            if share_of(scenario.load, scenario.stop, k, n) is not None
        ]
        self._states: dict[int, _WorkerState] = {}
        self._changed: asyncio.Event | None = None
        self._stop_requests = 0
        self._stopping = False
        self._stopped_at_ns = 0
        self._stop_reason: str | None = None
        self.start_ns = 0
        self.interrupted = False  # a signal asked the run to stop, whenever it came
        self.finished = False  # every worker has ended; the results are being written

    # -- the scheduler's surface ---------------------------------------------------------------

    @property
    def scheduled(self) -> int:
        # A finished worker's own count is exact (prepared requests withdrawn at a stop excluded).
        return sum(
            s.done["scheduled"] if s.done is not None else max(s.link.scheduled(), s.received)
            for s in self._states.values()
        )

    @property
    def in_flight(self) -> int:
        return sum(max(0, s.link.scheduled() - s.received) for s in self._states.values() if not s.ended)

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def stop_requests(self) -> int:
        return self._stop_requests

    def request_stop(self, reason: str = "signal") -> None:
        """Forward a stop to every worker (first: drain; second: cancel in-flight requests).
        ``reason`` becomes ``stopped_by`` (the first one given); "signal" marks the run interrupted."""
        if reason == "signal":
            self.interrupted = True
        if self._stop_reason is None:
            self._stop_reason = reason
        self._stop_requests += 1
        self._stopping = True
        if not self._stopped_at_ns:
            self._stopped_at_ns = _now()
        for state in self._states.values():
            if not state.ended:
                state.link.send(("stop",))

    def worker_report(self) -> list[dict[str, Any]]:
        """One entry per worker for summary.json: records received, and how it ended."""
        out = []
        for k, s in sorted(self._states.items()):
            entry: dict[str, Any] = {"worker": k, "records": s.received}
            if s.done is not None:
                entry["status"] = "finished"
                entry["scheduled"] = s.done["scheduled"]
            else:
                entry["status"] = "died" if s.error is None else "failed"
                entry["lost_in_flight"] = s.lost
                if s.error:
                    entry["error"] = s.error.splitlines()[0][:300]
            if s.exit:
                entry.update(s.exit)
            entry.update(s.info)
            out.append(entry)
        return out

    # -- the run -------------------------------------------------------------------------------

    async def run(self) -> RunTiming:
        self._changed = asyncio.Event()
        links = self._executor_start()
        self._states = {link.index: _WorkerState(link) for link in links}
        try:
            await self._wait_ready()
            self.start_ns = _now() + _START_MARGIN_NS
            for state in self._states.values():
                state.link.send(("go", self.start_ns))
            while not all(s.ended for s in self._states.values()):
                self._changed.clear()
                await self._changed.wait()
        finally:
            for state in self._states.values():
                if not state.ended:
                    state.link.send(("stop",))
                    state.link.send(("stop",))
            for state in self._states.values():
                detach = getattr(state.link, "detach", None)
                if detach is not None:
                    detach()
                await asyncio.to_thread(state.link.close)
        timings = [s.done["timing"] for s in self._states.values() if s.done is not None]
        end_ns = _now()
        stopped = max((t.scheduling_stopped_ns for t in timings), default=self._stopped_at_ns or end_ns)
        reasons = {t.stopped_by for t in timings}
        if self._stop_requests:
            stopped_by = self._stop_reason or "signal"
        elif any(s.done is None for s in self._states.values()):
            stopped_by = "worker_died"
        elif len(reasons) == 1:
            stopped_by = reasons.pop()
        else:
            # Workers whose share ran out ("plan") beside others stopped by the rule.
            stopped_by = next((r for r in ("duration", "requests") if r in reasons), "plan")
        if stopped_by == "plan" and self._scenario.stop.requests is not None:
            stopped_by = "requests"  # each share ends exactly at its part of the request limit
        self.finished = True
        return RunTiming(self.start_ns or end_ns, stopped, end_ns, stopped_by, interrupted=self.interrupted)

    def _executor_start(self) -> list[Any]:
        if isinstance(self._executor, Processes):
            return start_processes(self._executor, self._specs, self._on_message)
        return self._executor.start_workers(self._specs, self._on_message)

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while not all(s.ready or s.ended for s in self._states.values()):
            self._changed.clear()  # type: ignore[union-attr]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TargetError(f"workers did not start within {_READY_TIMEOUT_S:g} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)  # type: ignore[union-attr]
            if self._stopping:
                return
        failed = [s for s in self._states.values() if s.ended and not s.ready]
        if failed:
            s = failed[0]
            why = s.error or f"exited before it was ready ({s.exit})"
            raise TargetError(f"worker {s.link.index} could not start: {why.splitlines()[0]}")

    def _on_message(self, index: int, message: Any) -> None:
        state = self._states.get(index)
        if state is None:  # a message before start_workers returned: keep it in order
            state = self._states.setdefault(index, _WorkerState(None))
        kind = message[0]
        if kind == "records":
            on_record = self._on_record
            for record, prompt in message[1]:
                state.received += 1
                state.seen.add(record.index)
                on_record(record, prompt)
        elif kind == "ready":
            state.ready = True
        elif kind == "done":
            state.done = message[1]
        elif kind == "error":
            state.error = message[1]
        elif kind == "info":  # where the worker runs (an executor's own details)
            state.info.update(message[1])
        elif kind == "eof":
            self._ended(state)
        if self._changed is not None:
            self._changed.set()

    def _ended(self, state: _WorkerState) -> None:
        if state.ended:
            return
        state.ended = True
        state.exit = state.link.describe_exit() if state.link is not None else None
        if state.done is not None:
            return
        # Died (or failed) mid-run: every request it had scheduled and not reported is counted.
        now = _now()
        spec = next(s for s in self._specs if s.index == state.link.index)
        scheduled = state.link.scheduled()
        how = state.error.splitlines()[0][:200] if state.error else f"exited ({state.exit})"
        for i in range(scheduled):
            if i in state.seen:
                continue
            record = RequestRecord(index=i, request_id=f"{spec.run_id}-{i}", intended_ns=0)
            record.status = "failed"
            record.error = WORKER_DIED
            record.error_detail = f"worker {state.link.index} ended while this request was in flight: {how}"
            record.end_ns = now
            state.lost += 1
            self._on_record(record, None)


def _pool_share(pool_size: int, k: int, n: int) -> int:
    return 0 if pool_size == 0 else max(1, _part(pool_size, k, n))

