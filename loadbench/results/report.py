"""Readable renderings of a summary (rich renderables; the CLI decides where they are printed)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

_ROWS = (
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


def summary_renderable(summary: dict[str, Any]) -> Group:
    """The end-of-run report: request accounting, throughput, then one row per metric."""
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
    for key, label, unit in _ROWS:
        m = metrics.get(key)
        if not m or not m["count"]:
            continue
        table.add_row(
            label, unit, _fmt(m["count"]), _fmt(m["mean"]), _fmt(m["p50"]), _fmt(m["p90"]),
            _fmt(m["p99"]), _fmt(m["p99_9"]), _fmt(m["max"]),
        )
    parts: list[Any] = [head, table]
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
    return Group(*parts)
