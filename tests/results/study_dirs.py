"""Study directories for the report tests, laid out from real run directories.

The studies code writes these in the project; the report only reads them. This writes the same
format (study.json, cells.csv, capacity.json, cells/cNNN run directories) from runs made here,
with cells.csv's figures taken from each run's own summary.json.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

CELL_FIGURES = (
    "ttft_ms_p50", "ttft_ms_p99", "e2e_ms_p50", "e2e_ms_p99", "itl_ms_p50", "itl_ms_p99", "tpot_ms_p50",
    "tpot_ms_p99", "requests_per_s", "output_tokens_per_s", "goodput_per_s", "slo_attainment", "errors",
    "energy_j_per_request", "energy_j_per_token", "cost_usd_per_request",
)


def cell_figures(summary: dict[str, Any]) -> dict[str, Any]:
    m = summary.get("metrics") or {}
    thr = summary.get("throughput") or {}
    energy = summary.get("energy") or {}
    out: dict[str, Any] = {}
    for key in ("ttft_ms", "e2e_ms", "itl_ms", "tpot_ms"):
        out[f"{key}_p50"] = (m.get(key) or {}).get("p50")
        out[f"{key}_p99"] = (m.get(key) or {}).get("p99")
    out["requests_per_s"] = thr.get("requests_per_s")
    out["output_tokens_per_s"] = thr.get("output_tokens_per_s")
    out["goodput_per_s"] = thr.get("goodput_requests_per_s")
    rps, good = thr.get("requests_per_s"), thr.get("goodput_requests_per_s")
    out["slo_attainment"] = good / rps if rps and good is not None else None
    out["errors"] = (summary.get("requests") or {}).get("failed")
    wh = energy.get("wh_per_request")
    out["energy_j_per_request"] = None if wh is None else wh * 3600
    out["energy_j_per_token"] = energy.get("j_per_output_token")
    out["cost_usd_per_request"] = None
    return out


def write_study(
    path: Path,
    *,
    kind: str,
    field: str,
    cells: Sequence[tuple[str, Path | None, str]],
    base: dict[str, Any] | None = None,
    capacity: dict[str, Any] | None = None,
    errors: dict[int, str] | None = None,
) -> Path:
    """``cells``: (value description, run directory or None, status) per cell, one varied ``field``."""
    path.mkdir(parents=True, exist_ok=True)
    cell_objs = []
    rows = []
    for i, (value, run_dir, status) in enumerate(cells):
        cid = f"c{i:03d}"
        rel = f"cells/{cid}"
        if run_dir is not None:
            shutil.copytree(run_dir, path / rel, dirs_exist_ok=True)
        err = (errors or {}).get(i)
        cell_objs.append({"id": cid, "values": {field: value}, "repeat": 0, "status": status,
                          "run_dir": rel, "error": err})
        figures = dict.fromkeys(CELL_FIGURES)
        if run_dir is not None and status == "finished":
            figures.update(cell_figures(orjson.loads((run_dir / "summary.json").read_bytes())))
        rows.append({"id": cid, "repeat": 0, field: value, "status": status, **figures})
    study = {
        "kind": kind, "name": path.name, "created": datetime.now(UTC).isoformat(), "base": base or {},
        "vary": {field: [c[0] for c in cells]}, "repeat": 1, "cells": cell_objs,
    }
    (path / "study.json").write_bytes(orjson.dumps(study, option=orjson.OPT_INDENT_2))
    with open(path / "cells.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["id", "repeat", field, "status", *CELL_FIGURES])
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if v is None else v for k, v in r.items()})
    if capacity is not None:
        (path / "capacity.json").write_bytes(orjson.dumps(capacity, option=orjson.OPT_INDENT_2))
    return path


def capacity_from_cells(path: Path, *, over: str, slo: dict[str, Any], loads: Sequence[float]) -> dict[str, Any]:
    """A capacity.json for cells already written under ``path``: each cell a probe, judged on its TTFT p99."""
    limit = slo["ttft_ms"]
    probes = []
    highest_passing = lowest_failing = None
    for i, load in enumerate(loads):
        run_dir = path / f"cells/c{i:03d}"
        summary = orjson.loads((run_dir / "summary.json").read_bytes())
        ttft = summary["metrics"]["ttft_ms"]
        n = ttft["count"] or 1
        # The share of requests under the limit, from the run's own percentiles (coarse but honest).
        share = next((p / 100 for p, k in ((99.9, "p99_9"), (99, "p99"), (95, "p95"), (90, "p90"), (50, "p50"))
                      if ttft[k] is not None and ttft[k] <= limit), 0.0)
        half = 1.96 * (share * (1 - share) / n) ** 0.5 + 0.5 / n
        low, high = max(0.0, share - half), min(1.0, share + half)
        target = slo["attainment"]
        verdict = "pass" if low >= target else "fail" if high < target else "unsure"
        if verdict == "pass":
            highest_passing = load if highest_passing is None else max(highest_passing, load)
        elif verdict == "fail":
            lowest_failing = load if lowest_failing is None else min(lowest_failing, load)
        probes.append({"index": i, "load": load, "attainment": share, "ci_low": low, "ci_high": high,
                       "verdict": verdict, "early_stop": None, "run_dir": f"cells/c{i:03d}",
                       "figures": {"ttft_ms_p99": ttft["p99"],
                                   "requests_per_s": summary["throughput"]["requests_per_s"]}})
    return {"over": over, "slo": slo, "tolerance": 0.5,
            "answer": {"highest_passing": highest_passing, "lowest_failing": lowest_failing},
            "stop_reason": "bracket narrower than the tolerance", "elapsed_s": 60.0, "probes": probes}
