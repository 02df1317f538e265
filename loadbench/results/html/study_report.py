"""A study's report: its cells as a table and grouped bars, sweep curves, and capacity probes.

Reads the study directory format (study.json, cells.csv, capacity.json) and, where a cell's run
directory is there, that run's histograms for overlaid distributions.

The knee of a sweep curve is found with Kneedle (Satopää et al., 2011) on p99 latency against the
swept load: both axes scaled to [0, 1], the knee is the point farthest below the straight line from
the first point to the last, i.e. where latency starts to climb faster than the load. The SLO
boundary is drawn between the last cell that meets the latency limit and the first that does not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import loadbench.results.html.charts as charts
from loadbench.contract.errors import LoadbenchError
from loadbench.results.frames import RunData, StudyData, load_run
from loadbench.results.html.compare_report import overlay_charts
from loadbench.results.html.page import Page, cards, facts, table
from loadbench.results.html.svg import Chart, color, empty, fmt_number, nice_max

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
MAX_OVERLAID_CELLS = 8

_FIGURES = (
    ("ttft_ms_p50", "TTFT p50", "ms"), ("ttft_ms_p99", "TTFT p99", "ms"),
    ("e2e_ms_p50", "E2E p50", "ms"), ("e2e_ms_p99", "E2E p99", "ms"),
    ("itl_ms_p50", "ITL p50", "ms"), ("itl_ms_p99", "ITL p99", "ms"),
    ("tpot_ms_p50", "TPOT p50", "ms"), ("tpot_ms_p99", "TPOT p99", "ms"),
    ("requests_per_s", "req/s", "req/s"), ("output_tokens_per_s", "out tok/s", "tok/s"),
    ("goodput_per_s", "goodput/s", "req/s"), ("slo_attainment", "SLO attainment", ""),
    ("errors", "errors", ""), ("energy_j_per_request", "J/request", "J"),
    ("energy_j_per_token", "J/token", "J"), ("cost_usd_per_request", "USD/request", "USD"),
)


def number_in(text: Any) -> float | None:
    """The number a value description stands for: ``4``, ``"4.0"``, ``"Poisson(rate_per_s=4.0)"``."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(text)
    found = _NUMBER.search(str(text))
    return float(found.group()) if found else None


def _value(row: dict[str, Any], key: str) -> float:
    v = row.get(key)
    return float(v) if isinstance(v, int | float) else math.nan


def _common_start(texts: list[str]) -> str:
    first = min(texts)
    last = max(texts)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


def short_labels(labels: Sequence[str]) -> tuple[list[str], str]:
    """Labels without the text they all share: ``Poisson(rate_per_s=2.0)`` -> ``2.0``.

    Returns the short labels and a pattern naming what was taken off (``Poisson(rate_per_s=…)``),
    or the labels unchanged and ``""`` when there is nothing shared or nothing would be left.
    """
    if len(labels) < 2:
        return list(labels), ""
    prefix = _common_start(list(labels))
    suffix = _common_start([x[::-1] for x in labels])[::-1]
    # Cut only at a boundary, so "12" and "15" keep their digits and "2.0" its decimals.
    while prefix and (prefix[-1].isalnum() or prefix[-1] in "._-"):
        prefix = prefix[:-1]
    while suffix and (suffix[0].isalnum() or suffix[0] in "._-"):
        suffix = suffix[1:]
    short = [x[len(prefix):len(x) - len(suffix)] for x in labels]
    if not (prefix or suffix) or any(not x for x in short):
        return list(labels), ""
    return short, f"{prefix}…{suffix}"


def _cell_label(study: StudyData, row: dict[str, Any]) -> str:
    varied = study.varied
    if not varied:
        return str(row.get("id", "?"))
    if len(varied) == 1:
        return str(row.get(varied[0], "?"))
    return " · ".join(f"{f}={row.get(f, '?')}" for f in varied)


def cell_table_rows(study: StudyData) -> tuple[list[str], list[list[Any]]]:
    """cells.csv as (header, rows), figures that no cell has left out; study.json's cells without it."""
    varied = study.varied
    if not study.cell_rows:
        header = ["id", "repeat", *varied, "status", "error"]
        rows = [[c.get("id"), c.get("repeat"), *[(c.get("values") or {}).get(f) for f in varied], c.get("status"),
                 c.get("error")] for c in study.study.get("cells") or []]
        return header, rows
    present = [(k, label) for k, label, _ in _FIGURES if any(_value(r, k) == _value(r, k) for r in study.cell_rows)]
    header = ["id", "repeat", *varied, "status", *[label for _, label in present]]
    rows = []
    for r in study.cell_rows:
        rows.append([r.get("id"), r.get("repeat"), *[r.get(f) for f in varied], r.get("status"),
                     *[_value(r, k) for k, _ in present]])
    return header, rows


