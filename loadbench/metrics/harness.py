"""The harness's own resource use over a run: is the load generator itself a bottleneck or leaking?

``HarnessMonitor`` samples, once per ``interval_s``: resident memory (RSS), CPU time (user and
system) and the CPU share since the last sample, open file descriptors and sockets, requests in
flight, and event-loop lag: how late the loop woke a 100 ms timer, worst and mean over the
period (a loop that wakes late stamps tokens late). Each sample is one line of ``harness.jsonl``,
written off the loop; the summary's ``harness`` section holds aggregates only, so memory stays flat.

RSS and descriptors come from ``/proc`` on Linux; elsewhere RSS falls back to the peak
(``getrusage``) and descriptors are not counted (``None``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import orjson

_PROBE_S = 0.1
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_PROC = Path("/proc/self")


def rss_bytes() -> int:
    """Resident memory now (Linux), else the peak so far."""
    try:
        with open(_PROC / "statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def _descriptors() -> tuple[int | None, int | None]:
    """(open descriptors, of which sockets); (None, None) where /proc is missing."""
    try:
        names = os.listdir(_PROC / "fd")
    except OSError:
        return None, None
    sockets = 0
    for name in names:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                sockets += 1
    return len(names), sockets


class HarnessMonitor:
    """Samples the harness into ``path`` until ``close()``; ``report()`` gives the summary section.

    ``in_flight`` and ``finished`` (optional) read the requests in flight and finished so far
    (so memory can be set against requests served); ``baseline_after_s`` is when the RSS
    baseline for ``rss_growth_mb`` is taken (after start-up: pools, buffers, caches filled).
    """

    def __init__(
        self,
        path: Path,
        *,
        start_ns: int,
        interval_s: float = 1.0,
        in_flight: Callable[[], int] | None = None,
        finished: Callable[[], int] | None = None,
        baseline_after_s: float = 0.0,
    ) -> None:
        self.path = path
        self._start_ns = start_ns
        self._interval_s = interval_s
        self._in_flight = in_flight
        self._finished = finished
        self._baseline_after_s = baseline_after_s
        self._file: TextIO | None = None
        self._unwritable = False
        self._tasks: list[asyncio.Task[None]] = []
        # Lag since the last sample (probe) and over the run.
        self._lag_max_s = 0.0
        self._lag_sum_s = 0.0
        self._lag_n = 0
        self._run_lag_max_s = 0.0
        self._lag_over_10ms = 0
        self._probes = 0
        # Aggregates for the summary.
        self.samples = 0
        self._rss_first = self._rss_last = self._rss_max = 0
        self._rss_baseline: int | None = None
        self._baseline_t_s: float | None = None
        self._cpu_first: tuple[float, float] | None = None
        self._cpu_last = (0.0, 0.0)
        self._cpu_pct_max = 0.0
        self._fds_max: int | None = None
        self._sockets_max: int | None = None
        self._last_t = 0.0
        self._last_cpu = 0.0
        self._first_t = 0.0

    def start(self) -> None:
        """Open ``harness.jsonl`` and start sampling on the running loop."""
        self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._probe()), loop.create_task(self._sample_forever())]

    async def _probe(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(_PROBE_S)
            lag = max(0.0, time.perf_counter() - before - _PROBE_S)
            self._probes += 1
            self._lag_n += 1
            self._lag_sum_s += lag
            self._lag_over_10ms += lag > 0.010
            if lag > self._lag_max_s:
                self._lag_max_s = lag

    async def _sample_forever(self) -> None:
        next_s = time.perf_counter() + self._interval_s
        while True:
            await asyncio.sleep(max(0.0, next_s - time.perf_counter()))
            next_s += self._interval_s
            line = self._sample()
            await asyncio.to_thread(self._write, line)

    def _sample(self) -> bytes:
        now_ns = time.perf_counter_ns()
        t_s = (now_ns - self._start_ns) / 1e9
        rss = rss_bytes()
        cpu = os.times()
        user_s, system_s = cpu.user, cpu.system
        busy = user_s + system_s
        span = t_s - self._last_t if self.samples else t_s
        pct = 100.0 * (busy - self._last_cpu) / span if self.samples and span > 0 else None
        self._last_t, self._last_cpu = t_s, busy
        fds, sockets = _descriptors()
        lag_max_ms = self._lag_max_s * 1e3
        lag_mean_ms = self._lag_sum_s / self._lag_n * 1e3 if self._lag_n else None
        self._run_lag_max_s = max(self._run_lag_max_s, self._lag_max_s)
        self._lag_max_s = self._lag_sum_s = 0.0
        self._lag_n = 0
        # Aggregates.
        if not self.samples:
            self._rss_first = rss
            self._cpu_first = (user_s, system_s)
            self._first_t = t_s
        if self._rss_baseline is None and t_s >= self._baseline_after_s:
            self._rss_baseline, self._baseline_t_s = rss, t_s
        self.samples += 1
        self._rss_last = rss
        self._rss_max = max(self._rss_max, rss)
        self._cpu_last = (user_s, system_s)
        if pct is not None:
            self._cpu_pct_max = max(self._cpu_pct_max, pct)
        if fds is not None:
            self._fds_max = max(self._fds_max or 0, fds)
            self._sockets_max = max(self._sockets_max or 0, sockets or 0)
        row = {
            "t_s": round(t_s, 3),
            "rss_mb": round(rss / 2**20, 2),
            "cpu_user_s": round(user_s, 3),
            "cpu_system_s": round(system_s, 3),
            "cpu_percent": None if pct is None else round(pct, 1),
            "open_fds": fds,
            "sockets": sockets,
            "in_flight": self._in_flight() if self._in_flight is not None else None,
            "finished": self._finished() if self._finished is not None else None,
            "loop_lag_max_ms": round(lag_max_ms, 3),
            "loop_lag_mean_ms": None if lag_mean_ms is None else round(lag_mean_ms, 3),
        }
        return orjson.dumps(row) + b"\n"

    def _write(self, line: bytes) -> None:
        if self._file is not None and not self._file.closed and not self._unwritable:
            try:
                self._file.write(line.decode())
                self._file.flush()
            except OSError:
                # A full disk is the run writer's to report (it stops the run); this diagnostic
                # file just ends where the disk did, and must not crash the run's close.
                self._unwritable = True

    async def close(self) -> None:
        """Stop sampling, take one last sample and close the file (idempotent)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._file is not None and not self._file.closed:
            self._write(self._sample())
            try:
                self._file.close()
            except OSError:  # buffered bytes that no longer fit (see ``_write``)
                self._unwritable = True

    def report(self, *, requests: int = 0) -> dict[str, Any]:
        """The summary's ``harness`` section (every key present, ``None`` where nothing was sampled).

        ``rss_growth_mb`` is the RSS at the end minus the baseline (the first sample at or after
        ``baseline_after_s``); ``rss_growth_mb_per_100k_requests`` scales it by ``requests``, the
        requests finished over the run.
        """
        mb = 2**20
        sampled = self.samples > 0
        growth = (self._rss_last - self._rss_baseline) / mb if sampled and self._rss_baseline is not None else None
        cpu_s = None  # CPU between the first and the last sample (start-up excluded)
        if sampled and self._cpu_first is not None:
            cpu_s = sum(self._cpu_last) - sum(self._cpu_first)
        elapsed = self._last_t - self._first_t if sampled else None
        return {
            "samples": self.samples,
            "rss_mb": {
                "first": self._rss_first / mb if sampled else None,
                "baseline": self._rss_baseline / mb if self._rss_baseline is not None else None,
                "baseline_at_s": self._baseline_t_s,
                "last": self._rss_last / mb if sampled else None,
                "max": self._rss_max / mb if sampled else None,
            },
            "rss_growth_mb": growth,
            "rss_growth_mb_per_100k_requests": growth * 100_000 / requests if growth is not None and requests else None,
            "cpu": {
                "total_s": cpu_s,
                "mean_percent": 100.0 * cpu_s / elapsed if cpu_s is not None and elapsed else None,
                "max_percent": self._cpu_pct_max if self.samples > 1 else None,
            },
            "open_fds_max": self._fds_max,
            "sockets_max": self._sockets_max,
            "loop_lag_ms": {
                "max": self._run_lag_max_s * 1e3 if self._probes else None,
                "over_10ms_share": self._lag_over_10ms / self._probes if self._probes else None,
            },
        }
