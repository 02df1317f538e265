"""The energy meter: opens the sources, measures an idle baseline, then samples on a thread.

The sampler is a plain thread, never a coroutine: nothing it does is awaited, so a slow read (NVML
can take milliseconds) never delays the event loop. It wakes on a fixed grid of deadlines
(``start + k x interval``), not after accumulated sleeps, skips ticks it fell behind on instead of
bursting, and waits on an ``Event`` so ``close()`` wakes it at once; it then takes one last sample
so the run's end is covered, and exits. A source that raises leaves a recorded gap (a sample with
its error) and is asked again at the next tick.
"""

from __future__ import annotations

import contextlib
import csv
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadbench.contract.errors import ConfigError
from loadbench.energy.base import (
    EnergySource,
    Reading,
    SourceData,
    SourceUnavailable,
    describe_measures,
)
from loadbench.energy.config import EnergyConfig
from loadbench.energy.detect import make_source, plan
from loadbench.energy.integrate import cumulative
from loadbench.energy.report import Attribution, Metered, summary


class EnergyMeter:
    """Measures energy during a run. Use as a context manager (entry blocks for ``idle_s``)::

        with EnergyMeter(EnergyConfig()) as meter:
            meter.mark("window_start"); ...; meter.mark("window_end")
        summary["energy"] = meter.report(output_tokens=n, requests=m)

    ``sources`` replaces detection with already-built (unopened) sources, all of which are used.

    Readable as it runs: ``started_ns`` (first sample), ``idle_ns`` (the baseline's span),
    ``stopped_ns`` (last sample), ``missed_ticks`` (ticks skipped because a sample overran), and
    ``sampler_cpu_s`` (CPU seconds the sampler thread has used: the meter's own cost).
    """

    def __init__(
        self,
        config: EnergyConfig | None = None,
        *,
        sources: Sequence[EnergySource] | None = None,
    ) -> None:
        self.config = config if config is not None else EnergyConfig()
        self._given = list(sources) if sources is not None else None
        self._opened: list[SourceData] = []
        self._tried: list[dict[str, Any]] = []
        self._marks: list[tuple[str, int]] = []
        self._lock = threading.Lock()  # guards the stored readings
        self._sample_lock = threading.Lock()  # one sample at a time: sources are not re-entrant
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._interval_ns = max(1, round(self.config.interval_s * 1e9))
        self.started_ns = 0  # first sample
        self.idle_ns: tuple[int, int] | None = None
        self.stopped_ns = 0  # last sample
        self.missed_ticks = 0
        self._last_sample_ns = 0
        self.sampler_cpu_s = 0.0  # CPU time the sampler thread has used (its own cost)
        self._closed = False
        self._csv: _CsvStream | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> EnergyMeter:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Open the sources, start the sampler, and block for the idle baseline (``idle_s``)."""
        if self._thread is not None or self._closed:
            raise RuntimeError("an EnergyMeter starts once")
        try:
            self._open_sources()
            self.started_ns = time.perf_counter_ns()
            self._thread = threading.Thread(target=self._run, name="loadbench-energy", daemon=True)
            self._thread.start()
            if self.config.idle_s > 0:
                idle_end = self.started_ns + round(self.config.idle_s * 1e9)
                # The caller has not started load yet: this wait is the baseline.
                while (left := idle_end - time.perf_counter_ns()) > 0:
                    time.sleep(left / 1e9)
                self.idle_ns = (self.started_ns, idle_end)
        except BaseException:
            # __exit__ does not run when __enter__ raises (Ctrl-C during the baseline included).
            self.close()
            raise

    def close(self) -> None:
        """Stop the sampler (within one interval; it takes a last sample) and release the sources.

        Idempotent. If a source's read hangs, the thread is left behind after one interval plus a
        second, as a daemon, and the report says so.
        """
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.interval_s + 1.0)
        if not self.stopped_ns:
            self.stopped_ns = time.perf_counter_ns()
        for data in self._opened:
            # Releasing is best effort: the measurement is already taken.
            with contextlib.suppress(Exception):
                data.source.close()

    @property
    def running(self) -> bool:
        """True while the sampler thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    # -- hot path ------------------------------------------------------------------------------

    def mark(self, name: str) -> int:
        """Remember ``perf_counter_ns()`` under ``name`` (e.g. ``window_start``) and return it.

        Cheap enough for the event loop: one clock read and one list append.
        """
        t_ns = time.perf_counter_ns()
        self._marks.append((name, t_ns))
        return t_ns

    @property
    def marks(self) -> dict[str, int]:
        """The latest stamp per mark name."""
        return dict(self._marks)

    # -- results -------------------------------------------------------------------------------

    def sources_tried(self) -> list[dict[str, Any]]:
        """Every source considered: name, measures, available, used, and the reason when not."""
        return [dict(entry) for entry in self._tried]

    def report(
        self,
        *,
        window_ns: tuple[int, int] | None = None,
        run_ns: tuple[int, int] | None = None,
        output_tokens: int | None = None,
        requests: int | None = None,
        location: str = "local",
        remote_output_tokens: int | None = None,
    ) -> dict[str, Any]:
        """The energy summary (for ``summary.json["energy"]``); see ``loadbench.energy.report``.

        ``run_ns`` defaults to the end of the idle baseline until the last sample; ``window_ns``
        to the ``window_start``/``window_end`` marks, else the run. ``location`` is ``local``,
        ``remote`` or ``hybrid``; ``remote_output_tokens`` are the tokens a hybrid run's remote
        model generated (the remote estimate needs them).
        """
        if location not in ("local", "remote", "hybrid"):
            raise ConfigError(f"energy report location={location!r}: expected local, remote or hybrid")
        end_ns = self.stopped_ns or time.perf_counter_ns()
        if run_ns is None:
            run_ns = (self.idle_ns[1] if self.idle_ns else self.started_ns, end_ns)
        if window_ns is None:
            marks = self.marks
            if "window_start" in marks:
                window_ns = (marks["window_start"], marks.get("window_end", run_ns[1]))
            else:
                window_ns = run_ns
        if not self._closed and self.running and self._last_sample_ns < max(run_ns[1], window_ns[1]):
            # Asked mid-run (the summary is written before the meter closes): sample now rather
            # than leave the last interval uncovered. Costs one read per source, on this thread.
            self._sample_now()
        with self._lock:
            snapshot = [SourceData(d.name, d.source, d.channels, list(d.readings), list(d.gaps)) for d in self._opened]
        metered = Metered(
            snapshot,
            idle_ns=self.idle_ns,
            sources_tried=self.sources_tried(),
            missed_ticks=self.missed_ticks,
            sampler_stuck=self.running and self._closed,
            sampler_cpu_s=self.sampler_cpu_s,
        )
        attribution = Attribution(
            run_ns=run_ns,
            window_ns=window_ns,
            output_tokens=output_tokens,
            requests=requests,
            location=location,
            remote_output_tokens=remote_output_tokens,
        )
        return summary(metered, attribution, self.config)

    def write_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write ``energy.csv``: one row per reading per channel, and one per gap, in time order.

        Columns: ``t_ns`` (perf_counter_ns), ``t_s`` (seconds since the first sample), ``source``,
        ``channel``, ``measures``, ``kind`` (measured/estimated), ``signal``, ``value``, ``unit``
        (J for counters, W for power), ``span_ns``, ``cumulative_j`` (since the channel's first
        reading), ``error`` (set on gap rows only).
        """
        out = Path(path)
        rows = _CsvStream(self).take()
        with open(out, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_COLUMNS)
            writer.writerows(rows)
        return out

    def stream_csv(self, path: str | os.PathLike[str], *, every_s: float = 1.0) -> None:
        """Write ``energy.csv`` as the meter runs: the header now, new rows about every ``every_s``
        (from the sampler thread) and the rest on ``flush_csv``, so a killed run keeps its samples.
        The rows are those of ``write_csv``, in time order within each batch. A write error stops
        the streaming (``csv_error``); it never stops the sampler."""
        stream = _CsvStream(self, Path(path), every_ns=round(every_s * 1e9))
        stream.start()
        self._csv = stream

    def flush_csv(self) -> None:
        """Append what ``stream_csv`` has not written yet (call once the load is over)."""
        if self._csv is not None:
            self._csv.flush()

    @property
    def csv_error(self) -> str | None:
        """Why streaming ``energy.csv`` stopped, if a write failed."""
        return self._csv.error if self._csv is not None else None

    # -- internals -----------------------------------------------------------------------------

    def _open_sources(self) -> None:
        if self._given is not None:
            candidates = [(getattr(s, "name", type(s).__name__), s) for s in self._given]
            skip = None
        else:
            order = plan(self.config)
            candidates = [(name, None) for name in order.names]
            skip = order
        in_use: list[str] = []
        for name, source in candidates:
            reason = skip.skip_reason(name, in_use) if skip is not None else None
            if reason is not None:
                self._tried.append(
                    {
                        "name": name,
                        "measures": None,
                        "estimated": name == "cpu-estimate",
                        "available": None,
                        "used": False,
                        "reason": reason,
                    }
                )
                continue
            if source is None:
                source = make_source(name, self.config)
            reason = None
            try:
                channels = source.open()
            except SourceUnavailable as exc:
                reason = str(exc)
            except Exception as exc:  # an unexpected failure disables the source, not the run
                reason = f"failed to open: {type(exc).__name__}: {exc}"
            if reason is not None:
                self._tried.append(
                    {
                        "name": name,
                        "measures": None,
                        "estimated": source.estimated,
                        "available": False,
                        "used": False,
                        "reason": reason,
                    }
                )
                continue
            self._opened.append(SourceData(name, source, channels))
            in_use.append(name)
            self._tried.append(
                {
                    "name": name,
                    "measures": describe_measures(channels),
                    "estimated": source.estimated,
                    "available": True,
                    "used": True,
                    "reason": None,
                }
            )
        if not self._opened:
            reasons = "; ".join(f"{t['name']}: {t['reason']}" for t in self._tried)
            raise ConfigError(f"no energy source is available ({reasons})")

    def _run(self) -> None:
        interval = self._interval_ns
        deadline = self.started_ns
        while True:
            self._sample_now()
            self.sampler_cpu_s = time.thread_time()
            deadline += interval
            now = time.perf_counter_ns()
            if now >= deadline:
                behind = (now - deadline) // interval + 1
                self.missed_ticks += behind
                deadline += behind * interval
            if self._stop.wait((deadline - now) / 1e9):
                self._sample_now()  # the run's end
                self.sampler_cpu_s = time.thread_time()
                self.stopped_ns = time.perf_counter_ns()
                return

    def _sample_now(self) -> None:
        with self._sample_lock:
            self._sample()
        csv_stream = self._csv
        if csv_stream is not None:
            csv_stream.tick()

    def _sample(self) -> None:
        # Callers hold _sample_lock (the thread through _run, report through _sample_now).
        self._last_sample_ns = time.perf_counter_ns()
        for data in self._opened:
            now = time.perf_counter_ns()
            try:
                readings = data.source.read(now)
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    data.gaps.append((now, message))
                continue
            if readings:
                with self._lock:
                    data.readings.extend(readings)


CSV_COLUMNS = (
    "t_ns", "t_s", "source", "channel", "measures", "kind", "signal", "value", "unit", "span_ns",
    "cumulative_j", "error",
)


class _CsvStream:
    """The rows of ``energy.csv`` not taken yet, with each channel's running cumulative joules, so
    each batch costs only its new readings (a re-scan per batch would grow with the run)."""

    def __init__(self, meter: EnergyMeter, path: Path | None = None, *, every_ns: int = 0) -> None:
        self._meter = meter
        self._path = path
        self._every_ns = every_ns
        self._last_ns = 0
        self._lock = threading.Lock()
        self._readings_done: dict[int, int] = {}  # id(source data) -> readings taken
        self._gaps_done: dict[int, int] = {}
        self._previous: dict[tuple[int, int], tuple[Reading, float]] = {}  # channel -> (last reading, its cum J)
        self.error: str | None = None

    def start(self) -> None:
        assert self._path is not None
        try:
            with open(self._path, "w", newline="") as f:
                csv.writer(f).writerow(CSV_COLUMNS)
        except OSError as exc:
            self.error = f"{self._path.name}: {exc.strerror or exc}"

    def tick(self) -> None:
        now = time.perf_counter_ns()
        if now - self._last_ns >= self._every_ns:
            self._last_ns = now
            self.flush()

    def flush(self) -> None:
        if self._path is None or self.error is not None:
            return
        with self._lock:
            rows = self.take()
            if not rows:
                return
            try:
                with open(self._path, "a", newline="") as f:
                    csv.writer(f).writerows(rows)
            except OSError as exc:
                self.error = f"{self._path.name}: {exc.strerror or exc}"

    def take(self) -> list[list[Any]]:
        meter = self._meter
        with meter._lock:
            snapshot = []
            for d in meter._opened:
                key = id(d)
                snapshot.append((d, d.readings[self._readings_done.get(key, 0):], d.gaps[self._gaps_done.get(key, 0):]))
                self._readings_done[key] = len(d.readings)
                self._gaps_done[key] = len(d.gaps)
        rows: list[tuple[Any, ...]] = []
        for data, readings, gaps in snapshot:
            kind = "estimated" if data.source.estimated else "measured"
            for index, channel in enumerate(data.channels):
                mine = [r for r in readings if r.channel == index]
                if not mine:
                    continue
                key = (id(data), index)
                before = self._previous.get(key)
                chain = [before[0], *mine] if before else mine
                _, cum = cumulative(
                    channel.signal, [r.t_ns for r in chain], [r.value for r in chain], [r.span_ns for r in chain]
                )
                if before:
                    cum = [before[1] + c - cum[0] for c in cum[1:]]
                self._previous[key] = (mine[-1], cum[-1])
                unit = "J" if channel.signal == "counter_j" else "W"
                for reading, cum_j in zip(mine, cum, strict=True):
                    rows.append(
                        (
                            reading.t_ns,
                            data.name,
                            channel.name,
                            channel.measures,
                            kind,
                            channel.signal,
                            f"{reading.value:.6f}",
                            unit,
                            "" if reading.span_ns is None else reading.span_ns,
                            f"{cum_j:.6f}",
                            "",
                        )
                    )
            for t_ns, error in gaps:
                rows.append((t_ns, data.name, "", "", kind, "", "", "", "", "", error))
        rows.sort(key=lambda row: row[0])
        origin = meter.started_ns
        return [[row[0], f"{(row[0] - origin) / 1e9:.6f}", *row[1:]] for row in rows]
