"""Load sweeps: a study over the load plan, and the knee of its throughput/latency curve.

    study = sweep(base, rates(1, 16, 6, spacing="geometric"))      # Poisson 1, 1.7, ... 16 /s
    study = sweep(base, concurrencies(1, 32, 6))                   # 1, 2, 4, 8, 16, 32 users

Each step is one cell, a full run with the base scenario's stop rule, so every step has its own
warm-up (``Stop(warmup_s=...)``) left out of its figures, and its own goodput when the scenario
has an ``slo``. After the sweep, the knee is the step where latency turns from flat to steep.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from loadbench.errors import ConfigError
from loadbench.load.plans import Concurrency, Constant, Gamma, Poisson
from loadbench.scenario import Scenario
from loadbench.studies.study import Study


def linear(start: float, stop: float, steps: int) -> list[float]:
    """``steps`` evenly spaced values from ``start`` to ``stop`` (both included)."""
    _check_range(start, stop, steps)
    if steps == 1:
        return [float(start)]
    return [start + (stop - start) * i / (steps - 1) for i in range(steps)]


def geometric(start: float, stop: float, steps: int) -> list[float]:
    """``steps`` values from ``start`` to ``stop`` with a constant ratio (both included)."""
    _check_range(start, stop, steps)
    if steps == 1:
        return [float(start)]
    ratio = (stop / start) ** (1.0 / (steps - 1))
    return [start * ratio**i for i in range(steps)]


def _check_range(start: float, stop: float, steps: int) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ConfigError(f"sweep steps must be an integer >= 1, got {steps!r}")
    for name, v in (("start", start), ("stop", stop)):
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
            raise ConfigError(f"sweep {name} must be a number > 0, got {v!r}")
    if stop < start:
        raise ConfigError(f"sweep stop ({stop:g}) must be >= start ({start:g})")


def _spaced(start: float, stop: float, steps: int, spacing: str) -> list[float]:
    if spacing == "linear":
        return linear(start, stop, steps)
    if spacing == "geometric":
        return geometric(start, stop, steps)
    raise ConfigError(f"sweep spacing must be 'linear' or 'geometric', got {spacing!r}")


def rate_plan(rate_per_s: float, arrivals: str = "poisson", max_concurrency: int | None = None) -> Any:
    """The open-loop plan for one rate: ``"poisson"``, ``"constant"`` or ``"gamma:SHAPE"`` arrivals."""
    if arrivals == "poisson":
        return Poisson(rate_per_s, max_concurrency=max_concurrency)
    if arrivals == "constant":
        return Constant(rate_per_s, max_concurrency=max_concurrency)
    if arrivals.startswith("gamma:"):
        try:
            shape = float(arrivals.partition(":")[2])
        except ValueError:
            shape = -1.0
        return Gamma(rate_per_s, burstiness=shape, max_concurrency=max_concurrency)
    raise ConfigError(f"arrivals must be 'poisson', 'constant' or 'gamma:SHAPE', got {arrivals!r}")


def rates(
    start: float,
    stop: float,
    steps: int,
    *,
    spacing: str = "linear",
    arrivals: str = "poisson",
    max_concurrency: int | None = None,
) -> list[Any]:
    """Open-loop plans at ``steps`` rates (requests/s) from ``start`` to ``stop``."""
    return [rate_plan(round(r, 6), arrivals, max_concurrency) for r in _spaced(start, stop, steps, spacing)]


def concurrencies(start: int, stop: int, steps: int, *, spacing: str = "geometric") -> list[Concurrency]:
    """Closed-loop plans at ``steps`` user counts from ``start`` to ``stop`` (rounded, repeats dropped)."""
    users = sorted({max(1, round(u)) for u in _spaced(start, stop, steps, spacing)})
    return [Concurrency(u) for u in users]


def sweep(base: Scenario, loads: Sequence[Any], *, repeat: int = 1, name: str | None = None, **vary: Any) -> Study:
    """A study of ``base`` over the load plans ``loads``; more axes may be added as keywords
    (``sweep(base, rates(1, 8, 5), deployment=[...])``), the load axis varying fastest."""
    if not loads:
        raise ConfigError("sweep needs at least one load plan, e.g. rates(1, 8, 5)")
    return Study(base=base, vary={**vary, "load": list(loads)}, repeat=repeat, name=name, kind="sweep")


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
