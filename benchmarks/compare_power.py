"""compare's false alarms and power, on the simulator.

1. False alarms: ``--pairs`` pairs of runs of the same scenario, each run with its own seed
   (prompts, arrival times and the simulator's step-time jitter all differ), compared with the
   default settings (95% block-bootstrap intervals, 5% tolerance). How many pairs say
   "regression" on any figure, and on which?
2. Power: the same scenario against a server profile 15% slower (every step and prefill cost
   x1.15). For growing sample sizes (the first n measured requests of each run), how often
   does compare flag it, and on which figures?

The baseline of each comparison is in the same run: a pair of identical servers beside the
slower one, at every sample size.

    python benchmarks/compare_power.py --requests 1000 --pairs 10 --slow-pairs 3
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections import Counter
from pathlib import Path

from loadbench import Balanced, EngineProfile, Experiment, Normal, Poisson, Remote, Scenario, SimConfig, Stop
from loadbench.results.compare import Settings, compare_samples, load_samples

BASE = EngineProfile(
    name="bench-8b", slots=64, kv_cache_tokens=400_000, step_base_ms=12.0, step_per_seq_ms=0.3,
    prefill_per_token_ms=0.06, prefill_chunk_tokens=2048, jitter_frac=0.05,
)  # fmt: skip


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=1000, help="measured requests per run")
    ap.add_argument("--rate", type=float, default=30.0, help="Poisson arrivals per second")
    ap.add_argument("--pairs", type=int, default=10, help="pairs of identical runs (false alarms)")
    ap.add_argument("--slow-pairs", type=int, default=3, help="base/slow pairs (power)")
    ap.add_argument("--slowdown", type=float, default=1.15)
    ap.add_argument("--sizes", default="50,100,200,400,700,1000")
    ap.add_argument("--out", default="/tmp/loadbench-compare-power")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = Settings()
    started = time.time()

    print(f"false alarms: {args.pairs} pairs of identical runs, {args.requests} measured requests each, "
          f"Poisson {args.rate:g}/s, default settings (95% CI, tolerance 5%)")
    base_runs = []
    alarms = 0
    flagged: Counter[str] = Counter()
    verdicts: Counter[str] = Counter()
    for i in range(args.pairs):
        a = run(out / f"same-{i}-a", BASE, 1000 + 2 * i, args.requests, args.rate)
        b = run(out / f"same-{i}-b", BASE, 1001 + 2 * i, args.requests, args.rate)
        base_runs.append((a, b))
        result = compare_samples(load_samples(a), load_samples(b), settings)
        verdicts.update(r["verdict"] for r in result["figures"])
        flagged.update(result["regressions"])
        alarms += bool(result["regressions"])
        worst = max(
            (r for r in result["figures"] if r["change"] is not None and r["kind"] == "relative"),
            key=lambda r: abs(r["change"]),
        )
        print(f"  pair {i}: {len(result['regressions'])} regressions {result['regressions'] or ''}; "
              f"largest change {worst['figure']} {worst['change']:+.1%} "
              f"[{worst['ci_low']:+.1%}, {worst['ci_high']:+.1%}]")
    print(f"pairs saying regression: {alarms} of {args.pairs}; figures flagged: {dict(flagged) or 'none'}")
    print(f"verdicts over all figures: {dict(verdicts)}")

    sizes = [int(s) for s in args.sizes.split(",") if int(s) <= args.requests]
    print(f"\npower: a server {args.slowdown:g}x slower, {args.slow_pairs} base/slow pairs; "
          f"and the identical pairs at the same sizes (false alarms)")
    slow_results: dict[int, list[dict]] = {n: [] for n in sizes}
    same_results: dict[int, list[dict]] = {n: [] for n in sizes}
    for j in range(args.slow_pairs):
        base_dir = base_runs[j][0]
        slow_dir = run(out / f"slow-{j}", slower(BASE, args.slowdown), 5000 + j, args.requests, args.rate)
        for n in sizes:
            b = load_samples(base_dir, first=n)
            slow_results[n].append(compare_samples(b, load_samples(slow_dir, first=n), settings))
            same_results[n].append(compare_samples(b, load_samples(base_runs[j][1], first=n), settings))
    key_figures = ("ttft_ms.p50", "ttft_ms.p99", "tpot_ms.p50", "tpot_ms.p99", "e2e_ms.p50", "e2e_ms.mean")
    print(f"{'n':>6} {'slow flagged':>13} {'same flagged':>13}   " + " ".join(f"{f:>12}" for f in key_figures))
    for n in sizes:
        flagged_slow = sum(bool(r["regressions"]) for r in slow_results[n])
        flagged_same = sum(bool(r["regressions"]) for r in same_results[n])
        cells = []
        for f in key_figures:
            hits = sum(f in r["regressions"] for r in slow_results[n])
            row = next(x for x in slow_results[n][0]["figures"] if x["figure"] == f)
            change = "" if row["change"] is None else f"{row['change']:+.0%}"
            cells.append(f"{hits}/{len(slow_results[n])} {change:>5}")
        print(f"{n:>6} {flagged_slow:>10}/{args.slow_pairs} {flagged_same:>10}/{args.slow_pairs}   "
              + " ".join(f"{c:>12}" for c in cells))
    print("(per figure: pairs flagging it as a regression, and the first pair's measured change)")
    print(f"\n{time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
