"""Drift: the first and the last window of a run, side by side, in bounded memory.

A soak test asks whether the system (or the harness) got worse as the run went on. The tracker is
fed every closed recorder interval (the same intervals metrics.hlog holds) and keeps only

* the first ``window_s`` seconds of measured activity, folded into one histogram per metric, and
* the most recent intervals covering ``window_s`` seconds, each as its non-zero histogram buckets,

so its memory depends on the window and the interval, never on the number of requests.

The summary's ``drift`` section holds both windows' figures and the change between them:
latency percentiles and throughput as ratios (last / first: ``drift.ttft_ms.p99 < 1.2`` allows
20% worse), the error rate as a difference (last - first, a share of requests).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from loadbench.metrics.hdr import fast_percentiles, new_histogram
from loadbench.metrics.recorder import METRIC_BY_KEY, IntervalCounts

#: The latency metrics compared between windows.
DRIFT_METRICS = ("ttft_ms", "tpot_ms", "e2e_ms")
_PERCENTILES = (50.0, 99.0)


@dataclass(slots=True)
class _Interval:
    start_ns: int
    end_ns: int
    counts: IntervalCounts
    buckets: dict[str, tuple[np.ndarray, np.ndarray]]  # tag -> (indices, counts), non-zero only


class _Window:
    """A sum of intervals: counts and one histogram per drift metric."""

    def __init__(self) -> None:
        self.start_ns = 0
        self.end_ns = 0
        self.ok = self.failed = self.output_tokens = 0
        self.hists: dict[str, HdrHistogram] = {}

    def add(self, interval: _Interval) -> None:
        if not self.start_ns:
            self.start_ns = interval.start_ns
        self.end_ns = interval.end_ns
        self.ok += interval.counts.ok
        self.failed += interval.counts.failed
        self.output_tokens += interval.counts.output_tokens
        for tag, (index, counts) in interval.buckets.items():
            hist = self.hists.get(tag)
            if hist is None:
                hist = self.hists[tag] = new_histogram()
            np.add.at(np.ctypeslib.as_array(hist.counts), index, counts)
            hist.total_count += int(counts.sum())

    def report(self, origin_ns: int, start_ns: int, end_ns: int) -> dict[str, Any]:
        duration_s = max(0.0, (end_ns - start_ns) / 1e9)
        finished = self.ok + self.failed
        out: dict[str, Any] = {
            "start_s": (start_ns - origin_ns) / 1e9,
            "end_s": (end_ns - origin_ns) / 1e9,
            "completed": self.ok,
            "failed": self.failed,
            "error_rate": self.failed / finished if finished else None,
            "requests_per_s": self.ok / duration_s if duration_s else None,
            "output_tokens_per_s": self.output_tokens / duration_s if duration_s else None,
        }
        for key in DRIFT_METRICS:
            metric = METRIC_BY_KEY[key]
            hist = self.hists.get(metric.tag)
            values = fast_percentiles([hist], _PERCENTILES) if hist is not None else [None, None]
            out[key] = {
                f"p{q:g}": (None if v is None else v / metric.scale) for q, v in zip(_PERCENTILES, values, strict=True)
            }
        return out


def _ratio(last: float | None, first: float | None) -> float | None:
    return last / first if last is not None and first else None


class DriftTracker:
    """Feed it ``Recorder(on_interval=tracker.add)``; ``report()`` gives the summary's ``drift``."""

    def __init__(self, window_s: float) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s!r}")
        self.window_ns = int(window_s * 1e9)
        self._tags = tuple(METRIC_BY_KEY[k].tag for k in DRIFT_METRICS)
        self._first = _Window()
        self._first_done = False
        self._recent: deque[_Interval] = deque()
        self._active_start_ns = 0
        self._active_end_ns = 0

    def add(self, start_ns: int, end_ns: int, hists: dict[str, HdrHistogram], counts: IntervalCounts) -> None:
        """Take one closed interval (only those in which measured requests finished count)."""
        if not (counts.ok or counts.failed):
            return
        buckets = {}
        for tag in self._tags:
            hist = hists[tag]
            if hist.total_count:
                arr = np.ctypeslib.as_array(hist.counts)
                index = np.flatnonzero(arr)
                buckets[tag] = (index, arr[index].astype(np.int64))
        interval = _Interval(start_ns, end_ns, counts, buckets)
        if not self._active_start_ns:
            self._active_start_ns = start_ns
        self._active_end_ns = end_ns
        if not self._first_done:
            self._first.add(interval)
            self._first_done = end_ns - self._first.start_ns >= self.window_ns
        self._recent.append(interval)
        while len(self._recent) > 1 and end_ns - self._recent[1].start_ns >= self.window_ns:
            self._recent.popleft()

    def report(self, *, origin_ns: int, first_ns: int = 0, last_ns: int = 0) -> dict[str, Any]:
        """The ``drift`` section. ``origin_ns`` is the run's start (window times are seconds after
        it); ``first_ns``/``last_ns`` clip the windows to the measured window's ends, so time before
        the first measured request or after the last does not dilute throughput."""
        empty = _Window().report(origin_ns, origin_ns, origin_ns)
        empty.update(start_s=None, end_s=None)
        out: dict[str, Any] = {
            "window_s": self.window_ns / 1e9,
            "first": empty,
            "last": dict(empty),
            **{key: {f"p{q:g}": None for q in _PERCENTILES} for key in DRIFT_METRICS},
            "throughput": {"requests_per_s": None, "output_tokens_per_s": None},
            "error_rate": None,
            "note": None,
        }
        span_ns = self._active_end_ns - self._active_start_ns
        if not self._first_done or not self._recent or self._recent[0].start_ns < self._first.end_ns:
            measured_s = max(0, span_ns) / 1e9
            out["note"] = (
                f"too short for drift: {measured_s:.0f} s measured, two windows of {self.window_ns / 1e9:g} s needed"
            )
            return out
        last = _Window()
        for interval in self._recent:
            last.add(interval)
        first_start = max(self._first.start_ns, first_ns) if first_ns else self._first.start_ns
        last_end = min(last.end_ns, last_ns) if last_ns else last.end_ns
        a = self._first.report(origin_ns, first_start, self._first.end_ns)
        b = last.report(origin_ns, last.start_ns, last_end)
        out["first"], out["last"] = a, b
        for key in DRIFT_METRICS:
            out[key] = {p: _ratio(b[key][p], a[key][p]) for p in a[key]}
        out["throughput"] = {k: _ratio(b[k], a[k]) for k in ("requests_per_s", "output_tokens_per_s")}
        if a["error_rate"] is not None and b["error_rate"] is not None:
            out["error_rate"] = b["error_rate"] - a["error_rate"]
        return out


def default_window_s(duration_s: float | None, interval_s: float) -> float:
    """A tenth of a timed run, between one interval and 60 s; 60 s when the run is not timed."""
    if duration_s is None:
        return max(60.0, interval_s)
    return max(interval_s, min(60.0, duration_s / 10))
