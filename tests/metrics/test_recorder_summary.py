"""Recorder and summary on hand-built records with exact nanosecond stamps.

Expected figures are computed here from the definitions (docs/metrics.md), not from the recorder's code,
and compared within HDR precision (3 significant figures, integer µs).
"""

from __future__ import annotations

import numpy as np
import pytest

from loadbench.contract.record import RequestRecord
from loadbench.metrics.recorder import METRICS, Recorder
from loadbench.metrics.summary import build_summary

T0 = 5_000_000_000_000  # an arbitrary perf_counter_ns origin
MS = 1_000_000


def ok_record(
    index: int,
    intended: int,
    lag: int,
    ttft: int,
    gaps: list[int],
    tail: int,
    *,
    server_tokens: int | None = None,
    phase: str = "measured",
    input_tokens: int | None = None,
    reasoning_chunks: int = 0,
) -> RequestRecord:
    """A finished ok record: sent ``lag`` after intended, first token ``ttft`` after sent, chunks
    separated by ``gaps``, the end ``tail`` after the last chunk (all ns)."""
    r = RequestRecord(index=index, request_id=f"r-{index}", intended_ns=intended, phase=phase)  # type: ignore[arg-type]
    r.sent_ns = intended + lag
    t = r.sent_ns + ttft
    stamps = [t]
    for g in gaps:
        t += g
        stamps.append(t)
    for i, s in enumerate(stamps):
        r.token(s, reasoning=i < reasoning_chunks)
    r.end_ns = stamps[-1] + tail
    r.output_tokens = server_tokens
    r.input_tokens = input_tokens
    r.status = "ok"
    return r


def failed_record(index: int, intended: int, lag: int, category: str, *, phase: str = "measured") -> RequestRecord:
    r = RequestRecord(index=index, request_id=f"r-{index}", intended_ns=intended, phase=phase)  # type: ignore[arg-type]
    r.sent_ns = intended + lag
    r.end_ns = r.sent_ns + 3 * MS
    r.status = "failed"
    r.error = category
    return r


def synthetic(seed: int, n: int = 300, server_counts: bool = True) -> list[RequestRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        intended = T0 + i * 7 * MS + int(rng.integers(0, 999))
        lag = int(rng.integers(0, 3 * MS))
        ttft = int(rng.integers(5 * MS, 400 * MS))
        n_chunks = int(rng.integers(1, 40))
        gaps = [int(g) for g in rng.integers(100_000, 60 * MS, size=n_chunks - 1)]
        tail = int(rng.integers(0, 2 * MS))
        tokens = n_chunks * 2 if server_counts else None  # a server may put 2 tokens in a chunk
        out.append(ok_record(i, intended, lag, ttft, gaps, tail, server_tokens=tokens, input_tokens=100 + i))
    return out


def nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(int(p * len(ordered) / 100 + 0.5), 1) - 1]


def close_ms(actual: float, expected_ms: float) -> bool:
    # 0.1% relative (three significant figures) plus the 1 µs floor of integer microseconds.
    return abs(actual - expected_ms) <= expected_ms * 1e-3 + 0.0011


