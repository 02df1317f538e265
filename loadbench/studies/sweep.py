"""Load sweeps: a study over the load plan (its knee: ``loadbench.studies.knee``).

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

from loadbench.contract.errors import ConfigError
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
