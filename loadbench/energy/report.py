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
from typing import TYPE_CHECKING, Any

from loadbench.energy.config import EnergyConfig
from loadbench.energy.integrate import cumulative

if TYPE_CHECKING:
    from loadbench.energy.meter import SourceData

_J_PER_WH = 3600.0
_LOW_COVERAGE = 0.95


def build(
    sources: Sequence[SourceData],
    *,
    config: EnergyConfig,
    run_ns: tuple[int, int],
    window_ns: tuple[int, int],
    idle_ns: tuple[int, int] | None,
    output_tokens: int | None,
    requests: int | None,
    location: str,
    remote_output_tokens: int | None,
    sources_tried: list[dict[str, Any]],
    missed_ticks: int,
    sampler_stuck: bool,
    sampler_cpu_s: float = 0.0,
) -> dict[str, Any]:
    """The report dict; see the module docstring for what each figure means."""
    local = _local(
        sources,
        config,
        run_ns,
        window_ns,
        idle_ns,
        output_tokens,
        requests,
        missed_ticks,
        sampler_stuck,
    )
    local["sampler_cpu_s"] = round(sampler_cpu_s, 4)
    local["sources_tried"] = sources_tried
    if location == "local":
        return {"location": "local", **local}
    if location == "hybrid":
        tokens = remote_output_tokens
        remote = _remote(config, tokens, requests, _seconds(window_ns))
        if tokens is None and config.remote_j_per_output_token is not None:
            remote["notes"].append("remote_output_tokens not given: the remote share is unknown")
        return {"location": "hybrid", **local, "remote": remote}
    # remote: the inference happened elsewhere; what was metered here is only the client host.
    remote = _remote(config, output_tokens, requests, _seconds(window_ns))
    client = {k: v for k, v in local.items() if k != "sources_tried"}
    return {
        "location": "remote",
        **remote,
        "idle_w": None,
        "client_host": client,
        "sources_tried": sources_tried,
    }


