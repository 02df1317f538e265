"""Soak: does the harness stay flat over a long steady run? RSS over time, growth per 100,000
requests, and the run's drift figures.

Runs ``scenarios/ci_soak.py`` through the command line (as CI would) at a steady Poisson rate
on the embedded simulator, then reads the run directory's ``harness.jsonl`` and ``summary.json``:

* the harness's RSS at 1, 10 and 20 minutes (or the marks that fit ``--minutes``), and the
  requests finished by then;
* growth per 100,000 requests: (RSS at the end - RSS at 1 minute) over the requests finished in
  between, scaled;
* drift (last / first window) and the gates' verdicts.

Baseline in the same run: the memory the summary's per-request facts took before they were
tallied (a list entry per request for the length report, a dict per request for server timings)
against the tallies now, for 100,000 synthetic records, measured with tracemalloc.

    python benchmarks/soak.py --minutes 20 --rate 50 --out /tmp/soak
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]


class _OldLengthFacts(NamedTuple):  # what the summary kept per request before the tallies
    status: str
    target_input_tokens: int | None
    input_tokens: int | None
    target_output_tokens: int | None
    output_tokens: int | None


def facts_baseline(n: int = 100_000) -> tuple[float, float]:
    """MB held for ``n`` requests' summary facts: (a list per request as before, the tallies now)."""
    import numpy as np

    from loadbench.contract.prompt import Prompt
    from loadbench.contract.record import RequestRecord
    from loadbench.metrics.facts import RunFacts

    rng = np.random.default_rng(0)
    t_in = rng.integers(64, 512, n)
    r_in = t_in + rng.integers(-8, 9, n)
    t_out = rng.integers(16, 96, n)
    prompt = Prompt.user("x")

    def records():
        for i in range(n):
            r = RequestRecord(index=i, request_id=str(i), intended_ns=i, status="ok")
            r.target_input_tokens, r.input_tokens = int(t_in[i]), int(r_in[i])
            r.target_output_tokens = r.output_tokens = int(t_out[i])
            r.server = {"prompt_ms": float(r_in[i]) * 0.061, "decode_ms": float(t_out[i]) * 12.3}
            yield r

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    old_lengths, old_server = [], []
    for r in records():
        old_lengths.append(
            _OldLengthFacts(r.status, r.target_input_tokens, r.input_tokens, r.target_output_tokens, r.output_tokens)
        )
        old_server.append(r.server)
    old_mb = (tracemalloc.get_traced_memory()[0] - before) / 2**20
    del old_lengths, old_server
    before = tracemalloc.get_traced_memory()[0]
    facts = RunFacts({})
    for r in records():
        facts.add(r, prompt)
    new_mb = (tracemalloc.get_traced_memory()[0] - before) / 2**20
    tracemalloc.stop()
    return old_mb, new_mb


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--rate", type=float, default=50.0, help="requests per second (Poisson)")
    ap.add_argument("--out", default="/tmp/loadbench-soak")
    ap.add_argument("--analyse-only", action="store_true", help="only read an existing run directory")
    args = ap.parse_args()
    out = Path(args.out)
    run_dir = out / "run"
    if not args.analyse_only:
        out.mkdir(parents=True, exist_ok=True)
        # The rate is the scenario's, scaled: a copy of the scenario with only the plan changed.
        scn = out / "soak_scenario.py"
        scn.write_text(
            "import runpy\n"
            "from loadbench import Poisson\n"
            f"base = runpy.run_path({str(ROOT / 'scenarios' / 'ci_soak.py')!r})['scenario']\n"
            f"scenario = base.replace(load=Poisson(rate_per_s={args.rate}), name='ci_soak', drift_window_s=60.0)\n"
        )
        cmd = [
            sys.executable, "-m", "loadbench", str(scn), "--duration", str(args.minutes * 60),
            "--out", str(run_dir), "--quiet", "--junit", str(out / "junit.xml"),
            "--gate", f"throughput.requests_per_s > {args.rate * 0.9:g}",
        ]  # fmt: skip
        print("$", " ".join(cmd), flush=True)
        started = time.time()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        print(proc.stderr.strip())
        print(f"exit code {proc.returncode} after {time.time() - started:.0f} s")

    samples = [json.loads(line) for line in (run_dir / "harness.jsonl").read_text().splitlines() if line.strip()]
    summary = json.loads((run_dir / "summary.json").read_text())

    def at(minute: float) -> dict:
        target = minute * 60
        return min(samples, key=lambda s: abs(s["t_s"] - target))

    print(f"\nharness over {samples[-1]['t_s'] / 60:.1f} min at {args.rate:g} req/s ({len(samples)} samples)")
    print(f"{'mark':>8} {'t_s':>8} {'RSS MB':>8} {'finished':>9} {'fds':>5} {'sockets':>7} {'lag max ms':>10}")
    marks = [m for m in (1, 10, 20) if m * 60 <= samples[-1]["t_s"] + 5] or [samples[-1]["t_s"] / 60]
    for m in marks:
        s = at(m)
        print(
            f"{m:>6g} m {s['t_s']:>8.0f} {s['rss_mb']:>8.1f} {s['finished'] or 0:>9} {s['open_fds'] or 0:>5} "
            f"{s['sockets'] or 0:>7} {s['loop_lag_max_ms']:>10.1f}"
        )
    first, last = at(1), samples[-1]
    served = (last["finished"] or 0) - (first["finished"] or 0)
    growth = last["rss_mb"] - first["rss_mb"]
    per_100k = growth * 100_000 / served if served else float("nan")
    print(f"RSS {first['rss_mb']:.1f} MB at 1 min -> {last['rss_mb']:.1f} MB at the end: {growth:+.1f} MB over "
          f"{served:,} requests = {per_100k:+.2f} MB per 100,000 requests")
    h = summary["harness"]
    print(f"summary harness: rss_growth_mb {h['rss_growth_mb']:.2f} "
          f"(baseline at {h['rss_mb']['baseline_at_s']:.0f} s), "
          f"per 100k {h['rss_growth_mb_per_100k_requests']:.2f}; CPU mean {h['cpu']['mean_percent']:.1f}% "
          f"max {h['cpu']['max_percent']:.1f}%; loop lag max {h['loop_lag_ms']['max']:.1f} ms, "
          f"share of 100 ms probes >10 ms late {h['loop_lag_ms']['over_10ms_share']:.4f}")
    d = summary["drift"]
    if d["first"] and d["first"].get("start_s") is not None:
        a, b = d["first"], d["last"]
        print(f"\ndrift, windows of {d['window_s']:g} s: first {a['start_s']:.0f}-{a['end_s']:.0f} s, "
              f"last {b['start_s']:.0f}-{b['end_s']:.0f} s")
        for key in ("ttft_ms", "tpot_ms", "e2e_ms"):
            print(f"  {key:8} p50 {a[key]['p50']:8.1f} -> {b[key]['p50']:8.1f} (x{d[key]['p50']:.3f})   "
                  f"p99 {a[key]['p99']:8.1f} -> {b[key]['p99']:8.1f} (x{d[key]['p99']:.3f})")
        print(f"  throughput {a['output_tokens_per_s']:.0f} -> {b['output_tokens_per_s']:.0f} tok/s "
              f"(x{d['throughput']['output_tokens_per_s']:.3f}); error rate {a['error_rate']:.4f} -> "
              f"{b['error_rate']:.4f} ({d['error_rate']:+.4f})")
    else:
        print(f"drift: {d['note']}")
    req = summary["requests"]
    print(f"\nrequests: {req['scheduled']:,} scheduled, {req['completed']:,} completed, {req['failed']:,} failed")
    for g in summary.get("gates", []):
        print(f"  gate {'PASS' if g['passed'] else 'FAIL'} {g['expr']} (measured {g['value']})")
    old_mb, new_mb = facts_baseline()
    print(f"\nbaseline: summary facts for 100,000 requests, a list per request (before) {old_mb:.1f} MB, "
          f"tallies (now) {new_mb:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
