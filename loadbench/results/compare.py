"""Compare runs: is the new one slower than the baseline, with what confidence?

``compare_runs(base_dirs, new_dir)`` reads the runs' ``requests.jsonl`` (measured requests only;
hybrid child calls skipped) and returns, per figure, the change and a confidence interval for it,
and a verdict:

* ``regression``: the whole interval is worse than the tolerance;
* ``improvement``: the whole interval is better than the tolerance;
* ``no change``: the whole interval lies within the tolerance either side;
* ``too few samples``: fewer samples than the figure needs (a p99 needs 500 per run: at least
  five values beyond it), or an interval that straddles a tolerance edge; more requests would tell.

A verdict thus needs both practical significance (the change is beyond the tolerance) and
statistical significance (the interval says so): the regression test is the one-sided test of
"the change is at most the tolerance" at level (1 - confidence) / 2, and "no change" is the
two one-sided tests of equivalence.

Changes: latency figures and throughput are relative (``new / base - 1``: +0.10 is 10% more);
the error rate is absolute (``new - base``, a share of requests). Tolerances are relative for
the former and absolute for the error rate (default 0.005). Centres (p50, mean) and throughput
default to 5%, tails wider (p90 10%, p99 20%): a tail percentile rests on the few slowest
requests, and those come from rare events (a stall, a queue that builds and drains, a busy
neighbour) that occur a few times per run at random. Two runs of the same server differ in their
tails by more than 5% as a matter of course; a tighter tail tolerance would make "no change"
unreachable and turn that noise into verdicts.

Within a run, the interval comes from a moving-block bootstrap of each run on its own (requests
in the order they were intended), because latencies under load are correlated in time: a queue
that builds up slows a run of neighbours together, and resampling single requests would give
intervals too narrow, hence false alarms. The block length is chosen per run and per figure from
the autocorrelation of what the figure is made of (Politis and White 2004, with the correction
of Patton, Politis and White 2009): for a mean the values themselves; for a percentile the
indicator "beyond it", whose clusters are what move that percentile; never shorter than
``n ** (1/3)``. A run with drift, a warm-up left in, or periodic server behaviour has long-lived
autocorrelation, hence long blocks and a wider interval. Throughput is resampled as one-second
bins of output tokens over the measured window, in the same blocked way.

What one run cannot show is the variation between runs (another day, another machine load): that
needs runs as the unit. Given several baseline runs of the same scenario, the interval is also
formed from the spread of the figure across them, as the prediction interval for one more run
(on the log scale for relative figures; Student's t with k - 1 degrees of freedom), and the wider
of the two intervals is used. With one baseline, only the tolerance stands for that variation.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
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


#: Default tolerances of tail percentiles (relative); centres and throughput take ``tolerance``.
TAIL_TOLERANCES: Mapping[str, float] = {"p90": 0.10, "p99": 0.20}


@dataclass(frozen=True, slots=True)
class Settings:
    """How ``compare`` judges. ``tolerance`` is relative, for centres (p50, mean) and throughput;
    ``tail_tolerance`` relative per tail statistic (``p90``, ``p99``: every latency's); and
    ``error_tolerance`` absolute, for the error rate. ``per_figure`` overrides any of them by
    figure name. ``confidence`` of the interval; ``resamples`` bootstrap draws; ``seed`` for the
    draws (results are reproducible)."""

    tolerance: float = 0.05
    tail_tolerance: Mapping[str, float] = field(default_factory=lambda: dict(TAIL_TOLERANCES))
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
        for key, value in dict(self.tail_tolerance).items():
            if key not in TAIL_TOLERANCES:
                raise ConfigError(f"compare tail tolerance for {key!r}; expected one of {', '.join(TAIL_TOLERANCES)}")
            if not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"compare tolerance for {key} must be a number >= 0, got {value!r}")
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
        if figure == "error_rate":
            return self.error_tolerance
        stat = figure.rpartition(".")[2]
        return float(self.tail_tolerance.get(stat, TAIL_TOLERANCES.get(stat, self.tolerance)))

    def as_dict(self) -> dict[str, Any]:
        return {
            "tolerance": self.tolerance,
            "tail_tolerance": {**TAIL_TOLERANCES, **dict(self.tail_tolerance)},
            "error_tolerance": self.error_tolerance,
            "per_figure": dict(self.per_figure),
            "confidence": self.confidence,
            "resamples": self.resamples,
            "seed": self.seed,
        }


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


def _influence(values: np.ndarray, stat: str) -> np.ndarray:
    """The series whose autocorrelation sets the figure's block length: for a mean the values;
    for a percentile the indicator of lying beyond it (its influence function, up to scale)."""
    if stat == "mean":
        return values
    return (values > np.percentile(values, float(stat[1:]))).astype(np.float64)


def block_length(series: np.ndarray) -> int:
    """The block length for a circular or moving-block bootstrap of ``series``' mean, chosen from
    its autocorrelation (Politis and White 2004, corrected by Patton, Politis and White 2009):
    ``(2 G^2 / D) ** (1/3) * n ** (1/3)`` with ``G`` and ``D`` from flat-top lag-window estimates
    of the autocovariances up to twice the first lag beyond which ``K`` in a row are
    insignificant. 1 for a series without time structure; at most ``min(3 sqrt(n), n / 3)``."""
    n = series.size
    if n < 8:
        return 1
    x = series - series.mean()
    acv0 = float(x @ x) / n
    if acv0 <= 0:
        return 1
    k_n = max(5, math.ceil(math.sqrt(math.log10(n))))
    m_max = min(n - 1, math.ceil(math.sqrt(n)) + k_n)
    acv = np.array([acv0] + [float(x[k:] @ x[:-k]) / n for k in range(1, m_max + 1)])
    rho = np.abs(acv / acv0)
    cv = 2 * math.sqrt(math.log10(n) / n)
    m_hat = m_max
    for m in range(0, m_max - k_n + 1):
        if np.all(rho[m + 1 : m + 1 + k_n] < cv):
            m_hat = m
            break
    big_m = min(2 * max(m_hat, 1), m_max)
    lags = np.arange(1, big_m + 1)
    t = lags / big_m
    lam = np.where(t <= 0.5, 1.0, 2 * (1 - t))
    g = 2 * float(np.sum(lam * lags * acv[1 : big_m + 1]))
    long_run = acv0 + 2 * float(np.sum(lam * acv[1 : big_m + 1]))
    if long_run <= 0:
        return 1
    d_cb = 4 / 3 * long_run**2
    b = (2 * g**2 / d_cb) ** (1 / 3) * n ** (1 / 3)
    return int(max(1, min(round(b), 3 * math.sqrt(n), n / 3)))


def _block_resample(values: np.ndarray, func: Any, block: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``resamples`` bootstrap replicates of ``func(values)``, by the moving-block bootstrap."""
    n = values.size
    block = max(1, min(block, n))
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


def _t_quantile(p: float, df: int) -> float:
    """Student's t quantile: exact for 1 and 2 degrees of freedom, else the Cornish-Fisher
    expansion (Abramowitz and Stegun 26.7.5; within 1% from 3 degrees of freedom at p <= 0.995)."""
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    z = NormalDist().inv_cdf(p)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def _judge(low: float, high: float, tol: float, lower_is_better: bool) -> str:
    worse_low, worse_high = (low, high) if lower_is_better else (-high, -low)
    if worse_low > tol:
        return "regression"
    if worse_high < -tol:
        return "improvement"
    if -tol <= worse_low and worse_high <= tol:
        return "no change"
    return "too few samples"


_WHY = {
    "regression": "the whole interval is worse than the tolerance",
    "improvement": "the whole interval is better than the tolerance",
    "no change": "the whole interval is within the tolerance",
    "too few samples": "the interval straddles the tolerance: more requests (or runs) would tell",
}


def _figure_inputs(run: RunSamples, name: str) -> tuple[np.ndarray, Any, np.ndarray, int, str, bool]:
    """(values, statistic, influence series, samples needed, kind, lower is better) of a figure."""
    if name == "error_rate":
        return run.failed, _statistic("mean"), run.failed, 50, "absolute", True
    if name.startswith("throughput."):
        bins = run.token_bins / run.bin_s
        return bins, _statistic("mean"), bins, _MIN_BINS, "relative", False
    metric, stat = name.split(".")
    values = run.latencies[metric]
    influence = _influence(values, stat) if values.size else values
    return values, _statistic(stat), influence, _min_samples(stat), "relative", True


def compare_samples(
    base: RunSamples | Sequence[RunSamples], new: RunSamples, settings: Settings = Settings()
) -> dict[str, Any]:
    """The comparison as data: ``{"base", "baselines", "new", "settings", "figures": [...],
    "regressions"}``. ``base`` is one baseline run or several runs of the same scenario.

    Each figure: ``figure``, ``base`` (with several baselines, their geometric mean for relative
    figures, their mean for the error rate) and ``new`` values, ``n_base`` (the smallest
    baseline's count)/``n_new``, ``change`` and ``ci_low``/``ci_high`` (relative, or absolute for
    the error rate), ``kind`` ("relative" | "absolute"), ``lower_is_better``, ``tolerance``,
    ``blocks`` (the bootstrap block length per run, baselines first), ``interval``
    ("within runs" or "between runs": which one set the interval), ``verdict`` and ``why``.
    """
    bases = [base] if isinstance(base, RunSamples) else list(base)
    if not bases:
        raise ConfigError("compare needs at least one baseline run")
    k = len(bases)
    rng = np.random.default_rng(settings.seed)
    alpha = 1 - settings.confidence
    rows = []
    for name in FIGURES:
        tol = settings.tolerance_for(name)
        inputs = [_figure_inputs(run, name) for run in bases]
        b, func, b_infl, need, kind, lower = _figure_inputs(new, name)
        sizes = [x[0].size for x in inputs]
        row: dict[str, Any] = {
            "figure": name,
            "n_base": int(min(sizes)),
            "n_new": int(b.size),
            "base": None,
            "new": float(func(b)) if b.size else None,
            "change": None,
            "ci_low": None,
            "ci_high": None,
            "kind": kind,
            "lower_is_better": lower,
            "tolerance": tol,
            "blocks": None,
            "interval": None,
        }
        base_values = [float(func(x[0])) for x in inputs if x[0].size]
        if base_values:
            if kind == "relative" and min(base_values) > 0:
                row["base"] = float(np.exp(np.mean(np.log(base_values))))
            else:
                row["base"] = float(np.mean(base_values))
        if min(sizes) < need or b.size < need:
            row.update(verdict="too few samples", why=f"needs {need} samples per run, has {min(sizes)} and {b.size}")
            rows.append(row)
            continue
        blocks = [max(block_length(x[2]), round(x[0].size ** (1 / 3))) for x in inputs]
        blocks.append(max(block_length(b_infl), round(b.size ** (1 / 3))))
        row["blocks"] = blocks
        draws_base = [
            _block_resample(x[0], func, blk, settings.resamples, rng) for x, blk in zip(inputs, blocks[:k], strict=True)
        ]
        draws_new = _block_resample(b, func, blocks[-1], settings.resamples, rng)
        if kind == "relative":
            if min(base_values) <= 0 or row["new"] <= 0 or any(np.any(d <= 0) for d in [*draws_base, draws_new]):
                row.update(verdict="too few samples", why="a value is zero: no relative change")
                rows.append(row)
                continue
            # Relative changes are differences of logs (ratios are what multiply), back at the end.
            point = [math.log(v) for v in base_values]
            new_draws, base_draws = np.log(draws_new), np.mean([np.log(d) for d in draws_base], axis=0)
            delta = math.log(row["new"]) - float(np.mean(point))
        else:
            point = base_values
            new_draws, base_draws = draws_new, np.mean(draws_base, axis=0)
            delta = row["new"] - float(np.mean(point))
        low, high = (float(v) for v in np.quantile(new_draws - base_draws, [alpha / 2, 1 - alpha / 2]))
        row["interval"] = "within runs"
        if k >= 2:
            # Runs as the unit: the prediction interval for one more run from the baselines' spread.
            spread = float(np.std(point, ddof=1)) * math.sqrt(1 + 1 / k) * _t_quantile(1 - alpha / 2, k - 1)
            if delta - spread < low or delta + spread > high:
                row["interval"] = "between runs"
            low, high = min(low, delta - spread), max(high, delta + spread)
        if kind == "relative":
            change, low, high = math.expm1(delta), math.expm1(low), math.expm1(high)
        else:
            change = delta
        verdict = _judge(low, high, tol, lower)
        row.update(change=change, ci_low=low, ci_high=high, verdict=verdict, why=_WHY[verdict])
        rows.append(row)
    return {
        "base": ", ".join(run.path for run in bases),
        "baselines": [run.path for run in bases],
        "new": new.path,
        "settings": settings.as_dict(),
        "figures": rows,
        "regressions": [r["figure"] for r in rows if r["verdict"] == "regression"],
    }


def compare_runs(
    base_dirs: str | Path | Sequence[str | Path], new_dir: str | Path, settings: Settings = Settings()
) -> dict[str, Any]:
    """``compare_samples`` of run directories: one baseline or several."""
    dirs = [base_dirs] if isinstance(base_dirs, str | Path) else list(base_dirs)
    return compare_samples([load_samples(d) for d in dirs], load_samples(new_dir), settings)


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


def _tolerances_line(s: Mapping[str, Any]) -> str:
    tails = ", ".join(f"{k} ±{v:.0%}" for k, v in s["tail_tolerance"].items())
    per = "".join(f", {k} ±{_tol(k, v)}" for k, v in s["per_figure"].items())
    return f"tolerance ±{s['tolerance']:.0%} ({tails}; error rate ±{s['error_tolerance'] * 100:.2g} pp{per})"


def _tol(figure: str, value: float) -> str:
    return f"{value * 100:.2g} pp" if figure == "error_rate" else f"{value:.0%}"


def _runs_line(result: Mapping[str, Any], arrow: str) -> str:
    bases = result["baselines"]
    if len(bases) == 1:
        return f"Baseline `{bases[0]}` {arrow} new `{result['new']}`"
    names = ", ".join(f"`{b}`" for b in bases)
    return f"{len(bases)} baselines ({names}) {arrow} new `{result['new']}`"


def markdown_table(result: Mapping[str, Any]) -> str:
    """The comparison as a Markdown table, fit for a pull-request comment."""
    s = result["settings"]
    regressions = result["regressions"]
    n = len(regressions)
    head = f"**{n} regression{'s' if n != 1 else ''}**" if regressions else "No regression"
    between = "" if len(result["baselines"]) == 1 else ", widened to the spread between the baseline runs where wider"
    lines = [
        f"### loadbench compare: {head}",
        "",
        f"{_runs_line(result, '→')}; {s['confidence']:.0%} block-bootstrap intervals{between}; "
        f"{_tolerances_line(s)}. A regression needs the whole interval beyond the tolerance.",
        "",
        "| Figure | Baseline | New | Change | CI | Tolerance | Verdict |",
        "|---|---:|---:|---:|---|---:|---|",
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
            f"±{_tol(r['figure'], r['tolerance'])} | {_MARK[r['verdict']]} {r['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def text_table(result: Mapping[str, Any]) -> str:
    """The comparison for a terminal."""
    header = f"{'figure':34} {'baseline':>10} {'new':>10} {'change':>9}  {'CI':>22}  {'tol':>5}  verdict"
    bases = result["baselines"]
    head = f"baseline {bases[0]}" if len(bases) == 1 else f"{len(bases)} baselines {', '.join(bases)}"
    lines = [f"{head}  ->  new {result['new']}", header]
    for r in result["figures"]:
        ci = "" if r["ci_low"] is None else f"{_change(r, r['ci_low'])} .. {_change(r, r['ci_high'])}"
        lines.append(
            f"{r['figure']:34} {_num(r['base']):>10} {_num(r['new']):>10} {_change(r, r['change']):>9}  "
            f"{ci:>22}  {_tol(r['figure'], r['tolerance']):>5}  {r['verdict']}"
        )
    n = len(result["regressions"])
    lines.append(f"{n} regression{'s' if n != 1 else ''}" + (f": {', '.join(result['regressions'])}" if n else ""))
    return "\n".join(lines) + "\n"


def _parse_tolerances(items: Iterable[str]) -> tuple[float | None, float | None, dict[str, float], dict[str, float]]:
    """``--tolerance`` items: (default, error rate, per tail statistic, per figure)."""
    default = error = None
    tails: dict[str, float] = {}
    per: dict[str, float] = {}
    for item in items:
        key, sep, value = item.rpartition("=")
        try:
            number = float(value.rstrip("%")) / (100 if value.endswith("%") else 1)
        except ValueError:
            raise ConfigError(f"--tolerance {item!r}: expected a number (0.05 or 5%) or KEY=NUMBER") from None
        if not sep:
            default = number
        elif key == "error_rate":
            error = number
        elif key in TAIL_TOLERANCES:
            tails[key] = number
        elif key in ("p50", "mean"):
            per.update({f"{m}.{key}": number for m in LATENCIES})
        else:
            per[key] = number
    return default, error, tails, per


_DESCRIPTION = """\
Compare a new run with a baseline: per figure (TTFT, TPOT, E2E at p50/p90/p99/mean, output
tokens/s, error rate), the change with a confidence interval and a verdict: regression or
improvement when the whole interval lies beyond the tolerance, no change when it lies within it,
too few samples when a run has too few requests (a p99 needs 500) or the interval straddles the
tolerance. A regression thus needs a change that matters (beyond the tolerance) and one that
noise does not explain (the interval).

Intervals: a block bootstrap of each run, its block length chosen per figure from the run's
autocorrelation (drift, queues, periodic behaviour widen it). One run cannot show how much runs
differ from each other; give several baseline runs of the same scenario (the last run named is
the new one) and the interval is also formed from their spread, as a prediction interval for one
more run (Student's t, k - 1 degrees of freedom), and the wider is used. With one baseline the
tolerance alone stands for that: centres and throughput 5%, tails wider (p90 10%, p99 20%),
since tails rest on a few rare events.

The method, and why: docs/compare.md. Exit codes: 0 no regression, 2 bad input, 99 a regression."""


def main(argv: list[str]) -> int:
    """``python -m loadbench compare BASELINE_RUN [BASELINE_RUN ...] NEW_RUN``: exit 99 on a
    regression."""
    from loadbench.exit_codes import EXIT_GATES_FAILED

    p = argparse.ArgumentParser(
        prog="python -m loadbench compare",
        usage="%(prog)s BASELINE_RUN [BASELINE_RUN ...] NEW_RUN [options]",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="baseline run directories, then the new run's")
    p.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="[KEY=]X",
        help="change allowed before a verdict, relative for latency and throughput, absolute for "
        "error_rate. A bare X sets centres (p50, mean) and throughput (default 5%%); p90=X, p99=X "
        "set that tail of every latency (defaults 10%%, 20%%); p50=X, mean=X every latency's; "
        "FIGURE=X one figure (ttft_ms.p99=0.3); error_rate=X (default 0.005). Repeatable.",
    )
    p.add_argument("--confidence", type=float, default=0.95, help="confidence of the intervals (default 0.95)")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap draws")
    p.add_argument("--markdown", metavar="FILE", help="also write the Markdown table (for a PR comment) to FILE")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON instead of a table")
    ns = p.parse_args(argv)
    if len(ns.runs) < 2:
        raise ConfigError("compare needs a baseline run and a new run: compare BASELINE_RUN [...] NEW_RUN")
    default, error, tails, per = _parse_tolerances(ns.tolerance)
    settings = Settings(
        tolerance=0.05 if default is None else default,
        tail_tolerance={**TAIL_TOLERANCES, **tails},
        error_tolerance=0.005 if error is None else error,
        per_figure=per,
        confidence=ns.confidence,
        resamples=ns.resamples,
        seed=ns.seed,
    )
    result = compare_runs(ns.runs[:-1], ns.runs[-1], settings)
    if ns.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(text_table(result))
    if ns.markdown:
        Path(ns.markdown).write_text(markdown_table(result), encoding="utf-8")
    return EXIT_GATES_FAILED if result["regressions"] else 0
