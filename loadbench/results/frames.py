"""Run and study directories read back as tables and histograms, for reports and notebooks.

    >>> from loadbench.results import load_run, load_study
    >>> run = load_run("results/decode_burst-20260101T000000Z")
    >>> run.requests                       # pandas DataFrame, one row per scheduled request
    >>> run.histograms["ttft_ms"]          # HdrHistogram of the whole measured window (microseconds)
    >>> run.percentile("ttft_ms", 99.9)    # milliseconds
    >>> study = load_study("studies/matrix")
    >>> study.cells                        # DataFrame of cells.csv; study.run(cell_id) loads one cell

Contracts:

* Nothing here needs pandas except the DataFrame properties (``requests``, ``children``,
  ``energy``, ``intervals``, ``cells``, ``probes``); they import it on first use and say which extra
  to install when it is missing. ``columns`` / ``child_columns`` give the same data as numpy arrays,
  which is what the HTML report uses.
* ``requests`` holds scheduled requests only. Hybrid child calls (lines with a ``parent`` key) are in
  ``children``, linked by ``parent`` to the parent's ``request_id``, and never counted as requests.
* Times: the raw ``*_ns`` stamps are kept; ``*_s`` columns are seconds since the run's clock anchor
  (``run.json``'s ``clock.perf_counter_ns``), NaN where a stamp is missing (e.g. no first token).
* Histograms come from ``metrics.hlog`` (the measured window only, exactly what the summary was
  computed from), keyed by the summary's metric keys, values in the histogram's integer unit
  (microseconds for latencies, thousandths of a token/s for the decode rate).
* A missing or unreadable file raises ``LoadbenchError`` naming the file.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from hdrh.histogram import HdrHistogram

from loadbench.contract.errors import LoadbenchError
from loadbench.metrics.hdr import fast_percentiles, new_histogram
from loadbench.metrics.recorder import METRIC_BY_TAG

_NS_FIELDS = ("intended_ns", "sent_ns", "first_token_ns", "first_answer_ns", "end_ns")
_FLOAT_FIELDS = (
    "dispatch_lag_ms", "ttft_ms", "ttft_from_schedule_ms", "time_to_first_answer_ms", "e2e_ms",
    "e2e_from_schedule_ms",
)
_INT_FIELDS = (
    "index", "output_tokens", "input_tokens", "reasoning_tokens", "chunks", "target_input_tokens",
    "target_output_tokens", "user", "http_status", "children", "round",
)
_STR_FIELDS = ("request_id", "phase", "status", "error", "parent", "role", "job")


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:  # pragma: no cover - depends on the environment
        raise LoadbenchError(
            "pandas is not installed: the DataFrame views need the analysis extra "
            "(pip install 'loadbench[analysis]'); .columns gives numpy arrays without it"
        ) from None
    return pandas


def _read_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise LoadbenchError(f"{path}: missing") from None
    except orjson.JSONDecodeError as exc:
        raise LoadbenchError(f"{path}: not valid JSON ({exc})") from None


@dataclass(frozen=True)
class Interval:
    """One interval of metrics.hlog: ``start_s``/``end_s`` relative to the log's start time."""

    key: str
    start_s: float
    end_s: float
    histogram: HdrHistogram


def read_hlog(path: str | Path) -> list[Interval]:
    """Every tagged interval of an HdrHistogram log written by loadbench, in file order.

    Tags are mapped to summary keys (``ttft_us`` -> ``ttft_ms``); unknown tags keep their name.
    """
    path = Path(path)
    out: list[Interval] = []
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise LoadbenchError(f"{path}: missing") from None
    except UnicodeDecodeError:
        raise LoadbenchError(f"{path}: not an HdrHistogram log (non-ASCII bytes)") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.startswith("Tag="):
            continue  # headers, comments, the column legend, untagged lines
        try:
            tag_part, start, length, _max, payload = line.split(",", 4)
            tag = tag_part[4:]
            hist = HdrHistogram.decode(payload.encode("ascii"))
            start_s = float(start)
            end_s = start_s + float(length)
        except Exception as exc:  # a torn last line of a killed run, or a foreign log
            raise LoadbenchError(f"{path}:{lineno}: unreadable interval line ({exc.__class__.__name__})") from None
        metric = METRIC_BY_TAG.get(tag)
        out.append(Interval(metric.key if metric else tag, start_s, end_s, hist))
    return out


