"""HDR histogram helpers: one shape for every latency, a vectorised bulk add, and exact summaries.

All latencies are held in integer microseconds from 1 µs to one hour at three significant figures
(0.1% resolution), so histograms from different runs and workers merge without loss.
"""

from __future__ import annotations

import base64
import ctypes
import sys
import threading
import zlib
from collections.abc import Sequence
from itertools import pairwise

import numpy as np
from hdrh.codec import ext_header_size, payload_header_size
from hdrh.histogram import HdrHistogram
from pyhdrh import encode as _varint_encode  # hdrh's own C encoder

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: no request legitimately takes longer
SIGNIFICANT_FIGURES = 3

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


def new_histogram(highest: int = HIGHEST_US) -> HdrHistogram:
    """An empty histogram in the project's standard shape."""
    return HdrHistogram(LOWEST_US, highest, SIGNIFICANT_FIGURES)


def record(hist: HdrHistogram, value: int) -> None:
    """Record one value, clamped into the trackable range so nothing is silently dropped."""
    record_each(hist, (value,))


# Below this many values a plain loop beats numpy's fixed cost per call (measured: 8 µs against
# 20 µs for 31 values; the two break even at about 110).
_VECTOR_FROM = 96


def record_many(hist: HdrHistogram, values: np.ndarray) -> None:
    """Record an array of integer values in one vectorised pass.

    The pure-Python ``record_value`` costs microseconds per call; a 1,000-token answer has 999
    inter-token gaps, so recording them one by one would make the recorder the bottleneck. This
    computes the same counts-array indices as ``HdrHistogram._counts_index_for`` with numpy and adds
    them to the histogram's counts buffer in place. Fewer than ``_VECTOR_FROM`` values go
    through ``record_each`` instead, which is quicker at that size.
    """
    if values.size == 0:
        return
    if values.size < _VECTOR_FROM:
        record_each(hist, values.tolist())
        return
    v = np.clip(values.astype(np.int64, copy=False), 0, hist.highest_trackable_value)
    # bit_length(v | mask): frexp's exponent is exact for integers below 2**53.
    pow2ceiling = np.frexp((v | hist.sub_bucket_mask).astype(np.float64))[1].astype(np.int64)
    bucket = pow2ceiling - hist.unit_magnitude - (hist.sub_bucket_half_count_magnitude + 1)
    sub_bucket = v >> (bucket + hist.unit_magnitude)
    index = ((bucket + 1) << hist.sub_bucket_half_count_magnitude) + sub_bucket - hist.sub_bucket_half_count
    counts = np.ctypeslib.as_array(hist.counts)
    np.add.at(counts, index, 1)
    hist.total_count += int(v.size)
    hist.min_value = min(hist.min_value, int(v.min()))
    hist.max_value = max(hist.max_value, int(v.max()))


def record_each(hist: HdrHistogram, values: Sequence[int]) -> None:
    """Record integer values one by one, each clamped into the trackable range.

    The counter index is ``HdrHistogram.record_value``'s, computed inline: hdrh's own walk through
    four method calls costs three times as much, and every finished request records about nine
    single values and its inter-token gaps.
    """
    top = hist.highest_trackable_value
    mask = hist.sub_bucket_mask
    unit = hist.unit_magnitude
    half_magnitude = hist.sub_bucket_half_count_magnitude
    base = hist.sub_bucket_half_count
    counts = hist.counts
    low, high = hist.min_value, hist.max_value
    for value in values:
        if value > top:
            value = top
        elif value < 0:
            value = 0
        bucket = (value | mask).bit_length() - unit - half_magnitude - 1
        counts[((bucket + 1) << half_magnitude) + (value >> (bucket + unit)) - base] += 1
        if value < low:
            low = value
        if value > high:
            high = value
    hist.total_count += len(values)
    hist.min_value, hist.max_value = low, high


