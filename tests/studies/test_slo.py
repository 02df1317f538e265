"""SLO names, per-request attainment and the Wilson interval."""

from __future__ import annotations

import pytest

from loadbench.contract.errors import ConfigError
from loadbench.studies.capacity import judge
from loadbench.studies.slo import count, limits_attainment, parse_slo, requests_needed, wilson


def rec(status="ok", ttft=100.0, tokens=11, first=1_000_000_000, end=None, phase="measured", **kw):
    end = end if end is not None else first + (tokens - 1) * 20_000_000  # 20 ms per output token
    return {"status": status, "phase": phase, "ttft_ms": ttft, "output_tokens": tokens,
            "first_token_ns": first, "end_ns": end, **kw}


def test_slo_names_use_the_summarys_metric_names_and_percentiles() -> None:
    objectives = parse_slo({"ttft_ms.p99": 500, "tpot_ms.p90": 50, "error_rate": 0.01})
    assert [(o.metric, o.limit, o.target) for o in objectives] == [
        ("ttft_ms", 500.0, 0.99), ("tpot_ms", 50.0, 0.90), ("error_rate", 0.01, 0.99)]


@pytest.mark.parametrize("slo, fragment", [
    ({"ttft.p99": 500}, "'ttft.p99' must be METRIC.PERCENTILE"),
    ({"ttft_ms.p42": 500}, "'ttft_ms.p42'"),
    ({"ttft_ms.p99": -1}, "must be a number >= 0"),
    ({"error_rate": 1.5}, "share of requests below 1"),
    ({}, "non-empty mapping"),
])
def test_bad_slo_names_and_limits_are_named(slo, fragment) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_slo(slo)


def test_wilson_interval_matches_known_values() -> None:
    lo, hi = wilson(10, 10)
    assert abs(lo - 0.7225) < 1e-3 and hi == 1.0
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and abs(hi - 0.2775) < 1e-3
    lo, hi = wilson(50, 100)
    assert abs(lo - 0.4038) < 1e-3 and abs(hi - 0.5962) < 1e-3
    assert wilson(0, 0) == (0.0, 1.0)


def test_requests_needed_is_the_fewest_that_can_show_a_target_met() -> None:
    for target in (0.9, 0.95, 0.99):
        n = requests_needed(target)
        assert wilson(n, n)[0] >= target > wilson(n - 1, n - 1)[0]
    assert requests_needed(0.9) == 35 and requests_needed(0.99) == 381


def test_attainment_counts_measured_requests_and_failures_meet_no_latency_limit() -> None:
    records = [rec(ttft=100), rec(ttft=600), rec(status="failed", ttft=None), rec(phase="warmup", ttft=900),
               rec(ttft=100, tokens=11, end=1_000_000_000 + 10 * 60_000_000),  # TPOT 60 ms
               rec(status="cancelled", ttft=None), rec(ttft=100, parent="abc")]
    counts = count(parse_slo({"ttft_ms.p99": 500, "tpot_ms.p99": 50, "error_rate": 0.5}), records)
    assert (counts["ttft_ms.p99"].met, counts["ttft_ms.p99"].n) == (2, 5)  # warm-up and child lines skipped
    assert (counts["tpot_ms.p99"].met, counts["tpot_ms.p99"].n) == (2, 5)  # 20 ms twice; 60 ms misses
    assert (counts["error_rate"].met, counts["error_rate"].n) == (3, 4)  # a cancellation is not an error
    assert limits_attainment({"ttft_ms": 500, "tpot_ms": 50}, records) == 1 / 5  # only the first meets both


def test_a_probe_is_unsure_while_its_interval_straddles_the_target() -> None:
    objectives = parse_slo({"ttft_ms.p90": 500})
    few = judge(objectives, count(objectives, [rec()] * 20), 0.95)
    assert few["verdict"] == "unsure"  # 20 of 20 cannot show 90% at 95% confidence
    enough = judge(objectives, count(objectives, [rec()] * 40), 0.95)
    assert enough["verdict"] == "pass"
    bad = judge(objectives, count(objectives, [rec()] * 20 + [rec(ttft=900)] * 20), 0.95)
    assert bad["verdict"] == "fail" and bad["objectives"]["ttft_ms.p90"]["ci_high"] < 0.9
