"""The hot-path recorder: turns each finished RequestRecord into histogram counts and counters.

``add()`` runs on the event loop once per finished request; it does arithmetic and histogram
updates only (no I/O, no percentiles). Values go into *interval* histograms; ``rotate()`` (called
every few seconds by the results writer) folds them into the run totals and hands them over for the
HdrHistogram interval log. Percentiles are computed only by ``snapshot()`` (the live display) and by
the summary, from the totals, so the log and the summary hold the same counts by construction.

Only requests intended in the measured window feed the histograms; warm-up and cool-down requests
are counted (and kept in requests.jsonl) but not summarised.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from hdrh.histogram import HdrHistogram

from loadbench.contract.record import RequestRecord
from loadbench.metrics.hdr import HIGHEST_US, add_into, clear, fast_percentiles, new_histogram, record, record_gaps_us


@dataclass(frozen=True, slots=True)
class Metric:
    """One histogram: ``tag`` names it in metrics.hlog (integer ``unit``), ``key`` in summary.json."""

    tag: str
    key: str
    scale: float  # summary value = histogram value / scale
    description: str


# Latencies are held in integer microseconds; the decode rate in thousandths of a token per second.
METRICS: tuple[Metric, ...] = (
    Metric("ttft_us", "ttft_ms", 1e3, "first token - sent"),
    Metric("ttft_from_schedule_us", "ttft_from_schedule_ms", 1e3, "first token - intended"),
    Metric("time_to_first_answer_us", "time_to_first_answer_ms", 1e3, "first answer token - sent"),
    Metric("e2e_us", "e2e_ms", 1e3, "end - sent"),
    Metric("e2e_from_schedule_us", "e2e_from_schedule_ms", 1e3, "end - intended"),
    Metric("itl_us", "itl_ms", 1e3, "gap between successive token-bearing chunks, pooled"),
    Metric("tpot_us", "tpot_ms", 1e3, "(end - first token) / (output tokens - 1)"),
    Metric("decode_mtok_per_s", "decode_tokens_per_s", 1e3, "1 / tpot"),
    Metric("dispatch_lag_us", "dispatch_lag_ms", 1e3, "sent - intended"),
)
METRIC_BY_TAG = {m.tag: m for m in METRICS}
METRIC_BY_KEY = {m.key: m for m in METRICS}


def tpot_ns(r: RequestRecord) -> float | None:
    """The request's time per output token after the first, in ns: (end - first token) / (output
    tokens - 1), the one definition behind the ``tpot_ms`` histogram and the ``tpot_ms`` SLO.
    ``None`` where there is no decode to time: no first token, under two output tokens, or no
    time between the first token and the end."""
    first, n = r.first_token_ns, r.output_tokens_used
    if not first or n < 2:
        return None
    decode_ns = r.end_ns - first
    return decode_ns / (n - 1) if decode_ns > 0 else None


@dataclass(frozen=True, slots=True)
class IntervalCounts:
    """Measured requests that finished in one interval: ``ok``, ``failed``, and output tokens."""

    ok: int = 0
    failed: int = 0
    output_tokens: int = 0


# Called by ``rotate`` with (start_ns, end_ns, histograms, counts) of each closed interval.
IntervalObserver = Callable[[int, int, "dict[str, HdrHistogram]", IntervalCounts], None]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the live display shows; made on the loop a few times a second, read from any thread."""

    elapsed_s: float
    completed: int
    failed: int
    cancelled: int
    output_tokens_per_s: float
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None


