"""compare's false alarms and power, on the simulator.

1. False alarms: ``--pairs`` pairs of runs of the same scenario, each run with its own seed
   (prompts, arrival times and the simulator's step-time jitter all differ), compared with the
   default settings (95% block-bootstrap intervals; tolerance 5% for centres and throughput,
   10% for p90, 20% for p99). How many pairs say "regression" on any figure, and on which?
2. Spread between runs: each figure's coefficient of variation over all those identical runs
   (what the tolerances must cover when there is one baseline).
3. Power: the same scenario against a server profile 15% slower (every step and prefill cost
   x1.15). For growing sample sizes (the first n measured requests of each run), how often
   does compare flag it, and on which figures? At every size the identical pairs are compared
   too (false alarms at that size).
4. Several baselines (runs as the unit): each identical run's partner and each slow run against
   ``--baselines`` other identical runs.

The baseline of each comparison is in the same run: identical servers beside the slower one,
at every sample size. Runs already in ``--out`` are reused (delete them to rerun).

    python benchmarks/compare_power.py --requests 1000 --rate 14 --pairs 10 --slow-pairs 3 --sizes 200,500,1000

Keep ``--rate`` below the server's capacity (about 21 requests/s for this profile and workload;
18 for the slower one): above it the queue grows for the whole run, TTFT rises with the request's
position in it, and the figures measure the run's length rather than the server.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from loadbench import Balanced, EngineProfile, Experiment, Normal, Poisson, Remote, Scenario, SimConfig, Stop
from loadbench.results.compare import FIGURES, RunSamples, Settings, compare_samples, load_samples

BASE = EngineProfile(
    name="bench-8b", slots=64, kv_cache_tokens=400_000, step_base_ms=12.0, step_per_seq_ms=0.3,
    prefill_per_token_ms=0.06, prefill_chunk_tokens=2048, jitter_frac=0.05,
)  # fmt: skip
KEY_FIGURES = ("ttft_ms.p50", "ttft_ms.p99", "tpot_ms.p50", "tpot_ms.p99", "e2e_ms.p50", "e2e_ms.mean")


def slower(profile: EngineProfile, factor: float) -> EngineProfile:
    return dataclasses.replace(
        profile,
        name=f"{profile.name}-x{factor:g}",
        step_base_ms=profile.step_base_ms * factor,
        step_per_seq_ms=profile.step_per_seq_ms * factor,
        prefill_per_token_ms=profile.prefill_per_token_ms * factor,
        overhead_ms=profile.overhead_ms * factor,
    )


def run(out: Path, profile: EngineProfile, seed: int, requests: int, rate: float) -> Path:
    scenario = Scenario(
        workload=Balanced(input_tokens=Normal(256, 64, 64, 512), output_tokens=Normal(64, 16, 16, 128)),
        deployment=Remote.compatible(base_url="http://127.0.0.1:8000"),
        load=Poisson(rate_per_s=rate),
        stop=Stop(requests=requests + 20, warmup_requests=20),
        target="sim",
        sim=SimConfig(profile=profile, seed=seed, jitter=True, trace=False),
        seed=seed,
        energy=False,
        out_dir=out,
        name=out.name,
    )
    if not (out / "summary.json").exists():
        Experiment(scenario).run()
    return out


def _interval(row: dict) -> str:
    return f"{row['change']:+.1%} [{row['ci_low']:+.1%}, {row['ci_high']:+.1%}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=1000, help="measured requests per run")
    ap.add_argument("--rate", type=float, default=14.0, help="Poisson arrivals per second")
    ap.add_argument("--pairs", type=int, default=10, help="pairs of identical runs (false alarms)")
    ap.add_argument("--slow-pairs", type=int, default=3, help="base/slow pairs (power)")
    ap.add_argument("--slowdown", type=float, default=1.15)
    ap.add_argument("--sizes", default="200,500,1000")
    ap.add_argument("--baselines", type=int, default=3, help="baseline runs in the several-baselines check")
    ap.add_argument("--out", default="/tmp/loadbench-compare-power")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (each in its own process)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plan = [(out / f"same-{i}-{ab}", BASE, 1000 + 2 * i + (ab == "b")) for i in range(args.pairs) for ab in "ab"]
    plan += [(out / f"slow-{j}", slower(BASE, args.slowdown), 5000 + j) for j in range(args.slow_pairs)]
    if args.jobs > 1:  # all runs first, several at a time; the analysis below then reuses them
        with ProcessPoolExecutor(args.jobs) as pool:
            for f in [pool.submit(run, d, p, seed, args.requests, args.rate) for d, p, seed in plan]:
                f.result()
    settings = Settings()
    started = time.time()

    print(
        f"false alarms: {args.pairs} pairs of identical runs, {args.requests} measured requests each, "
        f"Poisson {args.rate:g}/s, default settings (95% CI; tolerance 5%, p90 10%, p99 20%)"
    )
    pairs = []
    alarms = 0
    flagged: Counter[str] = Counter()
    verdicts: Counter[str] = Counter()
    for i in range(args.pairs):
        a = run(out / f"same-{i}-a", BASE, 1000 + 2 * i, args.requests, args.rate)
        b = run(out / f"same-{i}-b", BASE, 1001 + 2 * i, args.requests, args.rate)
        pairs.append((a, b))
        result = compare_samples(load_samples(a), load_samples(b), settings)
        verdicts.update(r["verdict"] for r in result["figures"])
        flagged.update(result["regressions"])
        alarms += bool(result["regressions"])
        judged = [r for r in result["figures"] if r["change"] is not None and r["kind"] == "relative"]
        worst = max(judged, key=lambda r: abs(r["change"]))
        print(
            f"  pair {i}: {len(result['regressions'])} regressions {result['regressions'] or ''}; "
            f"largest change {worst['figure']} {_interval(worst)} (tolerance {worst['tolerance']:.0%}, "
            f"blocks {worst['blocks']})"
        )
    print(f"pairs saying regression: {alarms} of {args.pairs}; figures flagged: {dict(flagged) or 'none'}")
    print(f"verdicts over all {sum(verdicts.values())} figures: {dict(verdicts)}")

    values = [dict(_figures_only(load_samples(r))) for pair in pairs for r in pair]
    cells = []
    for f in FIGURES:
        per_run = [v[f] for v in values if v[f] is not None and v[f] > 0]
        if len(per_run) >= 3 and f != "error_rate":
            cells.append(f"{f} {float(np.std(np.log(per_run), ddof=1)):.1%}")
    print(f"\nspread between the {len(values)} identical runs (standard deviation of each run's log figure):")
    for lo in range(0, len(cells), 5):
        print("  " + "; ".join(cells[lo : lo + 5]))

    sizes = [int(s) for s in args.sizes.split(",") if int(s) <= args.requests]
    print(
        f"\npower: a server {args.slowdown:g}x slower, {args.slow_pairs} base/slow pairs; "
        f"and {args.pairs} identical pairs at the same sizes (false alarms)"
    )
    slow_dirs = [run(out / f"slow-{j}", slower(BASE, args.slowdown), 5000 + j, args.requests, args.rate)
                 for j in range(args.slow_pairs)]  # fmt: skip
    print(f"{'n':>6} {'slow flagged':>13} {'same flagged':>13}   " + " ".join(f"{f:>13}" for f in KEY_FIGURES))
    for n in sizes:
        slow_results = [
            compare_samples(load_samples(pairs[j][0], first=n), load_samples(slow_dirs[j], first=n), settings)
            for j in range(args.slow_pairs)
        ]
        same_results = [compare_samples(load_samples(a, first=n), load_samples(b, first=n), settings) for a, b in pairs]
        flagged_slow = sum(bool(r["regressions"]) for r in slow_results)
        flagged_same = sum(bool(r["regressions"]) for r in same_results)
        cells = []
        for f in KEY_FIGURES:
            hits = sum(f in r["regressions"] for r in slow_results)
            row = next(x for x in slow_results[0]["figures"] if x["figure"] == f)
            change = "" if row["change"] is None else f"{row['change']:+.0%}"
            cells.append(f"{hits}/{len(slow_results)} {change:>5}")
        same_figs = Counter(f for r in same_results for f in r["regressions"])
        print(
            f"{n:>6} {flagged_slow:>10}/{args.slow_pairs} {flagged_same:>10}/{args.pairs}   "
            + " ".join(f"{c:>13}" for c in cells)
            + (f"   same: {dict(same_figs)}" if same_figs else "")
        )
    print("(per figure: slow pairs flagging it as a regression, and the first slow pair's measured change)")

    k = args.baselines
    if args.pairs >= k + 1:
        print(f"\nseveral baselines: each run against {k} other identical runs (runs as the unit)")
        a_runs = [load_samples(a) for a, _ in pairs]
        same_alarms, same_figs, examples = 0, Counter(), []
        for i, (_, b) in enumerate(pairs):
            bases = [a_runs[(i + 1 + m) % args.pairs] for m in range(k)]
            result = compare_samples(bases, load_samples(b), settings)
            same_alarms += bool(result["regressions"])
            same_figs.update(result["regressions"])
        print(f"  identical: {same_alarms} of {args.pairs} say regression {dict(same_figs) or ''}")
        for j, slow_dir in enumerate(slow_dirs):
            bases = [a_runs[(j + m) % args.pairs] for m in range(k)]
            result = compare_samples(bases, load_samples(slow_dir), settings)
            rows = {r["figure"]: r for r in result["figures"]}
            examples.append(
                f"slow-{j}: {len(result['regressions'])} regressions; "
                + ", ".join(
                    f"{f} {_interval(rows[f])} ({rows[f]['interval']})"
                    for f in ("tpot_ms.p50", "e2e_ms.p50")
                    if rows[f]["change"] is not None
                )
            )
        for line in examples:
            print("  " + line)
    print(f"\nanalysis {time.time() - started:.0f} s")
    return 0


def _figures_only(samples: RunSamples) -> list[tuple[str, float | None]]:
    """Each figure's value in one run (the few resamples drawn are not used)."""
    result = compare_samples(samples, samples, Settings(resamples=100))
    return [(r["figure"], r["new"]) for r in result["figures"]]


if __name__ == "__main__":
    raise SystemExit(main())
