"""A summary rebuilt from requests.jsonl, for a run that was killed before it wrote summary.json.

Each line holds the raw stamps of one request, so the recorder can count it again exactly as the
run did: the same histograms, the same window, the same accounting. What is lost with the
process: chunk stamps are the line's microsecond offsets (so inter-token gaps may differ from the
run's by 1 µs), lines written without chunk times give no ITL, and the parts of the summary that
lived only in memory (length targets, server timings, energy, SLO verdicts) are absent. Hybrid
child lines (``parent`` set) are not requests the run scheduled and are skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from loadbench.contract.errors import LoadbenchError
from loadbench.contract.record import RequestRecord
from loadbench.metrics.recorder import Recorder
from loadbench.metrics.summary import build_summary
from loadbench.results.run import RunResult
from loadbench.results.run_dir import write_json


def _run_json(run_dir: Path) -> dict[str, Any]:
    """run.json, or {} when the run died before writing it or it is unreadable."""
    try:
        return orjson.loads((run_dir / "run.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}


def record_from_json(line: dict[str, Any]) -> RequestRecord:
    """The ``RequestRecord`` a requests.jsonl line was written from (see ``records.record_to_json``)."""
    r = RequestRecord(
        index=line["index"],
        request_id=line["request_id"],
        intended_ns=line["intended_ns"],
        phase=line.get("phase", "measured"),
        user=line.get("user", -1),
        sent_ns=line.get("sent_ns") or 0,
        first_token_ns=line.get("first_token_ns") or 0,
        first_answer_ns=line.get("first_answer_ns") or 0,
        end_ns=line.get("end_ns") or 0,
        reasoning_chunks=line.get("reasoning_chunks") or 0,
        input_tokens=line.get("input_tokens"),
        target_input_tokens=line.get("target_input_tokens"),
        target_output_tokens=line.get("target_output_tokens"),
        status=line["status"],
        error=line.get("error"),
        error_detail=line.get("error_detail"),
        http_status=line.get("http_status"),
    )
    offsets = line.get("chunk_offsets_us")
    if offsets is not None and r.sent_ns:
        r.chunk_ns = [r.sent_ns + off * 1000 for off in offsets]
    if line.get("output_tokens_reported") or offsets is None:
        r.output_tokens = line.get("output_tokens")
    if line.get("reasoning_tokens_reported"):
        r.reasoning_tokens = line.get("reasoning_tokens")
    return r


def rebuild_summary(run_dir: str | Path) -> dict[str, Any]:
    """The summary of ``run_dir`` recomputed from its requests.jsonl (and run.json, if any).

    A last line cut short (the process killed mid-write) is skipped and counted in
    ``rebuilt.unreadable_lines``; a bad line elsewhere is an error naming it.
    """
    run_dir = Path(run_dir)
    path = run_dir / "requests.jsonl"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoadbenchError(f"{path}: cannot read ({exc.strerror or exc})") from None
    run = _run_json(run_dir)
    recorder = Recorder()
    lines = data.splitlines()
    scheduled = unreadable = skipped = 0
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
            if line.get("parent") is not None:
                skipped += 1
                continue
            record = record_from_json(line)
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            if n == len(lines):
                unreadable += 1
                continue
            raise LoadbenchError(f"{path}:{n}: not a request record ({exc})") from None
        recorder.add(record)
        scheduled += 1
    recorder.rotate()
    summary: dict[str, Any] = {
        "scenario": (run.get("scenario") or {}).get("name"),
        "target": run.get("target"),
        "stopped_by": run.get("stopped_by"),
        "run_duration_s": None,
    }
    summary.update(build_summary(recorder, scheduled=scheduled))
    summary["rebuilt"] = {
        "from": "requests.jsonl",
        "records": scheduled,
        "child_records_skipped": skipped,
        "unreadable_lines": unreadable,
        "note": "recomputed after the run; lengths, server timings, energy and goodput are not in the records",
    }
    return summary


def load_or_rebuild(run_dir: str | Path) -> tuple[RunResult, bool]:
    """The run at ``run_dir``; when its summary.json is missing but its records are there, the
    summary is rebuilt from them and written. Returns ``(result, rebuilt)``."""
    run_dir = Path(run_dir)
    if run_dir.is_dir() and not (run_dir / "summary.json").exists() and (run_dir / "requests.jsonl").is_file():
        summary = rebuild_summary(run_dir)
        write_json(run_dir / "summary.json", summary)
        return RunResult(path=run_dir, summary=summary, run=_run_json(run_dir)), True
    return RunResult.load(run_dir), False
