"""How close the workload's length targets came to what the server counted.

``length_report(records)`` sets each finished request's ``target_input_tokens`` and
``target_output_tokens`` against the server-reported ``input_tokens`` and ``output_tokens`` and
summarises both sides (p50, p90) and the relative error per request (``|reported - target| /
target``: p50, p90 to 0.01%, and the signed mean, which shows a systematic bias). Requests without a
target or without a server count are counted, not guessed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from loadbench.metrics.record import RequestRecord

__all__ = ["LengthTally", "length_report"]


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