def _merge(histograms: Sequence[HdrHistogram]) -> HdrHistogram:
    total = new_histogram()
    for h in histograms:
        if h.total_count:
            total.add(h)
    return total


def _column(values: list[Any], kind: str) -> np.ndarray:
    if kind == "ns":
        return np.array([v or 0 for v in values], dtype=np.int64)
    if kind == "float":
        return np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    if kind == "int":  # missing -> -1 so the column stays integer; DataFrames get a nullable Int64
        return np.array([-1 if v is None else int(v) for v in values], dtype=np.int64)
    return np.array(["" if v is None else str(v) for v in values], dtype=object)


def _columns(rows: list[dict[str, Any]], anchor_ns: int) -> dict[str, np.ndarray]:
    cols: dict[str, np.ndarray] = {}
    for name in _NS_FIELDS:
        cols[name] = _column([r.get(name) for r in rows], "ns")
    for name in _FLOAT_FIELDS:
        cols[name] = _column([r.get(name) for r in rows], "float")
    for name in _INT_FIELDS:
        cols[name] = _column([r.get(name) for r in rows], "int")
    for name in _STR_FIELDS:
        cols[name] = _column([r.get(name) for r in rows], "str")
    for name in _NS_FIELDS:
        raw = cols[name]
        cols[name[:-3] + "_s"] = np.where(raw > 0, (raw - anchor_ns) / 1e9, np.nan)
    cols["tpot_ms"] = _tpot_ms(cols)
    return cols


def _tpot_ms(cols: dict[str, np.ndarray]) -> np.ndarray:
    n = cols["output_tokens"]
    span = (cols["end_ns"] - cols["first_token_ns"]) / 1e6
    ok = (cols["status"] == "ok") & (cols["first_token_ns"] > 0) & (n > 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, span / np.maximum(n - 1, 1), np.nan)


