"""The summary's facts beyond the histograms: lengths against their targets, the server's own
timings and token counts, and the workload's verdict on the answers.

``RunFacts.add`` runs on the event loop once per measured ``ok`` request and only tallies (answers
are graded at once), so memory does not grow with the number of requests beyond one machine
integer each: the request's index, which the length calibration reads after the run.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable
from typing import Any

from loadbench.contract.prompt import Prompt
from loadbench.contract.record import RequestRecord
from loadbench.metrics.hdr import fast_percentiles, new_histogram, record
from loadbench.workloads.report import LengthTally, counter_percentile

# A workload's answer check: True (right), False (wrong) or None (cannot tell).
AnswerCheck = Callable[["Prompt | None", str], "bool | None"]


class ServerTally:
    """One server-side figure (ms or tokens) across requests: exact count and mean; p50/p90 exact
    while every value is a whole number (token counts: a tally of the distinct values), else from
    a histogram at 0.1% resolution, so a long run keeps no per-request values."""

    __slots__ = ("count", "hist", "total", "whole")

    _SCALE = 1000  # thousandths of the unit, as integers
    _MAX_WHOLE = 10_000  # distinct whole values tallied exactly before falling back to the histogram

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.hist = new_histogram()
        self.whole: Counter[float] | None = Counter()

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        record(self.hist, int(value * self._SCALE))
        if self.whole is not None:
            if value == int(value) and len(self.whole) < self._MAX_WHOLE:
                self.whole[int(value)] += 1
            else:
                self.whole = None

    def report(self) -> dict[str, float] | None:
        """``mean``, ``p50`` and ``p90`` in the figure's own unit; ``None`` before any value."""
        if not self.count:
            return None
        if self.whole is not None:
            p50, p90 = counter_percentile(self.whole, 50), counter_percentile(self.whole, 90)
            return {"mean": self.total / self.count, "p50": p50, "p90": p90}
        p50, p90 = fast_percentiles([self.hist], (50.0, 90.0))
        return {"mean": self.total / self.count, "p50": p50 / self._SCALE, "p90": p90 / self._SCALE}


class RunFacts:
    """The facts gathered per measured ``ok`` request; ``check`` grades the answers (kept only
    when the run checks them, so ``record.text`` is ``None`` otherwise)."""

    def __init__(self, check: AnswerCheck | None = None) -> None:
        self._check = check
        self.lengths = LengthTally()
        self.indices = array("q")  # the record index of each, in order
        self.server: dict[str, ServerTally] = {}
        self.graded: list[int] = [0, 0, 0]  # correct, wrong, unchecked

    def add(self, record: RequestRecord, prompt: Prompt | None) -> None:
        """Tally one measured ``ok`` request (hot path: counts only); ``prompt`` is what it was
        sent (``None`` where its records came from elsewhere, as a worker's do)."""
        self.lengths.add(record)
        self.indices.append(record.index)
        if record.server:
            for key, value in record.server.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    tally = self.server.get(key)
                    if tally is None:
                        tally = self.server[key] = ServerTally()
                    tally.add(value)
        if record.text is not None and self._check is not None:
            verdict = self._check(prompt, "".join(record.text))
            self.graded[0 if verdict is True else 1 if verdict is False else 2] += 1

    def server_summary(self) -> dict[str, Any]:
        """The server's own timings (Ollama's done record, llama.cpp's timings) beside the
        client's: each numeric figure any request reported, by name, in name order."""
        return {k: self.server[k].report() for k in sorted(self.server)}

    def accuracy(self) -> dict[str, Any] | None:
        """The workload's own verdict on the answers (``None``: no answer was checked);
        ``accuracy`` is over the answers it could grade, ``unchecked`` counts the others."""
        correct, wrong, unchecked = self.graded
        if not (correct or wrong or unchecked):
            return None
        graded = correct + wrong
        return {
            "checked": graded,
            "correct": correct,
            "unchecked": unchecked,
            "accuracy": correct / graded if graded else None,
        }
