"""Deciding which fault, if any, a request gets (seeded draws in arrival order)."""

from __future__ import annotations

import random

from loadbench.sim.config import FaultPlan

__all__ = ["FaultPicker"]


class FaultPicker:
    """Draws each request's fault from a ``FaultPlan``.

    A scheduled window covering the request's arrival wins; otherwise one uniform draw is compared
    with the cumulative rates, so a request gets at most one fault and each kind's share converges
    to its rate. The draws come from one generator seeded with the config's seed, so a run that
    sends requests in the same order sees the same faults.
    """

    __slots__ = ("_cumulative", "_rng", "_windows")

    def __init__(self, plan: FaultPlan, seed: int) -> None:
        self._rng = random.Random(seed ^ 0xFA017)
        total = 0.0
        cumulative = []
        for kind, rate in plan.rates.items():
            if rate > 0:
                total += rate
                cumulative.append((total, kind))
        self._cumulative = tuple(cumulative)
        self._windows = tuple(
            (w.start_s, w.end_s, w.kind, w.rate) for w in plan.schedule if w.kind != "refuse"
        )

    def pick(self, elapsed_s: float) -> str | None:
        """The fault for a request arriving ``elapsed_s`` seconds after the server started."""
        for start_s, end_s, kind, rate in self._windows:
            if start_s <= elapsed_s < end_s and (rate >= 1 or self._rng.random() < rate):
                return kind
        if self._cumulative:
            u = self._rng.random()
            for edge, kind in self._cumulative:
                if u < edge:
                    return kind
        return None
