"""How the energy meter is set up: one frozen value object, validated when it is made."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from loadbench.contract.errors import ConfigError

# The sources a user may name, in the order "auto" tries them.
SOURCE_NAMES = ("nvml", "rapl", "powermetrics", "macmon", "cpu-estimate")

# Watts one fully busy CPU core is assumed to draw when nothing can be measured: a desktop or
# server x86 part's rated power divided by its cores lands around 5-15 W (e.g. 125 W / 12 cores,
# 280 W / 32 cores); 10 W sits in the middle. It is a coarse assumption, which is why every figure
# it produces is labelled an estimate; pass ``cpu_watts_per_core`` for your own hardware.
DEFAULT_CPU_WATTS_PER_CORE = 10.0

DEFAULT_RAPL_ROOT = Path("/sys/class/powercap")


@dataclass(frozen=True, slots=True)
class EnergyConfig:
    """Settings for ``EnergyMeter``.

    * ``interval_s``: seconds between samples (0.1 = 10 Hz).
    * ``idle_s``: seconds of idle baseline measured on entry, before any load; 0 skips it.
    * ``sources``: ``"auto"`` (every measured source found; the CPU-time estimate only when there
      is none), or a tuple naming sources from ``SOURCE_NAMES``, each used when available.
    * ``cpu_watts_per_core``: watts per busy core for the ``cpu-estimate`` source
      (``None``: ``DEFAULT_CPU_WATTS_PER_CORE``).
    * ``remote_j_per_output_token`` and ``remote_source``: an energy model for remote deployments,
      which cannot be metered: joules per generated token, and where that figure comes from (a
      paper, a provider's statement). Both or neither.
    * ``extra_pids``: processes (with their children) the CPU-time estimate counts besides this
      process tree, e.g. an inference server started elsewhere.
    * ``rapl_root``: where the powercap tree lives (tests point it at a directory they write).
    """

    interval_s: float = 0.1
    idle_s: float = 1.0
    sources: str | tuple[str, ...] = "auto"
    cpu_watts_per_core: float | None = None
    remote_j_per_output_token: float | None = None
    remote_source: str | None = None
    extra_pids: tuple[int, ...] = ()
    rapl_root: str | Path = DEFAULT_RAPL_ROOT

    def __post_init__(self) -> None:
        if not _finite(self.interval_s) or not 0.001 <= self.interval_s <= 60:
            raise ConfigError(f"energy interval_s={self.interval_s!r}: expected seconds between 0.001 and 60")
        if not _finite(self.idle_s) or self.idle_s < 0:
            raise ConfigError(f"energy idle_s={self.idle_s!r}: expected seconds >= 0")
        if isinstance(self.sources, str):
            if self.sources != "auto":
                raise ConfigError(
                    f"energy sources={self.sources!r}: expected 'auto' or a tuple of names from "
                    f"{', '.join(SOURCE_NAMES)}"
                )
        else:
            if not self.sources:
                raise ConfigError("energy sources=(): expected 'auto' or at least one source name")
            for name in self.sources:
                if name not in SOURCE_NAMES:
                    raise ConfigError(f"energy source {name!r} is unknown: expected one of {', '.join(SOURCE_NAMES)}")
        if self.cpu_watts_per_core is not None and (
            not _finite(self.cpu_watts_per_core) or self.cpu_watts_per_core <= 0
        ):
            raise ConfigError(f"energy cpu_watts_per_core={self.cpu_watts_per_core!r}: expected watts > 0")
        j = self.remote_j_per_output_token
        if j is not None and (not _finite(j) or j < 0):
            raise ConfigError(f"energy remote_j_per_output_token={j!r}: expected joules >= 0")
        if (j is None) != (not self.remote_source):
            raise ConfigError(
                "energy remote_j_per_output_token and remote_source go together: a remote energy "
                "model must say where its figure comes from"
            )
        for pid in self.extra_pids:
            if not isinstance(pid, int) or pid <= 0:
                raise ConfigError(f"energy extra_pids holds {pid!r}: expected process ids > 0")

    def describe(self) -> dict[str, object]:
        """The settings as JSON-ready values (for run.json), the per-core default resolved."""
        return {
            "type": "EnergyConfig",
            "interval_s": self.interval_s,
            "idle_s": self.idle_s,
            "sources": self.sources if isinstance(self.sources, str) else list(self.sources),
            "cpu_watts_per_core": self.watts_per_core,
            "cpu_watts_per_core_default": self.cpu_watts_per_core is None,
            "remote_j_per_output_token": self.remote_j_per_output_token,
            "remote_source": self.remote_source,
            "extra_pids": list(self.extra_pids),
            "rapl_root": str(self.rapl_root),
        }

    @property
    def watts_per_core(self) -> float:
        """The per-core power the CPU estimate uses, default applied."""
        if self.cpu_watts_per_core is None:
            return DEFAULT_CPU_WATTS_PER_CORE
        return self.cpu_watts_per_core


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
