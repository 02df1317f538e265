"""What the energy sampler costs the harness. Prints figures; asserts nothing.

Three measurements:

1. The harness's own throughput against the embedded simulator (the ``instant`` engine, so the
   client is the bottleneck), with energy off and with the sampler at 10 Hz, run alternately
   (off, on, off, on, ...) so drift on the host hits both sides alike.
2. The sampler thread's CPU time per minute at 10 Hz, for the sources detected here and for the
   CPU-time estimate alone (helper processes such as macmon are not counted).
3. Event-loop lateness: 1 ms timers on an asyncio loop with and without the sampler running.

    python benchmarks/energy_overhead.py                 # about two minutes
    python benchmarks/energy_overhead.py --quick         # about half a minute
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from loadbench.energy import EnergyConfig, EnergyMeter
from loadbench.energy.estimate import CpuTimeEstimate


def harness_throughput(duration_s: float, repeats: int, users: int) -> None:
    from loadbench import Concurrency, Decode, Experiment, Local, Scenario, SimConfig, Stop

    print(
        f"1. harness throughput vs the simulator: Concurrency({users}), {duration_s:g} s runs, "
        f"{repeats} each, alternating"
    )
    results: dict[str, list[tuple[float, float, float]]] = {"off": [], "10 Hz": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            for label, energy in (("off", False), ("10 Hz", EnergyConfig(interval_s=0.1, idle_s=0))):
                scenario = Scenario(
                    workload=Decode(),
                    deployment=Local("llama3.2"),
                    load=Concurrency(users),
                    stop=Stop(duration_s=duration_s),
                    target="sim",
                    sim=SimConfig(trace=False),
                    out_dir=Path(tmp) / f"{label.replace(' ', '')}-{i}",
                    energy=energy,
                )
                summary = Experiment(scenario).run().summary
                sampler_s = summary["energy"]["sampler_cpu_s"] if "energy" in summary else 0.0
                throughput = summary["throughput"]
                results[label].append((throughput["requests_per_s"], throughput["output_tokens_per_s"], sampler_s))
    print(
        f"   {'energy':8} {'requests/s (median, min-max)':>32} {'output tokens/s (median)':>26} "
        f"{'sampler CPU s/run':>18}"
    )
    for label, rows in results.items():
        rps = [r[0] for r in rows]
        tps = [r[1] for r in rows]
        cpu = [r[2] for r in rows]
        print(
            f"   {label:8} {statistics.median(rps):14.1f} ({min(rps):7.1f}-{max(rps):7.1f})"
            f" {statistics.median(tps):26.0f} {statistics.median(cpu):18.4f}"
        )
    off_tps = [r[1] for r in results["off"]]
    on_tps = [r[1] for r in results["10 Hz"]]
    off, on = statistics.median(off_tps), statistics.median(on_tps)
    verdict = (
        "within this host's run-to-run spread (the ranges overlap)"
        if min(on_tps) <= max(off_tps) and min(off_tps) <= max(on_tps)
        else "outside the run-to-run spread"
    )
    print(f"   median output tokens/s with the sampler: {100 * (on - off) / off:+.1f}% vs without, {verdict}")


def sampler_cpu(seconds: float) -> None:
    print(f"2. sampler thread CPU at 10 Hz, measured over {seconds:g} s")
    cases = [("auto-detected", None), ("cpu-estimate only", [CpuTimeEstimate(10.0)])]
    for label, sources in cases:
        with EnergyMeter(EnergyConfig(interval_s=0.1, idle_s=0), sources=sources) as meter:
            time.sleep(seconds)
        report = meter.report()
        per_min = meter.sampler_cpu_s / seconds * 60
        used = ", ".join(t["name"] for t in meter.sources_tried() if t["used"])
        samples = sum(c["samples"] for c in report["channels"])
        print(
            f"   {label:18} [{used}]: {per_min:.3f} CPU s per minute "
            f"({100 * per_min / 60:.3f}% of one core), {samples} readings, "
            f"{report['missed_ticks']} missed ticks"
        )


async def _lateness_ms(count: int, period_s: float) -> list[float]:
    loop = asyncio.get_running_loop()
    late = []
    due = loop.time()
    for _ in range(count):
        due += period_s
        await asyncio.sleep(max(0.0, due - loop.time()))
        late.append((loop.time() - due) * 1e3)
    return late


def loop_lateness(count: int) -> None:
    print(f"3. event-loop lateness of {count} timers at 1 ms (asyncio default loop)")

    def describe(label: str, late: list[float]) -> None:
        q = statistics.quantiles(late, n=100)
        print(f"   {label:22} p50 {q[49]:.3f} ms   p99 {q[98]:.3f} ms   max {max(late):.3f} ms")

    describe("without the sampler", asyncio.run(_lateness_ms(count, 0.001)))
    with EnergyMeter(EnergyConfig(interval_s=0.1, idle_s=0)):
        late = asyncio.run(_lateness_ms(count, 0.001))
    describe("with the sampler, 10 Hz", late)
    describe("without, again", asyncio.run(_lateness_ms(count, 0.001)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a rough figure)")
    parser.add_argument("--duration-s", type=float, default=None, help="seconds per harness run")
    parser.add_argument("--repeats", type=int, default=None, help="harness runs per side")
    parser.add_argument("--users", type=int, default=32, help="closed-loop users against the sim")
    parser.add_argument("--skip-harness", action="store_true", help="only parts 2 and 3")
    args = parser.parse_args()
    print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (1 min) at start")
    duration_s = args.duration_s or (2.0 if args.quick else 5.0)
    repeats = args.repeats or (2 if args.quick else 4)
    if not args.skip_harness:
        harness_throughput(duration_s, repeats, args.users)
    sampler_cpu(3.0 if args.quick else 20.0)
    loop_lateness(2000 if args.quick else 10000)
    print(f"host load average {os.getloadavg()[0]:.2f} (1 min) at the end")


if __name__ == "__main__":
    main()
