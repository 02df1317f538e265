"""Attribution: from sampled channels to the ``energy`` block of ``summary.json``, and its one line.

Definitions (energies in Wh, powers in W, per-token figures in J):

* *run*: from the end of the idle baseline to the last sample (or the ``run_ns`` given);
  *window*: the measured window (after warm-up, before cool-down).
* *gross*: everything the metered hardware drew; *net*: gross minus the idle baseline's power times
  the duration, i.e. what the load added. Both are always shown.
* ``wh_per_request`` and ``j_per_output_token``: the window's energy shared evenly by the requests
  and the output tokens completed in it, as the ML.ENERGY benchmark attributes it.
* ``kind``: ``measured`` when every figure in the total comes from a meter, ``estimated`` when
  every one is a model, ``mixed`` when both were asked for (``measured_wh_window`` and
  ``estimated_wh_window`` then split it). Remote deployments cannot be metered: their figures come
  from ``remote_j_per_output_token`` and are always labelled ``estimated`` with their source.
* ``sampler_cpu_s``: CPU seconds the sampler thread itself used, the meter's own cost (helper
  processes such as macmon are not included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from loadbench.energy.base import Channel, SourceData
from loadbench.energy.config import EnergyConfig
from loadbench.energy.integrate import Timeline, cumulative

__all__ = ["Attribution", "Metered", "format_line", "summary"]

_J_PER_WH = 3600.0
_LOW_COVERAGE = 0.95

Location = Literal["local", "remote", "hybrid"]


@dataclass(frozen=True, slots=True)
class Metered:
    """What the meter saw: each opened source's readings and gaps, the idle baseline's span
    (None: no baseline), every source considered (``EnergyMeter.sources_tried``) and the
    sampler's own health (ticks it skipped, whether a read hung at close, its CPU seconds)."""

    sources: Sequence[SourceData]
    idle_ns: tuple[int, int] | None = None
    sources_tried: Sequence[dict[str, Any]] = ()
    missed_ticks: int = 0
    sampler_stuck: bool = False
    sampler_cpu_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Attribution:
    """What the energy is attributed to: the run's and the measured window's spans
    (perf_counter_ns), the requests and output tokens completed in the window (None: unknown),
    where inference ran, and, for a hybrid run, the tokens its remote model generated."""

    run_ns: tuple[int, int]
    window_ns: tuple[int, int]
    output_tokens: int | None = None
    requests: int | None = None
    location: Location | str = "local"
    remote_output_tokens: int | None = None


def summary(metered: Metered, attribution: Attribution, config: EnergyConfig) -> dict[str, Any]:
    """The report dict; see the module docstring for what each figure means."""
    local = _local(metered, attribution, config)
    local["sampler_cpu_s"] = round(metered.sampler_cpu_s, 4)
    sources_tried = list(metered.sources_tried)
    local["sources_tried"] = sources_tried
    at = attribution
    window_s = _seconds(at.window_ns)
    if at.location == "local":
        return {"location": "local", **local}
    if at.location == "hybrid":
        remote = _remote(config, at.remote_output_tokens, at.requests, window_s)
        if at.remote_output_tokens is None and config.remote_j_per_output_token is not None:
            remote["notes"].append("remote_output_tokens not given: the remote share is unknown")
        return {"location": "hybrid", **local, "remote": remote}
    # remote: the inference happened elsewhere; what was metered here is only the client host.
    remote = _remote(config, at.output_tokens, at.requests, window_s)
    client = {k: v for k, v in local.items() if k != "sources_tried"}
    return {
        "location": "remote",
        **remote,
        "idle_w": None,
        "client_host": client,
        "sources_tried": sources_tried,
    }


# -- the local figures: per channel, summed over the channels in the total, then the notes ------


@dataclass(slots=True)
class _ChannelFigures:
    """One channel's energy over the run and the window (J), its window coverage and idle power."""

    data: SourceData
    channel: Channel
    samples: int
    kind: str  # measured or estimated
    timeline: Timeline
    run_j: float | None
    window_j: float | None
    coverage: float
    idle_w: float | None

    def row(self) -> dict[str, Any]:
        """The channel's entry in the report's ``channels`` list."""
        return {
            "source": self.data.name,
            "channel": self.channel.name,
            "measures": self.channel.measures,
            "kind": self.kind,
            "in_total": self.channel.in_total,
            "detail": self.channel.detail,
            "samples": self.samples,
            "wh_total": _wh(self.run_j),
            "wh_window": _wh(self.window_j),
            "idle_w": _round(self.idle_w),
            "coverage": round(self.coverage, 4),
        }


