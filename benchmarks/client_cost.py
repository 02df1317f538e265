"""What a whole run costs the client: CPU seconds per 1,000 requests, requests/s and memory.

Two probes against the embedded simulator (its own process, so its CPU is not counted), each run
through ``Experiment`` in a fresh child process, so the figure includes everything a real run pays
on its event loop (scheduler, client, recorder, run writer, live snapshot tick):

* ``rate20``: a constant 20 requests/s, 64-token prompts and 64-token answers (``gpu-8b`` pacing):
  the cost at a low rate, where per-second overheads and the wait before each send weigh most;
* ``closed64``: 64 closed-loop users, 32-token answers from the ``instant`` profile: the client is
  the bottleneck, so requests/s is what this client squeezes out of its core;
* ``idle``: one request every 5 s: what the run costs per second with next to no load (the live
  snapshot tick, the harness sampler, the run writer's flushes), read from ``steady CPU ms/s``.

Two CPU figures: ``run`` is the child's CPU over all of ``Experiment.run`` (start-up, summary and
teardown included, imports excluded) per request; ``steady`` is the CPU spent while the load ran
(from 1 s after the start to 0.5 s before the end, sampled every 0.25 s) per request that
finished in that window: what the peer tools' "measurement window" figures count. Memory is the
child's peak RSS. ``--workers N`` runs the probes with that many worker processes (CPU then
sums the parent and its workers). To compare two checkouts, pass ``--tree DIR`` once per checkout:
each probe runs under each tree in turn, ``--repeat`` times, interleaved, and medians are printed.

    python benchmarks/client_cost.py [--seconds 15] [--repeat 3] [--tree . --tree ../main]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PROBES = ("rate20", "closed64", "idle")


def child(probe: str, seconds: float, out_dir: str, workers: int) -> None:
    import resource

    from loadbench import Concurrency, Constant, Decode, Experiment, Fixed, Remote, Scenario, SimConfig, Stop
    from loadbench.sim import SimProcess

    if probe == "rate20":
        load, profile, out_tokens = Constant(20), "gpu-8b", 64
    elif probe == "idle":
        load, profile, out_tokens = Constant(0.2), "gpu-8b", 64
    else:
        load, profile, out_tokens = Concurrency(64), "instant", 32
    fields = {
        "workload": Decode(input_tokens=Fixed(64), output_tokens=Fixed(out_tokens)),
        "deployment": Remote.compatible(base_url="http://127.0.0.1:8000"),
        "load": load,
        "stop": Stop(duration_s=seconds),
        "energy": False,
        "out_dir": out_dir,
    }
    if workers > 1:
        fields["workers"] = workers
    # The simulator is started here rather than by the run, so that it is still running (not yet
    # reaped into this process's children's CPU) when the workers' CPU is read.
    sim = SimProcess(SimConfig(profile=profile, trace=False)).__enter__()
    scenario = Scenario(**fields, target=sim.base_url)

    def cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        total = own.ru_utime + own.ru_stime
        if workers > 1:  # workers are reaped children; the simulator is still running here
            total += kids.ru_utime + kids.ru_stime
        return total

    import threading
    import time

    samples: list[tuple[int, float]] = []
    done_sampling = threading.Event()

    def sampler() -> None:
        while not done_sampling.wait(0.25):
            samples.append((time.perf_counter_ns(), cpu()))

    before = cpu()
    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    result = Experiment(scenario).run()
    done_sampling.set()
    thread.join()
    after = cpu()
    sim.__exit__(None, None, None)
    summary = result.summary
    start_ns = json.loads((Path(out_dir) / "requests.jsonl").open().readline())["intended_ns"]
    lo_ns, hi_ns = start_ns + 1_000_000_000, start_ns + int((seconds - 0.5) * 1e9)
    inside = [(t, c) for t, c in samples if lo_ns <= t <= hi_ns]
    steady = steady_ms_per_s = None
    if len(inside) >= 2 and workers == 1:  # live workers' CPU is only seen once they are reaped
        (t0, c0), (t1, c1) = inside[0], inside[-1]
        with open(Path(out_dir) / "requests.jsonl", "rb") as fh:
            ended = sum(1 for line in fh if t0 <= json.loads(line)["end_ns"] <= t1)
        steady = 1000 * (c1 - c0) / max(ended, 1)
        steady_ms_per_s = 1000 * (c1 - c0) / ((t1 - t0) / 1e9)
    done = summary["requests"]["completed"]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "cpu_s": after - before,
                "steady_cpu_s_per_1k": steady,
                "steady_cpu_ms_per_s": steady_ms_per_s,
                "completed": done,
                "failed": summary["requests"]["failed"],
                "requests_per_s": summary["throughput"]["requests_per_s"],
                "rss_mb": rss_mb,
                "dispatch_p99_ms": summary["metrics"]["dispatch_lag_ms"]["p99"],
            }
        )
    )


def run_one(tree: str, probe: str, seconds: float, workers: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(Path(tree).resolve()))
    with tempfile.TemporaryDirectory(prefix="client-cost-") as out_dir:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", probe, str(seconds), out_dir, str(workers)],
            capture_output=True, text=True, check=False, env=env,
        )
    if proc.returncode != 0:
        raise SystemExit(f"{tree} {probe} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], float(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--probes", default=",".join(PROBES))
    p.add_argument("--tree", action="append", help="a checkout to import loadbench from (repeatable)")
    p.add_argument("--workers", type=int, default=1)
    ns = p.parse_args()
    trees = ns.tree or [str(Path(__file__).resolve().parent.parent)]
    print(f"{'probe':<10}{'tree':<28}{'runs':>5}{'req/s':>9}{'run CPU/1k':>11}{'steady CPU/1k':>14}{'RSS MB':>8}"
          f"{'lag p99 ms':>12}{'failed':>8}{'steady CPU ms/s':>16}"
          "   (medians, CPU in s per 1,000 requests; each run: steady)")
    for probe in ns.probes.split(","):
        results: dict[str, list[dict]] = {t: [] for t in trees}
        for _ in range(ns.repeat):
            for tree in trees:
                results[tree].append(run_one(tree, probe, ns.seconds, ns.workers))
        for tree, rows in results.items():
            per_1k = [1000 * r["cpu_s"] / max(r["completed"], 1) for r in rows]

            def med(key: str, rows: list[dict] = rows) -> float:
                return statistics.median(r[key] or 0.0 for r in rows)

            steady = [r["steady_cpu_s_per_1k"] or float("nan") for r in rows]
            print(
                f"{probe:<10}{tree[-28:]:<28}{len(rows):>5}{med('requests_per_s'):>9.1f}"
                f"{statistics.median(per_1k):>11.2f}{statistics.median(steady):>14.2f}"
                f"{med('rss_mb'):>8.0f}{med('dispatch_p99_ms'):>12.3f}{med('failed'):>8.0f}"
                f"{med('steady_cpu_ms_per_s'):>16.2f}   "
                + " ".join(f"{x:.2f}" for x in steady),
                flush=True,
            )


if __name__ == "__main__":
    main()
