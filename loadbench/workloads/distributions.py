"""Token-length distributions: how long a workload's inputs and outputs are.

Every distribution is a frozen value that draws whole token counts (>= 1) from a
``numpy.random.Generator`` the caller seeds, so a stream's lengths are reproducible from its seed.
``describe()`` gives a JSON-ready dict for run.json.

* ``Fixed(n)``: always ``n``.
* ``Uniform(low, high)``: integers in ``[low, high]``, both ends included.
* ``Normal(mean, sd, min, max)``: a normal truncated to ``[min, max]`` (redrawn, not clipped,
  so no mass piles up at the bounds), rounded to an integer.
* ``LogNormal(mean, sd, min, max)``: a log-normal whose own mean and standard deviation are
  ``mean`` and ``sd`` (in tokens, not log-tokens), truncated and rounded like ``Normal``.
* ``Empirical(values)`` or ``Empirical.from_file(path)``: draws uniformly from observed lengths.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from loadbench.contract.errors import ConfigError

__all__ = ["Distribution", "Empirical", "Fixed", "LogNormal", "Normal", "Uniform", "as_distribution"]

# Truncated draws are redrawn this many times before falling back to clipping; with sane bounds
# (the bulk of the mass inside them) the fallback never triggers.
_REDRAWS = 64


@runtime_checkable
class Distribution(Protocol):
    """Draws token counts."""

    def sample(self, rng: np.random.Generator) -> int:
        """One token count, >= 1."""
        ...

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (kind and parameters)."""
        ...


def _count(owner: str, name: str, value: object, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{owner}.{name} must be an integer >= {minimum} (tokens), got {value!r}")


def _number(owner: str, name: str, value: object, *, positive: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and positive:
        ok = value > 0  # type: ignore[operator]
    if not ok:
        what = "a positive number" if positive else "a finite number"
        raise ConfigError(f"{owner}.{name} must be {what} (tokens), got {value!r}")


def _bounds(owner: str, low: int, high: int | None) -> None:
    _count(owner, "min", low)
    if high is not None:
        _count(owner, "max", high)
        if high < low:
            raise ConfigError(f"{owner}.max ({high}) must be >= min ({low})")


@dataclass(frozen=True, slots=True)
class Fixed:
    """Always ``tokens``."""

    tokens: int

    def __post_init__(self) -> None:
        _count("Fixed", "tokens", self.tokens)

    def sample(self, rng: np.random.Generator) -> int:
        return int(self.tokens)

    def describe(self) -> dict[str, Any]:
        return {"kind": "fixed", "tokens": int(self.tokens)}


@dataclass(frozen=True, slots=True)
class Uniform:
    """Integers from ``low`` to ``high``, both included, equally likely."""

    low: int
    high: int

    def __post_init__(self) -> None:
        _count("Uniform", "low", self.low)
        _count("Uniform", "high", self.high)
        if self.high < self.low:
            raise ConfigError(f"Uniform.high ({self.high}) must be >= low ({self.low})")

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.low, self.high, endpoint=True))

    def describe(self) -> dict[str, Any]:
        return {"kind": "uniform", "low": int(self.low), "high": int(self.high)}


def _truncated(draw: Any, rng: np.random.Generator, low: int, high: int | None) -> int:
    top = math.inf if high is None else high + 0.5
    for _ in range(_REDRAWS):
        x = draw(rng)
        if low - 0.5 <= x < top:
            n = round(x)
            return max(low, n if high is None else min(high, n))
    x = draw(rng)
    return int(min(max(round(x), low), high if high is not None else math.inf))


@dataclass(frozen=True, slots=True)
class Normal:
    """A normal with mean ``mean`` and standard deviation ``sd`` (tokens), truncated to
    ``[min, max]`` by redrawing, rounded to an integer."""

    mean: float
    sd: float
    min: int = 1
    max: int | None = None

    def __post_init__(self) -> None:
        _number("Normal", "mean", self.mean)
        _number("Normal", "sd", self.sd)
        if self.sd < 0:
            raise ConfigError(f"Normal.sd must be >= 0 (tokens), got {self.sd!r}")
        _bounds("Normal", self.min, self.max)

    def sample(self, rng: np.random.Generator) -> int:
        return _truncated(lambda r: r.normal(self.mean, self.sd), rng, self.min, self.max)

    def describe(self) -> dict[str, Any]:
        return {"kind": "normal", "mean": self.mean, "sd": self.sd, "min": self.min, "max": self.max}


