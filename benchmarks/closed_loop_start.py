"""Closed loop with many users: how long until the first request is sent, and until every user has.

A scheduler runs ``Concurrency(users)`` for one request per user against an in-process sender that
answers after ``--hold-s`` (no network: what is timed is the scheduler; the hold is long enough that
no user comes back for a second request). Prints, per user count, the time
from the run's start to the first ``sent``, to the last user's first ``sent``, and the whole run,
with the dispatch-lag median. Asserts nothing. Run: ``python benchmarks/closed_loop_start.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from loadbench.contract.prompt import Prompt
from loadbench.load.plans import Concurrency, Stop
from loadbench.load.scheduler import Scheduler


class _Sleeper:
    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s

    async def send(self, prompt, record) -> None:
        await asyncio.sleep(self.hold_s)
        record.first_token_ns = record.end_ns = time.perf_counter_ns()


async def one(users: int, hold_s: float) -> tuple[float, float, float, float]:
    records = []
    prompt = Prompt.user("x", max_output_tokens=1)
    scheduler = Scheduler(
        plan=Concurrency(users),
        stop=Stop(requests=users),
        sender=_Sleeper(hold_s),
        prompts=iter(lambda: prompt, None),
        on_record=lambda r, p: records.append(r),
        run_id="bench",
    )
    t0 = time.perf_counter_ns()
    timing = await scheduler.run()
    sent = sorted(r.sent_ns for r in records)
    lag = statistics.median((r.sent_ns - r.intended_ns) / 1e6 for r in records)
    start = timing.start_ns
    return (sent[0] - start) / 1e6, (sent[-1] - start) / 1e6, (timing.end_ns - t0) / 1e6, lag


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", default="1000,10000,100000")
    parser.add_argument("--hold-s", type=float, default=8.0)
    args = parser.parse_args()
    print(f"{'users':>8}{'first sent ms':>15}{'last user sent ms':>19}{'run ms':>10}{'lag p50 ms':>12}")
    for users in (int(u) for u in args.users.split(",")):
        first, last, total, lag = asyncio.run(one(users, args.hold_s))
        print(f"{users:>8}{first:>15.1f}{last:>19.1f}{total:>10.0f}{lag:>12.1f}")


if __name__ == "__main__":
    main()
