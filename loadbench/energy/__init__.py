"""Energy, the fourth dependent variable: Wh per run, per request and per token.

Sources (each says what it measures): NVIDIA GPUs through NVML, CPU packages and DRAM through RAPL,
Apple silicon through ``powermetrics`` or ``macmon``, and, when nothing can be metered, an estimate
from the process tree's CPU time, labelled as such wherever it appears. A background thread samples
them; ``EnergyMeter.report()`` attributes the energy to the run, the measured window, each request
and each output token, gross and net of an idle baseline measured before the load.
"""

from loadbench.energy.base import Channel, EnergySource, Reading, SourceUnavailable
from loadbench.energy.config import DEFAULT_CPU_WATTS_PER_CORE, SOURCE_NAMES, EnergyConfig
from loadbench.energy.meter import EnergyMeter
from loadbench.energy.report import format_line

__all__ = [
    "DEFAULT_CPU_WATTS_PER_CORE",
    "SOURCE_NAMES",
    "Channel",
    "EnergyConfig",
    "EnergyMeter",
    "EnergySource",
    "Reading",
    "SourceUnavailable",
    "format_line",
]