@dataclass(slots=True)
class _Totals:
    """The sums over the channels in the total. A net figure (and the idle power) becomes None,
    for good, as soon as one channel in the total has no idle power."""

    run_j: float = 0.0
    window_j: float = 0.0
    measured_window_j: float = 0.0
    estimated_window_j: float = 0.0
    idle_w: float | None = 0.0
    run_net_j: float | None = 0.0
    window_net_j: float | None = 0.0
    coverage: float = 1.0
    kinds: set[str] = field(default_factory=set)
    basis: list[str] = field(default_factory=list)
    estimated_cpu: bool = False

    def add(self, fig: _ChannelFigures, at: Attribution) -> None:
        channel, kind = fig.channel, fig.kind
        self.kinds.add(kind)
        if kind == "estimated" and channel.detail and channel.detail not in self.basis:
            self.basis.append(channel.detail)
        if kind == "estimated" and channel.measures == "process-cpu":
            self.estimated_cpu = True
        self.run_j += fig.run_j or 0.0
        self.window_j += fig.window_j or 0.0
        if kind == "measured":
            self.measured_window_j += fig.window_j or 0.0
        else:
            self.estimated_window_j += fig.window_j or 0.0
        self.coverage = min(self.coverage, fig.coverage)
        if fig.idle_w is None or self.idle_w is None or self.run_net_j is None or self.window_net_j is None:
            self.no_net()
            return
        # Net of idle over the time this channel's samples cover, so partial coverage does not
        # subtract idle power for time whose energy is not in the gross either.
        self.idle_w += fig.idle_w
        self.run_net_j += (fig.run_j or 0.0) - fig.idle_w * fig.timeline.coverage(*at.run_ns) * _seconds(at.run_ns)
        self.window_net_j += (fig.window_j or 0.0) - fig.idle_w * fig.coverage * _seconds(at.window_ns)

    def no_net(self) -> None:
        self.idle_w = self.run_net_j = self.window_net_j = None


def _local(metered: Metered, at: Attribution, config: EnergyConfig) -> dict[str, Any]:
    """The figures metered on this host: per channel, summed, labelled, with notes on their gaps."""
    totals = _Totals()
    channels: list[dict[str, Any]] = []
    notes: list[str] = []
    parts: list[str] = []
    for data in metered.sources:
        names_in_total = []
        for index, channel in enumerate(data.channels):
            fig = _channel_figures(data, index, channel, metered.idle_ns, at)
            channels.append(fig.row())
            if not channel.in_total:
                continue
            if not fig.samples:
                notes.append(f"{data.name}/{channel.name} produced no readings")
                continue
            names_in_total.append(channel.name)
            totals.add(fig, at)
        if names_in_total:
            parts.append(f"{data.name}: {', '.join(names_in_total)}")
    gaps, gap_errors = _gaps(metered.sources)
    kind = _kind(totals, metered.idle_ns)
    notes += _notes(kind, totals, metered, gaps)
    result: dict[str, Any] = {
        "kind": kind,
        "source": " + ".join(parts) if parts else None,
        "sources": [d.name for d in metered.sources],
        **_figures(kind, totals, metered, at, config),
        "gaps": gaps,
        "gap_errors": gap_errors,
        "missed_ticks": metered.missed_ticks,
        "channels": channels,
        "notes": notes,
    }
    if kind == "mixed":
        result["measured_wh_window"] = _round(totals.measured_window_j / _J_PER_WH)
        result["estimated_wh_window"] = _round(totals.estimated_window_j / _J_PER_WH)
    return result


