"""The run directory: requests.jsonl streamed while running, a readable tagged hlog, atomic JSON."""

from __future__ import annotations

import asyncio
import errno
import os
import time
from pathlib import Path

import orjson
import pytest
from hdrh.log import HistogramLogReader

from loadbench.contract.errors import ConfigError, LoadbenchError
from loadbench.contract.record import RequestRecord
from loadbench.metrics.hdr import new_histogram
from loadbench.metrics.recorder import METRICS, Recorder
from loadbench.metrics.summary import build_summary
from loadbench.results.records import record_to_json
from loadbench.results.run import RunResult
from loadbench.results.run_dir import (
    RESERVE,
    LineFile,
    RunWriter,
    discard_run_dir,
    prepare_run_dir,
    release_reserve,
    write_json,
)

MS = 1_000_000


def finished(index: int, *, status: str = "ok", phase: str = "measured") -> RequestRecord:
    now = time.perf_counter_ns()
    r = RequestRecord(index=index, request_id=f"run-{index}", intended_ns=now - 30 * MS, phase=phase)  # type: ignore[arg-type]
    r.sent_ns = now - 29 * MS
    if status == "ok":
        for k in range(4):
            r.token(now - (20 - 3 * k) * MS)
        r.output_tokens = 4
        r.status = "ok"
    else:
        r.status = "failed"
        r.error = "server_error"
        r.error_detail = "HTTP 500"
        r.http_status = 500
    r.end_ns = now
    return r


def read_lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def read_hlog(path: Path) -> dict[str, list]:
    reader = HistogramLogReader(str(path), new_histogram())
    by_tag: dict[str, list] = {}
    while (h := reader.get_next_interval_histogram()) is not None:
        by_tag.setdefault(h.get_tag(), []).append(h)
    return by_tag


def test_records_stream_while_running_and_the_hlog_matches_the_recorder(tmp_path: Path) -> None:
    recorder = Recorder()
    seen_before_close: list[int] = []

    async def main() -> RunWriter:
        writer = RunWriter(tmp_path, recorder=recorder, start_ns=time.perf_counter_ns(),
                           start_epoch_s=time.time(), hlog_interval_s=0.2)
        writer.start()
        index = 0
        for _ in range(3):  # three bursts, each in its own hlog interval
            for _ in range(10):
                status = "failed" if index % 5 == 4 else "ok"
                phase = "warmup" if index < 3 else "measured"
                r = finished(index, status=status, phase=phase)
                recorder.add(r)
                writer.add(r)
                index += 1
            await asyncio.sleep(0.3)
        # Flushed within ~0.25 s: the lines are on disk before close().
        await asyncio.sleep(0.3)
        seen_before_close.append(len(read_lines(tmp_path / "requests.jsonl")))
        last = finished(index)
        recorder.add(last)
        writer.add(last)
        await writer.close()
        await writer.close()  # idempotent
        return writer

    writer = asyncio.run(main())
    assert seen_before_close == [30]
    lines = read_lines(tmp_path / "requests.jsonl")
    assert len(lines) == 31 == writer.records_written
    assert sorted(line["index"] for line in lines) == list(range(31))
    assert {line["request_id"] for line in lines} == {f"run-{i}" for i in range(31)}
    failed = [line for line in lines if line["status"] == "failed"]
    assert len(failed) == 6 and all(line["error"] == "server_error" for line in failed)

    by_tag = read_hlog(tmp_path / "metrics.hlog")
    assert set(by_tag) == {m.tag for m in METRICS}
    summary = build_summary(recorder, scheduled=31)
    for m in METRICS:
        intervals = by_tag[m.tag]
        total = sum(h.get_total_count() for h in intervals)
        assert total == recorder.totals[m.tag].total_count == summary["metrics"][m.key]["count"], m.tag
        assert len(intervals) >= 3  # an interval per rotation, empty ones included
        starts = [h.get_start_time_stamp() for h in intervals]
        assert starts == sorted(starts)
    assert summary["metrics"]["e2e_ms"]["count"] == 22  # 28 measured, 6 of them failed
    assert summary["metrics"]["itl_ms"]["count"] == 22 * 3
    assert summary["metrics"]["dispatch_lag_ms"]["count"] == 28
    # The decoded histograms carry the same values as the recorder's totals.
    e2e = new_histogram()
    for h in by_tag["e2e_us"]:
        e2e.add(h)
    assert e2e.get_value_at_percentile(50) == recorder.totals["e2e_us"].get_value_at_percentile(50)
    assert e2e.get_max_value() == recorder.totals["e2e_us"].get_max_value()


