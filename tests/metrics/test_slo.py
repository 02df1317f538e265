"""SLO attainment: per SLO and all at once, failures as misses, goodput from it."""

from __future__ import annotations

import pytest

from loadbench.metrics.record import RequestRecord
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