def _channel_figures(data: SourceData, index: int, channel: Channel, idle_ns: tuple[int, int] | None,
                     at: Attribution) -> _ChannelFigures:
    mine = [r for r in data.readings if r.channel == index]
    timeline, _ = cumulative(
        channel.signal,
        [r.t_ns for r in mine],
        [r.value for r in mine],
        [r.span_ns for r in mine],
    )
    idle_w = None
    if idle_ns and timeline:
        covered_s = timeline.coverage(*idle_ns) * _seconds(idle_ns)
        if covered_s > 0:
            idle_w = timeline.energy_j(*idle_ns) / covered_s
    return _ChannelFigures(
        data=data,
        channel=channel,
        samples=len(mine),
        kind="estimated" if channel.estimated or data.source.estimated else "measured",
        timeline=timeline,
        run_j=timeline.energy_j(*at.run_ns) if timeline else None,
        window_j=timeline.energy_j(*at.window_ns) if timeline else None,
        coverage=timeline.coverage(*at.window_ns),
        idle_w=idle_w,
    )


def _gaps(sources: Sequence[SourceData]) -> tuple[int, list[str]]:
    """How many reads failed, and the first five distinct errors, each labelled with its source."""
    gaps = 0
    errors: list[str] = []
    for data in sources:
        gaps += len(data.gaps)
        for _, error in data.gaps:
            labelled = f"{data.name}: {error}"
            if labelled not in errors and len(errors) < 5:
                errors.append(labelled)
    return gaps, errors


def _kind(totals: _Totals, idle_ns: tuple[int, int] | None) -> str:
    """measured, estimated, mixed or unmetered; net figures are dropped where they cannot hold."""
    if not totals.kinds or idle_ns is None:
        totals.no_net()
    return "mixed" if len(totals.kinds) > 1 else (next(iter(totals.kinds)) if totals.kinds else "unmetered")


def _notes(kind: str, totals: _Totals, metered: Metered, gaps: int) -> list[str]:
    """What a reader must know to trust the figures, in the report's order."""
    notes: list[str] = []
    if metered.idle_ns is None:
        notes.append("no idle baseline (idle_s=0): net figures are not available")
    elif totals.idle_w is None and kind != "unmetered":
        notes.append("the idle baseline has no readings for every channel: net figures unavailable")
    if totals.coverage < _LOW_COVERAGE and kind != "unmetered":
        notes.append(f"samples cover {totals.coverage:.0%} of the window: energy outside them is missing")
    if gaps:
        notes.append(f"{gaps} failed read(s) left gaps, bridged by the next good reading")
    if metered.missed_ticks:
        notes.append(f"the sampler fell behind and skipped {metered.missed_ticks} tick(s)")
    if metered.sampler_stuck:
        notes.append("a source read hung at close; the sampler thread was left behind")
    if kind in ("estimated", "mixed"):
        notes.append("estimate: " + ("; ".join(totals.basis) if totals.basis else "includes estimated figures"))
    return notes


def _figures(kind: str, totals: _Totals, metered: Metered, at: Attribution, config: EnergyConfig) -> dict[str, Any]:
    """The summed figures, in Wh and per request / per output token; None where unmetered."""
    run_s, window_s = _seconds(at.run_ns), _seconds(at.window_ns)
    label = None
    if kind in ("estimated", "mixed"):
        label = f"CPU time x {config.watts_per_core:g} W/core" if totals.estimated_cpu else "estimate"
    have = kind != "unmetered"
    run_wh = totals.run_j / _J_PER_WH if have else None
    window_wh = totals.window_j / _J_PER_WH if have else None
    run_net = totals.run_net_j / _J_PER_WH if totals.run_net_j is not None else None
    window_net = totals.window_net_j / _J_PER_WH if totals.window_net_j is not None else None
    return {
        "estimate_basis": "; ".join(totals.basis) or None,
        "estimate_label": label,
        "interval_s": config.interval_s,
        "idle_s": round(_seconds(metered.idle_ns), 3),
        "idle_w": _round(totals.idle_w),
        "run_s": round(run_s, 3),
        "window_s": round(window_s, 3),
        "wh_total": _round(run_wh),
        "wh_total_net": _round(run_net),
        "wh_window": _round(window_wh),
        "wh_window_net": _round(window_net),
        "mean_w_window": _round(totals.window_j / window_s) if have and window_s > 0 else None,
        "requests": at.requests,
        "output_tokens": at.output_tokens,
        "wh_per_request": _per(window_wh, at.requests),
        "wh_per_request_net": _per(window_net, at.requests),
        "j_per_output_token": _per(_joules(window_wh), at.output_tokens),
        "j_per_output_token_net": _per(_joules(window_net), at.output_tokens),
        "coverage": round(totals.coverage, 4) if have else None,
    }