@dataclass(frozen=True, slots=True)
class LogNormal:
    """A log-normal whose mean and standard deviation are ``mean`` and ``sd`` tokens (the
    underlying normal's parameters are derived), truncated to ``[min, max]`` and rounded.

    Right-skewed like real prompt and answer lengths: most requests short, a long tail."""

    mean: float
    sd: float
    min: int = 1
    max: int | None = None
    _mu: float = field(init=False, repr=False, compare=False)
    _sigma: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _number("LogNormal", "mean", self.mean, positive=True)
        _number("LogNormal", "sd", self.sd, positive=True)
        _bounds("LogNormal", self.min, self.max)
        sigma2 = math.log1p((self.sd / self.mean) ** 2)
        object.__setattr__(self, "_sigma", math.sqrt(sigma2))
        object.__setattr__(self, "_mu", math.log(self.mean) - sigma2 / 2)

    def sample(self, rng: np.random.Generator) -> int:
        return _truncated(lambda r: r.lognormal(self._mu, self._sigma), rng, self.min, self.max)

    def describe(self) -> dict[str, Any]:
        return {"kind": "lognormal", "mean": self.mean, "sd": self.sd, "min": self.min, "max": self.max}


@dataclass(frozen=True, slots=True)
class Empirical:
    """Draws uniformly among observed lengths (each value as often as it was observed).

    ``values`` are token counts; ``source`` names where they came from (a file path, for
    ``from_file``), for the description only."""

    values: tuple[int, ...]
    source: str | None = None

    def __post_init__(self) -> None:
        values = tuple(self.values)
        if not values:
            raise ConfigError("Empirical.values must hold at least one token count, got none")
        for i, v in enumerate(values):
            _count("Empirical", f"values[{i}]", v)
        object.__setattr__(self, "values", tuple(int(v) for v in values))

    @classmethod
    def from_file(cls, path: str | Path, *, column: str | None = None) -> Empirical:
        """Lengths from a file: a JSON list, or numbers separated by newlines, commas or spaces.

        With ``column``, the file is a CSV (or JSONL) and that column (key) holds the lengths, e.g.
        ``Empirical.from_file("AzureLLMInferenceTrace_conv.csv", column="ContextTokens")``.
        """
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"Empirical.from_file: cannot read {str(p)!r}: {e.strerror or e}") from e
        try:
            values = _parse_lengths(text, column)
        except ValueError as e:
            raise ConfigError(f"Empirical.from_file: {str(p)!r}: {e}") from e
        return cls(values=tuple(values), source=str(p))

    def sample(self, rng: np.random.Generator) -> int:
        return self.values[int(rng.integers(len(self.values)))]

    def describe(self) -> dict[str, Any]:
        arr = np.asarray(self.values)
        return {
            "kind": "empirical",
            "source": self.source,
            "n": len(self.values),
            "mean": float(arr.mean()),
            "p50": float(np.percentile(arr, 50)),
            "p90": float(np.percentile(arr, 90)),
            "min": int(arr.min()),
            "max": int(arr.max()),
        }


def _parse_lengths(text: str, column: str | None) -> list[int]:
    stripped = text.strip()
    if column is None:
        raw = json.loads(stripped) if stripped.startswith("[") else re.split(r"[\s,;]+", stripped)
    elif stripped.startswith("{"):
        raw = [json.loads(line)[column] for line in stripped.splitlines() if line.strip()]
    else:
        import csv
        import io

        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None or column not in reader.fieldnames:
            raise ValueError(f"no column {column!r} (columns: {reader.fieldnames})")
        raw = [row[column] for row in reader]
    out = []
    for item in raw:
        try:
            value = float(item)
        except (TypeError, ValueError):
            raise ValueError(f"{item!r} is not a token count") from None
        if not value.is_integer() or value < 1:
            raise ValueError(f"{item!r} is not a positive whole token count")
        out.append(int(value))
    if not out:
        raise ValueError("no lengths found")
    return out


def as_distribution(owner: str, name: str, value: object) -> Distribution:
    """``value`` as a distribution: an int means ``Fixed``; anything else must be one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Fixed(value)
    if isinstance(value, Distribution):
        return value
    raise ConfigError(
        f"{owner}.{name} must be a token count or a length distribution (Fixed, Uniform, Normal, "
        f"LogNormal, Empirical), got {value!r}"
    )
