"""The command line's load options applied to a scenario's plan.

``--rate R`` replaces the plan with an open-loop arrival process at ``R`` requests/s: Poisson by
default, or the shape ``--arrivals`` names (``poisson``, ``constant``, ``gamma:CV`` with CV the
coefficient of variation of the gaps: 1 is Poisson, above 1 burstier, below 1 more regular).
``--concurrency N`` replaces it with ``N`` closed-loop users. ``--max-concurrency N`` caps requests
in flight on an open-loop plan (the scenario's own, or the one ``--rate`` makes). Whatever is not
given stays as the scenario set it, so ``--max-concurrency`` alone keeps the scenario's arrivals.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from loadbench.contract.errors import ConfigError
from loadbench.load.plans import Concurrency, Constant, Gamma, OpenLoopPlan, Poisson


@dataclass(frozen=True, slots=True)
class Arrivals:
    """An arrival shape without a rate: ``kind`` is poisson, constant or gamma (with ``cv``)."""

    kind: str
    cv: float = 1.0

    @classmethod
    def parse(cls, text: str) -> Arrivals:
        """``poisson``, ``constant`` or ``gamma:CV`` (CV > 0); ConfigError naming the value otherwise."""
        kind, _, value = text.strip().lower().partition(":")
        if kind in ("poisson", "constant") and not value:
            return cls(kind)
        if kind == "gamma":
            try:
                cv = float(value)
            except ValueError:
                cv = math.nan
            if not (math.isfinite(cv) and cv > 0):
                raise ConfigError(f"--arrivals gamma:CV needs a coefficient of variation > 0, got {text!r}")
            return cls("gamma", cv)
        raise ConfigError(f"--arrivals must be poisson, constant or gamma:CV (e.g. gamma:2), got {text!r}")

    def plan(self, rate_per_s: float, max_concurrency: int | None) -> OpenLoopPlan:
        if self.kind == "constant":
            return Constant(rate_per_s, max_concurrency=max_concurrency)
        if self.kind == "gamma" and self.cv != 1.0:
            # A gamma distribution's CV is 1 / sqrt(shape).
            return Gamma(rate_per_s, burstiness=1.0 / (self.cv * self.cv), max_concurrency=max_concurrency)
        return Poisson(rate_per_s, max_concurrency=max_concurrency)


def override_load(
    plan: Any,
    *,
    rate_per_s: float | None = None,
    arrivals: Arrivals | None = None,
    concurrency: int | None = None,
    max_concurrency: int | None = None,
) -> Any:
    """``plan`` with the command line's load options applied (``None``: not given).

    Raises ConfigError for combinations that mean nothing: a rate with closed-loop users, a cap on
    a closed loop (its users are the cap), arrivals with no rate to shape.
    """
    if rate_per_s is not None and concurrency is not None:
        raise ConfigError("--rate and --concurrency both set the load: give one (--max-concurrency caps a --rate)")
    if rate_per_s is not None and not (math.isfinite(rate_per_s) and rate_per_s > 0):
        raise ConfigError(f"--rate must be > 0 requests/s, got {rate_per_s:g}")
    if concurrency is not None and concurrency < 1:
        raise ConfigError(f"--concurrency must be >= 1 user, got {concurrency}")
    if max_concurrency is not None and max_concurrency < 1:
        raise ConfigError(f"--max-concurrency must be >= 1, got {max_concurrency}")
    if concurrency is not None:
        if max_concurrency is not None:
            raise ConfigError("--max-concurrency caps an open-loop rate; with --concurrency N the N users are the cap")
        if arrivals is not None:
            raise ConfigError("--arrivals shapes a --rate; it means nothing with --concurrency")
        think_s = plan.think_s if isinstance(plan, Concurrency) else 0.0
        return Concurrency(concurrency, think_s=think_s)
    if rate_per_s is None and arrivals is not None:
        rate_per_s = getattr(plan, "rate_per_s", None) if isinstance(plan, Constant | Gamma) else None
        if rate_per_s is None:
            raise ConfigError(f"--arrivals needs --rate: the scenario's {type(plan).__name__} plan has no single rate")
    if rate_per_s is not None:
        cap = max_concurrency if max_concurrency is not None else getattr(plan, "max_concurrency", None)
        return (arrivals or Arrivals("poisson")).plan(rate_per_s, cap)
    if max_concurrency is not None:
        if isinstance(plan, Concurrency):
            raise ConfigError(
                f"--max-concurrency caps an open-loop plan; the scenario's load is Concurrency({plan.users}) "
                "(use --concurrency N, or --rate R --max-concurrency N)"
            )
        if not (dataclasses.is_dataclass(plan) and hasattr(plan, "max_concurrency")):
            raise ConfigError(f"--max-concurrency: the scenario's {type(plan).__name__} plan takes no cap")
        return dataclasses.replace(plan, max_concurrency=max_concurrency)
    return plan