def _remote(config: EnergyConfig, tokens: int | None, requests: int | None, window_s: float) -> dict[str, Any]:
    j = config.remote_j_per_output_token
    if j is None:
        return {
            "kind": "unmetered",
            "source": None,
            "j_per_output_token": None,
            "output_tokens": tokens,
            "wh_window": None,
            "wh_per_request": None,
            "notes": [
                "a remote deployment cannot be metered; set remote_j_per_output_token and remote_source to estimate it"
            ],
        }
    wh = j * tokens / _J_PER_WH if tokens is not None else None
    return {
        "kind": "estimated",
        "source": f"remote model: {j:g} J per output token ({config.remote_source})",
        "j_per_output_token": j,
        "output_tokens": tokens,
        "requests": requests,
        "window_s": round(window_s, 3),
        "wh_window": _round(wh),
        "wh_per_request": _per(wh, requests),
        "notes": ["estimate: output tokens x a per-token energy figure, not a measurement"],
    }


def format_line(report: dict[str, Any]) -> str:
    """One line for the printed summary, with the estimate label wherever one is involved.

    e.g. ``energy: 0.42 Wh gross, 0.11 Wh net over idle 8.1 W (rapl: package-0, dram) ·
    0.8 J/token · 0.0021 Wh/request · measured``.
    """
    location = report.get("location", "local")
    if location == "remote":
        line = _remote_phrase(report)
        client = report.get("client_host") or {}
        if client.get("wh_window") is not None:
            line += f" · client host {_energy(client['wh_window'])} ({client.get('kind')})"
        return "energy: " + line
    if report.get("kind") == "unmetered":
        return "energy: not metered"
    parts = [f"{_energy(report.get('wh_window'))} gross"]
    if report.get("wh_window_net") is not None:
        parts.append(f"{_energy(report['wh_window_net'])} net over idle {_fmt(report['idle_w'])} W")
    line = "energy: " + ", ".join(parts)
    if report.get("source"):
        line += f" ({report['source']})"
    if report.get("j_per_output_token") is not None:
        line += f" · {_fmt(report['j_per_output_token'])} J/token"
    if report.get("wh_per_request") is not None:
        line += f" · {_energy(report['wh_per_request'])}/request"
    kind = report.get("kind")
    if kind == "estimated":
        label = report.get("estimate_label")
        line += f" · estimate ({label})" if label and label != "estimate" else " · estimate"
    elif kind == "mixed":
        line += (
            f" · mixed: {_energy(report.get('measured_wh_window'))} measured + "
            f"{_energy(report.get('estimated_wh_window'))} estimate"
        )
    else:
        line += " · measured"
    if report.get("coverage") is not None and report["coverage"] < _LOW_COVERAGE:
        line += f" · {report['coverage']:.0%} covered"
    if location == "hybrid" and report.get("remote"):
        line += " · remote " + _remote_phrase(report["remote"])
    return line


def _remote_phrase(remote: dict[str, Any]) -> str:
    if remote.get("kind") != "estimated":
        return "not metered (remote)"
    if remote.get("wh_window") is None:
        return f"estimate unavailable (token count unknown; {remote['source']})"
    return f"~{_energy(remote['wh_window'])} estimate ({remote['source']})"


def _seconds(span: tuple[int, int] | None) -> float:
    if span is None:
        return 0.0
    return max(0, span[1] - span[0]) / 1e9


def _wh(joules: float | None) -> float | None:
    return None if joules is None else _round(joules / _J_PER_WH)


def _joules(wh: float | None) -> float | None:
    return None if wh is None else wh * _J_PER_WH


def _per(total: float | None, count: int | None) -> float | None:
    if total is None or not count:
        return None
    return _round(total / count)


def _round(value: float | None) -> float | None:
    # Nine significant digits: far below any meter's resolution, and stable in JSON diffs.
    return None if value is None else float(f"{value:.9g}")


def _energy(wh: float | None) -> str:
    """Watt-hours for a person: in mWh below 0.01 Wh, so small runs read as numbers, not exponents."""
    if wh is not None and wh != 0 and abs(wh) < 0.01:
        return f"{_fmt(wh * 1e3)} mWh"
    return f"{_fmt(wh)} Wh"


def _fmt(value: float | None) -> str:
    if value is None:
        return "?"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.2g}" if abs(value) < 1 else f"{value:.3g}"
