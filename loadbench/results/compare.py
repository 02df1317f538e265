"""Compare two runs: is the new one slower than the baseline, with what confidence?

``compare_runs(base_dir, new_dir)`` reads both runs' ``requests.jsonl`` (measured requests only;
hybrid child calls skipped) and returns, per figure, the change and a bootstrap confidence
interval for it, and a verdict:

* ``regression``: the whole interval is worse than the tolerance;
* ``improvement``: the whole interval is better than the tolerance;
* ``no change``: the whole interval lies within the tolerance either side;
* ``too few samples``: fewer samples than the figure needs (a p99 needs 500 per run: at least
  five values beyond it), or an interval that straddles a tolerance edge; more requests would tell.

Changes: latency figures and throughput are relative (``new / base - 1``: +0.10 is 10% more);
the error rate is absolute (``new - base``, a share of requests). Tolerances are relative for
the former (default 5%) and absolute for the error rate (default 0.005).

The bootstrap resamples each run independently, in blocks of consecutive requests (in the order
they were intended; block length ``n ** (1/3)``), because latencies under load are correlated
in time: a queue that builds up slows a run of neighbours together, and resampling single
requests would give intervals too narrow, hence false alarms. Throughput is resampled as
one-second bins of output tokens over the measured window, in the same blocked way.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from loadbench.contract.errors import ConfigError, LoadbenchError

LATENCIES = ("ttft_ms", "tpot_ms", "e2e_ms")
STATS = ("p50", "p90", "p99", "mean")
THROUGHPUT = "output_tokens_per_s"

#: The figures compared, in table order.
FIGURES: tuple[str, ...] = (
    *(f"{m}.{s}" for m in LATENCIES for s in STATS),
    f"throughput.{THROUGHPUT}",
    "error_rate",
)

_TAIL_MIN = 5  # values beyond a percentile needed to estimate it
_MIN_N = 20
_MIN_BINS = 10
_BIN_S = 1.0


@dataclass(frozen=True, slots=True)
class Settings:
    """How ``compare`` judges: ``tolerance`` relative (latency, throughput), ``error_tolerance``
    absolute (error rate); ``per_figure`` overrides either by figure name; ``confidence`` of the
    interval; ``resamples`` bootstrap draws; ``seed`` for the draws (results are reproducible)."""

    tolerance: float = 0.05
    error_tolerance: float = 0.005
    per_figure: Mapping[str, float] = field(default_factory=dict)
    confidence: float = 0.95
    resamples: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("tolerance", "error_tolerance"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value < 10:
                raise ConfigError(f"compare {name} must be a number >= 0, got {value!r}")
        for key, value in dict(self.per_figure).items():
            if key not in FIGURES:
                raise ConfigError(f"compare tolerance for unknown figure {key!r}; expected one of {', '.join(FIGURES)}")
            if not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"compare tolerance for {key} must be a number >= 0, got {value!r}")
        if not 0.5 <= self.confidence < 1:
            raise ConfigError(f"compare confidence must be in [0.5, 1), got {self.confidence!r}")
        if not isinstance(self.resamples, int) or self.resamples < 100:
            raise ConfigError(f"compare resamples must be an integer >= 100, got {self.resamples!r}")

    def tolerance_for(self, figure: str) -> float:
        if figure in self.per_figure:
            return float(self.per_figure[figure])
        return self.error_tolerance if figure == "error_rate" else self.tolerance


@dataclass(frozen=True)
class RunSamples:
    """The per-request values of one run that ``compare`` resamples, in intended-time order."""

    path: str
    latencies: dict[str, np.ndarray]  # metric -> ms, ok measured requests
    failed: np.ndarray  # 1 per failed, 0 per ok measured request
    token_bins: np.ndarray  # output tokens finished per _BIN_S bin of the measured window
    bin_s: float


def load_samples(run_dir: str | Path, *, first: int | None = None) -> RunSamples:
    """Read a run's ``requests.jsonl``: measured, finished (ok or failed) requests only; child
    calls of hybrid runs (lines with ``parent``) are skipped. ``first`` keeps only the first N
    measured requests by intended time (to see what a shorter run would have said)."""
    path = Path(run_dir) / "requests.jsonl"
    if not path.is_file():
        raise LoadbenchError(f"{run_dir}: not a run directory (requests.jsonl missing)")
    rows = []
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise LoadbenchError(f"{path}:{number}: not a JSON line") from None
            if r.get("parent") is not None or r.get("phase") != "measured":
                continue
            if r.get("status") not in ("ok", "failed"):
                continue
            rows.append(r)
    rows.sort(key=lambda r: r["intended_ns"])
    if first is not None:
        rows = rows[:first]
    ok = [r for r in rows if r["status"] == "ok"]
    lat: dict[str, list[float]] = {m: [] for m in LATENCIES}
    for r in ok:
        if r.get("ttft_ms") is not None:
            lat["ttft_ms"].append(r["ttft_ms"])
        if r.get("e2e_ms") is not None:
            lat["e2e_ms"].append(r["e2e_ms"])
        n_out = r.get("output_tokens") or 0
        if n_out > 1 and r.get("first_token_ns") and r.get("end_ns"):
            lat["tpot_ms"].append((r["end_ns"] - r["first_token_ns"]) / 1e6 / (n_out - 1))
    bins = np.zeros(0)
    if ok:
        start = min(r["intended_ns"] for r in ok)
        ends = np.array([r["end_ns"] for r in ok], dtype=np.int64)
        tokens = np.array([r.get("output_tokens") or 0 for r in ok], dtype=np.float64)
        n_bins = max(1, math.ceil((int(ends.max()) - start) / (_BIN_S * 1e9)))
        index = np.minimum(((ends - start) / (_BIN_S * 1e9)).astype(np.int64), n_bins - 1)
        bins = np.bincount(index, weights=tokens, minlength=n_bins)
    return RunSamples(
        path=str(run_dir),
        latencies={m: np.asarray(v, dtype=np.float64) for m, v in lat.items()},
        failed=np.array([r["status"] == "failed" for r in rows], dtype=np.float64),
        token_bins=bins,
        bin_s=_BIN_S,
    )


def _statistic(stat: str) -> Any:
    if stat == "mean":
        return lambda a, axis=-1: np.mean(a, axis=axis)
    q = float(stat[1:])
    return lambda a, axis=-1: np.percentile(a, q, axis=axis)


def _min_samples(stat: str) -> int:
    if stat == "mean":
        return _MIN_N
    q = float(stat[1:])
    return max(_MIN_N, math.ceil(_TAIL_MIN / (1 - q / 100)))


def _block_resample(values: np.ndarray, func: Any, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``resamples`` bootstrap replicates of ``func(values)``, by the moving-block bootstrap."""
    n = values.size
    block = max(1, round(n ** (1 / 3)))
    blocks = math.ceil(n / block)
    offsets = np.arange(block)
    out = np.empty(resamples)
    chunk = max(1, 4_000_000 // max(n, 1))  # bound the index matrix to ~32 MB
    for lo in range(0, resamples, chunk):
        hi = min(resamples, lo + chunk)
        starts = rng.integers(0, n - block + 1, size=(hi - lo, blocks))
        index = (starts[:, :, None] + offsets).reshape(hi - lo, -1)[:, :n]
        out[lo:hi] = func(values[index], axis=1)
    return out


def _judge(change: float, low: float, high: float, tol: float, lower_is_better: bool) -> str:
    worse_low, worse_high = (low, high) if lower_is_better else (-high, -low)
    if worse_low > tol:
        return "regression"
    if worse_high < -tol:
        return "improvement"
    if -tol <= worse_low and worse_high <= tol:
        return "no change"
    return "too few samples"


def compare_samples(base: RunSamples, new: RunSamples, settings: Settings = Settings()) -> dict[str, Any]:
    """The comparison as data: ``{"base", "new", "settings", "figures": [...], "regressions"}``.

    Each figure: ``figure``, ``base`` and ``new`` values, ``n_base``/``n_new``, ``change`` and
    ``ci_low``/``ci_high`` (relative, or absolute for the error rate), ``kind`` ("relative" |
    "absolute"), ``lower_is_better``, ``tolerance``, ``verdict`` and ``why``.
    """
    rng = np.random.default_rng(settings.seed)
    alpha = 1 - settings.confidence
    rows = []
    for name in FIGURES:
        tol = settings.tolerance_for(name)
        if name == "error_rate":
            a, b, func, need, kind, lower = base.failed, new.failed, _statistic("mean"), 50, "absolute", True
        elif name.startswith("throughput."):
            a, b = base.token_bins / base.bin_s, new.token_bins / new.bin_s
            func, need, kind, lower = _statistic("mean"), _MIN_BINS, "relative", False
        else:
            metric, stat = name.split(".")
            a, b = base.latencies[metric], new.latencies[metric]
            func, need, kind, lower = _statistic(stat), _min_samples(stat), "relative", True
        row: dict[str, Any] = {
            "figure": name,
            "n_base": int(a.size),
            "n_new": int(b.size),
            "base": float(func(a)) if a.size else None,
            "new": float(func(b)) if b.size else None,
            "change": None,
            "ci_low": None,
            "ci_high": None,
            "kind": kind,
            "lower_is_better": lower,
            "tolerance": tol,
        }
        if a.size < need or b.size < need:
            row.update(verdict="too few samples", why=f"needs {need} samples per run, has {a.size} and {b.size}")
            rows.append(row)
            continue
        ra = _block_resample(a, func, settings.resamples, rng)
        rb = _block_resample(b, func, settings.resamples, rng)
        if kind == "relative":
            if row["base"] <= 0 or np.any(ra <= 0):
                row.update(verdict="too few samples", why="the baseline is zero: no relative change")
                rows.append(row)
                continue
            change, draws = row["new"] / row["base"] - 1, rb / ra - 1
        else:
            change, draws = row["new"] - row["base"], rb - ra
        low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
        verdict = _judge(change, float(low), float(high), tol, lower)
        why = {
            "regression": "the whole interval is worse than the tolerance",
            "improvement": "the whole interval is better than the tolerance",
            "no change": "the whole interval is within the tolerance",
            "too few samples": "the interval straddles the tolerance: more requests would tell",
        }[verdict]
        row.update(change=float(change), ci_low=float(low), ci_high=float(high), verdict=verdict, why=why)
        rows.append(row)
    return {
        "base": base.path,
        "new": new.path,
        "settings": {
            "tolerance": settings.tolerance,
            "error_tolerance": settings.error_tolerance,
            "per_figure": dict(settings.per_figure),
            "confidence": settings.confidence,
            "resamples": settings.resamples,
            "seed": settings.seed,
        },
        "figures": rows,
        "regressions": [r["figure"] for r in rows if r["verdict"] == "regression"],
    }


def compare_runs(base_dir: str | Path, new_dir: str | Path, settings: Settings = Settings()) -> dict[str, Any]:
    """``compare_samples`` of two run directories."""
    return compare_samples(load_samples(base_dir), load_samples(new_dir), settings)


# -- presentation ---------------------------------------------------------------------------------


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    a = abs(value)
    return f"{value:,.0f}" if a >= 1000 else f"{value:.1f}" if a >= 10 else f"{value:.3g}"


def _change(row: Mapping[str, Any], value: float | None) -> str:
    if value is None:
        return "-"
    if row["kind"] == "relative":
        return f"{value * 100:+.1f}%"
    return f"{value * 100:+.2f} pp"


_MARK = {"regression": "🔴", "improvement": "🟢", "no change": "⚪", "too few samples": "❔"}


def markdown_table(result: Mapping[str, Any]) -> str:
    """The comparison as a Markdown table, fit for a pull-request comment."""
    s = result["settings"]
    regressions = result["regressions"]
    n = len(regressions)
    head = f"**{n} regression{'s' if n != 1 else ''}**" if regressions else "No regression"
    lines = [
        f"### loadbench compare: {head}",
        "",
        f"Baseline `{result['base']}` → new `{result['new']}`; {s['confidence']:.0%} block-bootstrap intervals, "
        f"tolerance ±{s['tolerance']:.0%} (error rate ±{s['error_tolerance'] * 100:.2g} pp).",
        "",
        "| Figure | Baseline | New | Change | CI | Verdict |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in result["figures"]:
        ci = "-" if r["ci_low"] is None else f"{_change(r, r['ci_low'])} … {_change(r, r['ci_high'])}"
        base, new = r["base"], r["new"]
        if r["figure"] == "error_rate":
            base_s = "-" if base is None else f"{base:.2%}"
            new_s = "-" if new is None else f"{new:.2%}"
        else:
            base_s, new_s = _num(base), _num(new)
        lines.append(
            f"| `{r['figure']}` | {base_s} | {new_s} | {_change(r, r['change'])} | {ci} | "
            f"{_MARK[r['verdict']]} {r['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def text_table(result: Mapping[str, Any]) -> str:
    """The comparison for a terminal."""
    header = f"{'figure':34} {'baseline':>10} {'new':>10} {'change':>9}  {'CI':>22}  verdict"
    lines = [f"baseline {result['base']}  ->  new {result['new']}", header]
    for r in result["figures"]:
        ci = "" if r["ci_low"] is None else f"{_change(r, r['ci_low'])} .. {_change(r, r['ci_high'])}"
        lines.append(
            f"{r['figure']:34} {_num(r['base']):>10} {_num(r['new']):>10} {_change(r, r['change']):>9}  "
            f"{ci:>22}  {r['verdict']}"
        )
    n = len(result["regressions"])
    lines.append(f"{n} regression{'s' if n != 1 else ''}" + (f": {', '.join(result['regressions'])}" if n else ""))
    return "\n".join(lines) + "\n"


def _parse_tolerances(items: Iterable[str]) -> tuple[float | None, float | None, dict[str, float]]:
    default = error = None
    per: dict[str, float] = {}
    for item in items:
        key, sep, value = item.rpartition("=")
        try:
            number = float(value.rstrip("%")) / (100 if value.endswith("%") else 1)
        except ValueError:
            raise ConfigError(f"--tolerance {item!r}: expected a number (0.05 or 5%) or FIGURE=NUMBER") from None
        if not sep:
            default = number
        elif key == "error_rate":
            error = number
        else:
            per[key] = number
    return default, error, per


def main(argv: list[str]) -> int:
    """``python -m loadbench compare BASELINE_RUN NEW_RUN``: exit 99 on a regression."""
    from loadbench.exit_codes import EXIT_GATES_FAILED

    p = argparse.ArgumentParser(
        prog="python -m loadbench compare",
        description="Compare a new run with a baseline: per figure, the change with a block-bootstrap "
        "confidence interval and a verdict (regression, improvement, no change, too few samples). "
        "Exit codes: 0 no regression, 2 bad input, 99 a regression.",
    )
    p.add_argument("base", metavar="BASELINE_RUN")
    p.add_argument("new", metavar="NEW_RUN")
    p.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="[FIGURE=]X",
        help="change allowed before a verdict: relative for latency and throughput (default 5%%), "
        "absolute for error_rate (default 0.005); e.g. --tolerance 10%% --tolerance ttft_ms.p99=0.2 "
        "--tolerance error_rate=0.01 (repeatable)",
    )
    p.add_argument("--confidence", type=float, default=0.95, help="confidence of the intervals (default 0.95)")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap draws")
    p.add_argument("--markdown", metavar="FILE", help="also write the Markdown table (for a PR comment) to FILE")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON instead of a table")
    ns = p.parse_args(argv)
    default, error, per = _parse_tolerances(ns.tolerance)
    settings = Settings(
        tolerance=0.05 if default is None else default,
        error_tolerance=0.005 if error is None else error,
        per_figure=per,
        confidence=ns.confidence,
        resamples=ns.resamples,
        seed=ns.seed,
    )
    result = compare_runs(ns.base, ns.new, settings)
    if ns.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(text_table(result))
    if ns.markdown:
        Path(ns.markdown).write_text(markdown_table(result), encoding="utf-8")
    return EXIT_GATES_FAILED if result["regressions"] else 0
