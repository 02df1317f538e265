"""Turning one channel's readings into energy over any time window. Pure functions, no clocks.

Every signal kind becomes the same thing, a *cumulative energy timeline*: increasing times (ns)
with the joules accumulated up to each. Energy between two instants is the difference of the
timeline at those instants, interpolated linearly between points and never extrapolated past
the first or last point (the uncovered part is reported as missing coverage instead).

* ``counter_j`` readings are the timeline already.
* ``power_w`` readings are integrated with the trapezoid rule.
* ``interval_power_w`` readings add ``watts x span`` each, exactly; a first reading with a span
  starts the timeline ``span`` before itself.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from loadbench.energy.base import Signal


class Timeline:
    """Cumulative joules at increasing times; ``cumulative_j[i]`` belongs to ``t_ns[i]``."""

    __slots__ = ("cumulative_j", "t_ns")

    def __init__(self, t_ns: list[int], cumulative_j: list[float]) -> None:
        self.t_ns = t_ns
        self.cumulative_j = cumulative_j

    def __bool__(self) -> bool:
        return len(self.t_ns) >= 2

    def at(self, t_ns: int) -> float:
        """Joules accumulated up to ``t_ns``, clamped to the timeline's ends."""
        times = self.t_ns
        if not times:
            return 0.0
        if t_ns <= times[0]:
            return self.cumulative_j[0]
        if t_ns >= times[-1]:
            return self.cumulative_j[-1]
        i = bisect_right(times, t_ns)
        t0, t1 = times[i - 1], times[i]
        c0, c1 = self.cumulative_j[i - 1], self.cumulative_j[i]
        if t1 == t0:
            return c1
        return c0 + (c1 - c0) * (t_ns - t0) / (t1 - t0)

    def energy_j(self, start_ns: int, end_ns: int) -> float:
        """Joules between two instants (the covered part of the interval only)."""
        return self.at(end_ns) - self.at(start_ns)

    def coverage(self, start_ns: int, end_ns: int) -> float:
        """The fraction of ``[start_ns, end_ns]`` that lies between the first and last point."""
        if end_ns <= start_ns:
            return 1.0 if self else 0.0
        if not self:
            return 0.0
        overlap = min(end_ns, self.t_ns[-1]) - max(start_ns, self.t_ns[0])
        return max(0.0, overlap) / (end_ns - start_ns)


def cumulative(
    signal: Signal,
    t_ns: Sequence[int],
    values: Sequence[float],
    spans_ns: Sequence[int | None] | None = None,
) -> tuple[Timeline, list[float]]:
    """The timeline of one channel's readings (in time order), and the cumulative joules at each.

    Readings must be in non-decreasing time order. Returns the timeline (which, for an
    ``interval_power_w`` first reading with a span, has one extra leading point) and a list with
    one cumulative figure per reading, for the CSV.
    """
    n = len(t_ns)
    if n != len(values):
        raise ValueError("t_ns and values differ in length")
    per_reading: list[float] = []
    times: list[int] = []
    cum: list[float] = []
    if signal == "counter_j":
        if n:
            origin = values[0]
            per_reading = [v - origin for v in values]
            times = list(t_ns)
            cum = list(per_reading)
    elif signal == "power_w":
        total = 0.0
        for i in range(n):
            if i:
                total += (values[i - 1] + values[i]) / 2 * (t_ns[i] - t_ns[i - 1]) / 1e9
            per_reading.append(total)
        times, cum = list(t_ns), list(per_reading)
    elif signal == "interval_power_w":
        total = 0.0
        for i in range(n):
            span = spans_ns[i] if spans_ns is not None else None
            if span is None:
                span = t_ns[i] - t_ns[i - 1] if i else 0
            if i == 0 and span > 0:
                times.append(t_ns[0] - span)
                cum.append(0.0)
            total += values[i] * span / 1e9
            per_reading.append(total)
            times.append(t_ns[i])
            cum.append(total)
    else:
        raise ValueError(f"unknown signal {signal!r}")
    return Timeline(times, cum), per_reading
