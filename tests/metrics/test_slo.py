"""SLO attainment: per SLO and all at once, failures as misses, goodput from it."""

from __future__ import annotations

import numpy as np
import pytest

from loadbench.contract.record import RequestRecord
from loadbench.metrics.recorder import Recorder, tpot_ns
from loadbench.metrics.slo import SloTally

MS = 1_000_000


def request(ttft_ms: float | None, tpot_ms: float, tokens: int = 11, status: str = "ok") -> RequestRecord:
    r = RequestRecord(index=0, request_id="r", intended_ns=1_000 * MS, status=status)  # type: ignore[arg-type]
    r.sent_ns = r.intended_ns + 2 * MS
    if ttft_ms is not None:
        r.first_token_ns = r.sent_ns + round(ttft_ms * MS)
        r.end_ns = r.first_token_ns + round(tpot_ms * MS) * (tokens - 1)
        r.output_tokens = tokens
    else:
        r.end_ns = r.sent_ns + 5 * MS
    return r


def test_attainment_per_slo_and_all_with_failures_as_misses() -> None:
    tally = SloTally({"ttft_ms": 100, "tpot_ms": 20})
    for r in (
        request(50, 10),  # meets both
        request(150, 10),  # misses ttft
        request(50, 30),  # misses tpot
        request(150, 30),  # misses both
        request(None, 0, status="failed"),
        request(40, 5, status="cancelled"),  # fast stamps, but never completed
    ):
        tally.add(r)
    report = tally.report(window_s=2.0)
    assert report["requests"] == 6
    assert report["met"] == {"ttft_ms": 2, "tpot_ms": 2, "all": 1}
    assert report["attainment"] == {"ttft_ms": pytest.approx(2 / 6), "tpot_ms": pytest.approx(2 / 6), "all": 1 / 6}
    # goodput = attainment x measured requests / window
    assert report["goodput_requests_per_s"] == pytest.approx(0.5)
    assert report["limits_ms"] == {"ttft_ms": 100, "tpot_ms": 20}


def test_from_schedule_slos_see_dispatch_lag_and_limits_are_inclusive() -> None:
    tally = SloTally({"ttft_from_schedule_ms": 52, "e2e_ms": 150})
    tally.add(request(50, 10))  # ttft from schedule = 2 + 50 = 52 ms; e2e = 50 + 100 = 150 ms
    tally.add(request(51, 10))
    assert tally.report(1.0)["met"] == {"ttft_from_schedule_ms": 1, "e2e_ms": 1, "all": 1}


def test_no_requests_means_no_attainment() -> None:
    report = SloTally({"ttft_ms": 1}).report(window_s=0.0)
    assert report["attainment"] == {"ttft_ms": None, "all": None}
    assert report["goodput_requests_per_s"] is None


def _decoding(ttft_ms: float, decode_ns: int, tokens: int) -> RequestRecord:
    r = request(ttft_ms, 0, tokens=tokens)
    r.end_ns = r.first_token_ns + decode_ns
    return r


def test_tpot_slo_judges_the_recorders_own_tpot() -> None:
    """One definition of TPOT: the SLO's verdict on each request is the recorder's ``tpot_ns``
    against the limit, and the recorder's histogram holds that same value (to the microsecond)."""
    records = [
        _decoding(10, 200 * MS, 11),  # 20 ms per token: met at the limit (inclusive)
        _decoding(10, 200 * MS + 10, 11),  # 20.000001 ms: over by a nanosecond per token
        _decoding(10, 300 * MS, 11),  # 30 ms: missed
        _decoding(10, 0, 11),  # no time after the first token: nothing to exceed
        _decoding(10, 50 * MS, 1),  # one token: no TPOT, nothing to exceed
    ]
    assert [tpot_ns(r) for r in records] == [20 * MS, 20 * MS + 1, 30 * MS, None, None]
    tally, recorder = SloTally({"tpot_ms": 20}), Recorder()
    for r in records:
        tally.add(r)
        recorder.add(r)
    assert tally.report(1.0)["met"] == {"tpot_ms": 3, "all": 3}
    recorder.rotate()
    hist = recorder.totals["tpot_us"]
    assert hist.total_count == 3  # the requests that have a TPOT
    assert sorted(hist.get_value_at_percentile(p) for p in (1, 50, 100)) == [
        hist.get_highest_equivalent_value(v) for v in (20_000, 20_000, 30_000)
    ]


def test_the_recorders_tpot_is_the_exact_floor_in_microseconds() -> None:
    """The recorder keeps whole microseconds of ``tpot_ns``: the floor of the exact quotient."""
    rng = np.random.default_rng(7)
    for decode_ns, tokens in zip(rng.integers(1, 10**13, 2000), rng.integers(2, 100_000, 2000), strict=True):
        r = _decoding(1, int(decode_ns), int(tokens))
        assert int(tpot_ns(r)) // 1000 == int(decode_ns) // (1000 * (int(tokens) - 1))


def test_a_request_without_a_first_token_misses_the_tpot_slo() -> None:
    tally = SloTally({"tpot_ms": 1000})
    tally.add(request(None, 0))  # ok, yet no token ever came
    assert tally.report(1.0)["met"] == {"tpot_ms": 0, "all": 0}
