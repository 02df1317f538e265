"""Which sources to open, from the configuration: the rules of ``sources="auto"`` live here."""

from __future__ import annotations

from dataclasses import dataclass

from loadbench.energy.apple import MacmonSource, PowermetricsSource
from loadbench.energy.base import EnergySource
from loadbench.energy.config import SOURCE_NAMES, EnergyConfig
from loadbench.energy.estimate import CpuTimeEstimate
from loadbench.energy.nvml import NvmlSource
from loadbench.energy.rapl import RaplSource


def make_source(name: str, config: EnergyConfig) -> EnergySource:
    """A fresh, unopened source of that name."""
    if name == "nvml":
        return NvmlSource()
    if name == "rapl":
        return RaplSource(config.rapl_root)
    if name == "powermetrics":
        return PowermetricsSource(config.interval_s)
    if name == "macmon":
        return MacmonSource(config.interval_s)
    if name == "cpu-estimate":
        return CpuTimeEstimate(config.watts_per_core, extra_pids=config.extra_pids)
    raise ValueError(f"unknown energy source {name!r}")


@dataclass(frozen=True, slots=True)
class Plan:
    """The sources to try, in order, and for ``auto`` when one is skipped because of another."""

    names: tuple[str, ...]
    auto: bool

    def skip_reason(self, name: str, in_use: list[str]) -> str | None:
        """Why ``name`` is not tried given the sources already in use; None to try it."""
        if not self.auto:
            return None
        if name == "macmon" and "powermetrics" in in_use:
            return "not tried: powermetrics already meters this SoC (name 'macmon' to use it)"
        if name == "cpu-estimate" and in_use:
            return (
                "not used: a measured source is in use (name 'cpu-estimate' in sources to add the estimate beside it)"
            )
        return None


def plan(config: EnergyConfig) -> Plan:
    """The order sources are tried in: measured ones first, the estimate last."""
    if config.sources == "auto":
        return Plan(SOURCE_NAMES, True)
    return Plan(tuple(config.sources), False)
