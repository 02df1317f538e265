"""One run's report: headline, facts, latency distributions, time series, timeline, token lengths.

Sizes stay bounded whatever the request count: distributions are read off the HDR histograms,
time series are binned, the timeline draws a labelled sample of requests (every failure and the
slowest first), and token-length scatter plots turn into 2-D bins past a few thousand points.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import loadbench.results.html.charts as charts
from loadbench.metrics.recorder import METRICS
from loadbench.results.frames import RunData
from loadbench.results.html.page import Page, cards, facts, table
from loadbench.results.html.svg import Chart, color, empty, fmt_number, nice_max
from loadbench.results.report import METRIC_ROWS

TIMELINE_ROWS = 300
_SCALE = {m.key: m.scale for m in METRICS}



def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _plan_text(load: dict[str, Any] | None) -> str:
    if not load:
        return ""
    name = load.get("plan", "?")
    args = ", ".join(f"{k}={v}" for k, v in load.items() if k != "plan" and v is not None)
    return f"{name}({args})"


def _dist_text(d: Any) -> str:
    if not isinstance(d, dict):
        return "" if d is None else str(d)
    kind = d.get("kind", "")
    args = ", ".join(f"{k}={v}" for k, v in d.items() if k != "kind")
    return f"{kind}({args})"


def _stop_text(stop: dict[str, Any] | None) -> str:
    if not stop:
        return ""
    return ", ".join(f"{k}={v}" for k, v in stop.items() if v not in (None, 0, 0.0))


def run_facts(data: RunData) -> list[tuple[str, Any]]:
    run, summary = data.run, data.summary
    sc = run.get("scenario") or {}
    target = run.get("target") or {}
    dep = sc.get("deployment") or {}
    wl = sc.get("workload") or {}
    versions = run.get("versions") or {}
    host = run.get("host") or {}
    sim = sc.get("sim") or {}
    target_text = f"{target.get('kind', '?')} at {target.get('base_url', '?')}"
    if target.get("kind") == "sim":
        target_text += f" (embedded simulator, profile {_get(sim, 'profile', 'name') or '?'})"
    return [
        ("run", f"{run.get('run_id', '?')} in {data.path}"),
        ("status", f"{run.get('status', '?')}; stopped by {run.get('stopped_by') or summary.get('stopped_by') or '?'}"),
        ("started / finished", f"{run.get('started_at', '?')} / {run.get('finished_at', '-')}"),
        ("target", target_text),
        ("dialect / model", f"{target.get('dialect', '?')} / {target.get('model', '?')}"),
        ("deployment", ", ".join(f"{k}={dep[k]}" for k in ("kind", "provider", "model", "client", "quant")
                                 if dep.get(k) is not None)),
        ("workload", f"{wl.get('name', '?')}: input {_dist_text(wl.get('input_tokens'))}, "
                     f"output {_dist_text(wl.get('output_tokens'))}"),
        ("load plan", _plan_text(sc.get("load"))),
        ("stop rule", _stop_text(sc.get("stop"))),
        ("SLO", ", ".join(f"{k} ≤ {v}" for k, v in (summary.get("slo") or sc.get("slo") or {}).items())),
        ("seed", sc.get("seed")),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
        ("host", ", ".join(f"{k}={v}" for k, v in host.items())),
    ]


def headline(summary: dict[str, Any]) -> str:
    req = summary.get("requests") or {}
    thr = summary.get("throughput") or {}
    m = summary.get("metrics") or {}
    energy = summary.get("energy") or {}
    items = [
        (f"{req.get('completed', 0):,} / {req.get('scheduled', 0):,}", "completed / scheduled", False),
        (f"{req.get('failed', 0):,}", "failed" + (f" ({', '.join(f'{k} {v}' for k, v in req['errors'].items())})"
                                                  if req.get("errors") else ""), bool(req.get("failed"))),
        (fmt_number(thr.get("requests_per_s")), "requests/s", False),
        (fmt_number(thr.get("output_tokens_per_s")), "output tokens/s", False),
    ]
    if thr.get("goodput_requests_per_s") is not None:
        items.append((fmt_number(thr["goodput_requests_per_s"]), "goodput req/s (all SLOs met)", False))
    for key, label in (("ttft_ms", "TTFT"), ("e2e_ms", "E2E"), ("tpot_ms", "TPOT")):
        s = m.get(key) or {}
        if s.get("count"):
            items.append((f"{fmt_number(s['p50'])} / {fmt_number(s['p99'])} ms", f"{label} p50 / p99", False))
    if energy.get("j_per_output_token") is not None:
        items.append((fmt_number(energy["j_per_output_token"]), f"J per output token ({energy.get('kind', '?')})",
                      False))
    return cards(items)


def metrics_table(summary: dict[str, Any]) -> str:
    rows = []
    metrics = summary.get("metrics") or {}
    for key, label, unit in METRIC_ROWS:
        s = metrics.get(key)
        if not s or not s.get("count"):
            continue
        rows.append([label, unit, s["count"], s["mean"], s["p50"], s["p90"], s["p99"], s["p99_9"], s["max"]])
    return table(["metric", "unit", "count", "mean", "p50", "p90", "p99", "p99.9", "max"], rows, left=2)


def distribution_charts(data: RunData, *, width: int = 560) -> list[Chart]:
    """TTFT, E2E (from send beside from schedule), ITL and TPOT on nines axes."""
    h = data.histograms
    slo = data.summary.get("slo") or {}
    out = []
    for slug, title, pair, limit in (
        ("dist-ttft", "TTFT", ("ttft_ms", "ttft_from_schedule_ms"), slo.get("ttft_ms")),
        ("dist-e2e", "E2E latency", ("e2e_ms", "e2e_from_schedule_ms"), slo.get("e2e_ms")),
        ("dist-itl", "Inter-token latency", ("itl_ms",), slo.get("itl_ms")),
        ("dist-tpot", "TPOT (time per output token)", ("tpot_ms",), slo.get("tpot_ms")),
    ):
        curves = []
        for i, key in enumerate(pair):
            if key in h:
                label = "from schedule" if "schedule" in key else ("from send" if len(pair) > 1 else title)
                curves.append(charts.Curve(label, h[key], _SCALE[key], color(i), "6 3" if i else ""))
        out.append(charts.nines_chart(slug, title, curves, width=width, slo=limit))
    if "dispatch_lag_ms" in h:
        out.append(charts.nines_chart("dist-lag", "Dispatch lag (sent - intended)",
                                      [charts.Curve("dispatch lag", h["dispatch_lag_ms"], 1e3, color(2))],
                                      width=width))
    return out


def _bands(cols: dict[str, np.ndarray]) -> list[tuple[float, float, str]]:
    """Shaded spans for warm-up and cool-down requests (intended-time ranges)."""
    out = []
    for phase, label in (("warmup", "warm-up"), ("cooldown", "cool-down")):
        sel = cols["phase"] == phase
        if sel.any():
            lo = float(np.nanmin(cols["intended_s"][sel]))
            hi = float(np.nanmax(cols["intended_s"][sel]))
            out.append((lo, hi, label))
    return out


def _binned_percentiles(t: np.ndarray, v: np.ndarray, edges: np.ndarray, ps: tuple[float, ...]) -> list[np.ndarray]:
    keep = np.isfinite(t) & np.isfinite(v)
    t, v = t[keep], v[keep]
    idx = np.searchsorted(edges, t, side="right") - 1
    out = [np.full(len(edges) - 1, np.nan) for _ in ps]
    if t.size == 0:
        return out
    order = np.argsort(idx, kind="stable")
    idx, v = idx[order], v[order]
    bounds = np.searchsorted(idx, np.arange(len(edges)))
    for b in range(len(edges) - 1):
        seg = v[bounds[b]:bounds[b + 1]]
        if seg.size:
            for k, p in enumerate(ps):
                out[k][b] = np.percentile(seg, p)
    return out


def time_series_charts(data: RunData, *, width: int = 560) -> tuple[list[Chart], str]:
    cols = data.columns
    ends = cols["end_s"]
    if not np.isfinite(ends).any():
        return [empty("ts-empty", "Time series", "no request finished")], ""
    t_end = float(np.nanmax(ends))
    bin_s = charts.bin_width_s(t_end, 100)
    edges = np.arange(0.0, t_end + bin_s, bin_s)
    bands = _bands(cols)
    ok = cols["status"] == "ok"
    out: list[Chart] = []

    # In flight (sent, not ended) and backlog (intended, not yet sent), sampled at each bin's middle.
    mids = (edges[:-1] + edges[1:]) / 2
    sent = np.sort(cols["sent_s"][np.isfinite(cols["sent_s"])])
    ended = np.sort(ends[np.isfinite(cols["sent_s"]) & np.isfinite(ends)])
    intended = np.sort(cols["intended_s"][np.isfinite(cols["intended_s"])])
    in_flight = (np.searchsorted(sent, mids) - np.searchsorted(ended, mids)).astype(float)
    backlog = (np.searchsorted(intended, mids) - np.searchsorted(sent, mids)).astype(float)
    series = [("in flight", in_flight)]
    if backlog.max() > 0:
        series.append(("due, not yet sent", backlog))
    out.append(charts.series_chart("ts-inflight", "Requests in flight", edges, series, unit="requests",
                                   width=width, step=False, bands=bands))

    completions = np.histogram(ends[ok], edges)[0] / bin_s
    out.append(charts.series_chart("ts-rps", "Completed requests/s", edges, [("completed", completions)],
                                   unit="req/s", width=width, bands=bands))

    out.append(charts.series_chart("ts-tps", "Output tokens/s", edges, [("output", _token_rate(data, edges))],
                                   unit="tok/s", width=width, bands=bands,
                                   note="by chunk arrival" if _has_chunks(data) else "at request end"))

    coarse = np.arange(0.0, t_end + bin_s * 2.5, bin_s * 2.5)
    p50, p99 = _binned_percentiles(cols["first_token_s"], cols["ttft_ms"], coarse, (50, 99))
    out.append(charts.series_chart("ts-ttft", "TTFT by first-token time", coarse, [("p50", p50), ("p99", p99)],
                                   unit="ms", width=width, bands=bands, log=True,
                                   sparse=True))

    failed = cols["status"] == "failed"
    stacks = []
    for cat in sorted(set(cols["error"][failed].tolist()) - {""}):
        sel = failed & (cols["error"] == cat)
        stacks.append((cat, np.histogram(ends[sel], edges)[0].astype(float)))
    cancelled = cols["status"] == "cancelled"
    if cancelled.any():
        stacks.append(("cancelled", np.histogram(ends[cancelled & np.isfinite(ends)], edges)[0].astype(float)))
    out.append(charts.stacked_bars_chart("ts-errors", "Errors by category", edges, stacks, unit="requests",
                                         width=width, empty_text="no failed or cancelled request", bands=bands))

    lag50, lag99, lagmax = _binned_percentiles(cols["intended_s"], cols["dispatch_lag_ms"], edges, (50, 99, 100))
    out.append(charts.series_chart("ts-lag", "Dispatch lag by intended time", edges,
                                   [("p50", lag50), ("p99", lag99), ("max", lagmax)], unit="ms", width=width,
                                   bands=bands, log=True, sparse=True))

    power = data.power_series()
    if power:
        p_edges = edges if edges[-1] >= max(float(p["t_s"].max()) for p in power) else None
        chart = Chart("ts-power", "Power", width=width, height=230, x_label="seconds since start", y_label="W")
        lo = min(0.0, min(float(p["t_s"].min()) for p in power))
        hi = max(float(p["t_s"].max()) for p in power) if p_edges is None else float(edges[-1])
        chart.set_x(lo, hi)
        chart.set_y(0, nice_max(max(float(np.nanmax(p["watts"])) for p in power) * 1.05))
        for lo_b, hi_b, label in bands:
            chart.band_x(lo_b, hi_b, label=label)
        for i, p in enumerate(power):
            t, w = p["t_s"], p["watts"]
            if t.size > 400:  # mean power per bin, like the other series
                p_bins = np.arange(float(t.min()), float(t.max()) + bin_s, bin_s)
                n_in = np.histogram(t, p_bins)[0]
                with np.errstate(invalid="ignore", divide="ignore"):
                    w = np.histogram(t, p_bins, weights=w)[0] / n_in
                t = (p_bins[:-1] + p_bins[1:]) / 2
            chart.line(t.tolist(), w.tolist(), color=color(i), width=1.4)
            chart.add_legend(f"{p['label']} ({p['kind']})", color(i))
        if lo < 0:
            chart.band_x(lo, 0, label="idle baseline", fill="#eef4fa")
        out.append(chart)
    note = f"Bins of {fmt_number(bin_s)} s over {fmt_number(t_end)} s (TTFT: {fmt_number(bin_s * 2.5)} s)."
    if bands:
        note += " Shaded: warm-up / cool-down requests, left out of the summary."
    return out, note


def _has_chunks(data: RunData) -> bool:
    return len(data.chunks) > 0


def _token_rate(data: RunData, edges: np.ndarray) -> np.ndarray:
    """Output tokens per second per bin: at each chunk's arrival when chunk times were kept."""
    cols = data.columns
    sent_s = cols["sent_s"]
    ok = cols["status"] == "ok"
    chunks = data.chunks
    width = edges[1] - edges[0]
    keep = ok[chunks.rows] if len(chunks) else np.zeros(0, dtype=bool)
    if keep.any():
        idx = chunks.rows[keep]
        n_chunks = chunks.counts[keep]
        flat = chunks.offsets_us[np.repeat(keep, chunks.counts)]
        t = np.repeat(sent_s[idx], n_chunks) + flat / 1e6
        # A chunk can carry several tokens: weight each by its request's tokens per chunk.
        tokens = np.maximum(cols["output_tokens"][idx], 0)
        w = np.repeat(tokens / np.maximum(n_chunks, 1), n_chunks)
        rate = np.histogram(t, edges, weights=w)[0] / width
        missing = ok.copy()
        missing[idx] = False
    else:
        rate = np.zeros(len(edges) - 1)
        missing = ok
    if missing.any():  # requests written without chunk times count at their end
        rate = rate + np.histogram(cols["end_s"][missing], edges,
                                   weights=np.maximum(cols["output_tokens"][missing], 0))[0] / width
    return rate


