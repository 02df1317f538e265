"""The run summary: percentiles and throughput, computed once, after the run, from the recorder.

Definitions (docs/metrics.md): the measured window runs from the first measured request's intended
send to the last measured request's end, whatever each one's outcome (ok, failed or cancelled);
throughput is measured completions and output tokens over that window. Request counts cover
every phase, and scheduled = completed + failed + cancelled.
"""

from __future__ import annotations

from typing import Any

from loadbench.metrics.hdr import summarize
from loadbench.metrics.recorder import METRICS, Recorder


def build_summary(recorder: Recorder, *, scheduled: int, goodput_ok: int | None = None) -> dict[str, Any]:
    """The ``requests``, ``throughput``, ``tokens`` and ``metrics`` sections of summary.json."""
    status = recorder.status
    completed, failed, cancelled = status["ok"], status["failed"], status["cancelled"]
    by_phase: dict[str, dict[str, int]] = {}
    for (phase, st), n in sorted(recorder.status_by_phase.items()):
        by_phase.setdefault(phase, {})[st] = n

    window_ns = recorder.window_last_end_ns - recorder.window_first_intended_ns
    window_s = window_ns / 1e9 if recorder.window_first_intended_ns and window_ns > 0 else 0.0

    def per_s(n: float) -> float | None:
        return n / window_s if window_s else None

    ok = recorder.measured_ok
    out_src = (
        "none" if ok == 0
        else "server" if recorder.measured_output_reported == ok
        else "chunks" if recorder.measured_output_reported == 0
        else "mixed"
    )
    summary: dict[str, Any] = {
        "requests": {
            "scheduled": scheduled,
            "completed": completed,
            "failed": failed,
            "cancelled": cancelled,
            "errors": dict(sorted(recorder.errors.items())),
            # Cancelled requests by what they were waiting for (a hung server shows here).
            "cancelled_in": dict(sorted(recorder.cancelled_in.items())),
            "by_phase": by_phase,
            "measured_completed": ok,
        },
        "window": {"duration_s": window_s},
        "throughput": {
            "requests_per_s": per_s(ok),
            "output_tokens_per_s": per_s(recorder.measured_output_tokens),
            "input_tokens_per_s": per_s(recorder.measured_input_tokens) if recorder.measured_input_reported else None,
            "goodput_requests_per_s": None if goodput_ok is None else per_s(goodput_ok),
        },
        "tokens": {
            "output_total": recorder.measured_output_tokens,
            "input_total": recorder.measured_input_tokens if recorder.measured_input_reported else None,
            "reasoning_total": recorder.measured_reasoning_tokens,
            # Where output counts came from: the server's usage / eval counts, or counted chunks.
            "output_count_source": out_src,
        },
        "metrics": {m.key: summarize(recorder.totals[m.tag], m.scale) for m in METRICS},
    }
    if scheduled != completed + failed + cancelled:  # an invariant; a breach is a harness bug
        summary["requests"]["accounting_error"] = scheduled - (completed + failed + cancelled)
    return summary


def load_summary(plan: Any, scheduled: int, scheduling_ns: int) -> dict[str, Any]:
    """The ``load`` section: the plan as run (its description) and the rate it achieved, requests
    scheduled per second of scheduling (``None`` when scheduling took no time or never ran)."""
    span_s = scheduling_ns / 1e9
    return {
        "plan": plan,
        "scheduled": scheduled,
        "scheduling_s": span_s,
        "scheduled_per_s": scheduled / span_s if span_s > 0 else None,
    }
