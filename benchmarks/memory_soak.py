"""Harness memory over a long run: RSS of the loadbench process every ``--every-s`` seconds while
a steady open-loop load runs against the embedded simulator. Prints figures; asserts nothing.

A flat line is the target: nothing the harness keeps may grow with run length (records go to
disk, histograms are reused). The baseline, run in the same invocation, is the recorder as it
was before its interval histograms were reused (a fresh set per interval, each set a reference
cycle that the run's raised collector thresholds never free).

    python benchmarks/memory_soak.py                          # 3 min each: baseline, then current
    python benchmarks/memory_soak.py --duration-s 1200 --only current   # the 20-minute soak
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def _old_rotate(self, now_ns=None):  # the recorder before reuse: a new interval set every time
    from loadbench.metrics.hdr import add_into, new_histogram
    from loadbench.metrics.recorder import METRICS

    now_ns = time.perf_counter_ns() if now_ns is None else now_ns
    closed = self._interval
    for tag, hist in closed.items():
        add_into(self.totals[tag], hist)
    self._interval = {m.tag: new_histogram() for m in METRICS}
    start_ns, self.interval_start_ns = self.interval_start_ns, now_ns
    return start_ns, now_ns, closed


def child(args: argparse.Namespace) -> None:
    """One soak in this process; prints one JSON line per RSS sample, then a summary line."""
    from loadbench import Constant, Decode, Experiment, Fixed, Remote, Scenario, SimConfig, Stop

    if args.variant == "baseline":
        from loadbench.metrics.recorder import Recorder

        Recorder.rotate = _old_rotate  # type: ignore[method-assign]
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        while True:
            t = time.monotonic() - t0
            samples.append((t, _rss_mb()))
            print(json.dumps({"t_s": round(t, 1), "rss_mb": round(samples[-1][1], 1)}), flush=True)
            if stop.wait(args.every_s):
                return

    thread = threading.Thread(target=sample, daemon=True)
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Scenario(
            workload=Decode(input_tokens=Fixed(64), output_tokens=Fixed(32)),
            deployment=Remote.compatible(base_url="http://127.0.0.1:8000"),
            load=Constant(rate_per_s=args.rate),
            stop=Stop(duration_s=args.duration_s, drain_s=10),
            target="sim",
            sim=SimConfig(profile="instant", trace=False),
            energy=False,
            out_dir=str(Path(tmp) / "run"),
        )
        thread.start()
        result = Experiment(scenario).run()
        stop.set()
        thread.join()
    req = result.summary["requests"]
    print(json.dumps({"done": True, "completed": req["completed"], "failed": req["failed"]}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration-s", type=float, default=180.0)
    p.add_argument("--rate", type=float, default=50.0, help="requests per second (Constant)")
    p.add_argument("--every-s", type=float, default=30.0, help="seconds between RSS samples")
    p.add_argument("--only", choices=("baseline", "current"), help="run one variant only")
    p.add_argument("--variant", choices=("baseline", "current"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.variant:
        child(args)
        return
    variants = [args.only] if args.only else ["baseline", "current"]
    table: dict[str, list[tuple[float, float]]] = {}
    for variant in variants:
        print(f"{variant}: {args.duration_s:g} s at {args.rate:g} req/s ...", file=sys.stderr, flush=True)
        argv = [sys.executable, __file__, "--variant", variant, "--duration-s", str(args.duration_s),
                "--rate", str(args.rate), "--every-s", str(args.every_s)]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        table[variant] = [(r["t_s"], r["rss_mb"]) for r in rows if "rss_mb" in r]
        done = next((r for r in rows if r.get("done")), None)
        if proc.returncode or done is None:
            print(proc.stderr[-2000:], file=sys.stderr)
            raise SystemExit(f"{variant}: the soak failed (exit {proc.returncode})")
        print(f"{variant}: {done['completed']} completed, {done['failed']} failed", file=sys.stderr)
    print(f"RSS of the harness process (MB), {args.rate:g} req/s, sampled every {args.every_s:g} s")
    print(f"{'t (s)':>8}" + "".join(f"{v:>12}" for v in variants))
    for i in range(max(len(v) for v in table.values())):
        t = next(table[v][i][0] for v in variants if i < len(table[v]))
        cells = "".join(f"{table[v][i][1]:>12.1f}" if i < len(table[v]) else f"{'':>12}" for v in variants)
        print(f"{t:>8.0f}{cells}")
    for v in variants:
        (t_a, a), (t_b, b) = table[v][1], table[v][-1]  # from the first sample after start-up
        slope = (b - a) / (t_b - t_a) * 1000 if t_b > t_a else 0.0
        print(f"{v}: {a:.1f} MB at {t_a:.0f} s -> {b:.1f} MB at {t_b:.0f} s ({slope:+.0f} KB/s)")


if __name__ == "__main__":
    main()
