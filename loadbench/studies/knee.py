"""The knee of a sweep: the step where latency turns from flat to steep.

A study of kind "sweep" (``loadbench.studies.sweep``) reports one knee per group of cells that
differ only in load. This module reads finished rows and imports no study machinery, so the study
runner can call it without importing the sweep that builds studies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from loadbench.load.plans import Concurrency

if TYPE_CHECKING:
    from loadbench.studies.study import Study


def load_value(plan: Any) -> float | None:
    """The offered load of a plan: requests/s for open loop, users for closed loop."""
    if isinstance(plan, Concurrency):
        return float(plan.users)
    rate = getattr(plan, "rate_per_s", None)
    return float(rate) if isinstance(rate, int | float) else None


def knee(points: Sequence[tuple[float, float]]) -> int | None:
    """The index of the knee of a rising latency curve ``[(load, latency), ...]`` sorted by load.

    Kneedle (Satopää et al., 2011): scale both axes to [0, 1] and take the point farthest below the
    straight line from the first point to the last; for a curve flat then steep that is the last
    load before latency takes off. ``None`` with fewer than three points, a latency that does not
    rise, or a curve with no bend below the line (the knee lies outside the sweep).
    """
    if len(points) < 3:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if x1 <= x0 or y1 <= y0 or ys[-1] < ys[0] * 1.2:
        return None
    diffs = [(x - x0) / (x1 - x0) - (y - y0) / (y1 - y0) for x, y in points]
    best = max(range(len(points)), key=diffs.__getitem__)
    if diffs[best] <= 0.05 or best == len(points) - 1:
        return None
    return best


def knees(study: Study, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The knee of each group of finished cells that differ only in load (and repeat)."""
    loads = {cell.id: load_value(dict((a, v) for a, _, v in cell.values).get("load")) for cell in study.plan()}
    groups: dict[tuple[tuple[str, str], ...], list[dict[str, Any]]] = {}
    for row in rows:
        if row["status"] != "finished" or loads.get(row["id"]) is None:
            continue
        key = tuple(sorted((k, v) for k, v in row["values"].items() if k != "load"))
        groups.setdefault(key, []).append(row)
    out = []
    for key, members in groups.items():
        metric = "ttft_ms_p99" if all(m.get("ttft_ms_p99") is not None for m in members) else "e2e_ms_p99"
        by_load: dict[float, list[dict[str, Any]]] = {}
        for m in members:
            if m.get(metric) is not None:
                by_load.setdefault(loads[m["id"]], []).append(m)  # repeats: their mean
        xs = sorted(by_load)
        points = [(x, sum(m[metric] for m in by_load[x]) / len(by_load[x])) for x in xs]
        index = knee(points)
        entry: dict[str, Any] = {"group": dict(key), "metric": metric, "method": "kneedle"}
        if index is None:
            entry.update(load=None, note="no knee inside the sweep (latency flat, or still bending at its end)")
        else:
            chosen = by_load[xs[index]]
            tput = [m["requests_per_s"] for m in chosen if m.get("requests_per_s") is not None]
            entry.update(
                load=xs[index],
                cells=[m["id"] for m in chosen],
                latency_ms=points[index][1],
                requests_per_s=sum(tput) / len(tput) if tput else None,
            )
        out.append(entry)
    return out