@dataclass
class RunData:
    """One run directory: run.json, summary.json, requests.jsonl, metrics.hlog, energy.csv."""

    path: Path
    run: dict[str, Any]
    summary: dict[str, Any]
    _rows: list[dict[str, Any]] = field(repr=False)
    _children: list[dict[str, Any]] = field(repr=False)
    chunks: ChunkTimes = field(repr=False, default_factory=lambda: ChunkTimes(*(np.zeros(0, np.int64),) * 3))

    @property
    def name(self) -> str:
        """The scenario's name, or the directory's when run.json has none."""
        return str(self.summary.get("scenario") or self.run.get("scenario", {}).get("name") or self.path.name)

    @property
    def anchor_ns(self) -> int:
        """The ``perf_counter_ns`` stamp that ``*_s`` columns count from (the run's start)."""
        return int(self.run.get("clock", {}).get("perf_counter_ns") or 0) or self._first_stamp()

    def _first_stamp(self) -> int:
        stamps = [r.get("intended_ns") or 0 for r in self._rows[:1000]]
        return min((s for s in stamps if s), default=0)

    @cached_property
    def columns(self) -> dict[str, np.ndarray]:
        """Scheduled requests as numpy columns (see the module docstring for units)."""
        return _columns(self._rows, self.anchor_ns)

    @cached_property
    def child_columns(self) -> dict[str, np.ndarray]:
        """Hybrid child calls as numpy columns; empty arrays when the run has none."""
        return _columns(self._children, self.anchor_ns)

    @property
    def records(self) -> list[dict[str, Any]]:
        """requests.jsonl's objects for scheduled requests (children excluded), without
        ``chunk_offsets_us`` (see ``chunks``) and ``text`` (see ``lines()``)."""
        return self._rows

    def lines(self) -> Iterator[dict[str, Any]]:
        """Every line of requests.jsonl as written, children and answer texts included, streamed."""
        with open(self.path / "requests.jsonl", "rb") as f:
            for line in f:
                if line.strip():
                    with contextlib.suppress(orjson.JSONDecodeError):  # a torn last line
                        yield orjson.loads(line)

    @property
    def child_records(self) -> list[dict[str, Any]]:
        return self._children

    @property
    def requests(self) -> Any:
        """A DataFrame of the scheduled requests, one row each, in file (finish) order."""
        return self._frame(self.columns)

    @property
    def children(self) -> Any:
        """A DataFrame of hybrid child calls (``parent`` = the parent's ``request_id``)."""
        return self._frame(self.child_columns)

    def _frame(self, cols: dict[str, np.ndarray]) -> Any:
        pd = _pandas()
        data: dict[str, Any] = {}
        for name, col in cols.items():
            if name in _INT_FIELDS:
                data[name] = pd.arrays.IntegerArray(np.where(col < 0, 0, col), mask=col < 0)
            elif col.dtype == object:
                data[name] = pd.array(np.where(col == "", None, col), dtype="string")
            else:
                data[name] = col
        return pd.DataFrame(data)

    @cached_property
    def intervals(self) -> list[Interval]:
        """metrics.hlog's intervals; empty when the run has no hlog."""
        path = self.path / "metrics.hlog"
        return read_hlog(path) if path.exists() else []

    @cached_property
    def histograms(self) -> dict[str, HdrHistogram]:
        """Whole-run histograms per metric key, merged from every interval."""
        by_key: dict[str, list[HdrHistogram]] = {}
        for iv in self.intervals:
            by_key.setdefault(iv.key, []).append(iv.histogram)
        return {k: _merge(v) for k, v in by_key.items()}

    def percentile(self, key: str, percentile: float) -> float | None:
        """``key``'s percentile over the measured window, in the summary's unit (ms, tok/s)."""
        return self.percentiles(key, [percentile])[0]

    def percentiles(self, key: str, percentiles: Sequence[float]) -> list[float | None]:
        hist = self.histograms.get(key)
        if hist is None or not hist.total_count:
            return [None] * len(percentiles)
        tag = next((t for t, m in METRIC_BY_TAG.items() if m.key == key), None)
        scale = METRIC_BY_TAG[tag].scale if tag else 1.0
        return [None if v is None else v / scale for v in fast_percentiles([hist], percentiles)]

    @property
    def interval_table(self) -> Any:
        """A DataFrame: one row per (metric, interval) with count, p50, p90, p99, max in summary units."""
        pd = _pandas()
        rows = []
        scales = {m.key: m.scale for m in METRIC_BY_TAG.values()}
        for iv in self.intervals:
            scale = scales.get(iv.key, 1.0)
            h = iv.histogram
            n = h.total_count
            p50, p90, p99 = fast_percentiles([h], [50, 90, 99]) if n else (None, None, None)
            rows.append({
                "metric": iv.key, "start_s": iv.start_s, "end_s": iv.end_s, "count": n,
                "p50": None if p50 is None else p50 / scale, "p90": None if p90 is None else p90 / scale,
                "p99": None if p99 is None else p99 / scale, "max": h.get_max_value() / scale if n else None,
            })
        return pd.DataFrame(rows)

    @cached_property
    def energy_rows(self) -> list[dict[str, str]]:
        """energy.csv's rows as strings (empty when energy was not measured)."""
        path = self.path / "energy.csv"
        if not path.exists():
            return []
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    @property
    def energy(self) -> Any:
        """A DataFrame of energy.csv's samples (empty when energy was not measured)."""
        pd = _pandas()
        path = self.path / "energy.csv"
        return pd.read_csv(path) if path.exists() else pd.DataFrame()

    def power_series(self) -> list[dict[str, Any]]:
        """Mean power per sampling step for each (source, channel): ``{label, kind, t_s, watts}``.

        Computed from the cumulative joules each sample carries, so counters, instantaneous and
        interval power channels all give the same shape. ``t_s`` is relative to the run's anchor.
        """
        by_channel: dict[tuple[str, str], list[tuple[int, float, str]]] = {}
        for row in self.energy_rows:
            if row.get("error"):
                continue
            try:
                by_channel.setdefault((row["source"], row["channel"]), []).append(
                    (int(row["t_ns"]), float(row["cumulative_j"]), row.get("kind", ""))
                )
            except (KeyError, ValueError):
                raise LoadbenchError(
                    f"{self.path / 'energy.csv'}: a row lacks t_ns/cumulative_j numbers ({row})"
                ) from None
        out = []
        anchor = self.anchor_ns
        for (source, channel), samples in sorted(by_channel.items()):
            samples.sort()
            t = np.array([s[0] for s in samples], dtype=np.int64)
            j = np.array([s[1] for s in samples])
            if t.size < 2:
                continue
            dt = np.diff(t) / 1e9
            keep = dt > 0
            watts = np.diff(j)[keep] / dt[keep]
            mid = ((t[1:] + t[:-1]) / 2)[keep]
            out.append({
                "label": f"{source}: {channel}", "kind": samples[0][2],
                "t_s": (mid - anchor) / 1e9, "watts": watts,
            })
        return out


