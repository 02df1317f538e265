"""Load plans: WHEN requests fire.

Two families:

* Closed loop, ``Concurrency(users)``: each user sends its next request when its last answer
  ends (plus an optional think time). The intended time of a request is when its user became free.
* Open loop: the plan gives the offset of request *i* from the run's start, independent of how
  the server answers. ``Constant``, ``Poisson`` and ``Gamma`` gaps, ``Burst`` waves and a ``Ramp``.
  An optional ``max_concurrency`` caps requests in flight; time spent waiting for the cap is
  never hidden: it shows as dispatch lag and in the from-schedule latencies.

Offsets are computed from the plan (start + offset of request *i*), never by summing sleeps, so
dispatch error does not accumulate.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from loadbench.contract.errors import ConfigError
from loadbench.params import named_parameters

NS_PER_S = 1_000_000_000


@runtime_checkable
class OpenLoopPlan(Protocol):
    """An arrival process: request offsets from the run's start, independent of the responses."""

    @property
    def max_concurrency(self) -> int | None:
        """At most this many requests in flight (None: no cap). Read-only, so frozen plans qualify."""
        ...

    def offsets_ns(self, rng: np.random.Generator) -> Iterator[int]:
        """Offsets (ns from the run's start) of requests 0, 1, 2, ...; non-decreasing, may be finite."""
        ...

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description for run.json."""
        ...


def _positive(owner: str, name: str, value: object, *, integer: bool = False, zero_ok: bool = False) -> None:
    kind = int if integer else (int, float)
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok and isinstance(value, float):
        ok = math.isfinite(value)
    if ok:
        ok = value >= 0 if zero_ok else value > 0  # type: ignore[operator]
    if not ok:
        what = "an integer" if integer else "a number"
        sign = ">= 0" if zero_ok else "> 0"
        raise ConfigError(f"{owner}.{name} must be {what} {sign}, got {value!r}")


def _check_cap(owner: str, cap: int | None) -> None:
    if cap is not None:
        _positive(owner, "max_concurrency", cap, integer=True)


class _Described:
    def describe(self) -> dict[str, Any]:
        return {"plan": type(self).__name__, **asdict(self)}  # type: ignore[call-overload]


@named_parameters
@dataclass(frozen=True, slots=True)
class Concurrency(_Described):
    """Closed loop: ``users`` virtual users, each sending when its previous answer has ended.

    ``think_s`` is a pause between a user's answer and its next request (0 = back to back).
    """

    users: int
    think_s: float = 0.0

    def __post_init__(self) -> None:
        _positive("Concurrency", "users", self.users, integer=True)
        _positive("Concurrency", "think_s", self.think_s, zero_ok=True)


@named_parameters
@dataclass(frozen=True, slots=True)
class Constant(_Described):
    """Open loop: one request every ``1 / rate_per_s`` seconds exactly."""

    rate_per_s: float
    max_concurrency: int | None = None

    def __post_init__(self) -> None:
        _positive("Constant", "rate_per_s", self.rate_per_s)
        _check_cap("Constant", self.max_concurrency)

    def offsets_ns(self, rng: np.random.Generator) -> Iterator[int]:
        i = 0
        while True:
            yield round(i * NS_PER_S / self.rate_per_s)
            i += 1


@named_parameters
@dataclass(frozen=True, slots=True)
class Gamma(_Described):
    """Open loop: gamma-distributed gaps with mean ``1 / rate_per_s``.

    ``burstiness`` is the gamma shape: 1 gives Poisson arrivals, below 1 burstier (clustered)
    arrivals, above 1 more regular ones (the same convention as vLLM's benchmark).
    """

    rate_per_s: float
    burstiness: float = 1.0
    max_concurrency: int | None = None

    def __post_init__(self) -> None:
        _positive(type(self).__name__, "rate_per_s", self.rate_per_s)
        _positive(type(self).__name__, "burstiness", self.burstiness)
        _check_cap(type(self).__name__, self.max_concurrency)

    def offsets_ns(self, rng: np.random.Generator) -> Iterator[int]:
        scale_s = 1.0 / (self.rate_per_s * self.burstiness)
        # Gaps are drawn in blocks (cheap) and summed in float seconds from a fixed origin; the
        # first request goes at offset 0, as in the other plans.
        t_s = 0.0
        yield 0
        while True:
            for gap_s in rng.gamma(self.burstiness, scale_s, size=1024):
                t_s += float(gap_s)
                yield round(t_s * NS_PER_S)


@named_parameters
@dataclass(frozen=True, slots=True)
class Poisson(Gamma):
    """Open loop: exponential gaps (a Poisson process) at ``rate_per_s`` on average."""

    rate_per_s: float
    burstiness: float = 1.0
    max_concurrency: int | None = None

    def __post_init__(self) -> None:
        if self.burstiness != 1.0:
            raise ConfigError("Poisson.burstiness is always 1; use Gamma(rate_per_s, burstiness=...)")
        Gamma.__post_init__(self)

    def describe(self) -> dict[str, Any]:
        return {"plan": "Poisson", "rate_per_s": self.rate_per_s, "max_concurrency": self.max_concurrency}


@named_parameters
@dataclass(frozen=True, slots=True)
class Burst(_Described):
    """Open loop: waves of ``size`` requests released together, one wave every ``every_s``.

    ``waves`` bounds the number of waves (None: until the stop rule ends the run).
    """

    size: int
    every_s: float = 1.0
    waves: int | None = None
    max_concurrency: int | None = None

    def __post_init__(self) -> None:
        _positive("Burst", "size", self.size, integer=True)
        _positive("Burst", "every_s", self.every_s)
        if self.waves is not None:
            _positive("Burst", "waves", self.waves, integer=True)
        _check_cap("Burst", self.max_concurrency)

    def offsets_ns(self, rng: np.random.Generator) -> Iterator[int]:
        wave = 0
        while self.waves is None or wave < self.waves:
            offset = round(wave * self.every_s * NS_PER_S)
            for _ in range(self.size):
                yield offset
            wave += 1


@named_parameters
@dataclass(frozen=True, slots=True)
class Ramp(_Described):
    """Open loop: the rate moves linearly from ``from_rate_per_s`` to ``to_rate_per_s`` over
    ``over_s`` seconds, then stays at ``to_rate_per_s``.

    ``arrivals="constant"`` spaces requests evenly in expected count; ``"poisson"`` draws an
    inhomogeneous Poisson process with that rate (by time rescaling).
    """

    from_rate_per_s: float
    to_rate_per_s: float
    over_s: float
    arrivals: str = "constant"
    max_concurrency: int | None = None

    def __post_init__(self) -> None:
        _positive("Ramp", "from_rate_per_s", self.from_rate_per_s, zero_ok=True)
        _positive("Ramp", "to_rate_per_s", self.to_rate_per_s)
        _positive("Ramp", "over_s", self.over_s)
        if self.arrivals not in ("constant", "poisson"):
            raise ConfigError(f"Ramp.arrivals must be 'constant' or 'poisson', got {self.arrivals!r}")
        _check_cap("Ramp", self.max_concurrency)

    def _time_for_count(self, n: float) -> float:
        """Seconds at which the expected number of arrivals reaches ``n`` (inverse of the integral)."""
        a, b, big_t = self.from_rate_per_s, self.to_rate_per_s, self.over_s
        ramp_count = (a + b) * big_t / 2
        if n >= ramp_count:
            return big_t + (n - ramp_count) / b
        slope = (b - a) / big_t
        if abs(slope) < 1e-12:
            return n / a
        # a t + slope t^2 / 2 = n  →  the positive root
        return (-a + math.sqrt(a * a + 2 * slope * n)) / slope

    def offsets_ns(self, rng: np.random.Generator) -> Iterator[int]:
        n = 0.0
        while True:
            yield round(self._time_for_count(n) * NS_PER_S)
            n += 1.0 if self.arrivals == "constant" else float(rng.exponential(1.0))


LoadPlan = Concurrency | Constant | Poisson | Gamma | Burst | Ramp | OpenLoopPlan


def is_closed_loop(plan: object) -> bool:
    return isinstance(plan, Concurrency)


def check_plan(plan: object, where: str = "load") -> None:
    """Raise ConfigError unless ``plan`` is a closed-loop plan or implements OpenLoopPlan."""
    if isinstance(plan, (Concurrency, OpenLoopPlan)):
        return
    raise ConfigError(
        f"{where} must be a load plan (Concurrency, Constant, Poisson, Gamma, Burst, Ramp or a trace "
        f"plan), got {plan!r}"
    )


@named_parameters
@dataclass(frozen=True, slots=True)
class Stop:
    """When the run ends, and which part of it is measured.

    The run stops scheduling at ``duration_s`` or after ``requests`` requests, whichever comes
    first (at least one must be given). Requests intended in the first ``warmup_s`` seconds, or
    among the first ``warmup_requests``, and those intended in the last ``cooldown_s`` seconds are
    kept in the records but left out of the summary. In-flight requests get ``drain_s`` seconds to
    finish once scheduling stops; the rest are cancelled and counted as such.
    """

    duration_s: float | None = None
    requests: int | None = None
    warmup_s: float = 0.0
    warmup_requests: int = 0
    cooldown_s: float = 0.0
    drain_s: float = 30.0

    def __post_init__(self) -> None:
        if self.duration_s is None and self.requests is None:
            raise ConfigError("Stop needs duration_s or requests (or both)")
        if self.duration_s is not None:
            _positive("Stop", "duration_s", self.duration_s)
        if self.requests is not None:
            _positive("Stop", "requests", self.requests, integer=True)
        _positive("Stop", "warmup_s", self.warmup_s, zero_ok=True)
        _positive("Stop", "warmup_requests", self.warmup_requests, integer=True, zero_ok=True)
        _positive("Stop", "cooldown_s", self.cooldown_s, zero_ok=True)
        if self.cooldown_s and self.duration_s is None:
            raise ConfigError("Stop.cooldown_s needs duration_s: the cool-down is the end of a timed run")
        _positive("Stop", "drain_s", self.drain_s, zero_ok=True)
        if self.duration_s is not None and self.warmup_s + self.cooldown_s >= self.duration_s:
            raise ConfigError(
                f"Stop.warmup_s + cooldown_s ({self.warmup_s + self.cooldown_s:g} s) must be shorter "
                f"than duration_s ({self.duration_s:g} s)"
            )
        if self.requests is not None and self.warmup_requests >= self.requests:
            raise ConfigError(
                f"Stop.warmup_requests ({self.warmup_requests}) must be below requests ({self.requests})"
            )

    def phase(self, index: int, offset_ns: int) -> str:
        """The phase of request ``index`` intended ``offset_ns`` after the start."""
        if index < self.warmup_requests or offset_ns < self.warmup_s * NS_PER_S:
            return "warmup"
        if self.cooldown_s and self.duration_s is not None and (
            offset_ns >= (self.duration_s - self.cooldown_s) * NS_PER_S
        ):
            return "cooldown"
        return "measured"

    def describe(self) -> dict[str, Any]:
        return asdict(self)