class Recorder:
    """Histograms and counters for one run. Used from the event loop thread only."""

    def __init__(self, *, on_interval: IntervalObserver | None = None) -> None:
        self._on_interval = on_interval
        self._interval_ok = self._interval_failed = self._interval_tokens = 0
        self.totals: dict[str, HdrHistogram] = {m.tag: new_histogram() for m in METRICS}
        # Two interval sets, used in turn (see ``rotate``): histograms are never made during a run.
        self._interval: dict[str, HdrHistogram] = {m.tag: new_histogram() for m in METRICS}
        self._spare: dict[str, HdrHistogram] = {m.tag: new_histogram() for m in METRICS}
        self.interval_start_ns = time.perf_counter_ns()
        self.status = Counter[str]()
        self.status_by_phase = Counter[tuple[str, str]]()
        self.errors = Counter[str]()
        self.cancelled_in = Counter[str]()  # what cancelled requests were waiting for
        # Measured-window totals.
        self.measured_output_tokens = 0
        self.measured_input_tokens = 0
        self.measured_reasoning_tokens = 0
        self.measured_output_reported = 0  # ok requests whose output count came from the server
        self.measured_input_reported = 0
        self.measured_ok = 0
        self.window_first_intended_ns = 0
        self.window_last_end_ns = 0
        # Rolling output tokens/s for the live display: (end_ns, tokens) of recent completions.
        self._recent: deque[tuple[int, int]] = deque()
        self._recent_tokens = 0
        # TTFT of every phase, for the live display only (warm-up included: it is what the
        # user watches happen), never summarised.
        self._live_ttft = new_histogram()

    def add(self, r: RequestRecord) -> None:
        """Count one finished request and, if measured, record its latencies."""
        status = r.status
        self.status[status] += 1
        self.status_by_phase[(r.phase, status)] += 1
        if r.error is not None:
            self.errors[r.error] += 1
        if r.cancelled_in is not None:
            self.cancelled_in[r.cancelled_in] += 1
        n_out = r.output_tokens_used
        if status == "ok":
            self._recent.append((r.end_ns, n_out))
            self._recent_tokens += n_out
            if r.first_token_ns:
                record(self._live_ttft, (r.first_token_ns - r.sent_ns) // 1000)
        if r.phase != "measured":
            return
        h = self._interval
        # The measured window spans every measured request, whatever its outcome: were failures
        # left out, a run whose server stopped answering would report its throughput over the
        # time it still answered (inflated), or a single success over its own latency.
        if not self.window_first_intended_ns or r.intended_ns < self.window_first_intended_ns:
            self.window_first_intended_ns = r.intended_ns
        if r.end_ns > self.window_last_end_ns:
            self.window_last_end_ns = r.end_ns
        if r.sent_ns:
            record(h["dispatch_lag_us"], (r.sent_ns - r.intended_ns) // 1000)
        if status != "ok":
            if status == "failed":
                self._interval_failed += 1
            return
        self.measured_ok += 1
        self._interval_ok += 1
        self._interval_tokens += n_out
        self.measured_output_tokens += n_out
        if r.output_tokens is not None:
            self.measured_output_reported += 1
        if r.input_tokens is not None:
            self.measured_input_tokens += r.input_tokens
            self.measured_input_reported += 1
        self.measured_reasoning_tokens += r.reasoning_tokens_used
        record(h["e2e_us"], (r.end_ns - r.sent_ns) // 1000)
        record(h["e2e_from_schedule_us"], (r.end_ns - r.intended_ns) // 1000)
        first = r.first_token_ns
        if not first:
            return
        record(h["ttft_us"], (first - r.sent_ns) // 1000)
        record(h["ttft_from_schedule_us"], (first - r.intended_ns) // 1000)
        if r.first_answer_ns:
            record(h["time_to_first_answer_us"], (r.first_answer_ns - r.sent_ns) // 1000)
        chunks = r.chunk_ns
        if len(chunks) > 1:
            record_gaps_us(h["itl_us"], chunks)
        tpot = tpot_ns(r)
        if tpot is not None:
            # int() of the exact quotient's nearest float is its floor: ns spans are far below the
            # 2**53 where a float quotient could round up to the next whole ns.
            record(h["tpot_us"], int(tpot) // 1000)
            record(h["decode_mtok_per_s"], (n_out - 1) * 1_000_000_000_000 // (r.end_ns - first))

    def rotate(self, now_ns: int | None = None) -> tuple[int, int, dict[str, HdrHistogram]]:
        """Close the current interval: fold it into the totals and return (start_ns, end_ns, hists).

        The returned histograms stay as they are until the next ``rotate``, which empties them
        and records into them again. Reusing two sets keeps memory flat in run length: each
        ``HdrHistogram`` references its encoder and back, and with the run's raised collector
        thresholds (``experiment._calm_gc``) a fresh set per interval was never freed (~350 KB/s).
        """
        now_ns = time.perf_counter_ns() if now_ns is None else now_ns
        closed, spare = self._interval, self._spare
        for tag, hist in closed.items():
            add_into(self.totals[tag], hist)
        for hist in spare.values():
            clear(hist)
        self._interval, self._spare = spare, closed
        start_ns, self.interval_start_ns = self.interval_start_ns, now_ns
        if self._on_interval is not None:
            counts = IntervalCounts(self._interval_ok, self._interval_failed, self._interval_tokens)
            self._on_interval(start_ns, now_ns, closed, counts)
        self._interval_ok = self._interval_failed = self._interval_tokens = 0
        return start_ns, now_ns, closed

    def count_above(self, key: str, value: float) -> int:
        """Measured values of metric ``key`` (summary units) certainly above ``value`` so far: those
        in histogram buckets wholly above the one holding it (so never an over-count)."""
        metric = METRIC_BY_KEY[key]
        units = max(0, min(int(value * metric.scale), HIGHEST_US))
        total = 0
        for hist in (self.totals[metric.tag], self._interval[metric.tag]):
            if hist.total_count:
                index = hist._counts_index_for(units)
                total += int(np.ctypeslib.as_array(hist.counts)[index + 1 :].sum())
        return total

    def max_of(self, key: str) -> float | None:
        """The largest measured value of metric ``key`` so far (summary units), or None."""
        metric = METRIC_BY_KEY[key]
        hists = [h for h in (self.totals[metric.tag], self._interval[metric.tag]) if h.total_count]
        if not hists:
            return None
        return max(h.max_value for h in hists) / metric.scale  # the exact largest value recorded

    def snapshot(self, start_ns: int, now_ns: int, window_s: float = 5.0) -> Snapshot:
        """Counts so far, output tokens/s over the last ``window_s``, and TTFT p50/p99 so far (every
        phase, warm-up included)."""
        horizon = now_ns - int(window_s * 1e9)
        recent = self._recent
        while recent and recent[0][0] < horizon:
            self._recent_tokens -= recent.popleft()[1]
        span_s = min(window_s, max((now_ns - start_ns) / 1e9, 1e-9))
        p50, p99 = fast_percentiles([self._live_ttft], (50.0, 99.0))
        return Snapshot(
            elapsed_s=(now_ns - start_ns) / 1e9,
            completed=self.status["ok"],
            failed=self.status["failed"],
            cancelled=self.status["cancelled"],
            output_tokens_per_s=self._recent_tokens / span_s,
            ttft_p50_ms=None if p50 is None else p50 / 1e3,
            ttft_p99_ms=None if p99 is None else p99 / 1e3,
        )