def test_hlog_header_and_start_time(tmp_path: Path) -> None:
    recorder = Recorder()
    epoch = 1_700_000_000.25

    async def main() -> None:
        writer = RunWriter(tmp_path, recorder=recorder, start_ns=time.perf_counter_ns(), start_epoch_s=epoch)
        r = finished(0)
        recorder.add(r)
        writer.add(r)
        await writer.close()  # never started: close still writes everything

    asyncio.run(main())
    text = (tmp_path / "metrics.hlog").read_text()
    assert text.startswith("#[Histogram log format version 1.3]\n")
    assert "#[StartTime: 1700000000.250 " in text
    reader = HistogramLogReader(str(tmp_path / "metrics.hlog"), new_histogram())
    h = reader.get_next_interval_histogram()
    assert h is not None
    assert reader.get_start_time_sec() == pytest.approx(epoch)
    assert len(read_lines(tmp_path / "requests.jsonl")) == 1


def test_record_lines_hold_the_derived_figures(tmp_path: Path) -> None:
    r = finished(7)
    r.user = 2
    line = orjson.loads(orjson.dumps(record_to_json(r)))
    assert line["dispatch_lag_ms"] == pytest.approx(1.0)
    assert line["ttft_ms"] == pytest.approx((r.first_token_ns - r.sent_ns) / 1e6)
    assert line["e2e_from_schedule_ms"] == pytest.approx(30.0)
    assert line["chunk_offsets_us"] == [(t - r.sent_ns) // 1000 for t in r.chunk_ns]
    assert line["user"] == 2 and line["output_tokens"] == 4 and line["output_tokens_reported"] is True
    assert "chunk_offsets_us" not in record_to_json(r, chunk_times=False)
    unsent = RequestRecord(index=0, request_id="x", intended_ns=5, status="cancelled")
    out = record_to_json(unsent)
    assert out["dispatch_lag_ms"] is None and out["ttft_ms"] is None and "chunk_offsets_us" not in out


def test_write_json_is_atomic_and_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "summary.json"
    write_json(target, {"a": 1})
    assert orjson.loads(target.read_bytes()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]

    # A crash between writing and renaming leaves the old file whole.
    def boom(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_json(target, {"a": 2, "big": list(range(1000))})
    assert orjson.loads(target.read_bytes()) == {"a": 1}


def test_run_result_reads_a_run_directory(tmp_path: Path) -> None:
    write_json(tmp_path / "summary.json", {"metrics": {"ttft_ms": {"p99": 12.5}}})
    write_json(tmp_path / "run.json", {"run_id": "abc"})
    (tmp_path / "requests.jsonl").write_bytes(b'{"index": 0}\n\n{"index": 1}\n')
    result = RunResult.load(tmp_path)
    assert result.metric("ttft_ms")["p99"] == 12.5
    assert result.run["run_id"] == "abc"
    assert [r["index"] for r in result.records()] == [0, 1]


@pytest.mark.parametrize("missing", ["summary.json", "run.json"])
def test_run_result_names_the_missing_file(tmp_path: Path, missing: str) -> None:
    for name in ("summary.json", "run.json"):
        if name != missing:
            write_json(tmp_path / name, {})
    with pytest.raises(LoadbenchError) as info:
        RunResult.load(tmp_path)
    assert missing in str(info.value) and str(tmp_path) in str(info.value)


def test_run_result_on_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(LoadbenchError, match=r"summary\.json"):
        RunResult.load(tmp_path / "nope")


def test_run_result_on_a_corrupt_file(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text("{not json")
    write_json(tmp_path / "run.json", {})
    with pytest.raises(LoadbenchError, match="unreadable"):
        RunResult.load(tmp_path)


class FullDisk(LineFile):
    """A streaming file on a disk with ``room`` bytes left: writes what fits, then ENOSPC, as
    ``write(2)`` does."""

    room = 0

    def _write_some(self, data: memoryview) -> int:
        if FullDisk.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = min(len(data), FullDisk.room)
        FullDisk.room -= n
        return super()._write_some(data[:n])


def test_a_full_disk_is_reported_at_once_and_leaves_whole_lines(tmp_path: Path) -> None:
    FullDisk.room = 6000  # the hlog header, then a few records
    failures: list = []
    written_at_failure: list[int] = []

    async def run() -> RunWriter:
        recorder = Recorder()
        writer = RunWriter(tmp_path, recorder=recorder, start_ns=time.perf_counter_ns(), start_epoch_s=time.time(),
                           line_file=FullDisk, on_failure=lambda f: (failures.append(f),
                                                                     written_at_failure.append(writer.records_written)))
        for i in range(40):
            record = finished(i)
            recorder.add(record)
            writer.add(record)
            await writer._flush_records()  # what the flusher does every 0.25 s, one record at a time
        await writer.close()
        await writer.close()
        return writer

    writer = asyncio.run(run())
    assert len(failures) == 1 and str(failures[0]) == "cannot write requests.jsonl: No space left on device"
    assert writer.failure is failures[0]
    assert written_at_failure[0] == writer.records_written  # reported at the first failed write
    assert 0 < writer.records_written < 40
    assert writer.records_written + writer.records_unwritten == 40
    assert writer._requests.closed and writer._hlog_file.closed
    data = (tmp_path / "requests.jsonl").read_bytes()
    assert data.endswith(b"\n")  # the partial line was cut back
    lines = [orjson.loads(x) for x in data.splitlines()]
    assert [x["index"] for x in lines] == list(range(writer.records_written))


def test_prepare_run_dir_finds_every_path_problem_up_front(tmp_path: Path) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for path, message in (
        (a_file, "exists and is not a directory"),
        (a_file / "under", "cannot create it"),
        (Path("/proc/loadbench-x"), "cannot create it"),
    ):
        with pytest.raises(ConfigError, match=message) as info:
            prepare_run_dir(path)
        assert str(path) in str(info.value)
    fresh = tmp_path / "new" / "run"
    assert prepare_run_dir(fresh) is True
    assert (fresh / RESERVE).is_file()
    release_reserve(fresh)
    assert list(fresh.iterdir()) == []
    assert prepare_run_dir(fresh) is False  # empty: fine


def test_an_existing_run_is_kept_unless_overwrite_which_replaces_only_run_files(tmp_path: Path) -> None:
    old = tmp_path / "run"
    old.mkdir()
    for name in ("run.json", "requests.jsonl", "sim_trace.jsonl", "notes.txt"):
        (old / name).write_text("old")
    with pytest.raises(ConfigError, match=r"not empty \(notes.txt, requests.jsonl, run.json, sim_trace.jsonl\); "
                                          r"pick a new --out, or pass --force"):
        prepare_run_dir(old)
    assert (old / "requests.jsonl").read_text() == "old"
    prepare_run_dir(old, overwrite=True)
    assert sorted(p.name for p in old.iterdir()) == [RESERVE, "notes.txt"]
    discard_run_dir(old, created=False)
    assert sorted(p.name for p in old.iterdir()) == ["notes.txt"]