def _slo_limits(study: StudyData) -> dict[str, float]:
    """Latency limits (``*_ms`` keys) from the capacity search's SLO, else the base scenario's."""
    for source in ((study.capacity or {}).get("slo"), (study.study.get("base") or {}).get("slo")):
        if isinstance(source, dict):
            limits = {k: float(v) for k, v in source.items() if k.endswith("_ms") and isinstance(v, int | float)}
            if limits:
                return limits
    return {}


def _aggregate(study: StudyData) -> list[dict[str, Any]]:
    """Finished cells grouped by their values (repeats folded): mean, min and max of each figure."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in study.cell_rows:
        if r.get("status") not in ("finished", None, ""):
            continue
        groups.setdefault(_cell_label(study, r), []).append(r)
    out = []
    for label, rows in groups.items():
        agg: dict[str, Any] = {"label": label, "n": len(rows), "row": rows[0]}
        for k, _, _ in _FIGURES:
            vals = [_value(r, k) for r in rows if _value(r, k) == _value(r, k)]
            agg[k] = (sum(vals) / len(vals), min(vals), max(vals)) if vals else (math.nan, None, None)
        out.append(agg)
    return out


def grouped_bar_charts(study: StudyData) -> list[Chart]:
    cells = _aggregate(study)
    limits = _slo_limits(study)
    short, pattern = short_labels([c["label"] for c in cells])
    for c, label in zip(cells, short, strict=True):
        c["label"] = label
    out = []
    for slug, title, keys, unit in (
        ("bars-ttft", "TTFT by cell", ("ttft_ms_p50", "ttft_ms_p99"), "ms"),
        ("bars-e2e", "E2E latency by cell", ("e2e_ms_p50", "e2e_ms_p99"), "ms"),
        ("bars-tpot", "TPOT by cell", ("tpot_ms_p50", "tpot_ms_p99"), "ms"),
        ("bars-throughput", "Throughput by cell", ("requests_per_s", "goodput_per_s"), "req/s"),
        ("bars-tokens", "Output tokens/s by cell", ("output_tokens_per_s",), "tok/s"),
        ("bars-energy", "Energy per output token by cell", ("energy_j_per_token",), "J"),
    ):
        bars = []
        for c in cells:
            for k in keys:
                mean, lo, hi = c[k]
                label = dict((f[0], f[1]) for f in _FIGURES)[k]
                bars.append(charts.Bar(c["label"], label if len(keys) > 1 else "", mean,
                                       lo if c["n"] > 1 else None, hi if c["n"] > 1 else None))
        if not any(b.value == b.value for b in bars):
            continue
        slo = limits.get(keys[-1].rsplit("_p", 1)[0]) if unit == "ms" else None
        chart = charts.grouped_bars_chart(slug, title, bars, unit=unit, slo=slo)
        if pattern:
            chart.note = f"cells: {', '.join(study.varied)} = {pattern}"
        out.append(chart)
    return out


def knee_index(xs: Sequence[float], ys: Sequence[float]) -> int | None:
    """Kneedle on an increasing, convex curve; None for fewer than three points or a straight line."""
    pts = [(x, y) for x, y in zip(xs, ys, strict=True) if x == x and y == y]
    if len(pts) < 3:
        return None
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if x1 <= x0 or y1 <= y0:
        return None
    diffs = [((x - x0) / (x1 - x0)) - ((y - y0) / (y1 - y0)) for x, y in pts]
    best = max(range(len(pts)), key=lambda i: diffs[i])
    if diffs[best] <= 0.05:  # no bend worth the name
        return None
    return next(i for i, (x, y) in enumerate(zip(xs, ys, strict=True)) if (x, y) == pts[best])


def sweep_charts(study: StudyData) -> tuple[list[Chart], list[str]]:
    """Throughput against latency percentiles along the swept field, knee and SLO boundary marked."""
    varied = study.varied
    cells = _aggregate(study)
    if len(varied) != 1 or len(cells) < 2:
        return [], []
    field = varied[0]
    loads = [number_in(c["row"].get(field)) for c in cells]
    if any(v is None for v in loads):
        return [], [f"the swept values of {field} are not numbers, so no sweep curve is drawn"]
    order = sorted(range(len(cells)), key=lambda i: loads[i])  # type: ignore[arg-type, return-value]
    cells = [cells[i] for i in order]
    loads = [loads[i] for i in order]
    limits = _slo_limits(study)
    notes: list[str] = []
    out: list[Chart] = []
    thr = [c["requests_per_s"][0] for c in cells]
    for key_base, title in (("ttft_ms", "TTFT"), ("e2e_ms", "E2E latency"), ("tpot_ms", "TPOT"),
                            ("itl_ms", "Inter-token latency")):
        p50 = [c[f"{key_base}_p50"][0] for c in cells]
        p99 = [c[f"{key_base}_p99"][0] for c in cells]
        if all(v != v for v in p99):
            continue
        finite = [v for v in p50 + p99 + thr if v == v]
        if not finite:
            continue
        chart = Chart(f"sweep-{key_base}", f"{title} against throughput", width=560, height=300,
                      x_label="achieved requests/s", y_label="ms", note=f"points labelled with {field}")
        x_hi = nice_max(max(v for v in thr if v == v) * 1.08)
        limit = limits.get(key_base)
        y_top = max(max(v for v in p99 if v == v), limit or 0)
        chart.set_x(0, x_hi)
        chart.set_y(0, nice_max(y_top * 1.08))
        if limit is not None:
            chart.hline(limit, color="#b3261e", label=f"SLO {fmt_number(limit)} ms")
            passing = [i for i, v in enumerate(p99) if v == v and v <= limit]
            failing = [i for i, v in enumerate(p99) if v == v and v > limit]
            if passing and failing and max(passing) < min(failing):
                a, b = thr[max(passing)], thr[min(failing)]
                chart.band_x(min(a, b), max(a, b), fill="#fbe9e7", label="SLO boundary")
                notes.append(f"{title} p99 meets {fmt_number(limit)} ms up to {field}={fmt_number(loads[max(passing)])}"
                             f" ({fmt_number(a)} req/s) and misses it from {field}={fmt_number(loads[min(failing)])}.")
        for i, (ys, label, dash) in enumerate(((p50, "p50", "5 3"), (p99, "p99", ""))):
            chart.line(thr, ys, color=color(i), dash=dash)
            chart.points(thr, ys, color=color(i), r=3.2,
                         titles=[f"{field}={fmt_number(ld)}: {fmt_number(x)} req/s, {label} {fmt_number(y)} ms"
                                 for ld, x, y in zip(loads, thr, ys, strict=True)])
            chart.add_legend(label, color(i), "dash" if dash else "line", dash)
        for ld, x, y in zip(loads, thr, p99, strict=True):
            if x == x and y == y:
                chart.label(x, y, fmt_number(ld), color="#555", size=9)
        k = knee_index(loads, p99)  # along the swept load, which (unlike throughput) only grows
        if k is not None:
            chart.points([thr[k]], [p99[k]], color="#b3261e", r=6.5, hollow=True,
                         titles=[f"knee: {field}={fmt_number(loads[k])}, {fmt_number(thr[k])} req/s"])
            chart.label(thr[k], p99[k], "knee", color="#b3261e", dx=-8, dy=14, anchor="end")
            chart.add_legend(f"knee (Kneedle: p99 against {field})", "#b3261e", "dot")
            if key_base == "ttft_ms":
                notes.append(f"Knee of TTFT p99: {field}={fmt_number(loads[k])} ({fmt_number(thr[k])} req/s).")
        out.append(chart)
    # Offered against achieved: where the target stops keeping up.
    chart = Chart("sweep-offered", f"Achieved throughput against {field}", width=560, height=300,
                  x_label=field, y_label="requests/s")
    finite_thr = [v for v in thr if v == v]
    if finite_thr:
        chart.set_x(0, nice_max(max(loads) * 1.05))  # type: ignore[type-var]
        chart.set_y(0, nice_max(max([*finite_thr, max(loads)]) * 1.05))  # type: ignore[operator]
        chart.line([0, max(loads)], [0, max(loads)], color="#999", dash="4 3", width=1.1)  # type: ignore[type-var]
        chart.line(loads, thr, color=color(0))  # type: ignore[arg-type]
        chart.points(loads, thr, color=color(0), r=3.2)  # type: ignore[arg-type]
        good = [c["goodput_per_s"][0] for c in cells]
        if any(v == v for v in good):
            chart.line(loads, good, color=color(2), dash="5 3")  # type: ignore[arg-type]
            chart.add_legend("completed", color(0))
            chart.add_legend("goodput (all SLOs met)", color(2), "dash")
        chart.add_legend("achieved = offered", "#999", "dash", "4 3")
        out.append(chart)
    return out, notes


def _attainment_target(capacity: dict[str, Any]) -> float | None:
    slo = capacity.get("slo") or {}
    for key in ("attainment", "target_attainment", "min_attainment", "target"):
        v = slo.get(key) if isinstance(slo, dict) else None
        if isinstance(v, int | float) and 0 < v <= 1:
            return float(v)
    return None


def capacity_chart(capacity: dict[str, Any]) -> Chart:
    probes = [p for p in capacity.get("probes") or [] if isinstance(p, dict)]
    over = str(capacity.get("over", "load"))
    loads = [number_in(p.get("load")) for p in probes]
    att = [p.get("attainment") for p in probes]
    pts = [(ld, a, p) for ld, a, p in zip(loads, att, probes, strict=True)
           if ld is not None and isinstance(a, int | float)]
    if not pts:
        return empty("capacity", "Capacity probes", "no probe finished")
    chart = Chart("capacity", f"Capacity search: SLO attainment against {over}", width=1140, height=320,
                  x_label=over, y_label="share of requests meeting the SLO")
    chart.set_x(0, nice_max(max(p[0] for p in pts) * 1.08))
    chart.set_y(0, 1.2, ticks=[(v / 5, f"{v / 5:.1f}") for v in range(6)])
    target = _attainment_target(capacity)
    if target is not None:
        chart.hline(target, color="#b3261e", label=f"target {100 * target:g}%")
    answer = capacity.get("answer") or {}
    hp, lf = number_in(answer.get("highest_passing")), number_in(answer.get("lowest_failing"))
    if hp is not None:
        chart.vline(hp, color="#1a7f37", label=f"highest passing {fmt_number(hp)}", label_at=0.4)
    if lf is not None:
        chart.vline(lf, color="#b3261e", label=f"lowest failing {fmt_number(lf)}", label_at=0.55)
    verdict_color = {"pass": "#1a7f37", "fail": "#D55E00", "unsure": "#E69F00"}
    for ld, a, p in pts:
        lo, hi = p.get("ci_low"), p.get("ci_high")
        c = verdict_color.get(str(p.get("verdict")), "#666")
        if isinstance(lo, int | float) and isinstance(hi, int | float):
            assert chart.x is not None and chart.y is not None
            x = chart.x(ld)
            chart.marks.append(f'<path d="M{x:.1f},{chart.y(lo):.1f}V{chart.y(hi):.1f}M{x - 4:.1f},{chart.y(lo):.1f}'
                               f'h8M{x - 4:.1f},{chart.y(hi):.1f}h8" stroke="{c}" stroke-width="1.3" fill="none"/>')
        chart.points([ld], [a], color=c, r=4.2, titles=[
            f"probe {p.get('index')}: {over}={fmt_number(ld)}, attainment {fmt_number(a)} "
            f"[{fmt_number(lo)}, {fmt_number(hi)}], {p.get('verdict')}"
            + (f", stopped early: {p['early_stop']}" if p.get("early_stop") else "")])
        chart.label(ld, a, f"#{p.get('index')}", color="#555", size=9, dy=-7)
    for v, c in verdict_color.items():
        chart.add_legend(v, c, "dot")
    return chart


def capacity_table(capacity: dict[str, Any]) -> str:
    rows = []
    for p in capacity.get("probes") or []:
        fig = p.get("figures") or {}
        figs = ", ".join(f"{k} {fmt_number(v) if isinstance(v, int | float) else v}" for k, v in fig.items())
        rows.append([p.get("index"), p.get("load"), p.get("attainment"), p.get("ci_low"), p.get("ci_high"),
                     p.get("verdict"), p.get("early_stop"), figs, p.get("run_dir")])
    return table(["probe", "load", "attainment", "CI low", "CI high", "verdict", "early stop", "figures",
                  "run"], rows, left=1,
                 row_classes=["bad" if (p.get("verdict") == "fail") else "" for p in capacity.get("probes") or []])


def _cell_runs(study: StudyData) -> tuple[list[RunData], list[str], list[str]]:
    """Up to MAX_OVERLAID_CELLS finished cells' runs (evenly picked), their labels, and load problems."""
    cells = [c for c in study.study.get("cells") or [] if c.get("status") == "finished" and c.get("run_dir")]
    if len(cells) > MAX_OVERLAID_CELLS:
        step = (len(cells) - 1) / (MAX_OVERLAID_CELLS - 1)
        cells = [cells[round(i * step)] for i in range(MAX_OVERLAID_CELLS)]
    runs, labels, problems = [], [], []  # labels shortened below
    for c in cells:
        try:
            runs.append(load_run(study.path / c["run_dir"]))
        except LoadbenchError as exc:
            problems.append(str(exc))
            continue
        values = c.get("values") or {}
        label = " · ".join(str(v) for v in values.values()) or c.get("id", "?")
        labels.append(label + (f" (r{c.get('repeat')})" if study.study.get("repeat", 1) > 1 else ""))
    short, pattern = short_labels(labels)
    if pattern:
        short = [f"{', '.join(study.varied)} {x}" for x in short]
    return runs, short, problems