def _local(
    sources: Sequence[SourceData],
    config: EnergyConfig,
    run_ns: tuple[int, int],
    window_ns: tuple[int, int],
    idle_ns: tuple[int, int] | None,
    output_tokens: int | None,
    requests: int | None,
    missed_ticks: int,
    sampler_stuck: bool,
) -> dict[str, Any]:
    run_s, window_s = _seconds(run_ns), _seconds(window_ns)
    idle_s = _seconds(idle_ns) if idle_ns else 0.0
    channels: list[dict[str, Any]] = []
    notes: list[str] = []
    parts: list[str] = []
    kinds: set[str] = set()
    basis: list[str] = []
    run_j = window_j = 0.0
    measured_window_j = estimated_window_j = 0.0
    idle_w_total: float | None = 0.0
    coverage = 1.0
    gaps = 0
    gap_errors: list[str] = []
    estimated_cpu = False

    run_net_j: float | None = 0.0
    window_net_j: float | None = 0.0

    for data in sources:
        gaps += len(data.gaps)
        for _, error in data.gaps:
            labelled = f"{data.name}: {error}"
            if labelled not in gap_errors and len(gap_errors) < 5:
                gap_errors.append(labelled)
        names_in_total = []
        for index, channel in enumerate(data.channels):
            mine = [r for r in data.readings if r.channel == index]
            timeline, _ = cumulative(
                channel.signal,
                [r.t_ns for r in mine],
                [r.value for r in mine],
                [r.span_ns for r in mine],
            )
            c_run = timeline.energy_j(*run_ns) if timeline else None
            c_window = timeline.energy_j(*window_ns) if timeline else None
            c_cov = timeline.coverage(*window_ns)
            c_idle_w = None
            if idle_ns and timeline:
                covered_s = timeline.coverage(*idle_ns) * idle_s
                if covered_s > 0:
                    c_idle_w = timeline.energy_j(*idle_ns) / covered_s
            kind = "estimated" if channel.estimated or data.source.estimated else "measured"
            channels.append(
                {
                    "source": data.name,
                    "channel": channel.name,
                    "measures": channel.measures,
                    "kind": kind,
                    "in_total": channel.in_total,
                    "detail": channel.detail,
                    "samples": len(mine),
                    "wh_total": _wh(c_run),
                    "wh_window": _wh(c_window),
                    "idle_w": _round(c_idle_w),
                    "coverage": round(c_cov, 4),
                }
            )
            if not channel.in_total:
                continue
            if not mine:
                notes.append(f"{data.name}/{channel.name} produced no readings")
                continue
            names_in_total.append(channel.name)
            kinds.add(kind)
            if kind == "estimated" and channel.detail and channel.detail not in basis:
                basis.append(channel.detail)
            if kind == "estimated" and channel.measures == "process-cpu":
                estimated_cpu = True
            run_j += c_run or 0.0
            window_j += c_window or 0.0
            if kind == "measured":
                measured_window_j += c_window or 0.0
            else:
                estimated_window_j += c_window or 0.0
            coverage = min(coverage, c_cov)
            if c_idle_w is None or idle_w_total is None or run_net_j is None or window_net_j is None:
                idle_w_total = run_net_j = window_net_j = None
            else:
                # Net of idle over the time this channel's samples cover, so partial coverage
                # does not subtract idle power for time whose energy is not in the gross either.
                idle_w_total += c_idle_w
                run_net_j += (c_run or 0.0) - c_idle_w * timeline.coverage(*run_ns) * run_s
                window_net_j += (c_window or 0.0) - c_idle_w * c_cov * window_s
        if names_in_total:
            parts.append(f"{data.name}: {', '.join(names_in_total)}")

    if not kinds:
        idle_w_total = run_net_j = window_net_j = None
    kind = "mixed" if len(kinds) > 1 else (kinds.pop() if kinds else "unmetered")
    if idle_ns is None:
        idle_w_total = run_net_j = window_net_j = None
        notes.append("no idle baseline (idle_s=0): net figures are not available")
    elif idle_w_total is None and kind != "unmetered":
        notes.append("the idle baseline has no readings for every channel: net figures unavailable")
    if coverage < _LOW_COVERAGE and kind != "unmetered":
        notes.append(f"samples cover {coverage:.0%} of the window: energy outside them is missing")
    if gaps:
        notes.append(f"{gaps} failed read(s) left gaps, bridged by the next good reading")
    if missed_ticks:
        notes.append(f"the sampler fell behind and skipped {missed_ticks} tick(s)")
    if sampler_stuck:
        notes.append("a source read hung at close; the sampler thread was left behind")
    if kind in ("estimated", "mixed"):
        notes.append("estimate: " + ("; ".join(basis) if basis else "includes estimated figures"))

    label = None
    if kind in ("estimated", "mixed"):
        label = f"CPU time x {config.watts_per_core:g} W/core" if estimated_cpu else "estimate"
    have = kind != "unmetered"
    run_wh = run_j / _J_PER_WH if have else None
    window_wh = window_j / _J_PER_WH if have else None
    run_net = run_net_j / _J_PER_WH if run_net_j is not None else None
    window_net = window_net_j / _J_PER_WH if window_net_j is not None else None
    result: dict[str, Any] = {
        "kind": kind,
        "source": " + ".join(parts) if parts else None,
        "sources": [d.name for d in sources],
        "estimate_basis": "; ".join(basis) or None,
        "estimate_label": label,
        "interval_s": config.interval_s,
        "idle_s": round(idle_s, 3),
        "idle_w": _round(idle_w_total),
        "run_s": round(run_s, 3),
        "window_s": round(window_s, 3),
        "wh_total": _round(run_wh),
        "wh_total_net": _round(run_net),
        "wh_window": _round(window_wh),
        "wh_window_net": _round(window_net),
        "mean_w_window": _round(window_j / window_s) if have and window_s > 0 else None,
        "requests": requests,
        "output_tokens": output_tokens,
        "wh_per_request": _per(window_wh, requests),
        "wh_per_request_net": _per(window_net, requests),
        "j_per_output_token": _per(_joules(window_wh), output_tokens),
        "j_per_output_token_net": _per(_joules(window_net), output_tokens),
        "coverage": round(coverage, 4) if have else None,
        "gaps": gaps,
        "gap_errors": gap_errors,
        "missed_ticks": missed_ticks,
        "channels": channels,
        "notes": notes,
    }
    if kind == "mixed":
        result["measured_wh_window"] = _round(measured_window_j / _J_PER_WH)
        result["estimated_wh_window"] = _round(estimated_window_j / _J_PER_WH)
    return result


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
