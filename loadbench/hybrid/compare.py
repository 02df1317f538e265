"""One row per deployment from a run's summary, and the table that sets them side by side.

The row's figures come from ``summary.json`` alone, so a table can be made again from saved run
directories. Energy per request: a local deployment's is what the run's meter gave (labelled as
the meter labels it: measured, or a CPU-time estimate); a remote deployment's is always an
estimate (its tokens times ``RemoteEnergy``); a hybrid's is both, and says so.
"""

from __future__ import annotations

from typing import Any

from loadbench.hybrid.prices import PriceTable, RemoteEnergy


def row(label: str, summary: dict[str, Any], *, kind: str, remote_model: str | None = None,
        prices: PriceTable | None = None, remote_energy: RemoteEnergy | None = None) -> dict[str, Any]:
    """The comparison figures of one run; ``kind`` is "local", "remote" or "hybrid"."""
    prices = prices or PriceTable()
    remote_energy = remote_energy or RemoteEnergy()
    metrics = summary.get("metrics", {})
    completed = summary.get("requests", {}).get("measured_completed") or 0
    energy = summary.get("energy") or {}
    out: dict[str, Any] = {
        "deployment": label,
        "completed": completed,
        "failed": summary.get("requests", {}).get("failed", 0),
        "e2e_p50_ms": (metrics.get("e2e_ms") or {}).get("p50"),
        "e2e_p99_ms": (metrics.get("e2e_ms") or {}).get("p99"),
        "ttft_p50_ms": (metrics.get("ttft_ms") or {}).get("p50"),
        "remote_tokens": 0,
        "remote_tokens_per_request": 0.0,
        "cost_usd_per_request": 0.0,
        "protocol_errors": 0,
        "accuracy": (summary.get("accuracy") or {}).get("accuracy"),
    }
    local_wh = energy.get("wh_per_request") if energy.get("location") != "remote" else None
    local_kind = energy.get("kind") or "not metered"
    if kind == "local":
        out["energy_wh_per_request"] = local_wh
        out["energy_kind"] = local_kind
        return out
    if kind == "remote":
        tokens = summary.get("tokens", {})
        n_in, n_out = tokens.get("input_total") or 0, tokens.get("output_total") or 0
        model = remote_model or summary.get("target", {}).get("model", "")
        cost = prices.cost_usd(model, n_in, n_out)
        out.update(
            remote_tokens=n_in + n_out,
            remote_tokens_per_request=(n_in + n_out) / completed if completed else None,
            cost_usd_per_request=(cost / completed) if cost is not None and completed else None,
            energy_wh_per_request=(remote_energy.joules(n_in, n_out) / 3600 / completed) if completed else None,
            energy_kind="estimated",
        )
        return out
    hybrid = summary.get("hybrid") or {}
    remote = hybrid.get("remote", {})
    n = (remote.get("input_tokens") or 0) + (remote.get("output_tokens") or 0)
    h_energy = hybrid.get("energy", {})
    local_part = (h_energy.get("local") or {}).get("wh_per_request")
    remote_part = (h_energy.get("remote") or {}).get("wh_per_request")
    out.update(
        remote_tokens=n,
        remote_tokens_per_request=n / completed if completed else None,
        cost_usd_per_request=hybrid.get("cost_usd_per_request"),
        protocol_errors=sum((hybrid.get("protocol_errors") or {}).values()),
        energy_wh_per_request=None if local_part is None and remote_part is None
        else (local_part or 0.0) + (remote_part or 0.0),
        energy_kind=f"local {(h_energy.get('local') or {}).get('kind', 'not metered')} + remote estimated",
    )
    return out


def hybrid_line(h: dict[str, Any]) -> str:
    """The summary's ``hybrid`` section in two lines, for the printed report."""
    rounds, jobs, local, remote = h["rounds"], h["jobs_per_round"], h["local"], h["remote"]
    cost = h.get("cost_usd_per_request")
    errors = ", ".join(f"{k}={v}" for k, v in h["protocol_errors"].items()) or "none"
    line = (
        f"hybrid {h['protocol']['name']}: rounds p50 {_fmt(rounds['p50'], 'g')} max {_fmt(rounds['max'], 'g')}"
        + (f" · jobs/round p50 {_fmt(jobs['p50'], 'g')} max {_fmt(jobs['max'], 'g')}" if jobs["max"] else "")
        + f" · protocol errors: {errors} · retries {h['retries']}"
        f"\n  local {local['calls']} calls, {_fmt(local['input_tokens'])} in / {local['output_tokens']} out tokens,"
        f" busy {local['busy_s']:.1f} s · remote {remote['calls']} calls, {_fmt(remote['input_tokens'])} in /"
        f" {remote['output_tokens']} out tokens, busy {remote['busy_s']:.1f} s · "
        + (f"USD {cost:.5f}/request" if cost is not None else f"{remote['model']} unpriced")
    )
    return line


def _fmt(value: Any, spec: str = ".1f") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a fixed-width text table (``-``: not known or not applicable)."""
    head = ["deployment", "ok", "fail", "E2E p50 ms", "E2E p99 ms", "TTFT p50 ms", "remote tok/req",
            "USD/req", "Wh/req", "energy is", "proto err", "accuracy"]
    body = [
        [
            r["deployment"], _fmt(r["completed"]), _fmt(r["failed"]), _fmt(r["e2e_p50_ms"], ".0f"),
            _fmt(r["e2e_p99_ms"], ".0f"), _fmt(r["ttft_p50_ms"], ".0f"), _fmt(r["remote_tokens_per_request"], ".0f"),
            "unpriced" if r["cost_usd_per_request"] is None and r["remote_tokens"] else
            _fmt(r["cost_usd_per_request"], ".5f"),
            _fmt(r.get("energy_wh_per_request"), ".4f"), r.get("energy_kind", "-"), _fmt(r["protocol_errors"]),
            _fmt(r["accuracy"], ".2f"),
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body)
    return "\n".join(lines)
