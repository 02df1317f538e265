"""Several runs side by side: a comparison table, overlaid distributions and overlaid time series.

No statistics beyond what each run's summary holds: this view is for looking. The first run is
the reference; the other columns say how far each figure moved from it, green when better.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

import loadbench.results.html.charts as charts
from loadbench.results.frames import RunData
from loadbench.results.html.page import Page, table
from loadbench.results.html.run_report import _SCALE, _plan_text, _stop_text, _token_rate
from loadbench.results.html.svg import color

# (label, path into the summary, unit, True when higher is better, None when neither)
ROWS: tuple[tuple[str, tuple[str, ...], str, bool | None], ...] = (
    ("scheduled", ("requests", "scheduled"), "", None),
    ("completed", ("requests", "completed"), "", True),
    ("failed", ("requests", "failed"), "", False),
    ("requests/s", ("throughput", "requests_per_s"), "req/s", True),
    ("output tokens/s", ("throughput", "output_tokens_per_s"), "tok/s", True),
    ("goodput", ("throughput", "goodput_requests_per_s"), "req/s", True),
    ("TTFT p50", ("metrics", "ttft_ms", "p50"), "ms", False),
    ("TTFT p99", ("metrics", "ttft_ms", "p99"), "ms", False),
    ("TTFT p99.9", ("metrics", "ttft_ms", "p99_9"), "ms", False),
    ("TTFT from schedule p99", ("metrics", "ttft_from_schedule_ms", "p99"), "ms", False),
    ("E2E p50", ("metrics", "e2e_ms", "p50"), "ms", False),
    ("E2E p99", ("metrics", "e2e_ms", "p99"), "ms", False),
    ("ITL p50", ("metrics", "itl_ms", "p50"), "ms", False),
    ("ITL p99", ("metrics", "itl_ms", "p99"), "ms", False),
    ("TPOT p50", ("metrics", "tpot_ms", "p50"), "ms", False),
    ("TPOT p99", ("metrics", "tpot_ms", "p99"), "ms", False),
    ("dispatch lag p99", ("metrics", "dispatch_lag_ms", "p99"), "ms", False),
    ("energy per output token", ("energy", "j_per_output_token"), "J", False),
)


def _dig(d: Any, path: Sequence[str]) -> Any:
    for k in path:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def run_labels(runs: Sequence[RunData], labels: Sequence[str] | None) -> list[str]:
    """Given labels, or the scenario names, made unique with the directory name where they clash."""
    if labels:
        return list(labels)
    names = [r.name for r in runs]
    out = []
    for r, n in zip(runs, names, strict=True):
        out.append(f"{n} ({r.path.name})" if names.count(n) > 1 and r.path.name != n else n)
    if len(set(out)) < len(out):
        out = [f"{i + 1}: {n}" for i, n in enumerate(out)]
    return out


def comparison_rows(runs: Sequence[RunData], labels: Sequence[str] | None) -> tuple[list[str], list[list[Any]]]:
    """The comparison table as (header, rows): one row per figure, one column per run, then deltas."""
    names = run_labels(runs, labels)
    header = ["figure", "unit", *names] + [f"{n} vs {names[0]}" for n in names[1:]]
    rows = []
    for label, path, unit, _ in ROWS:
        values = [_dig(r.summary, path) for r in runs]
        if all(v is None for v in values):
            continue
        deltas = [_delta(values[0], v) for v in values[1:]]
        rows.append([label, unit, *values, *deltas])
    return header, rows


def _delta(ref: Any, v: Any) -> str | None:
    if not isinstance(ref, int | float) or not isinstance(v, int | float):
        return None
    if ref == 0:
        return None if v == 0 else "new"
    return f"{100 * (v - ref) / abs(ref):+.1f}%"


def _delta_classes(rows: list[list[Any]], n_runs: int) -> list[list[str]]:
    higher = {label: hb for label, _, _, hb in ROWS}
    out = []
    for row in rows:
        classes = [""] * (2 + n_runs)
        for d in row[2 + n_runs:]:
            if not isinstance(d, str) or not d.endswith("%"):
                classes.append("")
                continue
            x = float(d[:-1])
            if abs(x) < 1.0 or higher.get(row[0]) is None:
                classes.append("")
            else:
                good = (x > 0) == higher.get(row[0], False)
                classes.append("better" if good else "worse")
        out.append(classes)
    return out


def facts_rows(runs: Sequence[RunData], names: Sequence[str]) -> list[list[Any]]:
    rows = []
    for name, r in zip(names, runs, strict=True):
        sc = r.run.get("scenario") or {}
        t = r.run.get("target") or {}
        dep = sc.get("deployment") or {}
        rows.append([
            name, f"{dep.get('kind', '?')} {dep.get('provider') or dep.get('model') or ''}".strip(),
            f"{t.get('kind', '?')} {t.get('base_url', '')}", t.get("model"), _plan_text(sc.get("load")),
            _stop_text(sc.get("stop")), f"{r.run.get('status', '?')} ({r.run.get('stopped_by', '?')})",
            r.run.get("started_at"), str(r.path),
        ])
    return rows


def overlay_charts(runs: Sequence[RunData], names: Sequence[str], *, prefix: str = "cmp", width: int = 560,
                   slo: dict[str, Any] | None = None) -> list[Any]:
    """One nines chart per metric, one curve per run."""
    out = []
    for key, title in (("ttft_ms", "TTFT"), ("ttft_from_schedule_ms", "TTFT from schedule"),
                       ("e2e_ms", "E2E latency"), ("itl_ms", "Inter-token latency"), ("tpot_ms", "TPOT")):
        curves = [charts.Curve(n, r.histograms[key], _SCALE[key], color(i))
                  for i, (n, r) in enumerate(zip(names, runs, strict=True)) if key in r.histograms]
        limit = (slo or {}).get(key)
        out.append(charts.nines_chart(f"{prefix}-{key}", title, curves, width=width, slo=limit))
    return out


def series_overlay(runs: Sequence[RunData], names: Sequence[str], *, width: int = 560) -> list[Any]:
    ends = [float(np.nanmax(r.columns["end_s"])) for r in runs if np.isfinite(r.columns["end_s"]).any()]
    if not ends:
        return []
    t_end = max(ends)
    bin_s = charts.bin_width_s(t_end, 80)
    edges = np.arange(0.0, t_end + bin_s, bin_s)
    mids = (edges[:-1] + edges[1:]) / 2
    tps, inflight = [], []
    for n, r in zip(names, runs, strict=True):
        c = r.columns
        tps.append((n, _token_rate(r, edges)))
        sent = np.sort(c["sent_s"][np.isfinite(c["sent_s"])])
        ended = np.sort(c["end_s"][np.isfinite(c["sent_s"]) & np.isfinite(c["end_s"])])
        inflight.append((n, (np.searchsorted(sent, mids) - np.searchsorted(ended, mids)).astype(float)))
    return [
        charts.series_chart("cmp-tps", "Output tokens/s", edges, tps, unit="tok/s", width=width),
        charts.series_chart("cmp-inflight", "Requests in flight", edges, inflight, unit="requests", width=width,
                            step=False),
    ]


def build_compare_page(runs: Sequence[RunData], *, labels: Sequence[str] | None, generator: str) -> Page:
    names = run_labels(runs, labels)
    page = Page(title="Runs side by side: " + " · ".join(names), generator=generator,
                subtitle=f"{len(runs)} runs; the first ({names[0]}) is the reference for the deltas")
    s = page.section("Comparison", "comparison")
    header, rows = comparison_rows(runs, labels)
    s.html(table(header, rows, left=2, cell_classes=_delta_classes(rows, len(runs))))
    s.note("Deltas are relative to the first run; green is better (lower latency, higher throughput), red "
           "worse; under 1% is left plain. Each figure is that run's own summary over its measured window.")
    s.html(table(["run", "deployment", "target", "model", "load plan", "stop rule", "status", "started",
                  "directory"], facts_rows(runs, names), left=9))
    s = page.section("Latency distributions", "distributions")
    s.note("Each run's HDR histograms on a nines axis: p90, p99, p99.9, p99.99 evenly spaced.")
    slo = next((r.summary.get("slo") for r in runs if r.summary.get("slo")), None)
    s.grid(overlay_charts(runs, names, slo=slo if all(r.summary.get("slo") == slo for r in runs) else None))
    overlay = series_overlay(runs, names)
    if overlay:
        s = page.section("Over time", "time")
        s.note("Seconds since each run's own start.")
        s.grid(overlay)
    return page


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not math.isnan(v)