def check_metric(summary: dict, key: str, values_ms: list[float]) -> None:
    s = summary["metrics"][key]
    assert s["count"] == len(values_ms), key
    for name, p in (("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99), ("p99_9", 99.9)):
        assert close_ms(s[name], nearest_rank(values_ms, p)), (key, name, s[name], nearest_rank(values_ms, p))
    assert close_ms(s["min"], min(values_ms)), (key, s["min"], min(values_ms))
    assert close_ms(s["max"], max(values_ms)), (key, s["max"], max(values_ms))
    assert close_ms(s["mean"], float(np.mean(values_ms))), (key, s["mean"], np.mean(values_ms))


def summarise(records: list[RequestRecord], scheduled: int | None = None, **kw) -> tuple[Recorder, dict]:
    rec = Recorder()
    for r in records:
        rec.add(r)
    rec.rotate()
    return rec, build_summary(rec, scheduled=len(records) if scheduled is None else scheduled, **kw)


def test_latency_statistics_follow_the_definitions() -> None:
    records = synthetic(1)
    _, summary = summarise(records)
    ms = 1e6
    check_metric(summary, "ttft_ms", [(r.first_token_ns - r.sent_ns) / ms for r in records])
    check_metric(summary, "ttft_from_schedule_ms", [(r.first_token_ns - r.intended_ns) / ms for r in records])
    check_metric(summary, "time_to_first_answer_ms", [(r.first_answer_ns - r.sent_ns) / ms for r in records])
    check_metric(summary, "e2e_ms", [(r.end_ns - r.sent_ns) / ms for r in records])
    check_metric(summary, "e2e_from_schedule_ms", [(r.end_ns - r.intended_ns) / ms for r in records])
    check_metric(summary, "dispatch_lag_ms", [(r.sent_ns - r.intended_ns) / ms for r in records])
    itl = [(b - a) / ms for r in records for a, b in zip(r.chunk_ns, r.chunk_ns[1:], strict=False)]
    assert len(itl) > 1000
    check_metric(summary, "itl_ms", itl)
    # TPOT over the server's token count (2 per chunk here), for answers of more than one token.
    multi = [r for r in records if r.output_tokens > 1 and r.end_ns > r.first_token_ns]
    tpot = [(r.end_ns - r.first_token_ns) / (r.output_tokens - 1) / ms for r in multi]
    check_metric(summary, "tpot_ms", tpot)
    rates = [(r.output_tokens - 1) / ((r.end_ns - r.first_token_ns) / 1e9) for r in multi]
    s = summary["metrics"]["decode_tokens_per_s"]
    assert s["count"] == len(rates)
    for name, p in (("p50", 50), ("p99", 99)):
        assert s[name] == pytest.approx(nearest_rank(rates, p), rel=1.1e-3)


def test_a_hand_computed_request() -> None:
    # sent 1 ms late; first token 10 ms after sending; chunks 2, 3, 4 ms apart; ends 1 ms after.
    r = ok_record(0, T0, 1 * MS, 10 * MS, [2 * MS, 3 * MS, 4 * MS], 1 * MS)
    _, summary = summarise([r])
    m = summary["metrics"]
    assert m["dispatch_lag_ms"]["p50"] == pytest.approx(1.0, rel=1e-3)
    assert m["ttft_ms"]["p50"] == pytest.approx(10.0, rel=1e-3)
    assert m["ttft_from_schedule_ms"]["p50"] == pytest.approx(11.0, rel=1e-3)
    assert m["e2e_ms"]["p50"] == pytest.approx(20.0, rel=1e-3)
    assert m["e2e_from_schedule_ms"]["p50"] == pytest.approx(21.0, rel=1e-3)
    assert m["itl_ms"]["count"] == 3
    assert (m["itl_ms"]["min"], m["itl_ms"]["max"]) == (pytest.approx(2.0, rel=1e-3), pytest.approx(4.0, rel=1e-3))
    # 4 chunks counted (no server count): (20 - 10) / 3 ms per token, 300 tokens/s.
    assert m["tpot_ms"]["p50"] == pytest.approx(10 / 3, rel=1e-3)
    assert m["decode_tokens_per_s"]["p50"] == pytest.approx(300.0, rel=1e-3)
    assert summary["tokens"]["output_total"] == 4
    assert summary["tokens"]["output_count_source"] == "chunks"
    # Window: intended T0 to end T0 + 21 ms.
    assert summary["window"]["duration_s"] == pytest.approx(0.021)
    assert summary["throughput"]["requests_per_s"] == pytest.approx(1 / 0.021)
    assert summary["throughput"]["output_tokens_per_s"] == pytest.approx(4 / 0.021)


def test_reasoning_chunks_delay_the_first_answer_not_the_first_token() -> None:
    r = ok_record(0, T0, 0, 10 * MS, [5 * MS, 5 * MS, 5 * MS], 0, reasoning_chunks=2)
    _, summary = summarise([r])
    assert summary["metrics"]["ttft_ms"]["p50"] == pytest.approx(10.0, rel=1e-3)
    assert summary["metrics"]["time_to_first_answer_ms"]["p50"] == pytest.approx(20.0, rel=1e-3)


def test_single_token_answers_have_no_itl_or_tpot() -> None:
    r = ok_record(0, T0, 0, 10 * MS, [], 2 * MS)
    _, summary = summarise([r])
    m = summary["metrics"]
    assert m["ttft_ms"]["count"] == 1 and m["e2e_ms"]["count"] == 1
    for key in ("itl_ms", "tpot_ms", "decode_tokens_per_s"):
        assert m[key]["count"] == 0 and m[key]["p50"] is None


def test_warmup_and_cooldown_are_counted_but_not_measured() -> None:
    measured = synthetic(2, n=50)
    slow = 10_000 * MS  # would dominate every maximum if it leaked in
    warm = [ok_record(100 + i, T0 - 10**10, 0, slow, [slow], slow, phase="warmup") for i in range(5)]
    cool = [ok_record(200 + i, T0 + 10**12, 0, slow, [slow], slow, phase="cooldown", server_tokens=999)
            for i in range(3)]
    warm_failed = failed_record(300, T0, 0, "connect", phase="warmup")
    _, summary = summarise([*warm, *measured, *cool, warm_failed])
    req = summary["requests"]
    assert req["scheduled"] == 59
    assert req["completed"] == 58 and req["failed"] == 1 and req["cancelled"] == 0
    assert req["measured_completed"] == 50
    assert req["by_phase"] == {"warmup": {"ok": 5, "failed": 1}, "measured": {"ok": 50}, "cooldown": {"ok": 3}}
    assert req["errors"] == {"connect": 1}
    assert "accounting_error" not in req
    for m in METRICS:
        count = summary["metrics"][m.key]["count"]
        if m.key not in ("itl_ms", "tpot_ms", "decode_tokens_per_s"):
            assert count == 50, m.key
    assert summary["metrics"]["e2e_ms"]["max"] < slow / 1e6
    assert summary["tokens"]["output_total"] == sum(r.output_tokens for r in measured)
    # The window spans only the measured requests.
    first = min(r.intended_ns for r in measured)
    last = max(r.end_ns for r in measured)
    assert summary["window"]["duration_s"] == pytest.approx((last - first) / 1e9)
    assert summary["throughput"]["requests_per_s"] == pytest.approx(50 / ((last - first) / 1e9))
    assert summary["throughput"]["output_tokens_per_s"] == pytest.approx(
        sum(r.output_tokens for r in measured) / ((last - first) / 1e9)
    )
    assert summary["throughput"]["input_tokens_per_s"] == pytest.approx(
        sum(r.input_tokens for r in measured) / ((last - first) / 1e9)
    )
    assert summary["tokens"]["input_total"] == sum(r.input_tokens for r in measured)


def test_failures_count_by_category_and_only_their_dispatch_lag_is_measured() -> None:
    good = synthetic(3, n=20)
    bad = [
        failed_record(100, T0 + 1 * MS, 2 * MS, "rate_limited"),
        failed_record(101, T0 + 2 * MS, 2 * MS, "rate_limited"),
        failed_record(102, T0 + 3 * MS, 2 * MS, "client"),
    ]
    cancelled = RequestRecord(index=103, request_id="r-103", intended_ns=T0 + 4 * MS)
    cancelled.status = "cancelled"
    cancelled.end_ns = T0 + 9 * MS  # never sent: waited for a slot, then the run stopped
    _, summary = summarise([*good, *bad, cancelled])
    req = summary["requests"]
    assert (req["completed"], req["failed"], req["cancelled"]) == (20, 3, 1)
    assert req["errors"] == {"client": 1, "rate_limited": 2}
    assert req["by_phase"]["measured"] == {"ok": 20, "failed": 3, "cancelled": 1}
    m = summary["metrics"]
    assert m["e2e_ms"]["count"] == 20 and m["ttft_ms"]["count"] == 20
    assert m["dispatch_lag_ms"]["count"] == 23  # ok and failed were sent; the cancelled one was not
    # The window spans every measured request, failed and cancelled ones included.
    everything = [*good, *bad, cancelled]
    window_s = (max(r.end_ns for r in everything) - min(r.intended_ns for r in everything)) / 1e9
    assert summary["window"]["duration_s"] == pytest.approx(window_s)
    assert summary["throughput"]["requests_per_s"] == pytest.approx(20 / window_s)


def test_accounting_breach_is_reported() -> None:
    records = synthetic(4, n=5)
    _, summary = summarise(records, scheduled=7)
    assert summary["requests"]["accounting_error"] == 2


@pytest.mark.parametrize(
    ("counts", "source"),
    [([5, 6, 7], "server"), ([None, None, None], "chunks"), ([5, None, 7], "mixed")],
)
def test_output_count_source(counts: list[int | None], source: str) -> None:
    records = [ok_record(i, T0 + i * MS, 0, MS, [MS, MS], 0, server_tokens=c) for i, c in enumerate(counts)]
    _, summary = summarise(records)
    assert summary["tokens"]["output_count_source"] == source
    assert summary["tokens"]["output_total"] == sum(3 if c is None else c for c in counts)


def test_nothing_measured_gives_none_not_zero() -> None:
    _, summary = summarise([])
    assert summary["window"]["duration_s"] == 0.0
    assert summary["throughput"]["requests_per_s"] is None
    # Measured but nothing completed: zero over the window, not "nothing measured".
    _, summary = summarise([failed_record(0, T0, 0, "connect")])
    assert summary["tokens"]["output_count_source"] == "none"
    assert summary["window"]["duration_s"] == pytest.approx(0.003)
    assert summary["throughput"]["requests_per_s"] == 0.0
    assert summary["throughput"]["input_tokens_per_s"] is None
    assert summary["metrics"]["ttft_ms"] == {"count": 0, **dict.fromkeys(
        ("mean", "min", "p50", "p90", "p95", "p99", "p99_9", "max"))}


def test_goodput_is_over_the_same_window() -> None:
    records = synthetic(5, n=10)
    _, summary = summarise(records, goodput_ok=4)
    assert summary["throughput"]["goodput_requests_per_s"] == pytest.approx(
        summary["throughput"]["requests_per_s"] * 4 / 10
    )
    _, no_slo = summarise(records)
    assert no_slo["throughput"]["goodput_requests_per_s"] is None


def test_rotation_moves_interval_counts_into_the_totals_without_loss() -> None:
    records = synthetic(6, n=60)
    rec = Recorder()
    handed: dict[str, int] = dict.fromkeys((m.tag for m in METRICS), 0)
    for i, r in enumerate(records):
        rec.add(r)
        if i % 17 == 16:
            _, _, hists = rec.rotate()
            for tag, h in hists.items():
                handed[tag] += h.total_count
    start, end, hists = rec.rotate()
    assert start <= end
    for tag, h in hists.items():
        handed[tag] += h.total_count
    for m in METRICS:
        assert handed[m.tag] == rec.totals[m.tag].total_count
    assert handed["e2e_us"] == 60


def test_snapshot_sees_the_open_interval() -> None:
    rec = Recorder()
    records = sorted(synthetic(7, n=40), key=lambda r: r.end_ns)  # the order they finish in
    for r in records:
        rec.add(r)
    now = max(r.end_ns for r in records)
    snap = rec.snapshot(start_ns=T0, now_ns=now)  # nothing rotated yet
    assert snap.completed == 40 and snap.failed == 0 and snap.cancelled == 0
    ttft = [(r.first_token_ns - r.sent_ns) / 1e6 for r in records]
    assert close_ms(snap.ttft_p50_ms, nearest_rank(ttft, 50))
    assert close_ms(snap.ttft_p99_ms, nearest_rank(ttft, 99))
    # Early in a run the rate is over the time elapsed, not the full 5 s window.
    elapsed_s = (now - T0) / 1e9
    assert elapsed_s < 5
    assert snap.output_tokens_per_s == pytest.approx(sum(r.output_tokens for r in records) / elapsed_s)
    later = now + 4 * 10**9  # by then only the answers from the last 5 s count
    snap = rec.snapshot(start_ns=T0, now_ns=later)
    recent = sum(r.output_tokens for r in records if r.end_ns >= later - 5 * 10**9)
    assert 0 < recent < sum(r.output_tokens for r in records)
    assert snap.output_tokens_per_s == pytest.approx(recent / 5.0)


def test_live_ttft_includes_warmup_but_the_summary_does_not() -> None:
    rec = Recorder()
    records = sorted(synthetic(11, n=30), key=lambda r: r.end_ns)
    for r in records:
        r.phase = "warmup"
        rec.add(r)
    snap = rec.snapshot(start_ns=T0, now_ns=max(r.end_ns for r in records))
    ttft = [(r.first_token_ns - r.sent_ns) / 1e6 for r in records]
    assert close_ms(snap.ttft_p50_ms, nearest_rank(ttft, 50))
    rec.rotate()
    assert build_summary(rec, scheduled=30)["metrics"]["ttft_ms"]["count"] == 0


def test_reasoning_tokens_come_from_the_server_else_from_reasoning_chunks() -> None:
    rec = Recorder()
    counted = ok_record(0, T0, 1000, 5_000_000, [1_000_000] * 9, 100, reasoning_chunks=4)  # Ollama-like
    reported = ok_record(1, T0, 1000, 5_000_000, [1_000_000] * 9, 100, server_tokens=10)  # OpenAI-like
    reported.reasoning_tokens = 7  # hidden reasoning: counted by the server, never streamed
    for r in (counted, reported):
        rec.add(r)
    rec.rotate()
    assert counted.reasoning_tokens_used == 4 and reported.reasoning_tokens_used == 7
    assert build_summary(rec, scheduled=2)["tokens"]["reasoning_total"] == 11


def test_rotation_makes_no_histograms_so_memory_is_flat_in_run_length() -> None:
    """Each HdrHistogram and its encoder reference each other: a set made per interval and dropped
    is garbage only the cyclic collector frees, which the run holds off (see experiment._calm_gc)."""
    import gc

    from hdrh.histogram import HdrHistogram

    def histograms() -> int:
        return sum(1 for o in gc.get_objects() if isinstance(o, HdrHistogram))

    rec = Recorder()
    records = synthetic(8, n=40)
    gc.collect()
    gc.disable()
    try:
        rec.add(records[0])
        rec.rotate()
        before = histograms()
        for r in records[1:]:
            rec.add(r)
            _, _, hists = rec.rotate()
            assert sum(h.total_count for h in hists.values()) > 0
        after = histograms()
    finally:
        gc.enable()
    assert after == before
    assert rec.totals["e2e_us"].total_count == 40


def test_failures_after_the_last_success_stay_in_the_window() -> None:
    """A server that answers for 5 s of a 10 s run, then fails everything: throughput is over the
    10 s, not the 5 s it answered in; a single success is not rated over its own latency."""
    good = [ok_record(i, T0 + i * 100 * MS, 0, 10 * MS, [MS] * 9, 0, server_tokens=10) for i in range(50)]
    bad = [failed_record(50 + i, T0 + (5000 + i * 100) * MS, 0, "server_error") for i in range(50)]
    _, summary = summarise([*good, *bad])
    window_s = (bad[-1].end_ns - T0) / 1e9
    assert window_s == pytest.approx(9.903)
    assert summary["window"]["duration_s"] == pytest.approx(window_s)
    assert summary["throughput"]["requests_per_s"] == pytest.approx(50 / window_s)
    assert summary["throughput"]["output_tokens_per_s"] == pytest.approx(500 / window_s)
    one = ok_record(0, T0, 0, 5 * MS, [MS] * 99, 0, server_tokens=100)
    late = failed_record(1, T0 + 2_900 * MS, 0, "connect")
    _, summary = summarise([one, late])
    assert summary["throughput"]["requests_per_s"] == pytest.approx(1 / 2.903)
