"""HDR helpers: the vectorised paths agree with hdrh's own per-value code."""

from __future__ import annotations

import sys
from itertools import pairwise

import numpy as np
import pytest

from loadbench.metrics.hdr import (
    HIGHEST_US,
    add_into,
    clear,
    fast_percentiles,
    merged,
    new_histogram,
    record,
    record_each,
    record_gaps_us,
    record_many,
    summarize,
)

PCTS = [0.0, 0.1, 1.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0]


def counts(h) -> np.ndarray:
    return np.ctypeslib.as_array(h.counts).copy()


def assert_same(a, b, *, raw_extremes: bool = True) -> None:
    assert np.array_equal(counts(a), counts(b))
    assert a.total_count == b.total_count
    if raw_extremes:  # hdrh's own add() keeps bucket-rounded extremes; compare those via the getters
        assert a.min_value == b.min_value
        assert a.max_value == b.max_value
    assert a.get_min_value() == b.get_min_value()
    assert a.get_max_value() == b.get_max_value()
    assert a.get_mean_value() == b.get_mean_value()


def sample(seed: int, n: int = 20_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts = [
        rng.integers(0, 2_000, size=n // 4),  # the linear first buckets
        rng.lognormal(10, 2, size=n // 2).astype(np.int64),  # spans many buckets
        rng.integers(0, 10**11, size=n // 4),  # many above the highest trackable value
        np.array([0, 1, 2047, 2048, 4095, 4096, HIGHEST_US - 1, HIGHEST_US, HIGHEST_US + 1, 2**52]),
    ]
    return np.concatenate(parts).astype(np.int64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_record_many_equals_recording_one_by_one(seed: int) -> None:
    values = sample(seed)
    assert (values > HIGHEST_US).sum() > 1000  # the clamp is exercised
    bulk, single = new_histogram(), new_histogram()
    record_many(bulk, values)
    for v in values.tolist():
        record(single, v)
    assert_same(bulk, single)
    assert bulk.total_count == values.size  # nothing dropped
    assert bulk.min_value == 0 and bulk.max_value == HIGHEST_US


def test_record_many_matches_hdrh_record_value_in_range() -> None:
    values = sample(4)
    values = values[values <= HIGHEST_US]
    bulk, ref = new_histogram(), new_histogram()
    record_many(bulk, values)
    for v in values.tolist():
        assert ref.record_value(v)
    assert_same(bulk, ref)


def test_record_many_clamps_negatives_to_zero_like_record() -> None:
    bulk, single = new_histogram(), new_histogram()
    values = np.array([-5, -1, 0, 3], dtype=np.int64)
    record_many(bulk, values)
    for v in values.tolist():
        record(single, v)
    assert_same(bulk, single)
    assert bulk.total_count == 4


def test_record_many_accepts_other_integer_dtypes_and_empty_arrays() -> None:
    a, b = new_histogram(), new_histogram()
    record_many(a, np.array([], dtype=np.int64))
    assert a.total_count == 0 and a.min_value == sys.maxsize
    record_many(a, np.array([7, 70_000], dtype=np.int32))
    record_many(b, np.array([7, 70_000], dtype=np.int64))
    assert_same(a, b)


def test_record_many_adds_to_what_is_there() -> None:
    values = sample(5, 4000)
    twice, ref = new_histogram(), new_histogram()
    record_many(twice, values[:1000])
    record_many(twice, values[1000:])
    record_many(ref, values)
    assert_same(twice, ref)


def hdrh_reference(values) -> object:
    """hdrh's own per-value path, clamped into range as ``record`` promises."""
    ref = new_histogram()
    for v in values:
        assert ref.record_value(min(max(int(v), 0), HIGHEST_US))
    return ref


@pytest.mark.parametrize("seed", [6, 7])
def test_record_and_record_each_equal_hdrh_record_value_with_the_clamp(seed: int) -> None:
    values = [*sample(seed, 8000).tolist(), -3, -1]
    single, each = new_histogram(), new_histogram()
    for v in values:
        record(single, v)
    record_each(each, values)
    ref = hdrh_reference(values)
    assert_same(single, ref)
    assert_same(each, ref)
    assert each.min_value == 0 and each.max_value == HIGHEST_US


@pytest.mark.parametrize("n", [1, 2, 31, 95, 96, 97, 500])
def test_record_many_gives_the_same_counts_on_either_side_of_its_vector_threshold(n: int) -> None:
    # Drawn from across the sample (its first values all sit in the linear buckets), with the
    # clamp's two ends at the front so even a short array exercises them.
    spread = np.random.default_rng(n).permutation(sample(8, 4000))
    values = np.concatenate([np.array([-2, HIGHEST_US + 5], dtype=np.int64), spread])[:n]
    bulk = new_histogram()
    record_many(bulk, values)
    assert_same(bulk, hdrh_reference(values.tolist()))


@pytest.mark.parametrize("n", [2, 3, 64, 96, 97, 1000])
def test_record_gaps_us_records_each_inter_stamp_gap_in_whole_microseconds(n: int) -> None:
    rng = np.random.default_rng(n)
    stamps = np.cumsum(rng.integers(0, 9_000_000, size=n)).tolist()
    h = new_histogram()
    record_gaps_us(h, stamps)
    gaps = [(b - a) // 1000 for a, b in pairwise(stamps)]
    assert h.total_count == n - 1
    assert_same(h, hdrh_reference(gaps))


@pytest.mark.parametrize(("seed", "floor_us"), [(0, 0), (1, 0), (2, 123_457)])
def test_fast_percentiles_equal_hdrh(seed: int, floor_us: int) -> None:
    h = new_histogram()
    record_many(h, sample(seed) + floor_us)  # a floor above the unit buckets makes p0 != p0+
    expected = [h.get_value_at_percentile(p) for p in PCTS]
    assert fast_percentiles([h], PCTS) == expected


def test_fast_percentiles_of_several_histograms_are_those_of_their_union() -> None:
    parts = [new_histogram() for _ in range(3)]
    for i, h in enumerate(parts):
        record_many(h, sample(10 + i, 3000) // (i + 1))
    union = merged(parts)
    assert union.total_count == sum(h.total_count for h in parts)
    assert fast_percentiles(parts, PCTS) == [union.get_value_at_percentile(p) for p in PCTS]
    # One empty histogram among them changes nothing.
    assert fast_percentiles([new_histogram(), *parts], PCTS) == [union.get_value_at_percentile(p) for p in PCTS]


def test_fast_percentiles_of_nothing_are_none() -> None:
    assert fast_percentiles([new_histogram(), new_histogram()], [50.0, 99.0]) == [None, None]


def test_add_into_equals_hdrh_add() -> None:
    a, b = new_histogram(), new_histogram()
    record_many(a, sample(20, 4000))
    record_many(b, sample(21, 4000) + 17)
    ref = new_histogram()
    ref.add(a)
    ref.add(b)
    add_into(a, b)
    assert_same(a, ref, raw_extremes=False)
    # src is left as it was
    again = new_histogram()
    record_many(again, sample(21, 4000) + 17)
    assert_same(b, again)


def test_add_into_an_empty_histogram_and_from_an_empty_one() -> None:
    src = new_histogram()
    record_many(src, np.array([5, 500, 5_000_000]))
    dst = new_histogram()
    add_into(dst, src)
    assert_same(dst, src)
    before = counts(dst)
    add_into(dst, new_histogram())
    assert np.array_equal(counts(dst), before) and dst.total_count == 3 and dst.min_value == 5


def test_clear_leaves_a_histogram_like_a_fresh_one() -> None:
    h = new_histogram()
    record_many(h, sample(30, 4000))
    clear(h)
    assert_same(h, new_histogram())
    assert summarize(h)["count"] == 0
    values = np.array([3, 30, 300, 3000])
    record_many(h, values)
    fresh = new_histogram()
    record_many(fresh, values)
    assert_same(h, fresh)


def test_summarize_empty_gives_none_not_zero() -> None:
    s = summarize(new_histogram())
    assert s["count"] == 0
    assert all(v is None for k, v in s.items() if k != "count")


def test_summarize_scales_and_matches_exact_statistics_within_hdr_precision() -> None:
    h = new_histogram()
    values = np.arange(1, 100_001) * 10  # 10 µs .. 1 s, uniform
    record_many(h, values)
    s = summarize(h, scale=1e3)  # in ms
    assert s["count"] == values.size
    for key, p in (("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99), ("p99_9", 99.9)):
        exact_ms = np.sort(values)[int(p / 100 * values.size + 0.5) - 1] / 1e3
        assert s[key] == pytest.approx(exact_ms, rel=1e-3), key
    assert s["mean"] == pytest.approx(values.mean() / 1e3, rel=1e-3)
    assert s["min"] == pytest.approx(0.010, rel=1e-3)
    assert s["max"] == pytest.approx(1000.0, rel=1e-3)
    assert s["min"] <= s["p50"] <= s["p90"] <= s["p95"] <= s["p99"] <= s["p99_9"] <= s["max"]


def test_encode_gives_hdrh_bytes_and_makes_no_ctypes_types() -> None:
    """hdrh's own encode makes a ctypes array type per encoded length, cached by ctypes forever."""
    import gc

    import numpy as np

    from loadbench.metrics.hdr import encode, new_histogram, record_many

    def array_types() -> int:
        return sum(1 for o in gc.get_objects() if type(o).__name__ == "PyCArrayType")

    rng = np.random.default_rng(3)
    hists = []
    for i in range(30):
        h = new_histogram()
        if i:
            record_many(h, rng.integers(1, 10 ** (1 + i % 9), size=50 + i))
        hists.append(h)
    encode(hists[0])
    before = array_types()
    ours = [encode(h) for h in hists]
    assert array_types() == before
    assert ours == [h.encode() for h in hists]
    assert array_types() > before  # what hdrh's encode leaves behind
def test_vectorised_summary_equals_hdrh_walks():
    """summarize's mean and percentiles are hdrh's own, computed without its Python loops."""
    from loadbench.metrics.hdr import PERCENTILES, mean_value, summarize

    rng = np.random.default_rng(3)
    for values in (rng.lognormal(8, 2, 5000), rng.integers(0, 50, 300), np.array([0, 1, 3_600_000_000])):
        h = new_histogram()
        for v in values.astype(np.int64):
            record(h, int(v))
        assert mean_value(h) == pytest.approx(h.get_mean_value(), rel=1e-12)
        got = summarize(h)
        want = h.get_percentile_to_value_dict(list(PERCENTILES))
        assert [got["p50"], got["p90"], got["p95"], got["p99"], got["p99_9"]] == [want[p] for p in PERCENTILES]
        assert got["min"] == h.get_min_value() and got["max"] == h.get_max_value()
