"""A sub-millisecond timer for the event loop that sleeps instead of spinning.

The event loops' own timers (asyncio's and uvloop's) wake with millisecond granularity, so a
scheduler that wants to send on time either spins through the last stretch (burning a core at low
rates) or accepts a millisecond of dispatch lag. ``PreciseTimer`` gives the loop a wake-up at an
absolute ``perf_counter_ns`` deadline instead:

* On Linux it arms one ``timerfd`` (CLOCK_MONOTONIC, the clock ``perf_counter_ns`` reads, absolute
  deadline) and watches it with ``loop.add_reader``: the kernel's high-resolution timer makes the
  fd readable at the deadline and the loop's poll returns at once, tens of microseconds late at
  most on an idle loop. One fd serves every waiter (a heap holds the deadlines).
* Elsewhere (or where ``timerfd_create`` is refused) a daemon thread sleeps to the earliest
  deadline on a condition variable and wakes the loop with ``call_soon_threadsafe``.

Contract: ``call_at(deadline_ns, callback)`` runs ``callback()`` on the loop thread no earlier than
``deadline_ns`` (a deadline already past runs on the next loop iteration); ``cancel`` on the
returned handle prevents it. ``sleep_until`` is the awaitable form. ``wake_all`` runs every pending
callback now (a stop request must not wait for the next deadline). Use from the loop thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import heapq
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable

_now = time.perf_counter_ns

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = 0o2000000
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.timerfd_create.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.timerfd_settime.argtypes = (
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.POINTER(_Itimerspec),
        )
        return libc
    except (OSError, AttributeError):
        return None


class TimerHandle:
    """A pending ``call_at``; ``cancel()`` keeps its callback from running."""

    __slots__ = ("callback", "cancelled", "deadline_ns")

    def __init__(self, deadline_ns: int, callback: Callable[[], object]) -> None:
        self.deadline_ns = deadline_ns
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class PreciseTimer:
    """Wakes callbacks at absolute ``perf_counter_ns`` deadlines; see the module docstring.

    ``kind`` says which mechanism is in use: ``"timerfd"`` or ``"thread"``. ``force`` picks one
    (for tests and benchmarks); ``close()`` releases the fd or stops the thread and is idempotent.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, *, force: str | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._heap: list[tuple[int, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._armed_ns = 0  # the deadline the timerfd or thread is set for (0: none)
        self._fd = -1
        self._libc = None
        self._closed = False
        self._thread: threading.Thread | None = None
        self._cond = threading.Condition()
        self._thread_deadline_ns = 0
        self._spec = _Itimerspec()
        if force not in (None, "timerfd", "thread"):
            raise ValueError(f"force must be 'timerfd' or 'thread', got {force!r}")
        if force != "thread":
            self._open_timerfd()
        if self._fd < 0:
            if force == "timerfd":
                raise OSError("timerfd is not available here")
            self.kind = "thread"
            self._thread = threading.Thread(target=self._thread_main, name="loadbench-timer", daemon=True)
            self._thread.start()
        else:
            self.kind = "timerfd"

    def _open_timerfd(self) -> None:
        libc = _libc()
        if libc is None:
            return
        fd = libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            return
        try:
            self._loop.add_reader(fd, self._on_fire)
        except (NotImplementedError, RuntimeError, ValueError):  # e.g. a loop without add_reader
            os.close(fd)
            return
        self._libc = libc
        self._fd = fd

    # -- public --------------------------------------------------------------------------------

    def call_at(self, deadline_ns: int, callback: Callable[[], object]) -> TimerHandle:
        """Run ``callback()`` on the loop at ``deadline_ns`` or just after."""
        handle = TimerHandle(deadline_ns, callback)
        heapq.heappush(self._heap, (deadline_ns, next(self._seq), handle))
        if not self._armed_ns or deadline_ns < self._armed_ns:
            self._arm(deadline_ns)
        return handle

    async def sleep_until(self, deadline_ns: int) -> None:
        """Return at ``deadline_ns`` or just after (at once if it has passed or on ``wake_all``)."""
        if deadline_ns <= _now():
            return
        future = self._loop.create_future()
        handle = self.call_at(deadline_ns, lambda: future.done() or future.set_result(None))
        try:
            await future
        finally:
            handle.cancel()

    def wake_all(self) -> None:
        """Run every pending callback now, whatever its deadline."""
        heap, self._heap = self._heap, []
        self._disarm()
        for _, _, handle in heap:
            if not handle.cancelled:
                handle.callback()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._heap.clear()
        if self._fd >= 0:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        if self._thread is not None:
            with self._cond:
                self._cond.notify()
            self._thread.join(timeout=1.0)

    # -- firing --------------------------------------------------------------------------------

    def _on_fire(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(BlockingIOError):  # consume the expiry count
                os.read(self._fd, 8)
        self._armed_ns = 0
        self._run_due()

    def _run_due(self) -> None:
        heap = self._heap
        now = _now()
        while heap and heap[0][0] <= now:
            handle = heapq.heappop(heap)[2]
            if not handle.cancelled:
                handle.callback()
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        if heap:
            self._arm(heap[0][0])
        else:
            self._disarm()

    def _arm(self, deadline_ns: int) -> None:
        if self._closed:
            return
        self._armed_ns = deadline_ns
        if self._fd >= 0:
            spec = self._spec
            # A zero it_value would disarm the timer: a deadline at or before 0 ns becomes 1 ns.
            seconds, nanoseconds = divmod(max(deadline_ns, 1), 1_000_000_000)
            spec.it_value.tv_sec = seconds
            spec.it_value.tv_nsec = nanoseconds
            if self._libc.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"timerfd_settime failed: {os.strerror(err)}")
        else:
            with self._cond:
                self._thread_deadline_ns = deadline_ns
                self._cond.notify()

    def _disarm(self) -> None:
        if self._armed_ns == 0:
            return
        self._armed_ns = 0
        if self._fd >= 0:
            spec = self._spec
            spec.it_value.tv_sec = 0
            spec.it_value.tv_nsec = 0
            self._libc.timerfd_settime(self._fd, 0, ctypes.byref(spec), None)
        else:
            with self._cond:
                self._thread_deadline_ns = 0
                self._cond.notify()

    def _thread_main(self) -> None:
        """The fallback: sleep to the armed deadline, then hand the loop ``_run_due``."""
        cond = self._cond
        while not self._closed:
            with cond:
                deadline = self._thread_deadline_ns
                if not deadline:
                    cond.wait()
                    continue
                remaining_ns = deadline - _now()
                if remaining_ns > 0:
                    cond.wait(remaining_ns / 1e9)
                    continue  # re-read: the deadline may have moved while we slept
                self._thread_deadline_ns = 0
            try:
                self._loop.call_soon_threadsafe(self._thread_fired)
            except RuntimeError:  # the loop has closed
                return

    def _thread_fired(self) -> None:
        self._armed_ns = 0
        self._run_due()

