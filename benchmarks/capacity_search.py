"""Capacity search against a fixed grid of 10 rates, for the same time budget, on a server of known capacity.

The simulator's fixed timing (``--slots`` slots, ``--ttft-ms`` to the first token, ``--itl-ms`` per
further token, ``--tokens`` tokens per answer) completes at most slots / (TTFT + (tokens - 1) x ITL)
requests/s. With constant arrivals TTFT stays at its fixed value below that rate and grows without
bound above it, so the true boundary of a TTFT SLO with any margin is that capacity.

Two ways to find it, each given ``--budget`` seconds of wall clock:

* grid: what the peers do (guidellm's sweep, vLLM's advice to scan uniformly): 10 evenly spaced
  rates from ``--grid-low`` to ``--grid-high``, the budget split evenly; the answer is the interval
  between the highest rate whose attainment (point estimate) met every objective and the next one.
* search: ``CapacitySearch`` with ``budget_s`` set to the same budget.

    python benchmarks/capacity_search.py [--budget 150] [--seeds 1,2] [--slots 4 --ttft-ms 100 --itl-ms 20 --tokens 32]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from loadbench import CapacitySearch, Decode, EngineProfile, Fixed, Remote, Scenario, SimConfig, Stop, rates, sweep
from loadbench.studies.slo import count, parse_slo
from loadbench.studies.study import read_records


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, default=150.0, help="seconds of wall clock for each method")
    p.add_argument("--seeds", default="1")
    p.add_argument("--slots", type=int, default=4)
    p.add_argument("--ttft-ms", type=float, default=100.0)
    p.add_argument("--itl-ms", type=float, default=20.0)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--ttft-limit-ms", type=float, default=300.0)
    p.add_argument("--grid-low", type=float, default=1.0)
    p.add_argument("--grid-high", type=float, default=10.0)
    ns = p.parse_args()
    profile = EngineProfile(name="fixed", slots=ns.slots, fixed_ttft_ms=ns.ttft_ms, fixed_itl_ms=ns.itl_ms)
    true = profile.capacity_per_s(ns.tokens)
    slo = {"ttft_ms.p90": ns.ttft_limit_ms, "error_rate": 0.05}
    out = Path(tempfile.mkdtemp(prefix="loadbench-capacity-bench-"))
    print(
        f"server: {ns.slots} slots, TTFT {ns.ttft_ms:g} ms, ITL {ns.itl_ms:g} ms, {ns.tokens} tokens "
        f"→ true capacity {true:.3f} requests/s; SLO {slo}; budget {ns.budget:g} s per method"
    )
    print(
        f"{'seed':>4} {'method':<7} {'interval (req/s)':>18} {'width':>7} {'midpoint err':>13} {'contains':>9} "
        f"{'probes':>7} {'wall s':>7}"
    )
    for seed in (int(s) for s in ns.seeds.split(",")):
        base = Scenario(
            workload=Decode(input_tokens=Fixed(32), output_tokens=Fixed(ns.tokens)),
            deployment=Remote.compatible(base_url="http://127.0.0.1:8000"),
            target="sim",
            sim=SimConfig(profile=profile, seed=seed),
            seed=seed,
            energy=False,
            chunk_times=False,
        )
        for method in ("grid", "search"):
            t0 = time.monotonic()
            if method == "grid":
                lo, hi, n = _grid(base, slo, ns, out / f"grid-{seed}")
            else:
                search = CapacitySearch(
                    base,
                    slo=slo,
                    over="rate",
                    arrivals="constant",
                    start=ns.grid_low,
                    tolerance=0.03,
                    warmup_s=2.0,
                    probe_s=8.0,
                    max_probe_s=30.0,
                    budget_s=ns.budget,
                    name=f"search-{seed}",
                )
                result = search.run(out_dir=out / f"search-{seed}")
                lo, hi, n = result.highest_passing, result.lowest_failing, len(result.probes)
            wall = time.monotonic() - t0
            _row(seed, method, lo, hi, true, n, wall)
    print(f"runs in {out}")


def _grid(
    base: Scenario, slo: dict[str, float], ns: argparse.Namespace, out: Path
) -> tuple[float | None, float | None, int]:
    """Ten evenly spaced rates, the budget split evenly (about 2 s of each goes to start-up and drain)."""
    per_step_s = max(4.0, ns.budget / 10 - 2.0)
    study = sweep(
        base.replace(stop=Stop(duration_s=per_step_s, warmup_s=2.0, drain_s=5.0)),
        rates(ns.grid_low, ns.grid_high, 10, arrivals="constant"),
        name="grid",
    )
    result = study.run(out_dir=out)
    objectives = parse_slo(slo)
    passing: list[tuple[float, bool]] = []
    for cell, plan in zip(result.cells, study.plan(), strict=True):
        rate = plan.values[0][2].rate_per_s
        counts = count(objectives, read_records(out / cell["run_dir"]))
        ok = all(c.n and c.met / c.n >= o.target for o, c in ((o, counts[o.name]) for o in objectives))
        passing.append((rate, ok))
    lo = max((r for r, ok in passing if ok), default=None)
    hi = min((r for r, ok in passing if not ok and (lo is None or r > lo)), default=None)
    return lo, hi, len(passing)


def _row(seed: int, method: str, lo: float | None, hi: float | None, true: float, n: int, wall: float) -> None:
    interval = f"[{_f(lo)}, {_f(hi)}]"
    if lo is not None and hi is not None:
        mid = (lo + hi) / 2
        width, err, contains = (
            f"{(hi - lo) / true:.1%}",
            f"{(mid - true) / true:+.1%}",
            "yes" if lo <= true <= hi else "no",
        )
    else:
        width = err = "-"
        contains = "?"
    print(f"{seed:>4} {method:<7} {interval:>18} {width:>7} {err:>13} {contains:>9} {n:>7} {wall:>7.0f}", flush=True)


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    main()
