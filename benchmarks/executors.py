"""One run on one event loop, on N worker processes, and on Ray actors: requests/s, CPU, and counts.

The scenario is one where the client is the bottleneck: ``--users`` closed-loop users (64) against
the embedded simulator's ``instant`` profile (its own process), 32-token answers, for
``--duration`` seconds. Each executor runs it in turn:

* ``one process``: the default, one event loop;
* ``workers=N`` for each N in ``--workers`` (default 2): N worker processes, each with its share of
  the users, merged into one run directory by the parent;
* ``ray two nodes`` (with ``--ray``, when ``ray`` is installed): the same N workers as Ray actors on
  a two-node Ray cluster started on loopback for this run (two raylets with one CPU each, stopped
  by pid afterwards; the test suite's own ``tests/load/ray_cluster.py``).

Printed per run: completed requests/s over the measured window, the client's CPU seconds per
1,000 requests (this process and its child processes, so the workers are counted; Ray's actors
run under the cluster's raylets and are not this process's children, so their CPU is not shown),
the records in ``requests.jsonl``, each worker's record count, and whether the merged histograms
hold exactly the records (``e2e`` count = ok records; ``itl`` count = their chunks - 1).

    python benchmarks/executors.py [--duration 10] [--users 64] [--workers 2] [--ray]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(label: str, duration_s: float, users: int, out_dir: Path, **fields) -> None:
    from loadbench import Concurrency, Decode, Experiment, Fixed, Remote, Scenario, SimConfig, Stop

    scenario = Scenario(
        workload=Decode(input_tokens=Fixed(64), output_tokens=Fixed(32)),
        deployment=Remote.compatible(base_url="http://127.0.0.1:8000", model="m"),
        load=Concurrency(users),
        stop=Stop(duration_s=duration_s),
        target="sim",
        sim=SimConfig(profile="instant", trace=False),
        energy=False,
        out_dir=out_dir,
        **fields,
    )
    cpu0, wall0 = cpu_s(), time.perf_counter()
    result = Experiment(scenario).run()
    cpu, wall = cpu_s() - cpu0, time.perf_counter() - wall0
    summary = result.summary
    rows = [json.loads(line) for line in (result.path / "requests.jsonl").read_text().splitlines()]
    ok = [r for r in rows if r["status"] == "ok"]
    metrics = summary["metrics"]
    exact = metrics["e2e_ms"]["count"] == len(ok) and metrics["itl_ms"]["count"] == sum(r["chunks"] - 1 for r in ok)
    per_worker = [w["records"] for w in summary.get("workers", [])]
    completed = summary["requests"]["completed"]
    rate = summary["throughput"]["requests_per_s"]
    note = "" if "ray" not in label else " (actors' CPU not counted)"
    print(f"{label:<16}{rate:>10.1f}{cpu / max(completed, 1) * 1000:>14.2f}{len(rows):>9}"
          f"{per_worker or '-'!s:>18}{exact!s:>8}{wall:>8.1f}{note}", flush=True)
    print(f"{'':<16}run directory: {result.path}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--users", type=int, default=64)
    p.add_argument("--workers", default="2", help="comma-separated worker counts")
    p.add_argument("--ray", action="store_true", help="also run on a local two-node Ray cluster")
    ns = p.parse_args()
    counts = [int(n) for n in ns.workers.split(",") if n]
    out = Path(tempfile.mkdtemp(prefix="loadbench-executors-"))
    print(f"{'executor':<16}{'req/s':>10}{'CPU s/1k req':>14}{'records':>9}{'per worker':>18}{'exact':>8}"
          f"{'wall s':>8}", flush=True)
    run("one process", ns.duration, ns.users, out / "one")
    for n in counts:
        run(f"workers={n}", ns.duration, ns.users, out / f"workers{n}", workers=n)
    if ns.ray:
        try:
            import ray
        except ImportError:
            print("ray is not installed (pip install 'loadbench[ray]'): skipped", flush=True)
            return
        from loadbench.load.ray_executor import Ray

        sys.path.insert(0, str(ROOT))
        try:
            from tests.load.ray_cluster import LocalRayCluster
        finally:
            sys.path.remove(str(ROOT))
        with LocalRayCluster(str(ROOT)) as address:
            try:
                executor = Ray(address, workers=max(counts or [2]))
                run("ray two nodes", ns.duration, ns.users, out / "ray", executor=executor)
            finally:
                if ray.is_initialized():
                    ray.shutdown()


if __name__ == "__main__":
    main()
