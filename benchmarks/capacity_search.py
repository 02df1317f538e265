"""Capacity search against a fixed grid of 10 rates, for the same time budget, on a server of known capacity.

The simulator's fixed timing (``--slots`` slots, ``--ttft-ms`` to the first token, ``--itl-ms`` per
further token, ``--tokens`` tokens per answer) completes at most slots / (TTFT + (tokens - 1) x ITL)
requests/s. With constant arrivals TTFT stays at its fixed value below that rate and grows without
bound above it, so the true boundary of a TTFT SLO with any margin is that capacity.

Two ways to find it, run one after the other for each budget and seed, each given the same
seconds of wall clock:

* grid: what the peers do (guidellm's sweep, vLLM's advice to scan uniformly): 10 evenly spaced
  rates from ``--grid-low`` to ``--grid-high``, each one run as long as the budget left allows
  (split evenly over the steps left, less the start-up and drain each step has been seen to take);
  a step passes when the point estimate of every objective's attainment meets its target, and the
  answer is the interval from the highest passing rate to the next failing one.
* search: ``CapacitySearch`` with ``budget_s`` set to the budget, bracketing from ``--grid-low``.

For each it prints the answer (the highest rate shown to pass), the interval, its width and
whether it holds the truth, the answer's error relative to the truth, the steps or probes run,
the runs' measured requests and the seconds taken; then the mean absolute error per budget.

    python benchmarks/capacity_search.py [--budgets 60,120,240] [--seeds 1,2]
        [--slots 4 --ttft-ms 100 --itl-ms 20 --tokens 32] [--ttft-limit-ms 300 --error-rate 0.1]
        [--probe-s 8 --tolerance 0.03] [--methods grid,search] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from statistics import mean

from loadbench import CapacitySearch, Decode, EngineProfile, Experiment, Fixed, Remote, Scenario, SimConfig, Stop
from loadbench.studies import linear
from loadbench.studies.slo import Objective, count, parse_slo
from loadbench.studies.study import read_records
from loadbench.studies.sweep import rate_plan

WARMUP_S = 2.0
GRID_STEPS = 10


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budgets", default="60,120,240", help="seconds of wall clock for each method, comma-separated")
    p.add_argument("--seeds", default="1,2")
    p.add_argument("--slots", type=int, default=4)
    p.add_argument("--ttft-ms", type=float, default=100.0)
    p.add_argument("--itl-ms", type=float, default=20.0)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--ttft-limit-ms", type=float, default=300.0)
    p.add_argument("--error-rate", type=float, default=0.1, help="SLO error_rate (0.05 needs 73 requests a probe)")
    p.add_argument("--grid-low", type=float, default=1.0)
    p.add_argument("--grid-high", type=float, default=10.0)
    p.add_argument("--probe-s", type=float, default=8.0, help="the search's shortest probe (measured seconds)")
    p.add_argument("--tolerance", type=float, default=0.03, help="the search's tolerance")
    p.add_argument("--methods", default="grid,search", help="run only some of: grid, search")
    p.add_argument("--out", type=Path, default=None, help="directory for every run (default: a temporary one)")
    ns = p.parse_args()
    profile = EngineProfile(name="fixed", slots=ns.slots, fixed_ttft_ms=ns.ttft_ms, fixed_itl_ms=ns.itl_ms)
    true = profile.capacity_per_s(ns.tokens)
    slo = {"ttft_ms.p90": ns.ttft_limit_ms, "error_rate": ns.error_rate}
    out = ns.out or Path(tempfile.mkdtemp(prefix="loadbench-capacity-bench-"))
    budgets = [float(b) for b in ns.budgets.split(",")]
    seeds = [int(s) for s in ns.seeds.split(",")]
    methods = [m for m in ("grid", "search") if m in ns.methods.split(",")]
    grid = linear(ns.grid_low, ns.grid_high, GRID_STEPS)
    print(
        f"server: {ns.slots} slots, TTFT {ns.ttft_ms:g} ms, ITL {ns.itl_ms:g} ms, {ns.tokens} tokens "
        f"-> true capacity {true:.3f} requests/s\nSLO {slo}; grid {', '.join(f'{r:g}' for r in grid)} req/s; "
        f"search from {ns.grid_low:g}/s, probe_s {ns.probe_s:g}, tolerance {ns.tolerance:.0%}; "
        f"constant arrivals, {WARMUP_S:g} s warm-up per run",
        flush=True,
    )
    print(
        f"{'budget':>6} {'seed':>4} {'method':<6} {'answer':>7} {'interval (req/s)':>16} {'width':>6} "
        f"{'holds':>5} {'error':>7} {'runs':>4} {'requests':>8} {'wall s':>6}  stop"
    )
    errors: dict[tuple[float, str], list[float]] = {}
    for budget in budgets:
        for i, seed in enumerate(seeds):
            base = Scenario(
                workload=Decode(input_tokens=Fixed(32), output_tokens=Fixed(ns.tokens)),
                deployment=Remote.compatible(base_url="http://127.0.0.1:8000"),
                target="sim",
                sim=SimConfig(profile=profile, seed=seed),
                seed=seed,
                energy=False,
                chunk_times=False,
            )
            # Alternate which method goes first, so a drift in the host's load favours neither.
            for method in methods if i % 2 == 0 else methods[::-1]:
                where = out / f"b{budget:g}-s{seed}-{method}"
                t0 = time.monotonic()
                if method == "grid":
                    lo, hi, runs, requests, stop = _grid(base, parse_slo(slo), grid, budget, where)
                else:
                    lo, hi, runs, requests, stop = _search(base, slo, budget, ns, where)
                wall = time.monotonic() - t0
                _row(budget, seed, method, lo, hi, true, runs, requests, wall, stop)
                if lo is not None:
                    errors.setdefault((budget, method), []).append(abs(lo - true) / true)
    print("\nmean |answer - truth| / truth (answer = highest rate shown to pass):")
    for budget in budgets:
        cells = [
            f"{m} {mean(errors[(budget, m)]):.1%}" if errors.get((budget, m)) else f"{m} -" for m in ("grid", "search")
        ]
        print(f"  {budget:>5g} s: {', '.join(cells)}")
    print(f"runs in {out}")


def _search(
    base: Scenario, slo: dict[str, float], budget: float, ns: argparse.Namespace, out: Path
) -> tuple[float | None, float | None, int, int, str]:
    search = CapacitySearch(
        base,
        slo=slo,
        over="rate",
        arrivals="constant",
        start=ns.grid_low,
        tolerance=ns.tolerance,
        warmup_s=WARMUP_S,
        probe_s=ns.probe_s,
        max_probe_s=30.0,
        budget_s=budget,
        name=out.name,
    )
    result = search.run(out_dir=out)
    requests = sum(p["requests"] or 0 for p in result.probes)
    return result.highest_passing, result.lowest_failing, len(result.probes), requests, result.stop_reason


def _grid(
    base: Scenario, objectives: tuple[Objective, ...], grid: list[float], budget: float, out: Path
) -> tuple[float | None, float | None, int, int, str]:
    """Each rate run for an even share of the budget left, less the start-up and drain seen so far."""
    t0 = time.monotonic()
    overhead_s = 1.5  # a first guess at start-up plus drain; then the mean of what the steps took
    seen: list[float] = []
    passing: list[tuple[float, bool]] = []
    requests = 0
    for i, rate in enumerate(grid):
        share_s = (budget - (time.monotonic() - t0)) / (len(grid) - i)
        duration_s = max(WARMUP_S + 1.0, share_s - overhead_s)
        run_dir = out / f"step{i:02d}"
        scenario = base.replace(
            load=rate_plan(rate, "constant"),
            stop=Stop(duration_s=duration_s, warmup_s=WARMUP_S, drain_s=1.0),
            name=f"grid-{rate:g}",
            out_dir=run_dir,
        )
        t = time.monotonic()
        Experiment(scenario).run()
        seen.append(time.monotonic() - t - duration_s)
        overhead_s = mean(seen)
        counts = count(objectives, read_records(run_dir))
        requests += min(c.n for c in counts.values())
        ok = all(counts[o.name].n and counts[o.name].met / counts[o.name].n >= o.target for o in objectives)
        passing.append((rate, ok))
    lo = max((r for r, ok in passing if ok), default=None)
    hi = min((r for r, ok in passing if not ok and (lo is None or r > lo)), default=None)
    flips = sum(1 for (_, a), (_, b) in pairwise(passing) if not a and b)
    stop = f"{len(grid)} steps, {(time.monotonic() - t0) / len(grid):.1f} s each" + (
        f"; {flips} pass(es) above a fail" if flips else ""
    )
    return lo, hi, len(passing), requests, stop


def _row(
    budget: float,
    seed: int,
    method: str,
    lo: float | None,
    hi: float | None,
    true: float,
    runs: int,
    requests: int,
    wall: float,
    stop: str,
) -> None:
    interval = f"[{_f(lo)}, {_f(hi)}]"
    width = f"{(hi - lo) / true:.1%}" if lo is not None and hi is not None else "-"
    holds = "yes" if lo is not None and hi is not None and lo <= true <= hi else "no" if lo is not None else "?"
    err = f"{(lo - true) / true:+.1%}" if lo is not None else "-"
    print(
        f"{budget:>6g} {seed:>4} {method:<6} {_f(lo):>7} {interval:>16} {width:>6} {holds:>5} {err:>7} "
        f"{runs:>4} {requests:>8} {wall:>6.0f}  {stop}",
        flush=True,
    )


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    main()
