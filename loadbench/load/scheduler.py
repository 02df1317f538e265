"""The async scheduler: fires requests at the times a load plan asks for.

Guarantees:

* Open loop: request *i* is intended at ``start + offset_i`` from the plan; the scheduler sleeps
  to that absolute deadline on a sub-millisecond timer (``load.timer``: a timerfd on Linux), so
  dispatch error does not accumulate and stays well under a millisecond while the loop is not
  saturated, without spinning. Whatever lag remains is measured, never hidden:
  ``sent_ns - intended_ns``.
* Prepared ahead: with a sender that can hold a request (``GatedSender``) and no concurrency cap,
  each request is handed to the client up to ``_LEAD_NS`` before it is due; the client builds it,
  takes a connection, and writes it when the timer opens its gate. A burst due at once then costs
  only the writes at its due time. The first requests also open the connections, so the run
  starts ``_START_LEAD_NS`` after ``run()`` and those due in its first lead are handed out at
  once. A request still waiting at its gate when a stop comes was never due: it is withdrawn
  (not scheduled, not recorded); one already due but not yet written is cancelled unsent
  (``sent_ns`` 0).
* No collector pauses: the run holds ``calm_gc()`` (``load.calm_gc``), so a full garbage
  collection never stops the loop mid-run.
* ``max_concurrency`` (open loop): a request that must wait for a free slot keeps its intended
  time; the wait shows as dispatch lag and in the from-schedule latencies.
* Closed loop: each user's request is intended when the user became free.
* Every record that was scheduled reaches ``on_record`` exactly once, finished as ``ok``,
  ``failed`` or ``cancelled``, so scheduled = completed + failed + cancelled always holds.
* ``request_stop()`` (Ctrl-C, SIGTERM) stops scheduling at once; in-flight requests get the drain
  time to finish, then are cancelled. A second call cancels them immediately.

The scheduler knows nothing of wire formats or metrics: it calls ``Sender.send`` and hands each
finished record to its caller.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from loadbench.contract.errors import ErrorCategory, RequestFailed
from loadbench.contract.prompt import Prompt
from loadbench.contract.record import RequestRecord
from loadbench.contract.sender import Sender
from loadbench.load.calm_gc import calm_gc
from loadbench.load.plans import NS_PER_S, Concurrency, OpenLoopPlan, Stop
from loadbench.load.timer import PreciseTimer, TimerHandle

_now = time.perf_counter_ns

# How far ahead of its intended time a request is handed to a gated sender. Building a request
# and taking a connection costs ~0.3-0.5 ms of loop time, so the lead must cover a whole burst's
# preparation (32 at once: ~15 ms); it is short enough that a prepared request holds its
# connection only briefly.
_LEAD_NS = 25_000_000
# The first requests of a run also open their connections (about a millisecond each on a busy
# host, where a request on an open one takes ~0.3 ms), so a run that prepares requests ahead starts
# this long after ``run()`` and hands out every request due in its first lead at once.
_START_LEAD_NS = 3 * _LEAD_NS
# The loop's settling time before the first intended time of a run that prepares nothing ahead.
_SETTLE_NS = 2_000_000
# Prompts are built ahead of their send times (a Prefill prompt costs ~0.5 ms to build), in small
# batches while the dispatcher sleeps. The buffer stays small so that length calibration learnt
# from finished requests reaches the prompts soon after; a prompt iterator with a ``lookahead``
# (a prompt stream still learning lengths says 0) caps it further.
_PROMPT_BUFFER = 128
_REFILL_BATCH = 8
# Closed-loop users are started in batches of this many, yielding between batches, so the first
# users are sending while the rest are still being created (creating 100,000 tasks takes ~1 s).
_USER_BATCH = 256

_CANCELLED_WHILE = {
    "queued": "waiting for a concurrency slot",
    "connecting": "connecting (the request was not yet written)",
    "waiting_first_token": "waiting for the first token",
    "streaming": "streaming (the response had not ended)",
}


def _written(record: RequestRecord) -> bool:
    # A prepared request carries its intended time as a provisional send stamp (its deadlines run
    # from it) until the sender stamps the write; a real stamp equal to it to the nanosecond does
    # not happen. Past the gate, a request still connecting has not been written either.
    return record.sent_ns != record.intended_ns


@dataclass(frozen=True, slots=True)
class RunTiming:
    """When the run started, stopped scheduling and ended (perf_counter_ns), and why it stopped."""

    start_ns: int
    scheduling_stopped_ns: int
    end_ns: int
    stopped_by: str  # "duration" | "requests" | "plan" | "signal" | "gate" | "early_stop" | another stop reason
    # A signal asked the run to stop at some point, scheduling or draining: the run's figures
    # cover less than its stop rule asked for.
    interrupted: bool = False


class Scheduler:
    """Runs one load plan against one sender. Single use: call ``run()`` once.

    ``start_ns`` fixes the run's start (a ``perf_counter_ns`` value; default: just after ``run()``
    begins, or ``_START_LEAD_NS`` after it where requests are prepared ahead), so that several
    schedulers share one time line; ``on_scheduled`` sees each record as it is made, before it is
    sent.
    """

    def __init__(
        self,
        *,
        plan: Concurrency | OpenLoopPlan,
        stop: Stop,
        sender: Sender,
        prompts: Iterator[Prompt],
        on_record: Callable[[RequestRecord, Prompt], None],
        run_id: str,
        seed: int = 0,
        keep_text: bool = False,
        start_ns: int | None = None,
        on_scheduled: Callable[[RequestRecord], None] | None = None,
    ) -> None:
        self._plan = plan
        self._stop = stop
        self._sender = sender
        self._prompts = prompts
        self._on_record = on_record
        self._run_id = run_id
        self._rng = np.random.default_rng(seed)
        self._keep_text = keep_text
        self._buffer: deque[Prompt] = deque()
        self._refill_wanted = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._stopped_by: str | None = None
        self._stop_requests = 0
        self.interrupted = False
        self.finished = False
        self._tasks: set[asyncio.Task[None]] = set()
        # Prepared requests whose gate has not opened: task -> the timer handle that opens it, and
        # the request's record.
        self._gated: dict[asyncio.Future[None], tuple[TimerHandle, RequestRecord]] = {}
        # Indices of prepared requests whose intended time had not come when the stop came.
        self._withdrawn: set[int] = set()
        self._timer: PreciseTimer | None = None
        # Requests waiting for their turn to be prepared (see ``_turn``).
        self._turns: deque[asyncio.Future[None]] = deque()
        self._granting = False
        self._given_start_ns = start_ns
        self._on_scheduled = on_scheduled
        self.scheduled = 0
        self.in_flight = 0
        self.start_ns = 0

    # -- control -------------------------------------------------------------------------------

    def request_stop(self, reason: str = "signal") -> None:
        """Stop scheduling now (first call: drain in-flight requests; second: cancel them).

        ``reason`` becomes ``stopped_by`` unless the stop rule had already ended scheduling;
        ``"signal"`` also marks the run ``interrupted``, whenever it comes.
        """
        self._stop_requests += 1
        if reason == "signal":
            self.interrupted = True
        if self._stopped_by is None:
            self._stopped_by = reason
        self._stop_event.set()
        # Prepared requests not yet released are not sent; sleepers wake to see the stop.
        now_ns = _now()
        for task, (handle, record) in list(self._gated.items()):
            handle.cancel()
            if record.intended_ns > now_ns:
                self._withdrawn.add(record.index)
            task.cancel()
        self._gated.clear()
        if self._timer is not None:
            self._timer.wake_all()
        if self._stop_requests > 1:
            for task in list(self._tasks):
                task.cancel()

    @property
    def stopping(self) -> bool:
        return self._stop_event.is_set()

    # -- the run -------------------------------------------------------------------------------

    async def run(self) -> RunTiming:
        """Run the plan to its stop rule (or until ``request_stop``); return the timing."""
        with calm_gc():
            return await self._run()

    def _lead_ns(self) -> int:
        """How far ahead of its intended time each request is handed to the sender."""
        plan = self._plan
        if isinstance(plan, Concurrency) or plan.max_concurrency:
            # A capped run takes its slot when due, so it is never prepared ahead (a prepared
            # request would hold a slot before its time).
            return 0
        return _LEAD_NS if callable(getattr(self._sender, "send_gated", None)) else 0

    async def _run(self) -> RunTiming:
        self._prefetch()
        self._timer = PreciseTimer()
        refill = asyncio.ensure_future(self._refill())
        # A small lead lets the loop settle before the first intended time; where requests are
        # prepared ahead, the first ones get a longer lead (see ``_START_LEAD_NS``). Workers of one
        # run are given a common start instead.
        self.start_ns = self._given_start_ns or _now() + (_START_LEAD_NS if self._lead_ns() else _SETTLE_NS)
        try:
            try:
                if isinstance(self._plan, Concurrency):
                    await self._run_closed(self._plan)
                else:
                    await self._run_open(self._plan)
            finally:
                refill.cancel()
            scheduling_stopped_ns = _now()
            self._stop_event.set()
            await self._drain()
        finally:
            self._timer.close()
        self.finished = True
        return RunTiming(
            self.start_ns, scheduling_stopped_ns, _now(), self._stopped_by or "plan", interrupted=self.interrupted
        )

    def _room(self) -> int:
        """How many prompts may wait built: fewer while the prompt stream says it is still learning."""
        ahead = getattr(self._prompts, "lookahead", None)
        return _PROMPT_BUFFER if ahead is None else min(_PROMPT_BUFFER, ahead)

    def _prefetch(self) -> None:
        want = self._stop.requests if self._stop.requests is not None else _PROMPT_BUFFER
        for _ in range(min(want, self._room())):
            self._buffer.append(next(self._prompts))

    async def _refill(self) -> None:
        """Keep the prompt buffer topped up in small batches, yielding between them."""
        buffer = self._buffer
        while True:
            await self._refill_wanted.wait()
            self._refill_wanted.clear()
            while len(buffer) < self._room():
                for _ in range(_REFILL_BATCH):
                    buffer.append(next(self._prompts))
                await asyncio.sleep(0)

    def _next_prompt(self) -> Prompt:
        buffer = self._buffer
        if len(buffer) < self._room() // 2:
            self._refill_wanted.set()
        return buffer.popleft() if buffer else next(self._prompts)

    @property
    def stop_requests(self) -> int:
        """How many times ``request_stop()`` has been called."""
        return self._stop_requests

    def _new_record(self, index: int, intended_ns: int, user: int = -1) -> RequestRecord:
        self.scheduled += 1
        record = RequestRecord(
            index=index,
            request_id=f"{self._run_id}-{index}",
            intended_ns=intended_ns,
            phase=self._stop.phase(index, intended_ns - self.start_ns),  # type: ignore[arg-type]
            user=user,
            text=[] if self._keep_text else None,
        )
        if self._on_scheduled is not None:
            self._on_scheduled(record)
        return record

    async def _sleep_until(self, deadline_ns: int) -> bool:
        """Wait until ``deadline_ns``; False if a stop was requested first."""
        stop = self._stop_event
        if stop.is_set():
            return False
        if deadline_ns > _now():
            # request_stop() wakes every sleeper, so a long gap never delays Ctrl-C.
            await self._timer.sleep_until(deadline_ns)  # type: ignore[union-attr]
        return not stop.is_set()

    async def _run_open(self, plan: OpenLoopPlan) -> None:
        stop = self._stop
        limit = stop.requests
        duration_ns = None if stop.duration_s is None else round(stop.duration_s * NS_PER_S)
        cap = asyncio.Semaphore(plan.max_concurrency) if plan.max_concurrency else None
        lead_ns = self._lead_ns()
        gated = lead_ns > 0
        for index, offset_ns in enumerate(plan.offsets_ns(self._rng)):
            if limit is not None and index >= limit:
                self._stopped_by = self._stopped_by or "requests"
                return
            if duration_ns is not None and offset_ns >= duration_ns:
                await self._sleep_until(self.start_ns + duration_ns)
                self._stopped_by = self._stopped_by or "duration"
                return
            intended_ns = self.start_ns + offset_ns
            # Those due within the first lead are handed out at once: they open the connections.
            if offset_ns >= lead_ns and not await self._sleep_until(intended_ns - lead_ns):
                return
            if self._stop_event.is_set():
                return
            record = self._new_record(index, intended_ns)
            if gated:
                self._spawn_gated(record, self._next_prompt())
            else:
                prompt = self._next_prompt()
                self._settle_if_never_run(self._spawn(self._one(record, prompt, cap)), record, prompt)
        self._stopped_by = self._stopped_by or "plan"

    async def _run_closed(self, plan: Concurrency) -> None:
        stop = self._stop
        deadline_ns = None if stop.duration_s is None else self.start_ns + round(stop.duration_s * NS_PER_S)
        last_index = (stop.requests if stop.requests is not None else 1 << 62) - 1
        counter = iter(range(last_index + 1))
        think_ns = round(plan.think_s * NS_PER_S)
        # Set when the last request of a request limit is handed out: scheduling is over then, and
        # the drain starts, as in the open loop (not when every user has come back).
        all_scheduled = asyncio.Event()

        async def user(number: int) -> None:
            intended_ns = self.start_ns
            if not await self._sleep_until(intended_ns):
                return
            while not self._stop_event.is_set():
                if deadline_ns is not None and intended_ns >= deadline_ns:
                    self._stopped_by = self._stopped_by or "duration"
                    return
                index = next(counter, None)
                if index is None:
                    self._stopped_by = self._stopped_by or "requests"
                    return
                if index == last_index:
                    self._stopped_by = self._stopped_by or "requests"
                    all_scheduled.set()
                record = self._new_record(index, intended_ns, user=number)
                await self._one(record, self._next_prompt(), None, turn=True)
                intended_ns = _now() + think_ns
                if think_ns and not await self._sleep_until(intended_ns):
                    return

        # Users are counted out as they finish, so waiting for them costs nothing per user (an
        # ``asyncio.wait`` over every user's task would walk all of them at each wake-up).
        live = 0
        all_started = False
        all_done = asyncio.Event()

        def finished(task: asyncio.Task[None]) -> None:
            nonlocal live
            self._tasks.discard(task)
            live -= 1
            if live == 0 and all_started:
                all_done.set()

        async def start_users() -> None:
            nonlocal live, all_started
            for n in range(plan.users):
                if self._stop_event.is_set() or self._stopped_by == "requests":
                    break  # the run is over (or out of requests) before this user's turn
                task = asyncio.create_task(user(n))
                live += 1
                self._tasks.add(task)
                task.add_done_callback(finished)
                if n % _USER_BATCH == _USER_BATCH - 1:
                    await asyncio.sleep(0)  # let the users already made start sending
            all_started = True
            if live == 0:
                all_done.set()

        starter = asyncio.ensure_future(start_users())
        # Wait for the users to run out of requests, the deadline, or a stop request; whichever
        # comes first. Users then finish their in-flight request (the drain) and stop.
        waiters = [
            asyncio.ensure_future(all_done.wait()),
            asyncio.ensure_future(all_scheduled.wait()),
            asyncio.ensure_future(self._stop_event.wait()),
        ]
        try:
            timeout_s = None if deadline_ns is None else max(0.0, (deadline_ns - _now()) / NS_PER_S)
            await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
            if not (all_done.is_set() or all_scheduled.is_set() or self._stop_event.is_set()):
                self._stopped_by = self._stopped_by or "duration"
        finally:
            for waiter in waiters:
                waiter.cancel()
            # Users not yet made would only find the run over; the drain waits for the rest.
            starter.cancel()
        self._stop_event.set()

    def _spawn(self, coro: object) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _settle_if_never_run(self, task: asyncio.Task[None], record: RequestRecord, prompt: Prompt) -> None:
        """Finish ``record`` as ``_one`` would have, should ``task`` be cancelled before its first
        step: a stop or the drain can cancel a request's task before the loop has run it, and then
        no line of ``_one`` runs, its ``finally`` included. Without this the record would stay
        scheduled and never reach ``on_record`` (seen with a full disk: 5 of 315 lost)."""

        def settle(_: asyncio.Task[None]) -> None:
            if record.status != "pending":  # _one ran: it finished the record itself
                return
            if record.end_ns == 0:
                record.end_ns = _now()
            record.status = "cancelled"
            record.sent_ns = 0
            record.cancelled_in = record.cancelled_phase()
            record.error_detail = f"cancelled while {_CANCELLED_WHILE[record.cancelled_in]}"
            self._finished(record, prompt)

        task.add_done_callback(settle)

    def _spawn_gated(self, record: RequestRecord, prompt: Prompt) -> None:
        """Hand the request to the sender now; its gate opens at ``record.intended_ns``."""
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = self._spawn(self._one(record, prompt, None, gate))
        self._settle_if_never_run(task, record, prompt)
        gated = self._gated

        def release() -> None:
            gated.pop(task, None)
            if not gate.done():
                gate.set_result(None)

        gated[task] = (self._timer.call_at(record.intended_ns, release), record)  # type: ignore[union-attr]

    async def _turn(self) -> None:
        """Wait for this request's turn to be built: one per loop iteration.

        Building a request holds the loop for ~0.3-0.5 ms. When many are due together (a hundred
        closed-loop users whose answers ended at once, or a burst being prepared ahead), building
        them back to back would hold the loop for tens of milliseconds, and every other stream's
        bytes would wait that long to be stamped. One per iteration lets the loop poll its sockets
        between them; a lone request loses only one loop iteration.
        """
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._turns.append(future)
        if not self._granting:
            self._granting = True
            loop.call_soon(self._grant)
        await future

    def _grant(self) -> None:
        turns = self._turns
        while turns:
            future = turns.popleft()
            if not future.done():  # a waiter cancelled meanwhile gives up its turn
                future.set_result(None)
                break
        if turns:
            asyncio.get_running_loop().call_soon(self._grant)
        else:
            self._granting = False

    async def _drain(self) -> None:
        pending = {t for t in self._tasks if not t.done()}
        if pending and self._stop_requests < 2:
            _, pending = await asyncio.wait(pending, timeout=self._stop.drain_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def _one(
        self,
        record: RequestRecord,
        prompt: Prompt,
        cap: asyncio.Semaphore | None,
        gate: asyncio.Future[None] | None = None,
        *,
        turn: bool = False,
    ) -> None:
        record.target_input_tokens = prompt.target_input_tokens
        record.target_output_tokens = prompt.target_output_tokens
        self.in_flight += 1
        acquired = False
        try:
            if cap is not None:
                await cap.acquire()
                acquired = True
            if gate is not None:
                # Deadlines run from the intended time until the sender stamps the real send.
                record.sent_ns = record.intended_ns
                await self._turn()
                await self._sender.send_gated(prompt, record, gate)  # type: ignore[attr-defined]
            else:
                if turn:
                    await self._turn()
                record.sent_ns = _now()
                await self._sender.send(prompt, record)
            record.status = "ok"
        except RequestFailed as exc:
            if gate is not None and not _written(record):
                record.sent_ns = 0  # failed before its bytes were written (e.g. refused): never sent
            record.status = "failed"
            record.error = exc.category.value
            record.error_detail = exc.detail or None
            if exc.http_status is not None:  # else keep what the client saw (a 200 that went wrong)
                record.http_status = exc.http_status
        except asyncio.CancelledError:
            record.status = "cancelled"
            if gate is not None and not _written(record):
                record.sent_ns = 0  # stopped while waiting at its gate, or connecting: never sent
            record.cancelled_in = record.cancelled_phase()
            record.error_detail = f"cancelled while {_CANCELLED_WHILE[record.cancelled_in]}"
            raise
        except Exception as exc:  # a client bug must be counted, never crash the run
            if gate is not None and not _written(record):
                record.sent_ns = 0
            record.status = "failed"
            record.error = ErrorCategory.CLIENT.value
            record.error_detail = f"{type(exc).__name__}: {exc}"
        finally:
            if not record.end_ns:
                record.end_ns = _now()
            if acquired:
                cap.release()  # type: ignore[union-attr]
            self.in_flight -= 1
            self._finished(record, prompt)

    def _finished(self, record: RequestRecord, prompt: Prompt) -> None:
        """Hand a finished record on, or forget it if it was withdrawn (never due: as if it had
        never been scheduled)."""
        if record.index in self._withdrawn:
            self._withdrawn.discard(record.index)
            self.scheduled -= 1
        else:
            self._on_record(record, prompt)