def build_study_page(study: StudyData, *, generator: str) -> Page:
    s_json = study.study
    cells = s_json.get("cells") or []
    statuses: dict[str, int] = {}
    for c in cells:
        statuses[str(c.get("status"))] = statuses.get(str(c.get("status")), 0) + 1
    page = Page(title=f"{study.name}: {study.kind} report", generator=generator,
                subtitle=f"{len(cells)} cells · " + ", ".join(f"{n} {k}" for k, n in sorted(statuses.items()))
                + f" · created {s_json.get('created', '?')}")
    s = page.section("Cells", "cells")
    base = s_json.get("base") or {}
    vary = s_json.get("vary") or {}
    s.html(facts([
        ("kind", study.kind), ("directory", str(study.path)),
        ("varied", "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in vary.items())),
        ("repeat", s_json.get("repeat")),
        ("base", ", ".join(f"{k}={v}" for k, v in base.items()) if isinstance(base, dict) else str(base)),
    ]))
    header, rows = cell_table_rows(study)
    status_col = header.index("status")
    s.html(table(header, rows, left=status_col + 1,
                 row_classes=["bad" if r[status_col] in ("failed", "interrupted") else "" for r in rows]))
    failed = [c for c in cells if c.get("error")]
    if failed:
        s.html(table(["cell", "status", "error"], [[c.get("id"), c.get("status"), c.get("error")] for c in failed]))
    bars = grouped_bar_charts(study)
    if bars:
        s.note("Finished cells only; with repeats, bars are means and whiskers the range.")
        s.grid(bars)
    sweep, notes = sweep_charts(study)
    if sweep or notes:
        s = page.section("Sweep curves", "sweep")
        for n in notes:
            s.note(n)
        s.grid(sweep)
    if study.capacity:
        cap = study.capacity
        answer = cap.get("answer") or {}
        s = page.section("Capacity search", "capacity")
        s.html(cards([
            (fmt_number(number_in(answer.get("highest_passing"))), f"highest passing {cap.get('over', '')}", False),
            (fmt_number(number_in(answer.get("lowest_failing"))), f"lowest failing {cap.get('over', '')}", False),
            (str(len(cap.get("probes") or [])), "probes", False),
            (fmt_number(cap.get("elapsed_s")), "seconds searched", False),
        ]))
        s.html(facts([("SLO", ", ".join(f"{k} {v}" for k, v in (cap.get("slo") or {}).items())),
                      ("tolerance", cap.get("tolerance")), ("stopped because", cap.get("stop_reason"))]))
        s.chart(capacity_chart(cap))
        s.html(capacity_table(cap))
    runs, labels, problems = _cell_runs(study)
    if runs:
        s = page.section("Cells' distributions", "distributions")
        s.note("Each finished cell's HDR histograms on a nines axis"
               + (f" ({len(runs)} of the finished cells, evenly picked)" if len(runs) == MAX_OVERLAID_CELLS else "")
               + ".")
        for p in problems:
            s.note(p)
        s.grid(overlay_charts(runs, labels, prefix="cells", slo=_slo_limits(study) or None))
    return page
