"""The run directory, written as the run goes so nothing measured is lost.

Layout::

    run.json         the resolved scenario, target, versions, host, clock anchor (no secrets)
    requests.jsonl   one line per finished request, flushed within ~0.25 s of it finishing (a hybrid
                     request's child calls are lines with ``parent`` set, just before it)
    metrics.hlog     HdrHistogram interval log, one tag per metric, an interval every few seconds
    summary.json     the summary, written at the end (also after Ctrl-C / SIGTERM)
    energy.csv       energy samples per source, when energy is measured

The event loop only appends finished records to a list; serialising and writing happen on a
writer thread, one batch at a time, so file I/O never sits on the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any, TextIO

import orjson

from loadbench.metrics.record import RequestRecord
from loadbench.metrics.recorder import METRICS, Recorder
from loadbench.results.hlog import HlogWriter
from loadbench.results.records import record_to_json, with_children

_FLUSH_S = 0.25


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file, then rename), so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    os.replace(tmp, path)


class RunWriter:
    """Owns the run directory's streaming files. ``close()`` is idempotent."""

    def __init__(
        self,
        path: Path,
        *,
        recorder: Recorder,
        start_ns: int,
        start_epoch_s: float,
        hlog_interval_s: float = 5.0,
        chunk_times: bool = True,
    ) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._recorder = recorder
        self._start_ns = start_ns
        self._hlog_interval_ns = int(hlog_interval_s * 1e9)
        self._chunk_times = chunk_times
        self._pending: list[RequestRecord] = []
        self._requests: TextIO = open(path / "requests.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        self._hlog_file: TextIO = open(path / "metrics.hlog", "w", encoding="utf-8")  # noqa: SIM115
        self._hlog = HlogWriter(
            self._hlog_file, start_epoch_s=start_epoch_s, comment="loadbench metrics; units in tag names"
        )
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.records_written = 0

    def add(self, record: RequestRecord) -> None:
        """Queue a finished record for writing (hot path: an append, no I/O)."""
        self._pending.append(record)

    def start(self) -> None:
        """Start the periodic flusher on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._flush_forever())

    async def _flush_forever(self) -> None:
        next_rotation = time.perf_counter_ns() + self._hlog_interval_ns
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), _FLUSH_S)
            await self._flush_records()
            now = time.perf_counter_ns()
            if now >= next_rotation:
                await self._rotate(now)
                next_rotation += self._hlog_interval_ns

    async def _flush_records(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            await asyncio.to_thread(self._write_records, batch)
        except BaseException:
            self._pending[:0] = batch  # not written: close() tries these again, in order
            raise

    def _write_records(self, batch: list[RequestRecord]) -> None:
        chunk_times = self._chunk_times
        lines = b"".join(
            orjson.dumps(record_to_json(r, chunk_times=chunk_times)) + b"\n" for r in with_children(batch)
        )
        self._requests.write(lines.decode("utf-8"))
        self._requests.flush()
        self.records_written += len(batch)

    async def _rotate(self, now_ns: int) -> None:
        start_ns, end_ns, hists = self._recorder.rotate(now_ns)
        await asyncio.to_thread(self._write_intervals, start_ns, end_ns, hists)

    def _write_intervals(self, start_ns: int, end_ns: int, hists: dict[str, Any]) -> None:
        start_s = max(0.0, (start_ns - self._start_ns) / 1e9)
        end_s = max(start_s, (end_ns - self._start_ns) / 1e9)
        for metric in METRICS:
            self._hlog.write_interval(metric.tag, hists[metric.tag], start_s=start_s, end_s=end_s)
        self._hlog_file.flush()

    async def close(self) -> None:
        """Stop the flusher, write every pending record and the last interval, close the files."""
        if self._closed:
            return
        self._closed = True
        flusher_failure: BaseException | None = None
        if self._task is not None:
            # Let a write in progress on the writer thread finish before the last one starts.
            self._stop.set()
            try:
                await asyncio.shield(self._task)
            except Exception as exc:  # e.g. a full disk: still try to write the rest, then report it
                flusher_failure = exc
        try:
            batch, self._pending = self._pending, []
            if batch:
                self._write_records(batch)
            start_ns, end_ns, hists = self._recorder.rotate()
            self._write_intervals(start_ns, end_ns, hists)
        finally:
            self._requests.close()
            self._hlog_file.close()
        if flusher_failure is not None:
            raise flusher_failure