@dataclass(frozen=True)
class ChunkTimes:
    """Token-bearing chunk times of the requests that kept them, packed flat (8 bytes a chunk).

    Request ``rows[k]`` (an index into ``RunData.records``) has ``counts[k]`` chunks, whose offsets
    from its ``sent_ns`` in µs are the next ``counts[k]`` values of ``offsets_us``.
    """

    rows: np.ndarray
    counts: np.ndarray
    offsets_us: np.ndarray

    def __len__(self) -> int:
        return int(self.rows.size)


_FLUSH_CHUNKS = 1_000_000  # pack parsed offsets into numpy every million, so Python lists never pile up


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], ChunkTimes]:
    """Scheduled requests, child calls and chunk times; ``chunk_offsets_us`` and ``text`` are taken
    out of the line objects (packed, and dropped), so a long run's answers never sit in memory."""
    rows: list[dict[str, Any]] = []
    children: list[dict[str, Any]] = []
    chunk_rows: list[int] = []
    chunk_counts: list[int] = []
    packed: list[np.ndarray] = []
    pending: list[list[int]] = []
    pending_n = 0
    try:
        f = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise LoadbenchError(f"{path}: missing") from None
    torn = 0  # the line number of an unparsable line: forgiven only if nothing follows it
    with f:
        for lineno, line in enumerate(f, 1):  # streamed: the file is never held whole
            if not line.strip():
                continue
            if torn:  # something came after the bad line: not a torn end, a broken file
                raise LoadbenchError(f"{path}:{torn}: not a JSON object")
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                torn = lineno  # a killed run's torn last line, if no line follows
                continue
            if not isinstance(obj, dict):
                raise LoadbenchError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            offsets = obj.pop("chunk_offsets_us", None)
            obj.pop("text", None)
            if obj.get("parent"):
                children.append(obj)
                continue
            if offsets:
                chunk_rows.append(len(rows))
                chunk_counts.append(len(offsets))
                pending.append(offsets)
                pending_n += len(offsets)
                if pending_n >= _FLUSH_CHUNKS:
                    packed.append(np.fromiter(itertools.chain.from_iterable(pending), np.int64, pending_n))
                    pending, pending_n = [], 0
            rows.append(obj)
    if pending:
        packed.append(np.fromiter(itertools.chain.from_iterable(pending), np.int64, pending_n))
    chunks = ChunkTimes(np.array(chunk_rows, dtype=np.int64), np.array(chunk_counts, dtype=np.int64),
                        np.concatenate(packed) if packed else np.zeros(0, dtype=np.int64))
    return rows, children, chunks


def is_run_dir(path: Path) -> bool:
    return (path / "run.json").is_file() and (path / "requests.jsonl").is_file()


def is_study_dir(path: Path) -> bool:
    return (path / "study.json").is_file()


