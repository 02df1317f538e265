"""How close the workload's length targets came to what the server counted.

``length_report(records)`` sets each finished request's ``target_input_tokens`` and
``target_output_tokens`` against the server-reported ``input_tokens`` and ``output_tokens`` and
summarises both sides (p50, p90) and the relative error per request (``|reported - target| /
target``: p50, p90 to 0.01%, and the signed mean, which shows a systematic bias). Requests without a
target or without a server count are counted, not guessed.

``lengths_plan(stream, stop, users=...)`` and ``lengths_outcome(...)`` say, before and after a
run, how its input lengths were got right (measured against the server's tokenizer, or learnt
from records during a warm-up, and the warm-up that needs) and what must be warned about.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from loadbench.contract.record import RequestRecord
from loadbench.workloads.base import SETTLE_WINDOW

__all__ = ["LENGTH_TOLERANCE", "LengthTally", "length_report", "lengths_outcome", "lengths_plan"]

# Measured requests whose input error is over this (p90) make a run warn.
LENGTH_TOLERANCE = 0.05


# Relative errors are tallied at this resolution (0.01%), so a tally of a million requests holds a
# few thousand distinct values; token counts are integers and tallied exactly.
_REL_STEP = 1e-4


def counter_percentile(counts: Counter[float], q: float) -> float:
    """numpy's default (linear) percentile of the multiset ``counts`` (value -> occurrences)."""
    values = np.fromiter(sorted(counts), dtype=np.float64)
    weights = np.fromiter((counts[v] for v in sorted(counts)), dtype=np.int64)
    cumulative = np.cumsum(weights)
    rank = q / 100 * (int(cumulative[-1]) - 1)
    lo, frac = int(rank), rank - int(rank)
    v_lo = values[np.searchsorted(cumulative, lo + 1)]
    v_hi = values[np.searchsorted(cumulative, min(lo + 2, int(cumulative[-1])))]
    return float(v_lo + (v_hi - v_lo) * frac)


class _Side:
    """Target vs reported counts of one side (input or output), as value tallies."""

    def __init__(self) -> None:
        self.n = 0
        self.missing = 0
        self.target: Counter[float] = Counter()
        self.reported: Counter[float] = Counter()
        self.abs_rel: Counter[float] = Counter()
        self.rel_sum = 0.0

    def add(self, target: int, reported: int | None) -> None:
        if reported is None:
            self.missing += 1
            return
        self.n += 1
        self.target[target] += 1
        self.reported[reported] += 1
        rel = (reported - target) / target
        self.rel_sum += rel
        self.abs_rel[round(abs(rel) / _REL_STEP) * _REL_STEP] += 1

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.n, "unreported": self.missing}
        if not self.n:
            return out
        p = counter_percentile
        out.update(
            target_p50=p(self.target, 50),
            target_p90=p(self.target, 90),
            reported_p50=p(self.reported, 50),
            reported_p90=p(self.reported, 90),
            rel_error_p50=p(self.abs_rel, 50),
            rel_error_p90=p(self.abs_rel, 90),
            rel_error_mean_signed=self.rel_sum / self.n,
        )
        return out


class LengthTally:
    """``length_report`` fed one record at a time, in memory bounded by the distinct lengths seen
    (not by the number of requests): what a long run keeps instead of its records."""

    def __init__(self) -> None:
        self._input = _Side()
        self._output = _Side()

    def add(self, r: RequestRecord) -> None:
        if r.status != "ok":
            return
        if r.target_input_tokens:
            self._input.add(r.target_input_tokens, r.input_tokens)
        if r.target_output_tokens:
            self._output.add(r.target_output_tokens, r.output_tokens)

    def report(self) -> dict[str, Any]:
        return {"input": self._input.report(), "output": self._output.report()}


def length_report(records: Iterable[RequestRecord]) -> dict[str, Any]:
    """Target vs server-reported token counts over the ``ok`` records, for input and output."""
    tally = LengthTally()
    for r in records:
        tally.add(r)
    return tally.report()


def lengths_plan(stream: Any, stop: Any, *, users: int) -> dict[str, Any] | None:
    """How a run gets its input lengths right, for run.json (``note``: a line for the terminal).
    ``stream`` is the run's prompt stream, ``stop`` its ``Stop``, ``users`` its concurrency."""
    describe = getattr(stream, "describe", None)
    if not callable(describe) or not hasattr(stream, "lookahead"):
        return None
    info = describe()
    out: dict[str, Any] = {"mode": info["mode"], "counter": info["counter"]}
    if info["mode"] == "server":
        exact = info["exact_first"]
        out["exact_first"] = exact
        out["note"] = (
            f"lengths: {exact['prompts']} prompts measured against the server's tokenizer before the load "
            f"({exact['elapsed_s']:.1f} s, {exact['tokenize_calls']} tokenize calls; worst input error "
            f"{100 * exact['worst_error']:.1f}%)"
        )
        return out
    # A few requests to learn, a window in a row to confirm, and those in flight meanwhile.
    needed = 2 * SETTLE_WINDOW + max(1, users)
    out["warmup_needed_requests"] = needed
    out["warmup_requests"] = stop.warmup_requests
    out["warmup_s"] = stop.warmup_s
    if "exact_first" in info:
        out["exact_first"] = info["exact_first"]
    default_why = "the target's tokenizer is out of reach (a remote API, or no /tokenize)"
    why = info.get("exact_first", {}).get("reason", default_why)
    short = stop.warmup_requests < needed and not stop.warmup_s
    out["note"] = (
        f"lengths: {why}, so input lengths are learnt from the first requests' reported counts; "
        f"they need a warm-up of at least ~{needed} requests (this run: "
        + (f"{stop.warmup_s:g} s" if stop.warmup_s else f"{stop.warmup_requests} requests")
        + ("; measured requests sized before lengths were learnt will be off target)" if short else ")")
    )
    return out


def lengths_outcome(stream: Any, report: dict[str, Any], measured: Iterable[int]) -> dict[str, Any]:
    """What calibration did during the run, and the warnings a user must see: ``report`` is
    ``length_report`` of the measured requests, ``measured`` their request indices."""
    out: dict[str, Any] = {"settled_after": stream.settled_after, "observed": stream.observed}
    early = sum(1 for i in measured if stream.built_before_settled(i))
    out["measured_sized_before_learnt"] = early
    warnings = []
    side = report.get("input", {})
    if side.get("n") and side["rel_error_p90"] > LENGTH_TOLERANCE:
        warnings.append(
            f"measured requests' input tokens missed their targets by {100 * side['rel_error_p50']:.0f}% (p50), "
            f"{100 * side['rel_error_p90']:.0f}% (p90), over the {100 * LENGTH_TOLERANCE:.0f}% tolerance"
            + (f"; {early} of them were sized before lengths were learnt: lengthen the warm-up" if early else "")
        )
    if not side.get("n") and side.get("unreported"):
        warnings.append("the server reported no input token counts: input lengths could not be checked")
    if stream.settled_after is None and stream.observed:
        warnings.append(f"input lengths had not settled within 5% after {stream.observed} observed requests")
    out["warnings"] = warnings
    return out
