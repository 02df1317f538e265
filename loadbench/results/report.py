"""Readable renderings of a summary (rich renderables; the CLI decides where they are printed)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

# The summary's metric rows, in the order every report shows them: (key, label, unit).
METRIC_ROWS = (
    ("ttft_ms", "TTFT", "ms"),
    ("ttft_from_schedule_ms", "TTFT from schedule", "ms"),
    ("time_to_first_answer_ms", "time to first answer", "ms"),
    ("e2e_ms", "E2E latency", "ms"),
    ("e2e_from_schedule_ms", "E2E from schedule", "ms"),
    ("itl_ms", "inter-token latency", "ms"),
    ("tpot_ms", "TPOT", "ms"),
    ("decode_tokens_per_s", "decode rate", "tok/s"),
    ("dispatch_lag_ms", "dispatch lag", "ms"),
)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return f"{value:,}"


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f}%"


def _slo_line(slo: dict[str, Any]) -> str:
    """``SLO attainment (of N measured): all 93.1% · ttft_ms <= 300: 97.2% · ...``."""
    attainment = slo["attainment"]
    each = [f"{key} <= {_fmt(limit)}: {_pct(attainment.get(key))}" for key, limit in slo["limits_ms"].items()]
    return f"SLO attainment (of {slo['requests']:,} measured): all {_pct(attainment.get('all'))} · " + " · ".join(each)


def summary_renderable(summary: dict[str, Any], *, gates: bool = True) -> Group:
    """The end-of-run report: request accounting, throughput, then one row per metric; drift and
    the harness's use; each gate's verdict unless ``gates`` is false (the run prints those itself)."""
    req = summary["requests"]
    thr = summary["throughput"]
    tokens = summary["tokens"]
    head = Text()
    head.append(f"{summary.get('scenario', 'run')}: ", style="bold")
    head.append(
        f"{req['scheduled']} scheduled, {req['completed']} completed, {req['failed']} failed, "
        f"{req['cancelled']} cancelled"
    )
    if req["errors"]:
        head.append("  errors: " + ", ".join(f"{k}={v}" for k, v in req["errors"].items()), style="red")
    if req.get("cancelled_in"):
        head.append(
            "  cancelled while: " + ", ".join(f"{k}={v}" for k, v in req["cancelled_in"].items()), style="yellow"
        )
    head.append(
        f"\nmeasured window {summary['window']['duration_s']:.2f} s: "
        f"{_fmt(thr['requests_per_s'])} req/s, {_fmt(thr['output_tokens_per_s'])} output tok/s"
        f" (output counts from {tokens['output_count_source']})"
    )
    if thr.get("goodput_requests_per_s") is not None:
        head.append(f", goodput {_fmt(thr['goodput_requests_per_s'])} req/s")

    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("metric")
    table.add_column("unit")
    for col in ("count", "mean", "p50", "p90", "p99", "p99.9", "max"):
        table.add_column(col, justify="right")
    metrics = summary["metrics"]
    for key, label, unit in METRIC_ROWS:
        m = metrics.get(key)
        if not m or not m["count"]:
            continue
        table.add_row(
            label, unit, _fmt(m["count"]), _fmt(m["mean"]), _fmt(m["p50"]), _fmt(m["p90"]),
            _fmt(m["p99"]), _fmt(m["p99_9"]), _fmt(m["max"]),
        )
    parts: list[Any] = [head, table]
    slo = summary.get("slo")
    if isinstance(slo, dict) and "attainment" in slo:
        parts.append(Text(_slo_line(slo)))
    energy = summary.get("energy")
    if energy:
        from loadbench.energy import format_line

        parts.append(Text(format_line(energy)))
    if summary.get("hybrid"):
        from loadbench.hybrid.compare import hybrid_line

        parts.append(Text(hybrid_line(summary["hybrid"])))
    if summary.get("accuracy"):
        acc = summary["accuracy"]
        parts.append(Text(f"accuracy: {acc['correct']}/{acc['checked']} answers correct"))
    parts += _soak_lines(summary, gates=gates)
    return Group(*parts)


def _soak_lines(summary: dict[str, Any], *, gates: bool) -> list[Text]:
    """Drift and the harness's own use (one line, when measured), then each gate's verdict."""
    out = []
    drift, harness = summary.get("drift") or {}, summary.get("harness") or {}
    bits = []
    if (drift.get("first") or {}).get("start_s") is not None:
        tput = drift["throughput"]["output_tokens_per_s"]
        bits.append(
            f"drift (last / first {drift['window_s']:g} s): TTFT p99 x{_fmt(drift['ttft_ms']['p99'])}, "
            f"throughput x{_fmt(tput)}, error rate {drift['error_rate']:+.4f}"
        )
    if harness.get("samples"):
        growth = harness["rss_growth_mb"]
        bits.append(
            f"harness: RSS {_fmt(harness['rss_mb']['last'])} MB"
            + ("" if growth is None else f" ({growth:+.1f} MB after warm-up)")
            + f", CPU {_fmt(harness['cpu']['mean_percent'])}%, loop lag max {_fmt(harness['loop_lag_ms']['max'])} ms"
        )
    if bits:
        out.append(Text(" · ".join(bits)))
    for g in summary.get("gates") or [] if gates else []:
        from loadbench.gates import describe_result

        out.append(Text(f"gate {describe_result(g)}", style=None if g["passed"] else "red"))
    return out
