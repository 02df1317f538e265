"""What every energy source provides: its channels, and readings the sampler thread integrates.

A *source* is one way of learning energy (NVML, RAPL, powermetrics, macmon, the CPU-time estimate).
It exposes one or more *channels* (a GPU, a RAPL zone, the Apple SoC total) and, each time the
sampler asks, returns readings for them. A channel says what it measures and how its values are to
be read:

* ``counter_j``: a cumulative energy counter in joules (wrap-around already undone by the source);
  energy between two times is the difference.
* ``power_w``: instantaneous power in watts; integrated with the trapezoid rule.
* ``interval_power_w``: mean power in watts over the ``span_ns`` that ended at the reading (what
  powermetrics and macmon report); energy is power times span, exactly.

Only channels with ``in_total`` add up to a source's total; the rest are parts of those (RAPL's
``core`` inside ``package-0``, Apple's CPU inside the combined figure) or overlap them (a
whole-system sensor), and are reported beside the total, never added to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

Signal = Literal["counter_j", "power_w", "interval_power_w"]

# What a channel covers. Kept to a short fixed vocabulary so reports can be compared across hosts.
Measures = Literal[
    "gpu",
    "cpu-package",
    "cpu-core",
    "cpu-uncore",
    "dram",
    "soc",
    "ane",
    "system",
    "process-cpu",
    "remote",
]


class SourceUnavailable(Exception):
    """The source cannot be used here; ``str()`` says why and, where possible, how to fix it."""


@dataclass(frozen=True, slots=True)
class Channel:
    """One metered quantity of a source.

    ``name`` is unique within its source (``package-0``, ``gpu0``, ``combined``); ``measures`` says
    what hardware it covers; ``estimated`` is true when the figure is a model, not a meter reading.
    """

    name: str
    measures: Measures
    signal: Signal
    in_total: bool = True
    estimated: bool = False
    detail: str = ""  # e.g. the GPU's model name, or the estimate's assumption


@dataclass(frozen=True, slots=True)
class Reading:
    """One value for one channel (index into the source's channel list), taken at ``t_ns``.

    ``t_ns`` is ``time.perf_counter_ns()``. ``span_ns`` is only for ``interval_power_w`` channels:
    the length of the interval the mean power covers (``None``: since the previous reading).
    """

    channel: int
    t_ns: int
    value: float
    span_ns: int | None = None


class EnergySource(Protocol):
    """What the sampler needs from a source. Each method is called from the sampler thread only,
    except ``open`` (called once, before the thread starts) and ``close`` (idempotent).
    """

    name: str
    estimated: bool

    def open(self) -> list[Channel]:
        """Claim the hardware and return the channels; raise ``SourceUnavailable`` with a reason."""
        ...

    def read(self, now_ns: int) -> list[Reading]:
        """Readings taken now (or, for streaming sources, arrived since the last call).

        Raises on a failed read; the sampler records the failure as a gap and carries on.
        """
        ...

    def close(self) -> None:
        """Release what ``open`` claimed. Idempotent."""
        ...


def describe_measures(channels: list[Channel]) -> str:
    """The measured scope of a channel list, for ``sources_tried`` (``"cpu-package, dram"``)."""
    seen: list[str] = []
    for channel in channels:
        if channel.in_total and channel.measures not in seen:
            seen.append(channel.measures)
    return ", ".join(seen)


@dataclass(slots=True, eq=False)
class SourceData:
    """One opened source and everything it produced."""

    name: str
    source: EnergySource
    channels: list[Channel]
    readings: list[Reading] = field(default_factory=list)
    gaps: list[tuple[int, str]] = field(default_factory=list)  # (t_ns, error) per failed read