def _pick_rows(cols: dict[str, np.ndarray], limit: int) -> tuple[np.ndarray, str]:
    n = len(cols["index"])
    order = np.argsort(np.where(np.isfinite(cols["intended_s"]), cols["intended_s"], np.inf), kind="stable")
    if n <= limit:
        return order, f"all {n:,} requests"
    failed = np.flatnonzero(cols["status"] != "ok")[: limit // 5]
    latency = np.where(np.isfinite(cols["e2e_from_schedule_ms"]), cols["e2e_from_schedule_ms"], -1)
    slowest = np.argsort(-latency, kind="stable")[: limit // 5]
    chosen = set(failed.tolist()) | set(slowest.tolist())
    rest = limit - len(chosen)
    even = order[np.linspace(0, n - 1, max(rest, 0)).astype(int)] if rest > 0 else np.array([], dtype=int)
    chosen |= set(even.tolist())
    picked = np.array(sorted(chosen, key=lambda i: (cols["intended_s"][i], i)), dtype=int)
    parts = [f"the {len(failed):,} first failures"] if len(failed) else []
    parts.append(f"the {len(slowest):,} slowest (from schedule)")
    return picked, f"{len(picked):,} of {n:,} requests: {', '.join(parts)} and an even spread of the rest"


def _close_up_rows(cols: dict[str, np.ndarray], limit: int) -> tuple[np.ndarray, str] | None:
    """Consecutive requests around the slowest one, when the run is too long for bars to show.

    Over a long run a request's bar is narrower than a pixel, so the overview shows only where
    requests fell; the close-up shows how they overlapped.
    """
    n = len(cols["index"])
    span = float(np.nanmax(cols["end_s"])) - float(np.nanmin(cols["intended_s"])) if n else 0.0
    dur = cols["e2e_from_schedule_ms"]
    if n <= limit or not np.isfinite(dur).any() or span <= 0:
        return None
    if np.nanmedian(dur) / 1e3 > 0.01 * span:
        return None
    order = np.argsort(np.where(np.isfinite(cols["intended_s"]), cols["intended_s"], np.inf), kind="stable")
    slowest = int(np.nanargmax(np.where(np.isfinite(dur), dur, -1)))
    pos = int(np.flatnonzero(order == slowest)[0])
    lo = max(0, min(pos - limit // 2, n - limit))
    block = order[lo:lo + limit]
    return block, (f"{len(block):,} consecutive requests around the slowest "
                   f"({cols['request_id'][slowest]}, {fmt_number(float(dur[slowest]))} ms from schedule)")


def timeline_charts(data: RunData, *, width: int = 1140, limit: int = TIMELINE_ROWS) -> list[Chart]:
    """The overview (a spread of the whole run) and, for long runs, a close-up of consecutive requests."""
    out = [timeline_chart(data, width=width, limit=limit)]
    close = _close_up_rows(data.columns, limit // 2)
    if close is not None:
        out.append(timeline_chart(data, width=width, limit=limit, rows=close, slug="timeline-close",
                                  title="Request timeline, close-up"))
    return out


def timeline_chart(data: RunData, *, width: int = 1140, limit: int = TIMELINE_ROWS,
                   rows: tuple[np.ndarray, str] | None = None, slug: str = "timeline",
                   title: str = "Request timeline") -> Chart:
    """One bar per request: intended -> sent (grey), sent -> first token (amber), -> end (blue).

    Hybrid child calls sit in rows right under their parent, indented and coloured by role.
    ``rows`` (indices, description) overrides the sample of requests drawn.
    """
    cols = data.columns
    n = len(cols["index"])
    if n == 0:
        return empty(slug, title, "no requests", width=width)
    kids = data.child_columns
    by_parent: dict[str, list[int]] = {}
    for j, parent in enumerate(kids["parent"].tolist()):
        by_parent.setdefault(parent, []).append(j)
    for lst in by_parent.values():
        lst.sort(key=lambda j: (kids["sent_ns"][j] or kids["intended_ns"][j], j))
    n_kids = len(kids["index"])
    budget = limit if not n_kids else max(20, int(limit / (1 + n_kids / max(n, 1))))
    picked, how = rows if rows is not None else _pick_rows(cols, budget)
    ids = cols["request_id"]
    drawn: list[tuple[str, int]] = []
    for i in picked.tolist():
        drawn.append(("p", i))
        drawn.extend(("c", j) for j in by_parent.get(ids[i], []))
    rows_ = drawn
    row_h = max(1.6, min(12.0, 560 / len(rows_)))
    plot_h = row_h * len(rows_)
    chart = Chart(slug, title, width=width, height=int(plot_h + 90),
                  x_label="seconds since start", y_label="requests (by intended time)",
                  note=how + (f"; {sum(1 for k, _ in rows_ if k == 'c'):,} child calls nested" if n_kids else ""))
    chart.add_legend("intended → sent (dispatch lag)", "#9a9a9a", "box")
    chart.add_legend("sent → first token", "#E69F00", "box")
    chart.add_legend("first token → end", "#0072B2", "box")
    chart.add_legend("failed", "#D55E00", "box")
    if n_kids:
        chart.add_legend("child: supervisor", "#CC79A7", "box")
        chart.add_legend("child: worker", "#009E73", "box")
    kid_rows = np.array([j for k, j in rows_ if k == "c"], dtype=int)
    all_s = [cols[k][picked] for k in ("intended_s", "end_s")] + [kids["end_s"][kid_rows]]
    hi = max(float(np.nanmax(a)) for a in all_s if np.isfinite(a).any())
    lo = float(np.nanmin(cols["intended_s"][picked]))
    if rows is None:
        lo = min(0.0, lo)
    chart.set_x(lo, hi)
    chart.set_y(0, 1, ticks=[])
    top = chart.y1
    for r, (kind, i) in enumerate(rows_):
        src = cols if kind == "p" else kids
        y = top + r * row_h
        h = row_h * (0.82 if kind == "p" else 0.6)
        if kind == "c":
            y += row_h * 0.2
        t_i, t_s, t_f, t_e = (float(src[k][i]) for k in ("intended_s", "sent_s", "first_token_s", "end_s"))
        status = src["status"][i]
        tip = _row_tip(src, i, kind)
        x = chart.x
        assert x is not None
        if kind == "p" and math.isfinite(t_i) and math.isfinite(t_s):
            chart.rect_px(x(t_i), y, x(t_s) - x(t_i), h, fill="#9a9a9a")
        start = t_s if math.isfinite(t_s) else t_i
        if not math.isfinite(start):
            continue
        end = t_e if math.isfinite(t_e) else start
        if kind == "c":
            fill = "#CC79A7" if src["role"][i] == "supervisor" else "#009E73"
            chart.rect_px(x(start), y, max(x(end) - x(start), 0.8), h, fill=fill if status == "ok" else "#D55E00",
                          title=tip)
            continue
        if status != "ok" or not math.isfinite(t_f):
            chart.rect_px(x(start), y, max(x(end) - x(start), 0.8), h,
                          fill="#D55E00" if status != "ok" else "#E69F00", title=tip)
            continue
        chart.rect_px(x(start), y, x(t_f) - x(start), h, fill="#E69F00")
        chart.rect_px(x(t_f), y, max(x(end) - x(t_f), 0.8), h, fill="#0072B2", title=tip)
    return chart


def _row_tip(src: dict[str, np.ndarray], i: int, kind: str) -> str:
    parts = [str(src["request_id"][i])]
    if kind == "c":
        parts.append(f"{src['role'][i] or 'child'} call, round {src['round'][i]}")
    parts.append(str(src["status"][i]) + (f" ({src['error'][i]})" if src["error"][i] else ""))
    for key, label in (("dispatch_lag_ms", "lag"), ("ttft_ms", "TTFT"), ("e2e_ms", "E2E")):
        v = src[key][i]
        if math.isfinite(v):
            parts.append(f"{label} {fmt_number(float(v))} ms")
    if src["output_tokens"][i] >= 0:
        parts.append(f"{src['output_tokens'][i]} tokens out")
    return ", ".join(parts)


def lengths_charts(data: RunData) -> list[Chart]:
    cols = data.columns
    ok = cols["status"] == "ok"
    return [
        charts.lengths_chart("len-input", "Input tokens: target vs actual", cols["target_input_tokens"],
                             cols["input_tokens"]),
        charts.lengths_chart("len-output", "Output tokens: target vs actual (completed)",
                             np.where(ok, cols["target_output_tokens"], -1), np.where(ok, cols["output_tokens"], -1)),
    ]


def lengths_table(summary: dict[str, Any]) -> str:
    lengths = summary.get("lengths") or {}
    rows = []
    for side in ("input", "output"):
        s = lengths.get(side)
        if not s:
            continue
        rows.append([side, s.get("n"), s.get("unreported"), s.get("target_p50"), s.get("reported_p50"),
                     s.get("target_p90"), s.get("reported_p90"),
                     None if s.get("rel_error_p90") is None else f"{100 * s['rel_error_p90']:.1f}%"])
    if not rows:
        return ""
    return table(["tokens", "n", "unreported", "target p50", "actual p50", "target p90", "actual p90",
                  "|error| p90"], rows)


def errors_table(data: RunData) -> str:
    cols = data.columns
    failed = np.flatnonzero(cols["status"] == "failed")
    if failed.size == 0:
        return ""
    by_cat: dict[str, list[int]] = {}
    for i in failed.tolist():
        by_cat.setdefault(cols["error"][i] or "?", []).append(i)
    rows = []
    for cat, idx in sorted(by_cat.items(), key=lambda kv: -len(kv[1])):
        first = data.records[idx[0]]
        rows.append([cat, len(idx), first.get("http_status"), str(first.get("error_detail") or "")[:160]])
    return table(["category", "requests", "HTTP status (first)", "detail (first)"], rows, left=1)


def build_run_page(data: RunData, *, generator: str) -> Page:
    summary = data.summary
    page = Page(title=f"{data.name}: run report", generator=generator,
                subtitle=f"run {data.run.get('run_id', '?')} · {data.run.get('started_at', '')} · "
                         f"{data.path.name}")
    s = page.section("Summary", "summary")
    s.html(headline(summary))
    s.html(metrics_table(summary))
    if summary.get("energy"):
        from loadbench.energy import format_line

        s.note(format_line(summary["energy"]))
    s.html(errors_table(data))
    s = page.section("Run facts", "facts")
    s.html(facts(run_facts(data)))
    s = page.section("Latency distributions", "distributions")
    s.note("Percentiles from the run's HDR histograms (measured window only), on a nines axis: p90, p99, "
           "p99.9 and p99.99 evenly spaced. Dashed: measured from the intended send time, which includes "
           "any dispatch lag and queueing on the client (coordinated-omission free).")
    s.grid(distribution_charts(data))
    s = page.section("Over time", "time")
    series, note = time_series_charts(data)
    s.note(note)
    s.grid(series)
    s = page.section("Request timeline", "timeline")
    for chart in timeline_charts(data):
        s.chart(chart)
    s = page.section("Token lengths", "lengths")
    s.html(lengths_table(summary))
    s.grid(lengths_charts(data))
    return page


def _finite_max(a: np.ndarray) -> float:
    a = a[np.isfinite(a)]
    return float(a.max()) if a.size else math.nan