def load_run(path: str | Path) -> RunData:
    """Read a run directory (finished, or interrupted with its summary written)."""
    path = Path(path)
    if not path.is_dir():
        raise LoadbenchError(f"{path}: not a directory")
    if not (path / "run.json").is_file():
        raise LoadbenchError(f"{path}: not a run directory (run.json missing)")
    run = _read_json(path / "run.json")
    summary_path = path / "summary.json"
    if not summary_path.is_file():
        raise LoadbenchError(f"{path}: the run has no summary.json (still running, or killed before the end)")
    summary = _read_json(summary_path)
    rows, children, chunks = _read_jsonl(path / "requests.jsonl")
    return RunData(path=path, run=run, summary=summary, _rows=rows, _children=children, chunks=chunks)


_CELL_NUMERIC = (
    "ttft_ms_p50", "ttft_ms_p99", "e2e_ms_p50", "e2e_ms_p99", "itl_ms_p50", "itl_ms_p99", "tpot_ms_p50",
    "tpot_ms_p99", "requests_per_s", "output_tokens_per_s", "goodput_per_s", "slo_attainment", "errors",
    "energy_j_per_request", "energy_j_per_token", "cost_usd_per_request",
)


def _number(text: str | None) -> float:
    if text is None or text.strip() == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.nan


@dataclass
class StudyData:
    """A study directory: study.json, cells.csv and (for a capacity search) capacity.json."""

    path: Path
    study: dict[str, Any]
    cell_rows: list[dict[str, Any]]
    capacity: dict[str, Any] | None

    @property
    def kind(self) -> str:
        return str(self.study.get("kind", "study"))

    @property
    def name(self) -> str:
        return str(self.study.get("name") or self.path.name)

    @property
    def varied(self) -> list[str]:
        """The varied fields, in study.json's order."""
        return list(self.study.get("vary") or {})

    @property
    def cells(self) -> Any:
        """A DataFrame of cells.csv, figures as floats (NaN where a cell has none)."""
        pd = _pandas()
        return pd.DataFrame(self.cell_rows)

    @property
    def probes(self) -> Any:
        """A DataFrame of the capacity search's probes (empty for other studies)."""
        pd = _pandas()
        probes = (self.capacity or {}).get("probes") or []
        return pd.DataFrame([{k: v for k, v in p.items() if k != "figures"} for p in probes])

    def run_dir(self, cell_id: str) -> Path | None:
        for cell in self.study.get("cells") or []:
            if cell.get("id") == cell_id and cell.get("run_dir"):
                return self.path / cell["run_dir"]
        return None

    def run(self, cell_id: str) -> RunData:
        """One cell's run directory, loaded."""
        path = self.run_dir(cell_id)
        if path is None:
            raise LoadbenchError(f"{self.path / 'study.json'}: no cell {cell_id!r} with a run_dir")
        return load_run(path)


def load_study(path: str | Path) -> StudyData:
    """Read a study, sweep or capacity directory (study.json, cells.csv, capacity.json)."""
    path = Path(path)
    study = _read_json(path / "study.json")
    if not isinstance(study, dict) or not isinstance(study.get("cells", []), list):
        raise LoadbenchError(f"{path / 'study.json'}: expected an object with a 'cells' list")
    rows: list[dict[str, Any]] = []
    csv_path = path / "cells.csv"
    if csv_path.is_file():
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "id" not in reader.fieldnames:
                raise LoadbenchError(f"{csv_path}: expected a header row starting with 'id'")
            for row in reader:
                out: dict[str, Any] = {}
                for k, v in row.items():
                    out[k] = _number(v) if k in _CELL_NUMERIC else v
                rows.append(out)
    capacity = _read_json(path / "capacity.json") if (path / "capacity.json").is_file() else None
    return StudyData(path=path, study=study, cell_rows=rows, capacity=capacity)


def load(path: str | Path) -> RunData | StudyData:
    """A run or a study directory, whichever ``path`` is."""
    p = Path(path)
    if is_study_dir(p):
        return load_study(p)
    return load_run(p)
