"""The run directory, written as the run goes so nothing measured is lost.

Layout::

    run.json         the resolved scenario, target, versions, host, clock anchor (no secrets)
    requests.jsonl   one line per finished request, flushed within ~0.25 s of it finishing (a hybrid
                     request's child calls are lines with ``parent`` set, just before it)
    metrics.hlog     HdrHistogram interval log, one tag per metric, an interval every few seconds
    summary.json     the summary, written at the end (also after Ctrl-C / SIGTERM)
    energy.csv       energy samples per source, when energy is measured
    sim_trace.jsonl  the embedded simulator's ground truth, written by it as it goes

The event loop only appends finished records to a list; serialising and writing happen on a
writer thread, one batch at a time, so file I/O never sits on the hot path.

A directory is prepared (``prepare_run_dir``) before anything starts, so every path problem is
one ``ConfigError`` up front. It holds a small reserve file until the run ends: if the disk
fills mid-run, the streaming files are cut back to their last whole line, and the reserve,
released just before the summary is written, leaves it room.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from loadbench.contract.errors import ConfigError
from loadbench.contract.record import RequestRecord
from loadbench.metrics.recorder import METRICS, Recorder
from loadbench.results.hlog import HlogWriter
from loadbench.results.records import record_to_json, with_children

_FLUSH_S = 0.25

# The files a run writes (and ``overwrite`` replaces); nothing else in a directory is touched.
RUN_FILES = (
    "run.json",
    "requests.jsonl",
    "metrics.hlog",
    "summary.json",
    "energy.csv",
    "sim_trace.jsonl",
    "server_metrics.jsonl",
)
RESERVE = ".loadbench-reserve"
RESERVE_BYTES = 256 << 10  # room for summary.json and run.json on a full disk


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file, then rename), so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    os.replace(tmp, path)


def _run_files(path: Path) -> list[str]:
    names = {*RUN_FILES, *(f"{n}.tmp" for n in RUN_FILES), RESERVE}
    return sorted(n for n in names if (path / n).exists())


def prepare_run_dir(path: Path, *, overwrite: bool = False) -> bool:
    """Make ``path`` ready for a run before anything starts; True when this call created it.

    Raises ``ConfigError`` (one line naming the path) when it is not a directory, cannot be
    created or written, or already holds anything, unless ``overwrite``, which removes the files a
    previous run left (``RUN_FILES``) and nothing else. Leaves the reserve file in it.
    """
    where = f"results directory {path}"
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{where}: exists and is not a directory")
    created = False
    if not path.exists():
        try:
            path.mkdir(parents=True)
        except OSError as exc:
            raise ConfigError(f"{where}: cannot create it ({exc.strerror or exc})") from None
        created = True
    elif any(path.iterdir()):
        if not overwrite:
            held = sorted(p.name for p in path.iterdir())
            shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
            raise ConfigError(
                f"{where}: not empty ({shown}); pick a new --out, or pass --force to replace its run files"
            )
        for name in _run_files(path):
            try:
                (path / name).unlink()
            except OSError as exc:
                raise ConfigError(f"{where}: cannot remove the old {name} ({exc.strerror or exc})") from None
    try:
        _make_reserve(path / RESERVE)
    except OSError as exc:
        if created:
            shutil.rmtree(path, ignore_errors=True)
        raise ConfigError(f"{where}: cannot write in it ({exc.strerror or exc})") from None
    return created


def _make_reserve(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        if hasattr(os, "posix_fallocate"):
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
                return
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOTSUP", -1)):
                    raise
        os.write(fd, b"\0" * RESERVE_BYTES)
    finally:
        os.close(fd)


def release_reserve(path: Path) -> None:
    """Remove the reserve file (idempotent): just before the summary is written, and when the run is over."""
    with contextlib.suppress(OSError):
        (path / RESERVE).unlink()


def discard_run_dir(path: Path, *, created: bool) -> None:
    """Undo ``prepare_run_dir`` for a run that never started: the directory if this run made it,
    else only the files it put there."""
    if created:
        shutil.rmtree(path, ignore_errors=True)
        return
    for name in _run_files(path):
        with contextlib.suppress(OSError):
            (path / name).unlink()


class LineFile:
    """An append-only file of whole lines, unbuffered: every ``write`` reaches the kernel, and a
    failed one (a full disk) is cut back to the end of the last whole write before it raises."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self._fd: int | None = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644
        )

    def _write_some(self, data: memoryview) -> int:
        assert self._fd is not None
        return os.write(self._fd, data)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        done = 0
        try:
            while done < len(view):
                done += self._write_some(view[done:])
        except OSError:
            if done and self._fd is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self.size)
            raise
        self.size += done

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class _Text:
    """What ``HlogWriter`` writes to: text kept until the writer hands it to a ``LineFile``."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)

    def take(self) -> bytes:
        data = "".join(self.parts).encode("ascii")
        self.parts.clear()
        return data


@dataclass(frozen=True, slots=True)
class WriteFailure:
    """The first write that failed: which file, and the OS error."""

    file: str
    error: OSError

    def __str__(self) -> str:
        return f"cannot write {self.file}: {self.error.strerror or self.error}"


class RunWriter:
    """Owns the run directory's streaming files. ``close()`` is idempotent and never raises for a
    failed write: the first failure is kept in ``failure``, reported at once to ``on_failure``
    (on the loop), and from then on records are counted in ``records_unwritten`` instead of written
    (the recorder still summarises them). The files keep whole lines only.

    ``line_file`` opens a streaming file (a seam for tests that fill a disk).
    """

    def __init__(
        self,
        path: Path,
        *,
        recorder: Recorder,
        start_ns: int,
        start_epoch_s: float,
        hlog_interval_s: float = 5.0,
        chunk_times: bool = True,
        on_failure: Callable[[WriteFailure], None] | None = None,
        line_file: Callable[[Path], LineFile] = LineFile,
    ) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._recorder = recorder
        self._start_ns = start_ns
        self._hlog_interval_ns = int(hlog_interval_s * 1e9)
        self._chunk_times = chunk_times
        self._on_failure = on_failure
        self._pending: list[RequestRecord] = []
        self._requests = line_file(path / "requests.jsonl")
        self._hlog_file = line_file(path / "metrics.hlog")
        self._hlog_text = _Text()
        self._hlog = HlogWriter(
            self._hlog_text, start_epoch_s=start_epoch_s, comment="loadbench metrics; units in tag names"  # type: ignore[arg-type]
        )
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.records_written = 0
        self.records_unwritten = 0
        self.failure: WriteFailure | None = None
        try:
            self._hlog_file.write(self._hlog_text.take())
        except OSError as exc:
            self._failed("metrics.hlog", exc)

    def add(self, record: RequestRecord) -> None:
        """Queue a finished record for writing (hot path: an append, no I/O)."""
        if self.failure is not None:
            self.records_unwritten += 1
            return
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

    def _failed(self, file: str, exc: OSError) -> None:
        first = self.failure is None
        if first:
            self.failure = WriteFailure(file, exc)
        self.records_unwritten += len(self._pending)
        self._pending = []
        # The reserve stays until the summary is written (the caller releases it then): freed
        # now, the simulator's trace, in the same directory, could fill it during the drain.
        if first and self._on_failure is not None:
            self._on_failure(self.failure)  # type: ignore[arg-type]

    async def _flush_records(self) -> None:
        if not self._pending or self.failure is not None:
            return
        batch, self._pending = self._pending, []
        try:
            await asyncio.to_thread(self._write_records, batch)
        except OSError as exc:
            self.records_unwritten += len(batch)
            self._failed("requests.jsonl", exc)

    def _write_records(self, batch: list[RequestRecord]) -> None:
        chunk_times = self._chunk_times
        self._requests.write(
            b"".join(orjson.dumps(record_to_json(r, chunk_times=chunk_times)) + b"\n" for r in with_children(batch))
        )
        self.records_written += len(batch)

    async def _rotate(self, now_ns: int) -> None:
        start_ns, end_ns, hists = self._recorder.rotate(now_ns)
        if self.failure is not None:
            return  # the totals still have them
        try:
            await asyncio.to_thread(self._write_intervals, start_ns, end_ns, hists)
        except OSError as exc:
            self._failed("metrics.hlog", exc)

    def _write_intervals(self, start_ns: int, end_ns: int, hists: dict[str, Any]) -> None:
        start_s = max(0.0, (start_ns - self._start_ns) / 1e9)
        end_s = max(start_s, (end_ns - self._start_ns) / 1e9)
        for metric in METRICS:
            self._hlog.write_interval(metric.tag, hists[metric.tag], start_s=start_s, end_s=end_s)
        self._hlog_file.write(self._hlog_text.take())

    async def close(self) -> None:
        """Stop the flusher, write every pending record and the last interval, close the files."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            # Let a write in progress on the writer thread finish before the last one starts.
            self._stop.set()
            await asyncio.shield(self._task)
        try:
            if self._pending and self.failure is None:
                batch, self._pending = self._pending, []
                try:
                    self._write_records(batch)
                except OSError as exc:
                    self.records_unwritten += len(batch)
                    self._failed("requests.jsonl", exc)
            start_ns, end_ns, hists = self._recorder.rotate()
            if self.failure is None:
                try:
                    self._write_intervals(start_ns, end_ns, hists)
                except OSError as exc:
                    self._failed("metrics.hlog", exc)
        finally:
            self._requests.close()
            self._hlog_file.close()