def record_gaps_us(hist: HdrHistogram, stamps_ns: Sequence[int]) -> None:
    """Record the gaps between consecutive ``stamps_ns``, in whole microseconds (an answer's
    inter-token latencies from its chunk stamps)."""
    if len(stamps_ns) < _VECTOR_FROM:
        record_each(hist, [(b - a) // 1000 for a, b in pairwise(stamps_ns)])
    else:
        record_many(hist, np.diff(np.asarray(stamps_ns, dtype=np.int64)) // 1000)


def summarize(hist: HdrHistogram, scale: float = 1.0) -> dict[str, float | int | None]:
    """count, mean, min, p50, p90, p95, p99, p99.9 and max, each value divided by ``scale``.

    An empty histogram gives count 0 and None for every statistic, so a reader can tell
    "nothing measured" from "measured zero".
    """
    count = hist.get_total_count()
    keys = ("mean", "min", "p50", "p90", "p95", "p99", "p99_9", "max")
    if count == 0:
        return {"count": 0, **dict.fromkeys(keys)}
    # hdrh's own mean and percentile walks are Python loops over every counter (~0.1 s per
    # histogram, about a second per summary); these give the same values in a vectorised pass.
    pct = dict(zip(PERCENTILES, fast_percentiles([hist], PERCENTILES), strict=True))
    return {
        "count": count,
        "mean": mean_value(hist) / scale,
        "min": hist.get_min_value() / scale,
        "p50": pct[50.0] / scale,
        "p90": pct[90.0] / scale,
        "p95": pct[95.0] / scale,
        "p99": pct[99.0] / scale,
        "p99_9": pct[99.9] / scale,
        "max": hist.get_max_value() / scale,
    }


def _index_values(hist: HdrHistogram) -> tuple[np.ndarray, np.ndarray]:
    """For every counter index: the lowest value it holds and the width of its value range."""
    key = (hist.counts_len, hist.unit_magnitude, hist.sub_bucket_half_count_magnitude)
    cached = _INDEX_VALUES.get(key)
    if cached is None:
        index = np.arange(hist.counts_len, dtype=np.int64)
        half_magnitude = hist.sub_bucket_half_count_magnitude
        half = hist.sub_bucket_half_count
        bucket = (index >> half_magnitude) - 1
        sub_bucket = (index & (half - 1)) + half
        first = bucket < 0
        sub_bucket[first] -= half
        bucket[first] = 0
        lowest = sub_bucket << (bucket + hist.unit_magnitude)
        width = np.left_shift(1, bucket + hist.unit_magnitude)
        cached = _INDEX_VALUES[key] = (lowest, width)
    return cached


_INDEX_VALUES: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}


def mean_value(hist: HdrHistogram) -> float:
    """``hist.get_mean_value()`` (each count at the middle of its value range), vectorised."""
    if hist.total_count == 0:
        return 0.0
    lowest, width = _index_values(hist)
    counts = _counts(hist).astype(np.int64)
    return float((counts * (lowest + (width >> 1))).sum()) / hist.total_count


def merged(histograms: Sequence[HdrHistogram]) -> HdrHistogram:
    """A new histogram holding the sum of ``histograms`` (which are left unchanged)."""
    total = new_histogram()
    for h in histograms:
        total.add(h)
    return total


def _counts(hist: HdrHistogram) -> np.ndarray:
    return np.ctypeslib.as_array(hist.counts)


def add_into(dst: HdrHistogram, src: HdrHistogram) -> None:
    """``dst += src`` for two histograms of the standard shape, vectorised (hdrh's ``add`` loops)."""
    if src.total_count == 0:
        return
    _counts(dst)[:] += _counts(src)
    dst.total_count += src.total_count
    dst.min_value = min(dst.min_value, src.min_value)
    dst.max_value = max(dst.max_value, src.max_value)


def clear(hist: HdrHistogram) -> None:
    """Empty ``hist`` in place, vectorised (hdrh's ``reset`` loops over every counter).

    Allocates nothing: an ``HdrHistogram`` and its encoder reference each other, so every
    histogram made and dropped is a reference cycle left for the cyclic collector.
    """
    _counts(hist)[:] = 0
    hist.total_count = 0
    hist.min_value = sys.maxsize  # as hdrh's own reset leaves it
    hist.max_value = 0


def fast_percentiles(hists: Sequence[HdrHistogram], percentiles: Sequence[float]) -> list[int | None]:
    """Percentiles of the union of ``hists`` with hdrh's semantics, in one vectorised pass.

    For the live display, which asks several times a second: hdrh's own percentile walk is a
    Python loop over every counter.
    """
    total = sum(h.total_count for h in hists)
    if total == 0:
        return [None] * len(percentiles)
    first = hists[0]
    # Only the buckets from the lowest to the highest value recorded can hold a percentile: the
    # walk covers those (a few thousand of the ~23,000 counters for typical latencies).
    filled = [h for h in hists if h.total_count]
    lo = first.get_counts_array_index(min(h.min_value for h in filled))
    hi = first.get_counts_array_index(max(h.max_value for h in filled)) + 1
    counts = _counts(filled[0])[lo:hi].astype(np.int64)
    for h in filled[1:]:
        counts += _counts(h)[lo:hi].astype(np.int64)
    cumulative = np.cumsum(counts)
    out: list[int | None] = []
    for p in percentiles:
        target = max(int(min(p, 100.0) * total / 100 + 0.5), 1)
        index = lo + int(np.searchsorted(cumulative, target))
        value = first.get_value_from_index(index)
        # hdrh reports the 0th percentile as the lowest value of its bucket, the others as the highest.
        out.append(first.get_highest_equivalent_value(value) if p else first.get_lowest_equivalent_value(value))
    return out


# One scratch buffer per histogram shape, shared by every encode (see ``encode``).
_ENCODE_BUFFERS: dict[int, ctypes.Array[ctypes.c_byte]] = {}
_ENCODE_LOCK = threading.Lock()


def encode(hist: HdrHistogram) -> bytes:
    """``hist.encode()``: the same base64 V2 bytes, without the memory that call leaks.

    hdrh sizes its scratch buffer to the interval's highest value, as ``c_byte * n``, and ctypes
    caches every array *type* it is asked for, forever: an interval log whose maxima vary made a
    new type (~2 KB) for most intervals, a few KB/s of growth for as long as the run went on. This
    keeps one buffer per histogram shape and calls hdrh's own C encoder into it.
    """
    encoder = hist.encoder
    payload = encoder.payload
    counts_limit = hist.get_counts_array_index(hist.max_value) + 1 if hist.total_count else 0
    varint_max = counts_limit * (payload.word_size + 1)
    size = payload_header_size + payload.counts_len * (payload.word_size + 1)
    with _ENCODE_LOCK:
        buf = _ENCODE_BUFFERS.get(size)
        if buf is None:
            buf = _ENCODE_BUFFERS[size] = (ctypes.c_byte * size)()
        base = ctypes.addressof(buf)
        varint_len = _varint_encode(
            ctypes.addressof(payload.counts), counts_limit, payload.word_size, base + payload_header_size, varint_max
        )
        payload.payload.payload_len = varint_len
        ctypes.memmove(base, ctypes.addressof(payload.payload), payload_header_size)
        compressed = zlib.compress(ctypes.string_at(base, payload_header_size + varint_len))
    encoder.header.length = len(compressed)
    return base64.b64encode(ctypes.string_at(ctypes.addressof(encoder.header), ext_header_size) + compressed)
