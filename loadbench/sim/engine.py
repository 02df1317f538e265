"""The engine model: continuous batching with chunked prefill, as one asyncio step loop.

A request becomes a ``Sequence`` and waits in a first-come-first-served queue. Each step the engine
admits waiting sequences while a slot is free and their KV need (prompt + output limit) fits in
what is unreserved, schedules up to ``prefill_chunk_tokens`` prompt tokens of admitted sequences
(oldest first), and lets every decoding sequence produce one token. The step lasts

    step_base_ms + step_per_seq_ms * decoding + prefill_per_token_ms * prefill_tokens

(times a seeded ``1 + N(0, jitter_frac)`` factor when jitter is on). Its tokens are released when
the step ends: a decoding sequence gets its next token; a sequence whose prefill completes gets its
first token and decodes from the next step on. Step ends are absolute deadlines (``start + Σ
steps``), so rounding in the event loop's timers never accumulates; when the loop falls behind by
more than ``MAX_CATCH_UP_NS`` it re-anchors at "now" and counts the slip as lag.

A profile with fixed timing (``fixed_ttft_ms``/``fixed_itl_ms``) has no steps: each admitted
sequence runs on its own absolute deadlines (admission + TTFT, then + ITL per token), and ``slots``
alone bounds how many run, so the server's capacity is known exactly.

The engine never does I/O. A request's handler waits on its ``Sequence`` and writes what the engine
released; a waiting handler is woken through a future set by the step loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
import time
from collections import deque

from loadbench.sim.config import EngineProfile

__all__ = ["Engine", "EngineStats", "Sequence"]

# How far behind its deadlines the step loop may run (catching up step by step) before it re-anchors.
MAX_CATCH_UP_NS = 20_000_000


class Sequence:
    """One request inside the engine: its prompt, its output limit and what it has produced.

    Stamps are ``perf_counter_ns``: ``queued_ns`` (submitted), ``admitted_ns`` (given a slot),
    ``first_ns`` / ``last_ns`` (the engine released the first / latest token).

    ``ready`` counts tokens released but not yet taken by the handler; ``finished`` is set once the
    last token is released (or the sequence is cancelled).
    """

    __slots__ = (
        "admitted_ns",
        "cancelled",
        "finished",
        "first_ns",
        "generated",
        "last_ns",
        "max_new",
        "prefilled",
        "prompt_tokens",
        "queued_ns",
        "ready",
        "waiter",
    )

    def __init__(self, prompt_tokens: int, max_new: int) -> None:
        self.prompt_tokens = max(1, prompt_tokens)
        self.max_new = max(1, max_new)
        self.prefilled = 0
        self.generated = 0
        self.ready = 0
        self.finished = False
        self.cancelled = False
        self.waiter: asyncio.Future[None] | None = None
        self.queued_ns = 0
        self.admitted_ns = 0
        self.first_ns = 0  # when the engine released the first token
        self.last_ns = 0  # when the engine released the latest token

    @property
    def kv_need(self) -> int:
        """KV-cache tokens reserved for this sequence while it runs."""
        return self.prompt_tokens + self.max_new

    async def take(self) -> int:
        """Wait for released tokens; return how many (0 once the sequence has finished)."""
        while not self.ready:
            if self.finished:
                return 0
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        n = self.ready
        self.ready = 0
        return n

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class EngineStats:
    """Counters the engine keeps for ``/metrics`` (read by the server, written by the step loop)."""

    __slots__ = ("generation_tokens", "late_ns_total", "prompt_tokens", "reanchors", "steps")

    def __init__(self) -> None:
        self.steps = 0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.late_ns_total = 0
        self.reanchors = 0


class Engine:
    """The step loop over one ``EngineProfile``. Use as ``async with Engine(profile) as engine``."""

    def __init__(self, profile: EngineProfile, *, seed: int = 0, jitter: bool = False) -> None:
        self.profile = profile
        self.stats = EngineStats()
        self._waiting: deque[Sequence] = deque()
        self._prefilling: list[Sequence] = []
        self._decoding: list[Sequence] = []
        self._kv_reserved = 0
        self._kv_used = 0
        self._dirty = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._jitter_rng = random.Random(seed ^ 0x51A7) if jitter and profile.jitter_frac > 0 else None
        # Decided once: per-step costs in integer nanoseconds.
        self._base_ns = int(profile.step_base_ms * 1e6)
        self._per_seq_ns = int(profile.step_per_seq_ms * 1e6)
        self._per_prefill_ns = int(profile.prefill_per_token_ms * 1e6)

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        """Start the step loop on the running event loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sim-engine")

    async def close(self) -> None:
        """Stop the step loop and finish every sequence (idempotent)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for seq in (*self._waiting, *self._prefilling, *self._decoding):
            seq.cancelled = seq.finished = True
            seq._wake()
        self._waiting.clear()
        self._prefilling.clear()
        self._decoding.clear()
        self._kv_reserved = self._kv_used = 0

    # -- the handler's side ----------------------------------------------------------------------

    def fits(self, prompt_tokens: int, max_new: int) -> bool:
        """Whether such a request could ever be admitted (its KV need fits the whole cache)."""
        return max(1, prompt_tokens) + max(1, max_new) <= self.profile.kv_cache_tokens

    def submit(self, seq: Sequence) -> None:
        """Queue ``seq``; the step loop admits it when capacity allows."""
        seq.queued_ns = time.perf_counter_ns()
        self._waiting.append(seq)
        self._wake.set()

    def cancel(self, seq: Sequence) -> None:
        """Drop ``seq`` wherever it is (client gone, fault injected), releasing its capacity."""
        if seq.finished:
            return
        seq.cancelled = seq.finished = True
        if seq.admitted_ns:
            self._release(seq)
        self._dirty = True  # swept out of the queues lazily: O(1) here, one pass per step there
        seq._wake()

    @property
    def running(self) -> int:
        """Sequences admitted (prefilling or decoding)."""
        self._sweep()
        return len(self._prefilling) + len(self._decoding)

    @property
    def waiting(self) -> int:
        """Sequences queued, not yet admitted."""
        self._sweep()
        return len(self._waiting)

    @property
    def kv_usage(self) -> float:
        """Fraction of the KV cache holding tokens (prompt processed + generated) right now."""
        return self._kv_used / self.profile.kv_cache_tokens

    # -- the step loop ---------------------------------------------------------------------------

    def step_ns(self, decoding: int, prefill_tokens: int) -> int:
        """The duration of one step (ns): the profile's cost, times seeded noise when jitter is on."""
        step = self._base_ns + self._per_seq_ns * decoding + self._per_prefill_ns * prefill_tokens
        if self._jitter_rng is not None and step:
            step = int(step * max(0.0, 1.0 + self._jitter_rng.gauss(0.0, self.profile.jitter_frac)))
        return step

    def _sweep(self) -> None:
        """Drop finished and cancelled sequences from the queues (one pass, only when needed)."""
        if not self._dirty:
            return
        self._dirty = False
        if any(s.finished for s in self._waiting):
            self._waiting = deque(s for s in self._waiting if not s.finished)
        self._prefilling = [s for s in self._prefilling if not s.finished and s.prefilled < s.prompt_tokens]
        self._decoding = [s for s in self._decoding if not s.finished]

    def _release(self, seq: Sequence) -> None:
        self._kv_reserved -= seq.kv_need
        self._kv_used -= seq.prefilled + seq.generated

    def _admit(self) -> None:
        slots = self.profile.slots
        capacity = self.profile.kv_cache_tokens
        waiting = self._waiting
        running = len(self._prefilling) + len(self._decoding)
        while waiting and running < slots and self._kv_reserved + waiting[0].kv_need <= capacity:
            running += 1
            seq = waiting.popleft()
            seq.admitted_ns = time.perf_counter_ns()
            self._kv_reserved += seq.kv_need
            self._prefilling.append(seq)

    def _emit(self, seq: Sequence, now_ns: int) -> None:
        if not seq.first_ns:
            seq.first_ns = now_ns
        seq.last_ns = now_ns
        seq.generated += 1
        seq.ready += 1
        self._kv_used += 1
        self.stats.generation_tokens += 1
        if seq.generated >= seq.max_new:
            seq.finished = True
            self._release(seq)
            self._dirty = True
        seq._wake()

    async def _run(self) -> None:
        if self.profile.fixed_timing:
            await self._run_fixed()
            return
        clock = time.perf_counter_ns
        sleep = asyncio.sleep
        stats = self.stats
        deadline = clock()
        while True:
            self._sweep()
            self._admit()
            if not self._prefilling and not self._decoding:
                self._wake.clear()
                await self._wake.wait()
                deadline = clock()
                continue
            # Plan the step: prefill chunks first come first served, every decoder one token.
            budget = self.profile.prefill_chunk_tokens
            prefill: list[tuple[Sequence, int]] = []
            for seq in self._prefilling:
                if budget <= 0:
                    break
                n = min(budget, seq.prompt_tokens - seq.prefilled)
                prefill.append((seq, n))
                budget -= n
            decoders = tuple(self._decoding)
            step_ns = self.step_ns(len(decoders), self.profile.prefill_chunk_tokens - budget)
            deadline += step_ns
            now = clock()
            if deadline > now:
                await sleep((deadline - now) / 1e9)
                late = clock() - deadline
                if late > 0:
                    stats.late_ns_total += late
            else:
                if step_ns and now - deadline > MAX_CATCH_UP_NS:
                    stats.reanchors += 1
                    stats.late_ns_total += now - deadline
                    deadline = now
                elif not step_ns:
                    deadline = now
                await sleep(0)  # let handlers write what the last step released
            stats.steps += 1
            # Release the step's tokens.
            now = clock()
            for seq in decoders:
                if not seq.finished:
                    self._emit(seq, now)
            for seq, n in prefill:
                if seq.finished:
                    continue
                seq.prefilled += n
                self._kv_used += n
                stats.prompt_tokens += n
                if seq.prefilled >= seq.prompt_tokens:
                    self._dirty = True  # leaves _prefilling at the next sweep
                    self._decoding.append(seq)
                    self._emit(seq, now)

    async def _run_fixed(self) -> None:
        """Fixed timing: every admitted sequence gets its tokens on its own absolute deadlines."""
        clock = time.perf_counter_ns
        ttft_ns = int(self.profile.fixed_ttft_ms * 1e6)  # type: ignore[operator]
        itl_ns = int(self.profile.fixed_itl_ms * 1e6)  # type: ignore[operator]
        due: list[tuple[int, int, Sequence]] = []  # (deadline, tie-breaker, sequence)
        order = itertools.count()
        while True:
            self._sweep()
            self._admit()
            for seq in self._prefilling:  # admitted this pass: the slot is held from now on
                seq.prefilled = seq.prompt_tokens
                self._kv_used += seq.prompt_tokens
                self.stats.prompt_tokens += seq.prompt_tokens
                self._decoding.append(seq)
                heapq.heappush(due, (seq.admitted_ns + ttft_ns, next(order), seq))
            self._prefilling.clear()
            while due and due[0][2].finished:  # cancelled: its slot is already released
                heapq.heappop(due)
            self._wake.clear()
            if not due:
                await self._wake.wait()
                continue
            wait_ns = due[0][0] - clock()
            if wait_ns > 0:
                # A new arrival wakes the loop early, so it is admitted at once, not at the next token.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait_ns / 1e9)
                continue
            now = clock()
            self.stats.steps += 1
            while due and due[0][0] <= now:
                deadline, _, seq = heapq.heappop(due)
                if seq.finished:
                    continue
                if now - deadline > 0:
                    self.stats.late_ns_total += now - deadline
                self._emit(seq, now)
                if not seq.finished:
                    heapq.heappush(due, (deadline + itl_ns, next(order), seq))
                else:
                    self._dirty = True
            await asyncio.sleep(0)  # let handlers write what was released
