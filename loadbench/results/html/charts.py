"""The report's chart kinds, built from arrays and histograms into ``svg.Chart`` objects.

Each function takes what it draws (never a run directory) and returns a chart whose size is
bounded by its bins or points: latency distributions read percentiles off HDR histograms, time
series are binned, scatter plots of many points become 2-D bins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from hdrh.histogram import HdrHistogram

from loadbench.metrics.hdr import fast_percentiles
from loadbench.results.html.svg import Chart, color, empty, fmt_number, nice_max, nice_step

NINES_POINTS = 160


@dataclass(frozen=True)
class Curve:
    """One latency distribution to draw: ``hist`` in integer units, divided by ``scale`` for display."""

    label: str
    hist: HdrHistogram
    scale: float
    color: str
    dash: str = ""


def percentile_curve(hist: HdrHistogram, scale: float, x_max: float) -> tuple[list[float], list[float]]:
    """(nines positions, values) from p0 up to the last percentile the count resolves."""
    n = hist.total_count
    end = min(x_max, math.log10(n)) if n > 1 else 0.0
    xs = [end * i / (NINES_POINTS - 1) for i in range(NINES_POINTS)] if end > 0 else [0.0]
    ps = [100.0 * (1 - 10.0 ** -x) for x in xs]
    values = fast_percentiles([hist], ps)
    return xs, [float("nan") if v is None else v / scale for v in values]


def nines_chart(slug: str, title: str, curves: Sequence[Curve], *, unit: str = "ms", width: int = 560,
                height: int = 300, slo: float | None = None) -> Chart:
    """Percentile plot on a nines axis (p50, p90, p99, p99.9, p99.99 evenly spaced), one line a curve."""
    curves = [c for c in curves if c.hist.total_count]
    if not curves:
        return empty(slug, title, "nothing measured", width=width)
    n_max = max(c.hist.total_count for c in curves)
    x_max = float(min(4, max(2, math.ceil(math.log10(max(n_max, 2))))))
    drawn = [(c, *percentile_curve(c.hist, c.scale, x_max)) for c in curves]
    lo = min(c.hist.get_min_value() / c.scale for c in curves)
    hi = max(c.hist.get_max_value() / c.scale for c in curves)
    med = min(max(v for v in ys[: max(1, len(ys) // 5)] if v == v) for _, _, ys in drawn)
    use_log = lo > 0 and hi / max(med, 1e-9) > 30
    counts = ", ".join(f"{c.hist.total_count:,}" for c in curves)
    chart = Chart(slug, title, width=width, height=height, x_label="percentile (nines axis)",
                  y_label=f"{unit} (log)" if use_log else unit, note=f"n = {counts}", right=26)
    top = max(hi, slo or 0.0)
    if use_log:
        chart.set_y(10 ** math.floor(math.log10(max(lo, 1e-3))), 10 ** math.ceil(math.log10(top)), "log")
    else:
        chart.set_y(0, nice_max(top * 1.02))
    chart.set_x(0, x_max, "nines")
    if slo is not None:
        chart.hline(slo, color="#b3261e", label=f"SLO {fmt_number(slo)} {unit}")
    for c, xs, ys in drawn:
        tip = f"{c.label}: " + ", ".join(
            f"p{p:g} {fmt_number(v)}" for p, v in zip(
                (50, 90, 99, 99.9), _at(c.hist, c.scale, (50, 90, 99, 99.9)), strict=True) if v is not None
        ) + f", max {fmt_number(c.hist.get_max_value() / c.scale)} {unit}"
        chart.line(xs, ys, color=c.color, dash=c.dash, title=tip)
        if xs and xs[-1] < x_max - 1e-9:
            chart.points([xs[-1]], [c.hist.get_max_value() / c.scale], color=c.color, r=2.8,
                         titles=[f"{c.label}: max {fmt_number(c.hist.get_max_value() / c.scale)} {unit}"])
        chart.add_legend(c.label, c.color, "dash" if c.dash else "line", c.dash)
    return chart


def _at(hist: HdrHistogram, scale: float, ps: Sequence[float]) -> list[float | None]:
    return [None if v is None else v / scale for v in fast_percentiles([hist], ps)]


def bin_width_s(duration_s: float, bins: int = 100) -> float:
    """A round bin width giving about ``bins`` bins over ``duration_s``."""
    return max(0.01, nice_step(max(duration_s, 0.01) / bins))


def series_chart(
    slug: str, title: str, edges: np.ndarray, series: Sequence[tuple[str, np.ndarray]], *, unit: str,
    width: int = 560, height: int = 230, step: bool = True, bands: Sequence[tuple[float, float, str]] = (),
    dashes: Sequence[str] = (), log: bool = False, note: str = "", sparse: bool = False,
) -> Chart:
    """Lines over time; ``series`` values are per bin (len(edges) - 1), NaN where a bin has none."""
    finite = [v for _, ys in series for v in ys[np.isfinite(ys)]]
    if not finite or len(edges) < 2:
        return empty(slug, title, "nothing in this run", width=width)
    chart = Chart(slug, title, width=width, height=height, x_label="seconds since start", y_label=unit, note=note)
    chart.set_x(float(edges[0]), float(edges[-1]))
    top = max(finite)
    if log and min(finite) > 0 and top / min(finite) > 30:
        chart.set_y(10 ** math.floor(math.log10(min(finite))), 10 ** math.ceil(math.log10(top)), "log")
        chart.y_label = f"{unit} (log)"
    else:
        chart.set_y(0, nice_max(top * 1.05))
    for lo, hi, label in bands:
        chart.band_x(lo, hi, label=label)
    for i, (label, ys) in enumerate(series):
        dash = dashes[i] if i < len(dashes) else ""
        if sparse:  # percentiles of few requests per bin: points joined across empty bins
            mid = (edges[:-1] + edges[1:]) / 2
            keep = np.isfinite(ys)
            chart.line(mid[keep].tolist(), ys[keep].tolist(), color=color(i), dash=dash, width=1.1)
            chart.points(mid[keep].tolist(), ys[keep].tolist(), color=color(i), r=2.2)
            if len(series) > 1:
                chart.add_legend(label, color(i), "dot")
            continue
        if step:
            xs = np.repeat(edges, 2)[1:-1]
            vals = np.repeat(ys, 2)
        else:
            xs = (edges[:-1] + edges[1:]) / 2
            vals = ys
        chart.line(xs.tolist(), vals.tolist(), color=color(i), dash=dash, width=1.5)
        if len(series) > 1:
            chart.add_legend(label, color(i), "dash" if dash else "line", dash)
    return chart


def stacked_bars_chart(
    slug: str, title: str, edges: np.ndarray, stacks: Sequence[tuple[str, np.ndarray]], *, unit: str,
    width: int = 560, height: int = 230, empty_text: str = "none", bands: Sequence[tuple[float, float, str]] = (),
) -> Chart:
    """Bars per time bin, one colour per category, stacked."""
    total = np.zeros(len(edges) - 1)
    for _, ys in stacks:
        total = total + ys
    if not stacks or not total.any():
        return empty(slug, title, empty_text, width=width, height=90)
    chart = Chart(slug, title, width=width, height=height, x_label="seconds since start", y_label=unit)
    chart.set_x(float(edges[0]), float(edges[-1]))
    chart.set_y(0, nice_max(float(total.max()) * 1.05))
    for lo, hi, label in bands:
        chart.band_x(lo, hi, label=label)
    base = np.zeros(len(edges) - 1)
    for i, (label, ys) in enumerate(stacks):
        c = _category_color(i)
        for b in np.flatnonzero(ys):
            chart.bar(edges[b], edges[b + 1], base[b], base[b] + ys[b], fill=c,
                      title=f"{label}: {fmt_number(float(ys[b]))} {unit} at {edges[b]:.1f}-{edges[b + 1]:.1f} s")
        base = base + ys
        chart.add_legend(label, c, "box")
    return chart


def _category_color(i: int) -> str:
    return ("#D55E00", "#CC79A7", "#E69F00", "#56B4E9", "#009E73", "#0072B2", "#000000", "#999999")[i % 8]


def lengths_chart(slug: str, title: str, target: np.ndarray, actual: np.ndarray, *, width: int = 400,
                  height: int = 330, max_points: int = 1500) -> Chart:
    """Target against actual token counts: points, or 2-D bins when there are many."""
    keep = (target >= 0) & (actual >= 0)
    t, a = target[keep].astype(float), actual[keep].astype(float)
    if t.size == 0:
        return empty(slug, title, "no targets or no counts recorded", width=width)
    hi = nice_max(float(max(t.max(), a.max())) * 1.02)
    within = np.abs(a - t) <= np.maximum(1.0, 0.05 * t)
    note = f"n = {t.size:,}; {100 * within.mean():.0f}% within 5%"
    chart = Chart(slug, title, width=width, height=height, x_label="target tokens", y_label="actual tokens",
                  note=note)
    chart.set_x(0, hi)
    chart.set_y(0, hi)
    if t.size <= max_points:
        chart.points(t.tolist(), a.tolist(), color=color(0), r=2.2, opacity=0.55)
    else:
        bins = 50
        counts, xe, ye = np.histogram2d(t, a, bins=bins, range=[[0, hi], [0, hi]])
        peak = math.log1p(counts.max())
        for i, j in zip(*np.nonzero(counts), strict=True):
            shade = 0.15 + 0.85 * math.log1p(counts[i, j]) / peak
            chart.bar(xe[i], xe[i + 1], ye[j], ye[j + 1], fill=color(0), opacity=round(shade, 2),
                      title=f"{int(counts[i, j]):,} requests")
        chart.note += f" (binned {bins}x{bins})"
    chart.line([0, hi], [0, hi], color="#999", dash="4 3", width=1.2)
    return chart


@dataclass(frozen=True)
class Bar:
    group: str
    series: str
    value: float
    low: float | None = None
    high: float | None = None


def grouped_bars_chart(slug: str, title: str, bars: Sequence[Bar], *, unit: str, width: int = 560,
                       height: int = 260, slo: float | None = None) -> Chart:
    """Bars per group (the x axis), one colour per series; whiskers when low/high are given."""
    bars = [b for b in bars if b.value == b.value]
    if not bars:
        return empty(slug, title, "no cell has this figure", width=width)
    groups = list(dict.fromkeys(b.group for b in bars))
    series = list(dict.fromkeys(b.series for b in bars))
    top = max(max(b.high if b.high is not None else b.value for b in bars), slo or 0)
    chart = Chart(slug, title, width=width, height=height + (14 if len(groups) > 6 else 0), y_label=unit)
    chart.bottom = 46 if len(groups) > 6 else 32
    chart.set_x(0, len(groups))
    chart.set_y(0, nice_max(top * 1.05))
    chart._x_ticks = []
    slot = (chart.x1 - chart.x0) / len(groups)
    bar_w = slot * 0.8 / len(series)
    for gi, g in enumerate(groups):
        px = chart.x0 + gi * slot + slot * 0.1
        label_y = chart.y0 + 13 + (11 if len(groups) > 6 and gi % 2 else 0)
        chart.text_px(chart.x0 + (gi + 0.5) * slot, label_y, _short(g, int(slot / 5.5) + 4), size=9.5,
                      fill="#444", anchor="middle")
        for si, s in enumerate(series):
            b = next((b for b in bars if b.group == g and b.series == s), None)
            if b is None:
                continue
            x = px + si * bar_w
            y = chart.y(b.value)
            chart.rect_px(x, y, bar_w * 0.92, chart.y0 - y, fill=color(si),
                          title=f"{g} · {s}: {fmt_number(b.value)} {unit}")
            if b.low is not None and b.high is not None and b.high > b.low:
                cx = x + bar_w * 0.46
                chart.marks.append(
                    f'<path d="M{cx:.1f},{chart.y(b.low):.1f}V{chart.y(b.high):.1f}" stroke="#333" stroke-width="1"/>'
                )
    if slo is not None:
        chart.hline(slo, color="#b3261e", label=f"SLO {fmt_number(slo)} {unit}")
    if len(series) > 1 or series[0]:
        for si, s in enumerate(series):
            chart.add_legend(s or "value", color(si), "box")
    return chart


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: max(1, n - 1)] + "…"
