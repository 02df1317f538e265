"""How precisely does loadbench send on schedule, and what does each request cost the harness?

Poisson arrivals at 100, 1,000 and 2,000 requests/s against the embedded simulator ("instant"
profile, 4-token answers, in its own process), then bursts of ``--burst`` requests due at the same
instant (every 0.25 s). For each it prints dispatch lag (sent - intended) p50/p99, the requests
that failed, and the harness's own CPU seconds per 1,000 requests (this process only: the
simulator's CPU is not counted).

Side by side, in the same run, a baseline dispatcher of the kind many load tools use: it sleeps
for each inter-arrival gap in turn (`await asyncio.sleep(gap)`), so every late wake-up pushes all
later requests back. Its lag is measured against the same plan's intended times.

    python benchmarks/dispatch.py [--seconds 5] [--rates 100,1000,2000] [--burst 32] [--no-baseline]

To compare two checkouts, run the script with ``PYTHONPATH`` pointing at each in turn.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import resource
import time

import numpy as np

from loadbench.contract.prompt import Prompt
from loadbench.contract.record import RequestRecord
from loadbench.deployments import ClientSettings, Remote, Timeouts
from loadbench.load.plans import Burst, Poisson, Stop
from loadbench.load.scheduler import Scheduler
from loadbench.sim import SimConfig, SimProcess

PROMPT = Prompt.user("What is 2 + 2?", max_output_tokens=4)


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _loadbench(sender: object, plan: object, seconds: float) -> tuple[list[int], int, float, int]:
    lags: list[int] = []
    failed = 0

    def on_record(record: RequestRecord, prompt: Prompt) -> None:
        nonlocal failed
        failed += record.status != "ok"
        if record.sent_ns:
            lags.append(record.sent_ns - record.intended_ns)

    scheduler = Scheduler(
        plan=plan,
        stop=Stop(duration_s=seconds, drain_s=10),
        sender=sender,  # type: ignore[arg-type]
        prompts=itertools.repeat(PROMPT),
        on_record=on_record,
        run_id="bench",
        seed=1,
    )
    cpu0 = _cpu_s()
    await scheduler.run()
    return lags, scheduler.scheduled, _cpu_s() - cpu0, failed


async def _naive(sender: object, rate: float, seconds: float) -> tuple[list[int], int, float, int]:
    """The baseline: sleep for each gap in turn, then fire."""
    offsets = Poisson(rate).offsets_ns(np.random.default_rng(1))
    lags: list[int] = []
    tasks = set()
    failed = 0

    async def one(i: int, intended: int) -> None:
        nonlocal failed
        record = RequestRecord(index=i, request_id=f"naive-{i}", intended_ns=intended)
        record.sent_ns = time.perf_counter_ns()
        lags.append(record.sent_ns - intended)
        try:
            await sender.send(PROMPT, record)  # type: ignore[attr-defined]
        except Exception:
            failed += 1

    cpu0 = _cpu_s()
    start = time.perf_counter_ns()
    previous = 0
    for i, offset in enumerate(offsets):
        if offset >= seconds * 1e9:
            break
        await asyncio.sleep((offset - previous) / 1e9)
        previous = offset
        task = asyncio.ensure_future(one(i, start + offset))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)
    return lags, len(lags), _cpu_s() - cpu0, failed


def _row(name: str, load: str, lags: list[int], n: int, cpu_s: float, failed: int) -> str:
    arr = np.asarray(lags, dtype=float) / 1e6
    p50, p99 = (np.percentile(arr, 50), np.percentile(arr, 99)) if arr.size else (float("nan"),) * 2
    return f"{name:<22}{load:>10}{n:>9}{failed:>7}{p50:>11.3f}{p99:>11.3f}{1000 * cpu_s / max(n, 1):>16.3f}"


async def main_async(rates: list[float], seconds: float, burst: int, baseline: bool) -> None:
    deployment = Remote.compatible(base_url="http://127.0.0.1:9", model="bench")
    settings = ClientSettings(pool_size=0, timeouts=Timeouts(total_s=30), simulated=True)
    with SimProcess(SimConfig(profile="instant", trace=False)) as sim:
        async with deployment.open(base_url=sim.base_url, settings=settings) as sender:
            print(
                f"{'dispatcher':<22}{'load':>10}{'sent':>9}{'failed':>7}{'lag p50 ms':>11}{'lag p99 ms':>11}"
                f"{'CPU s/1k req':>16}"
            )
            for rate in rates:
                row = await _loadbench(sender, Poisson(rate), seconds)
                print(_row("loadbench scheduler", f"{rate:.0f}/s", *row), flush=True)
                if baseline:
                    row = await _naive(sender, rate, seconds)
                    print(_row("baseline: sleep(gap)", f"{rate:.0f}/s", *row), flush=True)
            if burst:
                row = await _loadbench(sender, Burst(burst, every_s=0.25), seconds)
                print(_row("loadbench scheduler", f"burst {burst}", *row), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rates", default="100,1000,2000")
    p.add_argument("--burst", type=int, default=32, help="requests per burst (0: no burst row)")
    p.add_argument("--no-baseline", action="store_true", help="skip the sleep(gap) dispatcher")
    ns = p.parse_args()
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(main_async([float(r) for r in ns.rates.split(",")], ns.seconds, ns.burst, not ns.no_baseline))


if __name__ == "__main__":
    main()
